/**
 * The Durable Object store: writes go to the revocation log (log-object.ts) by RPC and are durable
 * when they resolve; `changes` brings an isolate's snapshot up to date. I/O only through the
 * namespace binding and the Cache API it is given; no clock.
 *
 * Fan-out: a change set is cached in the location's Cache API under (object, epoch, version) for
 * the sync interval, so the isolates of one location that hold the same version share one object
 * read per interval instead of making one each. Without more, every isolate whose sync lands while
 * the first one is still asking the object (its round trip) would miss too; so the first leaves a
 * lease entry, and the others wait a little for its answer in the cache (LOG_LEASE_WAIT_MS, in the
 * background: no request waits) before asking the object themselves. Cache failures fall through to
 * the object.
 */
import type { RevocationLog } from './log-object'
import type {
  ChangeFeed,
  ChangeSet,
  LogPosition,
  RecordPage,
  RevocationStore,
  StoredRecord,
  Written,
} from './store'

/** The one log every isolate of the deployment talks to (a single object: see docs on sharding). */
export const LOG_OBJECT_NAME = 'revocations'
/** How often, and how many times, an isolate that found a lease looks for its holder's answer. */
export const LOG_LEASE_POLL_MS = 25
export const LOG_LEASE_POLLS = 12
/** Host of the synthetic cache keys; never resolved, never fetched. */
const CACHE_KEY_BASE = 'https://revocation-log.gateway.internal'

export class LogStore<R extends StoredRecord> implements RevocationStore<R>, ChangeFeed<R> {
  readonly kind = 'log'
  private readonly objectId: DurableObjectId

  /**
   * @param cache the location's cache (`caches.default`), or null to read the object every time
   * @param cacheTtlS how long a change set is shared, whole seconds (the Cache API's unit)
   * @param name the object's name (tests use one per test; deployments the default)
   * @param wait how a lease's waiter waits (tests pass their own)
   */
  constructor(
    private readonly ns: DurableObjectNamespace<RevocationLog>,
    private readonly cache: Cache | null,
    private readonly cacheTtlS: number,
    name = LOG_OBJECT_NAME,
    private readonly wait: (ms: number) => Promise<void> = (ms) =>
      new Promise((resolve) => setTimeout(resolve, ms)),
  ) {
    this.objectId = ns.idFromName(name)
  }

  private object(): DurableObjectStub<RevocationLog> {
    return this.ns.get(this.objectId)
  }

  put(record: R): Promise<Written> {
    return this.object().put(record)
  }

  async get(id: string): Promise<R | null> {
    return (await this.object().get(id)) as R | null
  }

  delete(record: R): Promise<Written> {
    return this.object().delete(record.id)
  }

  async list(limit: number, cursor?: string): Promise<RecordPage<R>> {
    return (await this.object().list(limit, cursor)) as RecordPage<R>
  }

  /** The changes after `from` (everything when null), from the location's cache or the object. */
  async changes(from: LogPosition | null): Promise<ChangeSet<R>> {
    const at = from === null ? 'full' : `${from.epoch}/${from.version}`
    const key = `${CACHE_KEY_BASE}/${this.objectId.toString()}/${at}`
    const cached = (await this.cached(key)) ?? (await this.leased(key))
    if (cached !== null) return cached
    const set = (await this.object().changes(
      from?.epoch ?? null,
      from?.version ?? 0,
    )) as ChangeSet<R>
    if (this.cache !== null) {
      const res = new Response(JSON.stringify(set), {
        headers: {
          'content-type': 'application/json',
          'cache-control': `public, max-age=${this.cacheTtlS}`,
        },
      })
      // Best effort: a failed put only costs the location's other isolates an object read.
      await this.cache.put(key, res).catch(() => undefined)
    }
    return set
  }

  /**
   * When another isolate of this location holds the lease for `key`, its answer from the cache
   * once it lands (or null after LOG_LEASE_POLLS tries); else takes the lease and returns null.
   */
  private async leased(key: string): Promise<ChangeSet<R> | null> {
    if (this.cache === null) return null
    const lease = `${key}/lease`
    try {
      if ((await this.cache.match(lease)) === undefined) {
        const marker = new Response('', {
          headers: { 'cache-control': `public, max-age=${this.cacheTtlS}` },
        })
        await this.cache.put(lease, marker)
        return null
      }
    } catch {
      return null
    }
    for (let i = 0; i < LOG_LEASE_POLLS; i++) {
      await this.wait(LOG_LEASE_POLL_MS)
      const hit = await this.cached(key)
      if (hit !== null) return hit
    }
    return null
  }

  private async cached(key: string): Promise<ChangeSet<R> | null> {
    if (this.cache === null) return null
    try {
      const hit = await this.cache.match(key)
      return hit ? { ...((await hit.json()) as ChangeSet<R>), fromCache: true } : null
    } catch {
      return null
    }
  }
}
