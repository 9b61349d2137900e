/**
 * Folder revocation/: the revocation list, its snapshot and its stores. Must not import proxy/,
 * admin/ or gateway.ts; writers (admin API, logout) call it, never the other way round.
 *
 * The revocation list: records in a store (store.ts), a bounded in-isolate cache in front of it.
 * I/O only through the store it is given; time comes from the caller.
 * Two stores: Workers KV, or (binding REVOCATION_LOG) the Durable Object log (log-object.ts), which
 * versions every change so isolates catch up within a second or two instead of KV's ~60 s.
 *
 * KV layout (stable; keys are hashes so no claim bytes become keys and issuers never collide):
 *   jti:<sha256hex(iss + "\n" + jti)>  one token, expires with the token
 *   sub:<sha256hex(iss + "\n" + sub)>  tokens of one subject with iat <= before
 *   all:<sha256hex(iss)>               every token of the issuer with iat <= before
 *   sid:<sha256hex(iss + "\n" + sid)>  every token carrying that `sid` claim (one IdP session,
 *                                      ended by back-channel logout), whatever its iat; expires at exp
 * Each value is the JSON record below; the record is also the key's metadata, so listing is one call.
 * Records name their writer in `source` (absent on records written before it existed, and on those
 * written by hand). Added kinds and fields are additive: older gateways ignore `sid:` keys.
 *
 * Read path, KV, cheapest first: this isolate's own writes; a snapshot of the whole list (one KV
 * list, refreshed in the background while requests keep flowing); a per-key cache; a KV get per key.
 *
 * Read path, log: this isolate's own writes; the log's snapshot, brought up to date in the
 * background (waitUntil) with the changes since its version at most every REVOCATION_SYNC_MS. A
 * request reads memory only, except in an isolate whose snapshot is absent (cold start) or older
 * than REVOCATION_MAX_STALENESS_SECONDS (idle, or the log unreachable): it waits for one sync,
 * bounded by REVOCATION_TIMEOUT_MS, and if that fails refuses with 503 (or, fail-open, lets the
 * verified token through), logged either way.
 */
import { makeRoom } from '../lib/bounded'
import { sha256hex } from '../lib/hash'
import type { RevocationConfig } from '../config'
import { GatewayError, messageOf } from '../errors'
import { log, type MetricsSink } from '../observability/log'
import type { ChangeFeed, ChangeSet, KvStore, RevocationStore } from './store'
import type { Identity } from '../auth/identity'

/** Most lookups one isolate remembers; the oldest go first. Bounds memory under unique tokens. */
export const REVOCATION_CACHE_MAX_ENTRIES = 10_000
/** Most keys a snapshot holds (5 list pages); a longer list falls back to a KV get per new token. */
export const SNAPSHOT_MAX_KEYS = 5_000
/** After a list too long for a snapshot, how long before listing again. */
export const SNAPSHOT_RETRY_MS = 300_000
/** A refresh not finished after this long is presumed lost (its request was cancelled). */
export const SNAPSHOT_REFRESH_LOST_MS = 30_000
/** KV shows a write everywhere within about this long: a write through this isolate is pinned here
 * for at least that long, so a snapshot or lookup read before KV caught up cannot undo it. */
export const KV_PROPAGATION_MS = 60_000
/** A log sync still marked running this long past its timeout is presumed lost (request gone). */
export const LOG_SYNC_LOST_GRACE_MS = 1_000

export type RevocationKind = 'jti' | 'sub' | 'all' | 'sid'
export const REVOCATION_KINDS: readonly RevocationKind[] = ['jti', 'sub', 'all', 'sid']

/**
 * Who wrote a record: the admin API, a token's own logout, an IdP's back-channel logout, or a
 * Shared Signals event (`ssf:` + the event's URI).
 */
export type RevocationSource = 'admin' | 'logout' | 'backchannel-logout' | `ssf:${string}`

export interface RevocationRecord {
  readonly id: string
  readonly kind: RevocationKind
  readonly iss: string
  readonly jti?: string
  readonly sub?: string
  readonly sid?: string
  /** kinds jti and sid: when the record expires (absent: kept until deleted). */
  readonly exp?: number
  /** kinds sub and all: tokens with iat <= before are revoked. */
  readonly before?: number
  readonly createdAt: number
  readonly source?: RevocationSource
}

