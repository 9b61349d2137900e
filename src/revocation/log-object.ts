/**
 * The revocation log: a Durable Object (binding `REVOCATION_LOG`, class `RevocationLog`) that is the
 * one ordered, versioned copy of the revocation list when it is bound. Every write gets the next
 * version; isolates ask for the changes since the version they hold (log-store.ts, through the
 * Cache API) and apply them to their in-memory snapshot (list.ts).
 *
 * Storage: SQLite in the object (`new_sqlite_classes`). A write is committed before its RPC returns
 * (the object's output gate holds the answer until storage confirms it), so an acknowledged write
 * survives a restart. Reads nothing in a record but `id` and `exp`: every kind replicates alike.
 * Deletes leave a tombstone (body NULL) so they propagate as changes; tombstones and expired records
 * are pruned after LOG_PRUNE_AFTER_MS, and an isolate older than that gets the whole list instead.
 *
 * Once, on first start, it copies the records of a bound `REVOCATIONS` KV namespace (migration from
 * KV mode); after that KV is never read or written for revocations.
 */
import { DurableObject } from 'cloudflare:workers'
import { messageOf } from '../errors'
import { log } from '../observability/log'
import { verifiedRecord } from './list'
import type { ChangeSet, RecordPage, StoredRecord, Written } from './store'

/** Tombstones and expired records are kept this long, so deltas can carry them; then pruned. */
export const LOG_PRUNE_AFTER_MS = 3_600_000
/** Least time between two prune passes (run on writes). */
export const LOG_PRUNE_EVERY_MS = 60_000
/** A delta with more changes than this is answered with the whole list (cheaper to apply). */
export const LOG_MAX_DELTA_CHANGES = 2_000
/** Page size of the one-time KV import. */
const KV_IMPORT_PAGE = 1000

export interface LogStats {
  readonly epoch: string
  readonly version: number
  readonly records: number
  /** `changes` calls answered since this instance started (the fan-out the bench measures). */
  readonly changesServed: number
}

type Row = { id: string; body: string | null; version: number; at: number }

export class RevocationLog extends DurableObject<Record<string, unknown>> {
  private readonly sql: SqlStorage
  private epoch = ''
  private version = 0
  /** Changes at or below this version may have been pruned: older readers get a full list. */
  private floor = 0
  private prunedAtMs = 0
  private changesServed = 0

