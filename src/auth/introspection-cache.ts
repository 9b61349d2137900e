/**
 * Per-isolate memory of one issuer's introspection answers, and the budget that bounds the calls
 * made for tokens it does not hold. Pure. No I/O. No clock: callers pass `nowMs`. Holds values only.
 *
 * Keyed by the SHA-256 of the token, never the token: a heap snapshot or a bug that lists the cache
 * shows no usable credential. Built on the JWT path's caches, so hits re-check `exp` and `nbf` with
 * the issuer's leeway exactly as a cached JWT does; separate instances, so a flood of opaque tokens
 * never evicts a verified JWT.
 */
import type { IntrospectionConfig } from '../config'
import type { GatewayError } from '../errors'
import { sha256hexSync } from '../lib/hash'
import type { Identity } from './identity'
import { RejectedTokenCache, VerifiedTokenCache } from './token-cache'

/** Most active answers remembered per issuer; the least recently used go first. */
export const INTROSPECTION_CACHE_MAX_ENTRIES = 10_000
/** Most refusals (inactive, or active but failing a check) remembered per issuer. */
export const INTROSPECTION_REFUSED_MAX_ENTRIES = 10_000
/** The call budget's window. */
export const CALL_BUDGET_WINDOW_MS = 1_000

/** The cache key of a token: its SHA-256, hex. Synchronous: a cache hit costs no promise hop. */
export function introspectionKey(token: string): string {
  return sha256hexSync(token)
}

/** At most `perWindow` calls in each fixed window of CALL_BUDGET_WINDOW_MS. Pure. */
export class CallBudget {
  private windowStartMs = -Infinity
  private used = 0

  constructor(private readonly perWindow: number) {}

  /**
   * Takes one call from the budget; false when it is spent. `first` on the first refusal of a
   * window, so the caller can log a flood once per window instead of once per request.
   */
  take(nowMs: number): { ok: boolean; first: boolean } {
    if (nowMs - this.windowStartMs >= CALL_BUDGET_WINDOW_MS || nowMs < this.windowStartMs) {
      this.windowStartMs = nowMs
      this.used = 0
    }
    this.used++
    return { ok: this.used <= this.perWindow, first: this.used === this.perWindow + 1 }
  }
}

export class IntrospectionCache {
  private readonly active: VerifiedTokenCache
  private readonly refused = new RejectedTokenCache(INTROSPECTION_REFUSED_MAX_ENTRIES)
  readonly budget: CallBudget

  constructor(
    private readonly cfg: IntrospectionConfig,
    clockSkewS: number,
  ) {
    this.active = new VerifiedTokenCache(() => clockSkewS, INTROSPECTION_CACHE_MAX_ENTRIES)
    this.budget = new CallBudget(cfg.callsPerSecond)
  }

  /** The remembered identity, the remembered refusal (to rethrow), or undefined. */
  get(key: string, nowMs: number): Identity | GatewayError | undefined {
    return this.active.get(key, nowMs) ?? this.refused.get(key, this, nowMs)
  }

  /** An active answer that passed every check: until `exp` or the configured TTL. */
  accept(key: string, identity: Identity, nowMs: number): void {
    this.active.set(key, identity, nowMs, this.cfg.cacheTtlS)
  }

  /** `active: false`, or active but refused by a check: for the short negative TTL. */
  refuse(key: string, error: GatewayError, nowMs: number): void {
    this.refused.set(key, this, error, nowMs, this.cfg.negativeCacheTtlS)
  }

  get size(): { active: number; refused: number } {
    return { active: this.active.size, refused: this.refused.size }
  }
}