/** What KV says about one key: a cut-off time, "revoked" (jti) or nothing. */
type Lookup =
  | { readonly revoked: false }
  | { readonly revoked: true; readonly kind: RevocationKind; readonly before?: number }

const NOT_REVOKED: Lookup = { revoked: false }

/** Every record in KV at one moment. Keys written by hand carry no metadata: matched by their id. */
interface Snapshot {
  /** memoKey(kind, iss, value) -> lookup, from the records' metadata. */
  readonly byClaim: ReadonlyMap<string, Lookup>
  /** KV id -> lookup, for records without (valid) metadata. */
  readonly byId: ReadonlyMap<string, Lookup>
  /** When the list started: the snapshot is no newer than this. */
  readonly takenMs: number
}

/** The log's records in this isolate, updated in place by each sync (log mode). */
interface LogSnapshot {
  readonly byClaim: Map<string, Lookup>
  readonly byId: Map<string, Lookup>
  /** Record id -> its memo key in byClaim, or null when it sits in byId: deletes find it here. */
  readonly index: Map<string, string | null>
  readonly epoch: string
  version: number
  /** The log's state is at least as new as this (its clock when it answered, at most ours). */
  takenMs: number
}

/** What /_gateway/health shows of the list in this isolate. Passive: reading it starts no I/O. */
export interface RevocationStatus {
  readonly store: 'kv' | 'log'
  /** The log version held; null in KV mode or before the first sync. */
  readonly version: number | null
  /** Age of the snapshot in seconds; null without one. */
  readonly ageSeconds: number | null
  /** Write-to-apply delay of the newest change applied here (log mode), in ms. */
  readonly lagMs: number | null
  /** Log mode: the snapshot is absent or past REVOCATION_MAX_STALENESS_SECONDS. */
  readonly stale: boolean
  readonly lastSync: 'none yet' | 'ok' | 'failed'
}

/** The Durable Object store, as the list sees it: a store that feeds changes. */
export type LogFeed = RevocationStore<RevocationRecord> &
  ChangeFeed<RevocationRecord> & { readonly kind: 'log' }

/** Runs work after the response is sent (the request's `waitUntil`). */
export type Background = (work: Promise<unknown>) => void

export async function revocationId(kind: RevocationKind, iss: string, value?: string) {
  return `${kind}:${await sha256hex(kind === 'all' ? iss : `${iss}\n${value}`)}`
}

export class RevocationList {
  /** id -> lookup, in insertion order for eviction. Values only: no promise outlives its request. */
  private readonly cache = new Map<string, { lookup: Lookup; untilMs: number }>()
  /**
   * Writes through this isolate (admin API, logout), newest last; they win over anything read.
   * In log mode each holds the version of its write, and yields once the snapshot has caught up.
   */
  private readonly local = new Map<
    string,
    { lookup: Lookup; untilMs: number; version: number | null }
  >()
  private snapshot: Snapshot | null = null
  /** memo key -> KV id: ids are pure functions of the claims, so a token's are hashed once. */
  private readonly ids = new Map<string, string>()
  /** KV id -> memo key of records whose metadata was seen to hash to their id: not hashed again. */
  private hashed: ReadonlyMap<string, string> = new Map()
  /** When a refresh started; null when none is running. */
  private refreshingSinceMs: number | null = null
  private snapshotRetryAtMs = 0

  private readonly kv: KVNamespace | null
  private readonly store: RevocationStore<RevocationRecord>
  private readonly feed: LogFeed | null
  private logged: LogSnapshot | null = null
  /** When the last log sync started, and whether it failed (then its message). */
  private syncStartedMs = -Infinity
  private syncingSinceMs: number | null = null
  private syncError: string | null = null
  private lagMs: number | null = null
  private readonly now: () => number
  private readonly metrics: MetricsSink | undefined