  constructor(ctx: DurableObjectState, env: Record<string, unknown>) {
    super(ctx, env)
    this.sql = ctx.storage.sql
    this.sql.exec(`CREATE TABLE IF NOT EXISTS records (
      id TEXT PRIMARY KEY, body TEXT, version INTEGER NOT NULL, exp INTEGER, at INTEGER NOT NULL)`)
    this.sql.exec('CREATE INDEX IF NOT EXISTS records_by_version ON records (version)')
    this.sql.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)')
    const meta = new Map(
      this.sql
        .exec<{ key: string; value: string }>('SELECT key, value FROM meta')
        .toArray()
        .map((r) => [r.key, r.value]),
    )
    this.epoch = meta.get('epoch') ?? crypto.randomUUID()
    this.version = Number(meta.get('version') ?? 0)
    this.floor = Number(meta.get('floor') ?? 0)
    if (!meta.has('epoch')) this.setMeta('epoch', this.epoch)
    // Requests wait until the import is done: nobody reads a half-copied list.
    if (!meta.has('kv_imported')) void ctx.blockConcurrencyWhile(() => this.importKv())
  }

  async put(record: StoredRecord): Promise<Written> {
    const now = Date.now()
    const version = this.ctx.storage.transactionSync(() => {
      const v = this.bump()
      this.sql.exec(
        'INSERT OR REPLACE INTO records (id, body, version, exp, at) VALUES (?, ?, ?, ?, ?)',
        record.id,
        JSON.stringify(record),
        v,
        record.exp ?? null,
        now,
      )
      return v
    })
    this.prune(now)
    return { version }
  }

  async delete(id: string): Promise<Written> {
    const now = Date.now()
    const version = this.ctx.storage.transactionSync(() => {
      const live = this.sql.exec('SELECT 1 FROM records WHERE id = ? AND body IS NOT NULL', id)
      if (live.toArray().length === 0) return this.version
      const v = this.bump()
      // A tombstone, not a row deletion: isolates learn of the delete as a change.
      this.sql.exec('UPDATE records SET body = NULL, version = ?, at = ? WHERE id = ?', v, now, id)
      return v
    })
    this.prune(now)
    return { version }
  }

  async get(id: string): Promise<StoredRecord | null> {
    const rows = this.sql
      .exec<{ body: string | null }>('SELECT body FROM records WHERE id = ?', id)
      .toArray()
    const body = rows[0]?.body
    return typeof body === 'string' ? (JSON.parse(body) as StoredRecord) : null
  }

  async list(limit: number, cursor?: string): Promise<RecordPage<StoredRecord>> {
    const rows = this.sql
      .exec<{ id: string; body: string }>(
        'SELECT id, body FROM records WHERE body IS NOT NULL AND id > ? ORDER BY id LIMIT ?',
        cursor ?? '',
        limit,
      )
      .toArray()
    return {
      records: rows.map((r) => JSON.parse(r.body) as StoredRecord),
      cursor: rows.length === limit ? rows[rows.length - 1]!.id : null,
    }
  }

  async changes(epoch: string | null, since: number): Promise<ChangeSet<StoredRecord>> {
    this.changesServed++
    const now = Date.now()
    const comparable = epoch === this.epoch && since >= this.floor && since <= this.version
    if (comparable) {
      const rows = this.sql
        .exec<Row>(
          'SELECT id, body, version, at FROM records WHERE version > ? ORDER BY version LIMIT ?',
          since,
          LOG_MAX_DELTA_CHANGES + 1,
        )
        .toArray()
      if (rows.length <= LOG_MAX_DELTA_CHANGES) {
        const upserts: StoredRecord[] = []
        const deletes: string[] = []
        let changedAtMs: number | null = null
        for (const r of rows) {
          if (r.body === null) deletes.push(r.id)
          else upserts.push(JSON.parse(r.body) as StoredRecord)
          changedAtMs = Math.max(changedAtMs ?? 0, r.at)
        }
        return {
          epoch: this.epoch,
          version: this.version,
          since,
          upserts,
          deletes,
          changedAtMs,
          servedAtMs: now,
        }
      }
    }
    const nowS = Math.floor(now / 1000)
    const rows = this.sql
      .exec<{ body: string }>(
        'SELECT body FROM records WHERE body IS NOT NULL AND (exp IS NULL OR exp > ?)',
        nowS,
      )
      .toArray()
    return {
      epoch: this.epoch,
      version: this.version,
      since: null,
      upserts: rows.map((r) => JSON.parse(r.body) as StoredRecord),
      deletes: [],
      changedAtMs: null,
      servedAtMs: now,
    }
  }

  async stats(): Promise<LogStats> {
    const [row] = this.sql
      .exec<{ n: number }>('SELECT count(*) AS n FROM records WHERE body IS NOT NULL')
      .toArray()
    return {
      epoch: this.epoch,
      version: this.version,
      records: row?.n ?? 0,
      changesServed: this.changesServed,
    }
  }

  /** Inside a transaction: the next version, persisted with the write that takes it. */
  private bump(): number {
    this.version += 1
    this.setMeta('version', String(this.version))
    return this.version
  }

  private setMeta(key: string, value: string): void {
    this.sql.exec('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)', key, value)
  }

  /** Drops old tombstones and long-expired records; readers from before them get a full list. */
  private prune(nowMs: number): void {
    if (nowMs - this.prunedAtMs < LOG_PRUNE_EVERY_MS) return
    this.prunedAtMs = nowMs
    const cutoffMs = nowMs - LOG_PRUNE_AFTER_MS
    const cutoffS = Math.floor(cutoffMs / 1000)
    this.ctx.storage.transactionSync(() => {
      const [top] = this.sql
        .exec<{ v: number | null }>(
          `SELECT max(version) AS v FROM records
           WHERE (body IS NULL AND at < ?) OR (exp IS NOT NULL AND exp < ?)`,
          cutoffMs,
          cutoffS,
        )
        .toArray()
      if (top?.v === null || top?.v === undefined) return
      this.sql.exec(
        'DELETE FROM records WHERE (body IS NULL AND at < ?) OR (exp IS NOT NULL AND exp < ?)',
        cutoffMs,
        cutoffS,
      )
      this.floor = Math.max(this.floor, top.v)
      this.setMeta('floor', String(this.floor))
    })
  }

  /**
   * Copies every live record of the KV namespace once. Records the admin API wrote carry
   * themselves as metadata; hand-written ones are read by key. INSERT OR IGNORE: a record already
   * in the log (written or deleted here) wins over KV's copy.
   */
  private async importKv(): Promise<void> {
    const kv = this.env.REVOCATIONS as KVNamespace | undefined
    if (kv === undefined || typeof kv.list !== 'function') {
      this.setMeta('kv_imported', 'no KV namespace bound')
      return
    }
    const nowS = Math.floor(Date.now() / 1000)
    const found: StoredRecord[] = []
    let cursor: string | undefined
    try {
      do {
        const page = await kv.list<unknown>({ cursor, limit: KV_IMPORT_PAGE })
        for (const key of page.keys) {
          if (key.expiration !== undefined && key.expiration <= nowS) continue
          // Claims are trusted only when they hash to the key, as KV mode does.
          const record = await verifiedRecord(key.name, key.metadata)
          if (record !== null) {
            found.push(record)
            continue
          }
          const text = await kv.get(key.name)
          if (text === null) continue
          // Anything else is kept by id alone (the list matches it by hashed id) with its cut-off.
          found.push({ id: key.name, exp: key.expiration, before: beforeOf(text) } as StoredRecord)
        }
        cursor = page.list_complete ? undefined : page.cursor
      } while (cursor !== undefined)
    } catch (err) {
      // Not marked done: the next start tries again. Until then the log serves what it has.
      log({ level: 'error', event: 'revocation_log_import_failed', detail: messageOf(err) })
      return
    }
    const now = Date.now()
    this.ctx.storage.transactionSync(() => {
      for (const record of found) {
        const v = this.bump()
        this.sql.exec(
          'INSERT OR IGNORE INTO records (id, body, version, exp, at) VALUES (?, ?, ?, ?, ?)',
          record.id,
          JSON.stringify(record),
          v,
          record.exp ?? null,
          now,
        )
      }
      this.setMeta('kv_imported', `${found.length} records at ${new Date(now).toISOString()}`)
    })
  }
}

/** The `before` of a hand-written KV value, if it has a numeric one. */
function beforeOf(text: string): number | undefined {
  try {
    const before = (JSON.parse(text) as { before?: unknown }).before
    return typeof before === 'number' ? before : undefined
  } catch {
    return undefined
  }
}
