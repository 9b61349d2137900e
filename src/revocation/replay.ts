/**
 * Replay memory for logout tokens and Security Event Tokens: which (issuer, jti) pairs this isolate
 * has acted on, each kept until the token is too old to be accepted anyway. Per isolate and
 * bounded; values only. Time comes from the caller.
 *
 * Not persisted: a replayed token can only write the record it wrote the first time (writes never
 * move a cut-off earlier), and KV's ~60 s propagation would make a KV-kept memory no stronger
 * across isolates than the token age limit that already bounds the replay window.
 */
import { makeRoom } from '../lib/bounded'

/** Most (issuer, jti) pairs one isolate remembers; the oldest go first. */
export const REPLAY_MAX_ENTRIES = 10_000

export class ReplayMemory {
  /** key -> until when (ms) it counts as seen, in insertion order for eviction. */
  private readonly seen = new Map<string, number>()

  constructor(private readonly max = REPLAY_MAX_ENTRIES) {}

  has(iss: string, jti: string, nowMs: number): boolean {
    const until = this.seen.get(keyOf(iss, jti))
    return until !== undefined && until > nowMs
  }

  /** Call only once the token's revocations are written, so a failed write can be retried. */
  remember(iss: string, jti: string, untilMs: number): void {
    const key = keyOf(iss, jti)
    this.seen.delete(key)
    makeRoom(this.seen, this.max)
    this.seen.set(key, untilMs)
  }
}

function keyOf(iss: string, jti: string): string {
  return `${iss}\n${jti}`
}