  /** `deps.now` times the lag of applied changes; `deps.metrics` receives one point per sync. */
  constructor(
    store: KvStore<RevocationRecord> | LogFeed,
    readonly config: RevocationConfig,
    private readonly maxSnapshotKeys = SNAPSHOT_MAX_KEYS,
    deps: { now?: () => number; metrics?: MetricsSink } = {},
  ) {
    this.store = store
    this.kv = store.kind === 'kv' ? store.kv : null
    this.feed = store.kind === 'log' ? store : null
    this.now = deps.now ?? (() => Date.now())
    this.metrics = deps.metrics
  }

  /**
   * Throws token_revoked, or revocation_unavailable when KV cannot answer and we fail closed.
   * When every lookup is known (own write, snapshot or cache) this stays synchronous: no KV call,
   * no timer, no await. `background` lets it refresh the snapshot after the response.
   */
  check(identity: Identity, nowMs: number, background?: Background): void | Promise<void> {
    const { issuer, sub, claims } = identity
    const jti = typeof claims.jti === 'string' ? claims.jti : undefined
    const wanted: [RevocationKind, string | undefined][] = [
      ['sub', sub],
      ['all', undefined],
    ]
    if (jti !== undefined) wanted.push(['jti', jti])
    // A session id that is not a string cannot name a session anyone logged out of.
    if (typeof claims.sid === 'string') wanted.push(['sid', claims.sid])
    let snapshot: Snapshot | null
    if (this.feed !== null) {
      const fresh = this.freshLog(nowMs, background)
      if (fresh === null) return this.checkAfterSync(identity, nowMs)
      snapshot = fresh
    } else {
      snapshot = this.snapshotAt(nowMs, background)
    }
    const known = wanted.map(([kind, value]) =>
      this.known(memoKey(kind, issuer, value), snapshot, nowMs),
    )
    if (known.every((l) => l !== undefined)) return judge(known as Lookup[], claims.iat)
    return this.checkSlow(wanted, known, identity, snapshot, nowMs)
  }

  private async checkSlow(
    wanted: [RevocationKind, string | undefined][],
    known: (Lookup | undefined)[],
    identity: Identity,
    snapshot: Snapshot | null,
    nowMs: number,
  ): Promise<void> {
    let found: Lookup[]
    try {
      found = await this.withTimeout(
        Promise.all(
          wanted.map(
            ([kind, value], i) =>
              known[i] ?? this.lookup(kind, identity.issuer, value, snapshot, nowMs),
          ),
        ),
      )
    } catch (err) {
      return this.unavailable(messageOf(err))
    }
    judge(found, identity.claims.iat)
  }

  /** The list cannot be checked: refuse (503), or with REVOCATION_FAIL_OPEN let it through, logged. */
  private unavailable(detail: string): void {
    if (this.config.failOpen) {
      log({ level: 'error', event: 'revocation_check_failed', failOpen: true, detail })
      return
    }
    throw new GatewayError('revocation_unavailable', detail)
  }

  /**
   * Log mode: the snapshot if it is within the staleness bound, else null. Starts a background sync
   * when the last one began at least REVOCATION_SYNC_MS ago, so requests never wait for the log.
   */
  private freshLog(nowMs: number, background?: Background): LogSnapshot | null {
    const { syncMs, maxStalenessS } = this.config.log!
    const snapshot = this.logged
    if (snapshot === null || nowMs - snapshot.takenMs > maxStalenessS * 1000) return null
    const running =
      this.syncingSinceMs !== null &&
      nowMs - this.syncingSinceMs < this.config.timeoutMs + LOG_SYNC_LOST_GRACE_MS
    if (!running && background && nowMs - this.syncStartedMs >= syncMs) {
      // sync logs its own failure; the snapshot then ages toward the bound.
      background(this.sync(nowMs).catch(() => undefined))
    }
    return snapshot
  }

  /**
   * Log mode without a usable snapshot (cold isolate, idle past the bound, or the log down): one
   * sync, awaited. After a failure, requests within the next sync interval do not retry, so a
   * down object costs one attempt per interval per isolate, not one per request.
   */
  private async checkAfterSync(identity: Identity, nowMs: number): Promise<void> {
    const failedRecently =
      this.syncError !== null && nowMs - this.syncStartedMs < this.config.log!.syncMs
    if (!failedRecently) await this.sync(nowMs).catch(() => undefined)
    const snapshot = this.logged
    const maxMs = this.config.log!.maxStalenessS * 1000
    if (snapshot === null || nowMs - snapshot.takenMs > maxMs) {
      const age =
        snapshot === null ? 'no snapshot yet' : `snapshot ${nowMs - snapshot.takenMs} ms old`
      return this.unavailable(`revocation log unavailable (${age}): ${this.syncError ?? 'stale'}`)
    }
    return this.check(identity, nowMs)
  }

