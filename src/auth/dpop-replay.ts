/**
 * DPoP proof replay (RFC 9449 §11.1): a proof's `jti` is accepted once within the proof window.
 * Every isolate remembers what it saw (bounded); with the optional DPOP_REPLAY Durable Object
 * binding, a proof is accepted only after its shard says "first time", across isolates and
 * locations. The Durable Object class is exported by src/index.ts for wrangler to bind.
 * I/O only through the Durable Object namespace passed in. No clock: callers pass `nowMs`.
 */
import { DurableObject } from 'cloudflare:workers'
import { makeRoom } from '../lib/bounded'
import { GatewayError, messageOf } from '../errors'

/** Proofs one isolate remembers; at the window's end entries are dropped anyway. */
export const LOCAL_REPLAY_MAX_ENTRIES = 50_000
/**
 * Durable Objects the seen proofs are spread over: one object serves about a thousand calls per
 * second, so this is the ceiling of proofs per second checked across the deployment. Changing it
 * moves keys between shards: a proof seen before the change may pass once more after it.
 */
export const DPOP_REPLAY_SHARDS = 32
/** How often a shard sweeps expired entries, at most. */
export const REPLAY_SWEEP_INTERVAL_MS = 60_000

/** One proof's replay key: the jti is only unique per client key (RFC 9449 §4.2). */
export function replayKey(jkt: string, jti: string): string {
  return `${jkt} ${jti}`
}

/** The proofs this isolate saw, until each one's window closes. Pure. */
export class LocalReplayCache {
  private readonly seen = new Map<string, number>()

  /** True the first time a key is offered before `untilMs`; remembers it. */
  firstUse(key: string, untilMs: number, nowMs: number): boolean {
    const until = this.seen.get(key)
    if (until !== undefined && until > nowMs) return false
    if (until !== undefined) this.seen.delete(key)
    // A flood of unique proofs evicts the oldest first, which are the first to expire anyway.
    makeRoom(this.seen, LOCAL_REPLAY_MAX_ENTRIES)
    this.seen.set(key, untilMs)
    return true
  }

  /** Forget a key (a proof refused for a reason of ours may be retried). */
  forget(key: string): void {
    this.seen.delete(key)
  }

  get size(): number {
    return this.seen.size
  }
}

/** FNV-1a: spreads keys over shards. Not a security boundary: a client choosing its jtis only
 * concentrates its own proofs on one shard. */
function shardOf(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return (h >>> 0) % DPOP_REPLAY_SHARDS
}

/** The RPC surface of DpopReplayStore, as the gateway calls it. */
export interface ReplayStub {
  firstUse(key: string, untilMs: number): Promise<boolean>
}

export interface ReplayNamespace {
  idFromName(name: string): unknown
  get(id: never): ReplayStub
}

export interface ReplaySettings {
  readonly failOpen: boolean
  readonly timeoutMs: number
}

/** "first time" from the shard holding this key, or a GatewayError; bounded by the timeout. */
export async function claimRemote(
  ns: ReplayNamespace,
  key: string,
  untilMs: number,
  settings: ReplaySettings,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    const stub = ns.get(ns.idFromName(`dpop-replay-${shardOf(key)}`) as never)
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('replay store timeout')), settings.timeoutMs)
    })
    return await Promise.race([stub.firstUse(key, untilMs), timeout])
  } catch (err) {
    throw new GatewayError('dpop_replay_unavailable', messageOf(err))
  } finally {
    clearTimeout(timer)
  }
}

/**
 * One shard of seen proofs. Storage holds key -> until (ms); a request's get-then-put runs without
 * interleaving (the object's input gate), so two isolates offering one proof get one "first time".
 * An alarm sweeps expired entries, so a shard holds about one window's worth of proofs.
 */
export class DpopReplayStore extends DurableObject {
  async firstUse(key: string, untilMs: number): Promise<boolean> {
    const storage = this.ctx.storage
    const now = Date.now()
    const until = await storage.get<number>(key)
    if (until !== undefined && until > now) return false
    await storage.put(key, untilMs)
    if ((await storage.getAlarm()) === null) {
      await storage.setAlarm(Math.max(untilMs, now + REPLAY_SWEEP_INTERVAL_MS))
    }
    return true
  }

  override async alarm(): Promise<void> {
    const storage = this.ctx.storage
    const now = Date.now()
    const expired: string[] = []
    let next = Infinity
    for (const [key, until] of await storage.list<number>()) {
      if (until <= now) expired.push(key)
      else next = Math.min(next, until)
    }
    // delete() takes at most 128 keys per call.
    for (let i = 0; i < expired.length; i += 128) await storage.delete(expired.slice(i, i + 128))
    if (next !== Infinity) await storage.setAlarm(Math.max(next, now + REPLAY_SWEEP_INTERVAL_MS))
  }
}
