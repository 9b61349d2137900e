/**
 * Where revocation records are kept: the writes (put, get, delete, list) that the admin API, logout
 * and the receivers make through RevocationList. Two stores: Workers KV (this file), or the Durable
 * Object log when `REVOCATION_LOG` is bound. A store keeps records by id and reads nothing in them
 * but `id` and `exp`, so every kind the list knows (and any it learns) is stored and replicated the
 * same way. I/O only through the binding it is given; no clock (callers pass `nowMs`), no caching
 * (the list owns the in-isolate snapshot).
 */

/** KV refuses an expirationTtl under 60 s. */
export const KV_MIN_TTL_S = 60

/** What a store needs to know of a record: its key and, if it has one, when it may be dropped. */
export interface StoredRecord {
  readonly id: string
  /** Unix seconds after which the record protects nothing (its token expired). */
  readonly exp?: number
}

/** One page of records; `cursor` is null on the last page. */
export interface RecordPage<R> {
  readonly records: R[]
  readonly cursor: string | null
}

/** What a write returns: the log's version that holds it, or null for KV (which has none). */
export interface Written {
  readonly version: number | null
}

/** Where an isolate's snapshot stands in the log: versions of one object (its epoch) only. */
export interface LogPosition {
  readonly epoch: string
  readonly version: number
}

/** The log's answer to "what changed since": a delta, or every live record when `since` is null. */
export interface ChangeSet<R> {
  /** Random per object: versions of another object (a new namespace) are not comparable. */
  readonly epoch: string
  /** The version this set brings its reader to. */
  readonly version: number
  /** The version the changes start after; null for a full list. */
  readonly since: number | null
  /** Records written (full: every live record). */
  readonly upserts: R[]
  /** Ids deleted after `since` (empty for a full list). */
  readonly deletes: string[]
  /** When the newest change in the set was written (the object's clock, ms); null if none. */
  readonly changedAtMs: number | null
  /** When the object produced the set (ms): its reader's data is current as of this. */
  readonly servedAtMs: number
  /** Set by the reader's store when the set came from the location's cache, not the object. */
  readonly fromCache?: boolean
}

/** A store that also feeds changes in order (the Durable Object log). */
export interface ChangeFeed<R> {
  changes(from: LogPosition | null): Promise<ChangeSet<R>>
}

export interface RevocationStore<R extends StoredRecord> {
  readonly kind: 'kv' | 'log'
  /** Durable when it resolves: the caller acknowledges the write only after this. */
  put(record: R, nowMs: number): Promise<Written>
  get(id: string): Promise<R | null>
  delete(record: R, nowMs: number): Promise<Written>
  list(limit: number, cursor?: string): Promise<RecordPage<R>>
}

/** KV: one key per record, the record also its metadata, so one list call reads them all. */
export class KvStore<R extends StoredRecord> implements RevocationStore<R> {
  readonly kind = 'kv'

  constructor(readonly kv: KVNamespace) {}

  async put(record: R, nowMs: number): Promise<Written> {
    const options: KVNamespacePutOptions = { metadata: record }
    if (record.exp !== undefined) {
      options.expirationTtl = Math.max(KV_MIN_TTL_S, record.exp - Math.floor(nowMs / 1000))
    }
    await this.kv.put(record.id, JSON.stringify(record), options)
    return { version: null }
  }

  get(id: string): Promise<R | null> {
    return this.kv.get<R>(id, 'json')
  }

  async delete(record: R): Promise<Written> {
    await this.kv.delete(record.id)
    return { version: null }
  }

  async list(limit: number, cursor?: string): Promise<RecordPage<R>> {
    const page = await this.kv.list<R>({ limit, cursor })
    return {
      records: page.keys.flatMap((k) => (k.metadata ? [k.metadata] : [])),
      cursor: page.list_complete ? null : page.cursor,
    }
  }
}