  /** One round trip to the log (through the location's cache); applies what it returns. */
  private async sync(startedMs: number): Promise<void> {
    this.syncStartedMs = startedMs
    this.syncingSinceMs = startedMs
    try {
      const held = this.logged
      const from = held && { epoch: held.epoch, version: held.version }
      this.apply(await this.withTimeout(this.feed!.changes(from)), startedMs)
      this.syncError = null
    } catch (err) {
      this.syncError = messageOf(err)
      log({ level: 'warn', event: 'revocation_sync_failed', detail: this.syncError })
      throw err
    } finally {
      this.syncingSinceMs = null
    }
  }

  /** Applies a change set if it continues (delta) or supersedes (full list) what is held. */
  private apply(set: ChangeSet<RevocationRecord>, startedMs: number): void {
    const held = this.logged
    // Straight from the object, the set is at least as new as this sync's start; from the cache,
    // as old as when the object made it (min: never trust a clock ahead of ours).
    const takenMs = set.fromCache ? Math.min(startedMs, set.servedAtMs) : startedMs
    const sameLog = held !== null && held.epoch === set.epoch
    if (set.since === null) {
      // An older full list (another request's, from the cache) never replaces a newer one.
      if (sameLog && set.version < held.version) return
      const next: LogSnapshot = {
        byClaim: new Map(),
        byId: new Map(),
        index: new Map(),
        epoch: set.epoch,
        version: set.version,
        takenMs:
          sameLog && set.version === held.version ? Math.max(held.takenMs, takenMs) : takenMs,
      }
      for (const record of set.upserts) addRecord(next, record)
      this.logged = next
    } else {
      // Another sync moved this isolate on meanwhile: this delta no longer applies.
      if (!sameLog || held.version !== set.since) return
      for (const id of set.deletes) removeRecord(held, id)
      for (const record of set.upserts) {
        removeRecord(held, record.id)
        addRecord(held, record)
      }
      held.version = set.version
      held.takenMs = Math.max(held.takenMs, takenMs)
    }
    this.dropCaughtUpPins(set.version)
    const changes = set.upserts.length + set.deletes.length
    if (set.since !== null && changes > 0 && set.changedAtMs !== null) {
      const lagMs = Math.max(0, this.now() - set.changedAtMs)
      this.lagMs = lagMs
      log({ event: 'revocation_synced', version: set.version, changes, lagMs })
      this.metrics?.writeDataPoint({
        indexes: ['revocation_sync'],
        blobs: ['revocation_sync'],
        doubles: [set.version, changes, lagMs],
      })
    }
  }

  private dropCaughtUpPins(version: number): void {
    for (const [memo, pin] of this.local) {
      if (pin.version !== null && pin.version <= version) this.local.delete(memo)
    }
  }

  /** This isolate's view of the list, for the health endpoint. */
  status(nowMs: number): RevocationStatus {
    const lastSync =
      this.feed === null
        ? this.snapshot === null
          ? 'none yet'
          : 'ok'
        : this.syncStartedMs === -Infinity
          ? 'none yet'
          : this.syncError === null
            ? 'ok'
            : 'failed'
    const held = this.feed === null ? this.snapshot : this.logged
    const ageMs = held === null ? null : Math.max(0, nowMs - held.takenMs)
    return {
      store: this.store.kind,
      version: this.logged?.version ?? null,
      ageSeconds: ageMs === null ? null : Math.round(ageMs / 1000),
      lagMs: this.lagMs,
      stale:
        this.feed !== null &&
        (ageMs === null || ageMs > (this.config.log?.maxStalenessS ?? 0) * 1000),
      lastSync,
    }
  }

