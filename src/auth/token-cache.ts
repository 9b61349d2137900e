/**
 * Per-isolate cache of verified tokens, so a client repeating its token skips signature work.
 * Pure. No I/O. No clock: callers pass `nowMs`. Holds values only.
 *
 * Keyed on the token text, which credentials.ts has already made canonical (strict base64url with
 * zero spare bits), so an altered encoding of a cached token is a different key and is verified in
 * full. An ECDSA (r, n-s) twin is a second valid signature and simply a second entry.
 */
import { makeRoom } from '../lib/bounded'
import { GatewayError, type ReasonCode } from '../errors'
import type { Identity } from './identity'

/** Most tokens remembered; the least recently used go first, so a flood of unique tokens is bounded. */
export const VERIFIED_CACHE_MAX_ENTRIES = 10_000
/** Longest a verified token is trusted without re-verifying, so a key removed from the JWKS stops working. */
export const VERIFIED_CACHE_TTL_S = 60

/** How stale an entry's place in the eviction order may get before a hit refreshes it. */
const LRU_REFRESH_MS = 1_000

interface Entry {
  readonly identity: Identity
  readonly untilMs: number
  readonly usedMs: number
}

export class VerifiedTokenCache {
  private readonly entries = new Map<string, Entry>()

  constructor(
    private readonly clockSkewS: (issuer: string) => number,
    private readonly maxEntries = VERIFIED_CACHE_MAX_ENTRIES,
  ) {}

  /** The cached identity, or undefined; time claims are checked again on every hit. */
  get(token: string, nowMs: number): Identity | undefined {
    const entry = this.entries.get(token)
    if (!entry) return undefined
    const skewMs = this.clockSkewS(entry.identity.issuer) * 1000
    const { exp, nbf } = entry.identity.claims
    const expired = typeof exp === 'number' && nowMs >= exp * 1000 + skewMs
    const early = typeof nbf === 'number' && nowMs < nbf * 1000 - skewMs
    if (nowMs >= entry.untilMs || expired || early) {
      this.entries.delete(token)
      return undefined
    }
    // Re-insert to mark as most recently used, at most once a second per token: an approximate
    // LRU that spares a busy token a Map delete and insert on every request.
    if (nowMs - entry.usedMs >= LRU_REFRESH_MS) {
      this.entries.delete(token)
      this.entries.set(token, { ...entry, usedMs: nowMs })
    }
    return entry.identity
  }

  /** Trusted until `exp` or `ttlS` from now, whichever comes first. */
  set(token: string, identity: Identity, nowMs: number, ttlS = VERIFIED_CACHE_TTL_S): void {
    makeRoom(this.entries, this.maxEntries)
    const exp = typeof identity.claims.exp === 'number' ? identity.claims.exp * 1000 : Infinity
    this.entries.set(token, {
      identity,
      untilMs: Math.min(exp, nowMs + ttlS * 1000),
      usedMs: nowMs,
    })
  }

  get size(): number {
    return this.entries.size
  }
}

/** Most refused tokens remembered; the oldest go first. */
export const REJECTED_CACHE_MAX_ENTRIES = 10_000
/** How long a refusal is reused, so a client hammering with a bad token costs no signature work. */
export const REJECTED_CACHE_TTL_S = 30

/**
 * Refusals that no passing of time or key refresh can turn into an acceptance. Not here: an
 * unknown kid or missing keys (a rotation may bring the key) and a token not valid yet.
 */
const PERMANENT = new Set<ReasonCode>([
  'malformed_token',
  'alg_not_allowed',
  'bad_signature',
  'token_expired',
  'bad_issuer',
  'bad_audience',
  'missing_audience',
  'bad_typ',
  'bad_claims',
  'verify_error',
  'token_inactive',
])

interface Rejection {
  /** What a repeat gets: the same code, the detail marked as remembered. Built once. */
  readonly error: GatewayError
  /** The issuer list the token was refused against: a route trusting others must verify anew. */
  readonly issuers: object
  readonly untilMs: number
}

/** Per-isolate cache of permanent verification failures, keyed on the token text. Pure. */
export class RejectedTokenCache {
  private readonly entries = new Map<string, Rejection>()

  constructor(private readonly maxEntries = REJECTED_CACHE_MAX_ENTRIES) {}

  /** The earlier refusal of this token against these issuers, if it still stands, to rethrow. */
  get(token: string, issuers: object, nowMs: number): GatewayError | undefined {
    const entry = this.entries.get(token)
    if (!entry || entry.issuers !== issuers || nowMs >= entry.untilMs) return undefined
    return entry.error
  }

  set(
    token: string,
    issuers: object,
    error: GatewayError,
    nowMs: number,
    ttlS = REJECTED_CACHE_TTL_S,
  ): void {
    if (!PERMANENT.has(error.code) || ttlS === 0) return
    makeRoom(this.entries, this.maxEntries)
    const remembered = new GatewayError(error.code, `${error.detail ?? error.code} (remembered)`)
    this.entries.set(token, {
      error: remembered,
      issuers,
      untilMs: nowMs + ttlS * 1000,
    })
  }

  get size(): number {
    return this.entries.size
  }
}