  /** What is known without I/O, or undefined when KV (or a hash of the claim) must be asked. */
  private known(memo: string, snapshot: Snapshot | null, nowMs: number): Lookup | undefined {
    const own = this.local.get(memo)
    // A log-mode pin stands until the snapshot holds its write (or anything after it).
    if (own && own.untilMs > nowMs && (own.version === null || !this.caughtUp(own.version))) {
      return own.lookup
    }
    if (snapshot) {
      const listed = snapshot.byClaim.get(memo)
      if (listed) return listed
      // Records written by hand are known only by their hashed id: without it, the slow path.
      if (snapshot.byId.size === 0) return NOT_REVOKED
      const id = this.ids.get(memo)
      if (id !== undefined) return snapshot.byId.get(id) ?? NOT_REVOKED
    }
    const hit = this.cache.get(memo)
    return hit && hit.untilMs > nowMs ? hit.lookup : undefined
  }

  /**
   * The snapshot if it is younger than the cache TTL (the same staleness a cached lookup may have).
   * Past half its age a refresh starts in the background, so a busy isolate never waits for a list.
   */
  private caughtUp(version: number): boolean {
    return this.logged !== null && this.logged.version >= version
  }

  private snapshotAt(nowMs: number, background?: Background): Snapshot | null {
    const ttlMs = this.config.cacheTtlS * 1000
    if (ttlMs === 0 || this.kv === null) return null
    const snapshot = this.snapshot
    const due = snapshot ? nowMs - snapshot.takenMs >= ttlMs / 2 : nowMs >= this.snapshotRetryAtMs
    const running =
      this.refreshingSinceMs !== null && nowMs - this.refreshingSinceMs < SNAPSHOT_REFRESH_LOST_MS
    if (due && !running && background) {
      this.refreshingSinceMs = nowMs
      background(this.refresh(nowMs))
    }
    return snapshot && nowMs - snapshot.takenMs < ttlMs ? snapshot : null
  }

  /** Lists every record into a new snapshot. Never throws: on failure the old one ages out. */
  private async refresh(startedMs: number): Promise<void> {
    try {
      const byClaim = new Map<string, Lookup>()
      const byId = new Map<string, Lookup>()
      const hashed = new Map<string, string>()
      const nowS = startedMs / 1000
      let cursor: string | undefined
      let count = 0
      do {
        const page = await this.kv!.list<unknown>({ cursor })
        for (const key of page.keys) {
          if (++count > this.maxSnapshotKeys) {
            // Too many to hold: every isolate listing it every few seconds would cost more than
            // the KV gets it saves. Per-key lookups take over; look again later.
            this.snapshot = null
            this.snapshotRetryAtMs = startedMs + SNAPSHOT_RETRY_MS
            log({ level: 'warn', event: 'revocation_snapshot_skipped', keys: count })
            return
          }
          if (key.expiration !== undefined && key.expiration <= nowS) continue
          const kind = kindOf(key.name)
          if (kind === null) continue
          const record = recordOf(kind, key.metadata)
          const memo = record && memoOf(record)
          // Matched on the metadata's claims: only when they hash to the key they sit on (checked
          // once per record, so a refresh of an unchanged list costs no hashing).
          if (
            record &&
            memo &&
            (this.hashed.get(key.name) === memo ||
              (await revocationId(kind, record.iss, valueOf(record))) === key.name)
          ) {
            hashed.set(key.name, memo)
            byClaim.set(memo, lookupOf(record))
          } else {
            const text = await this.kv!.get(key.name)
            if (text !== null) byId.set(key.name, parseLookup(kind, text))
          }
        }
        cursor = page.list_complete ? undefined : page.cursor
      } while (cursor !== undefined)
      this.snapshot = { byClaim, byId, takenMs: startedMs }
      this.hashed = hashed
    } catch (err) {
      // Requests fall back to per-key lookups, which fail closed (or open) on their own.
      const detail = messageOf(err)
      log({ level: 'warn', event: 'revocation_snapshot_failed', detail })
    } finally {
      this.refreshingSinceMs = null
    }
  }

  async put(record: RevocationRecord, nowMs: number): Promise<void> {
    const { version } = await storeCall(this.store.put(record, nowMs))
    this.pin(memoOf(record), lookupOf(record), nowMs, version)
  }

  /**
   * Writes the record unless one already on file revokes at least as much (a later cut-off, or a
   * longer-lived jti/sid record), so no writer ever un-revokes tokens by accident. Returns the
   * record in force afterwards.
   */
  async putUnlessCovered(record: RevocationRecord, nowMs: number): Promise<RevocationRecord> {
    const existing = await this.get(record.id)
    if (existing && covers(existing, record)) return existing
    await this.put(record, nowMs)
    return record
  }

  async get(id: string): Promise<RevocationRecord | null> {
    return storeCall(this.store.get(id))
  }

  async delete(record: RevocationRecord, nowMs: number): Promise<void> {
    const { version } = await storeCall(this.store.delete(record, nowMs))
    this.pin(memoOf(record), NOT_REVOKED, nowMs, version)
  }

  /** Takes effect at once on this isolate, whatever the cache or a snapshot (maybe older) holds. */
  private pin(memo: string, lookup: Lookup, nowMs: number, version: number | null): void {
    this.cache.delete(memo)
    this.local.delete(memo)
    if (version === null && this.config.cacheTtlS === 0) return
    if (version !== null && this.caughtUp(version)) return
    makeRoom(this.local, REVOCATION_CACHE_MAX_ENTRIES)
    // Log mode: past the staleness bound the snapshot is either newer or not used at all.
    const untilMs =
      version === null
        ? nowMs + Math.max(KV_PROPAGATION_MS, this.config.cacheTtlS * 1000)
        : nowMs + this.config.log!.maxStalenessS * 1000
    this.local.set(memo, { lookup, untilMs, version })
  }

  list(limit: number, cursor?: string) {
    return storeCall(this.store.list(limit, cursor))
  }

  private async lookup(
    kind: RevocationKind,
    iss: string,
    value: string | undefined,
    snapshot: Snapshot | null,
    nowMs: number,
  ): Promise<Lookup> {
    // Keyed by the claim text, not the KV id, so a cache hit costs no hashing.
    const memo = memoKey(kind, iss, value)
    let id = this.ids.get(memo)
    if (id === undefined) {
      id = await revocationId(kind, iss, value)
      makeRoom(this.ids, REVOCATION_CACHE_MAX_ENTRIES)
      this.ids.set(memo, id)
    }
    // The snapshot already holds every record: only the hand-written ones need the id.
    if (snapshot || this.kv === null) return snapshot?.byId.get(id) ?? NOT_REVOKED
    const text = await this.kv.get(id)
    const lookup = text === null ? NOT_REVOKED : parseLookup(kind, text)
    this.remember(memo, lookup, nowMs)
    return lookup
  }

  private remember(memo: string, lookup: Lookup, nowMs: number): void {
    this.cache.delete(memo)
    if (this.config.cacheTtlS === 0) return
    makeRoom(this.cache, REVOCATION_CACHE_MAX_ENTRIES)
    this.cache.set(memo, { lookup, untilMs: nowMs + this.config.cacheTtlS * 1000 })
  }

  private withTimeout<T>(work: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`${this.storeName()} did not answer in ${this.config.timeoutMs} ms`)),
        this.config.timeoutMs,
      )
    })
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer))
  }

  private storeName(): string {
    return this.feed === null ? 'KV' : 'The revocation log'
  }
}

/** A store that cannot be reached is a 503 for the writer (it may retry), not a gateway fault. */
async function storeCall<T>(work: Promise<T>): Promise<T> {
  try {
    return await work
  } catch (err) {
    if (err instanceof GatewayError) throw err
    throw new GatewayError('revocation_unavailable', messageOf(err))
  }
}

/** Log mode: files one record under its claims, or under its id when it has no complete claims. */
function addRecord(snapshot: LogSnapshot, stored: RevocationRecord): void {
  const kind = kindOf(stored.id)
  if (kind === null) return
  const record = recordOf(kind, stored)
  if (record !== null) {
    const memo = memoOf(record)
    snapshot.byClaim.set(memo, lookupOf(record))
    snapshot.index.set(stored.id, memo)
    return
  }
  let lookup: Lookup
  try {
    lookup = parseLookup(kind, JSON.stringify(stored))
  } catch {
    // A cut-off without a numeric before (hand-written, imported from KV): fail closed for that
    // one subject or issuer, every token of it refused, rather than for every request.
    lookup = { revoked: true, kind }
  }
  snapshot.byId.set(stored.id, lookup)
  snapshot.index.set(stored.id, null)
}

function removeRecord(snapshot: LogSnapshot, id: string): void {
  const memo = snapshot.index.get(id)
  if (memo === undefined) return
  if (memo === null) snapshot.byId.delete(id)
  else snapshot.byClaim.delete(memo)
  snapshot.index.delete(id)
}

/**
 * The record carried as `metadata` if it is complete and its claims hash to `id`, else null: the
 * only case where a record is matched by its claims instead of its hashed id.
 */
export async function verifiedRecord(
  id: string,
  metadata: unknown,
): Promise<RevocationRecord | null> {
  const kind = kindOf(id)
  if (kind === null) return null
  const record = recordOf(kind, metadata)
  if (record === null || record.id !== id) return null
  return (await revocationId(kind, record.iss, valueOf(record))) === id ? record : null
}

/** Revoked by jti outright; by a cut-off when iat is at or before it. */
function judge(found: readonly Lookup[], iatClaim: unknown): void {
  const iat = typeof iatClaim === 'number' ? iatClaim : undefined
  for (const lookup of found) {
    if (!lookup.revoked) continue
    // A jti record has no cut-off. Without iat nobody can show the token came after a cut-off.
    if (lookup.before === undefined || iat === undefined || iat <= lookup.before) {
      throw new GatewayError('token_revoked', lookup.kind)
    }
  }
}

/** Does `a` revoke every token `b` revokes? (Same id, so same kind, issuer and value.) */
function covers(a: RevocationRecord, b: RevocationRecord): boolean {
  if (b.kind === 'jti' || b.kind === 'sid') {
    return a.exp === undefined || (b.exp !== undefined && a.exp >= b.exp)
  }
  return (a.before ?? 0) >= (b.before ?? 0)
}

function memoKey(kind: RevocationKind, iss: string, value: string | undefined): string {
  return `${kind}\n${iss}\n${value ?? ''}`
}

function valueOf(record: RevocationRecord): string | undefined {
  if (record.kind === 'jti') return record.jti
  return record.kind === 'sid' ? record.sid : record.sub
}

function memoOf(record: RevocationRecord): string {
  return memoKey(record.kind, record.iss, valueOf(record))
}

function lookupOf(record: RevocationRecord): Lookup {
  return { revoked: true, kind: record.kind, before: record.before }
}

function kindOf(id: string): RevocationKind | null {
  const kind = id.slice(0, id.indexOf(':'))
  return (REVOCATION_KINDS as readonly string[]).includes(kind) ? (kind as RevocationKind) : null
}

/**
 * Metadata as the admin API writes it, or null. Trusted only when complete, since the snapshot
 * matches on these fields instead of the hashed id: anything else is looked up by id.
 */
function recordOf(kind: RevocationKind, metadata: unknown): RevocationRecord | null {
  if (typeof metadata !== 'object' || metadata === null) return null
  const m = metadata as Partial<RevocationRecord>
  if (m.kind !== kind || typeof m.iss !== 'string') return null
  if (kind === 'jti') return typeof m.jti === 'string' ? (m as RevocationRecord) : null
  if (kind === 'sid') return typeof m.sid === 'string' ? (m as RevocationRecord) : null
  if (typeof m.before !== 'number') return null
  return kind === 'all' || typeof m.sub === 'string' ? (m as RevocationRecord) : null
}

/** A record written by hand with `wrangler kv key put` may be malformed: read it strictly. */
function parseLookup(kind: RevocationKind, text: string): Lookup {
  // jti and sid revoke outright: no cut-off to read.
  if (kind === 'jti' || kind === 'sid') return { revoked: true, kind }
  let before: unknown
  try {
    before = (JSON.parse(text) as { before?: unknown }).before
  } catch {
    before = undefined
  }
  if (typeof before !== 'number') throw new Error(`revocation record ${kind} has no numeric before`)
  return { revoked: true, kind, before }
}
