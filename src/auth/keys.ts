/**
 * The JWKS key store of one issuer: kid -> imported CryptoKey, per isolate.
 * Does I/O (fetches the JWKS, or OIDC discovery then the JWKS) through the `fetch` it is given;
 * time comes from `now`. Holds values only, never a promise shared across requests.
 */
import { importJWK, type JWK } from 'jose'
import {
  HMAC_ALGORITHMS,
  keyUrl,
  type Algorithm,
  type JwksPolicy,
  type JwsAlgorithm,
  type KeySource,
} from '../config'
import { GatewayError, messageOf } from '../errors'
import { fetchJson, type FetchedJson } from './fetch-json'
import { log } from '../observability/log'

/** Largest JWKS (or discovery document) read, in bytes. Real ones are a few KiB. */
export const MAX_JWKS_BYTES = 64 * 1024
/** Most keys accepted in one JWKS; more is treated as a broken endpoint. */
export const MAX_JWKS_KEYS = 64
/** Bounds on a JWKS response's Cache-Control max-age. */
export const JWKS_MIN_MAX_AGE_S = 60
export const JWKS_MAX_MAX_AGE_S = 86_400
/** With no usable keys at all, a failed fetch is retried sooner than the cooldown. */
export const JWKS_EMPTY_RETRY_S = 5
/** How often a request waiting for another request's JWKS fetch looks again. */
export const JWKS_WAIT_POLL_MS = 5
/** Smallest RSA modulus accepted (RFC 7518 §3.3). */
export const MIN_RSA_BITS = 2048

export interface KeyDeps {
  fetch: typeof fetch
  /** Milliseconds since the epoch. */
  now: () => number
}

interface KeyEntry {
  readonly jwk: JWK
  /** Algorithms this key may verify: its own `alg`, or those its type allows, within config. */
  readonly algorithms: readonly JwsAlgorithm[]
  readonly imported: Map<JwsAlgorithm, CryptoKey>
}

export interface KeyStoreStatus {
  readonly keys: number
  readonly fetchedAtMs: number | null
  readonly lastAttemptMs: number | null
  readonly lastError: string | null
  readonly fetches: number
}

const RSA_ALGS: readonly Algorithm[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']

function algorithmsForKeyType(jwk: JWK): readonly Algorithm[] {
  if (jwk.kty === 'RSA') return RSA_ALGS
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return ['ES256']
  if (jwk.kty === 'EC' && jwk.crv === 'P-384') return ['ES384']
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return ['EdDSA', 'Ed25519']
  return []
}

function base64urlBytes(s: string): number {
  return Math.floor((s.length * 6) / 8)
}

/** Why a JWK is not used, or null when it is usable for signature verification. */
function unusable(jwk: JWK): string | null {
  if (typeof jwk.kty !== 'string') return 'no kty'
  // A symmetric key in a JWKS would let anyone holding the public document forge tokens.
  if (jwk.kty === 'oct') return 'symmetric key'
  if (jwk.d !== undefined) return 'private key material'
  if (jwk.use !== undefined && jwk.use !== 'sig') return `use is ${String(jwk.use)}`
  if (
    jwk.key_ops !== undefined &&
    !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))
  ) {
    return 'key_ops lacks verify'
  }
  if (jwk.kid !== undefined && typeof jwk.kid !== 'string') return 'kid is not a string'
  if (jwk.kty === 'RSA') {
    if (typeof jwk.n !== 'string') return 'no modulus'
    const bytes = base64urlBytes(jwk.n.replace(/^A+/, ''))
    if (bytes * 8 < MIN_RSA_BITS - 8) return 'RSA modulus under 2048 bits'
  }
  return null
}

/** A hint when a key document is a {kid: PEM certificate} map (Google's x509 URLs), or ''. */
function certificateMap(body: unknown): string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return ''
  const values = Object.values(body)
  const pem =
    values.length > 0 &&
    values.every((v) => typeof v === 'string' && v.startsWith('-----BEGIN CERTIFICATE-----'))
  return pem ? " (it is a {kid: PEM certificate} map; point at the issuer's JWK Set instead)" : ''
}

export function parseJwks(
  body: unknown,
  allowed: readonly JwsAlgorithm[],
): Map<string, KeyEntry[]> {
  const keys = (body as { keys?: unknown } | null)?.keys
  if (!Array.isArray(keys)) throw new Error(`JWKS has no "keys" array${certificateMap(body)}`)
  if (keys.length > MAX_JWKS_KEYS) throw new Error(`JWKS has more than ${MAX_JWKS_KEYS} keys`)
  const byKid = new Map<string, KeyEntry[]>()
  for (const raw of keys) {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) continue
    const jwk = raw as JWK
    const why = unusable(jwk)
    const typeAlgs = algorithmsForKeyType(jwk)
    // The key's own alg pins it; config bounds it. The token's header never widens this.
    const algs =
      jwk.alg !== undefined
        ? typeAlgs.filter((a) => a === jwk.alg && allowed.includes(a))
        : typeAlgs.filter((a) => allowed.includes(a))
    if (why || algs.length === 0) {
      log({
        event: 'jwks_key_skipped',
        kid: typeof jwk.kid === 'string' ? jwk.kid : undefined,
        why: why ?? 'no allowed algorithm',
      })
      continue
    }
    const kid = jwk.kid ?? ''
    const entry: KeyEntry = { jwk, algorithms: algs, imported: new Map() }
    byKid.set(kid, [...(byKid.get(kid) ?? []), entry])
  }
  return byKid
}

/** max-age from Cache-Control, clamped; the configured TTL when absent. */
export function freshnessSeconds(cacheControl: string | null, dflt: number): number {
  if (!cacheControl) return dflt
  if (/(^|,)\s*(no-store|no-cache)\s*(,|$)/i.test(cacheControl)) return JWKS_MIN_MAX_AGE_S
  const m = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)/i.exec(cacheControl)
  if (!m) return dflt
  return Math.min(JWKS_MAX_MAX_AGE_S, Math.max(JWKS_MIN_MAX_AGE_S, Number(m[1])))
}

/** GET a small JSON document (a JWKS or a discovery document). */
function getJson(url: string, timeoutMs: number, deps: KeyDeps): Promise<FetchedJson> {
  return fetchJson(url, {}, { timeoutMs, maxBytes: MAX_JWKS_BYTES }, deps.fetch)
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export class KeyStore {
  private keys: Map<string, KeyEntry[]> | null = null
  private fetchedAtMs: number | null = null
  private freshUntilMs = 0
  private lastAttemptMs: number | null = null
  private lastError: string | null = null
  /** When the current fetch started, or null when none is in flight. */
  private inFlightSinceMs: number | null = null
  /** Bumped when a fetch ends, so waiting requests can tell that it did. */
  private generation = 0
  private jwksUrl: string | null
  private fetches = 0

  constructor(
    private readonly source: KeySource,
    private readonly algorithms: readonly JwsAlgorithm[],
    private readonly policy: JwksPolicy,
  ) {
    if (source.kind === 'hmac') throw new TypeError('an HMAC issuer has no key store: use HmacKey')
    this.jwksUrl = source.kind === 'jwks' ? source.url : null
    if (source.kind === 'static') {
      // Keys written into the config never go stale and are never fetched.
      this.keys = parseJwks({ keys: source.keys }, algorithms)
      this.freshUntilMs = Infinity
      this.lastAttemptMs = Infinity
    }
  }

  private get sourceUrl(): string {
    const s = this.source
    return s.kind === 'jwks' || s.kind === 'discovery' ? (this.jwksUrl ?? s.url) : s.kind
  }

  status(): KeyStoreStatus {
    let count = 0
    for (const list of this.keys?.values() ?? []) count += list.length
    return {
      keys: count,
      fetchedAtMs: this.fetchedAtMs,
      lastAttemptMs: this.lastAttemptMs,
      lastError: this.lastError,
      fetches: this.fetches,
    }
  }

  /** The key to verify a token with `kid` (possibly absent) and header `alg`. Throws GatewayError. */
  async keyFor(kid: string | undefined, alg: JwsAlgorithm, deps: KeyDeps): Promise<CryptoKey> {
    const now = deps.now()
    if (this.keys === null || now >= this.freshUntilMs) await this.refresh(deps)
    let entry = this.find(kid, alg)
    // An unknown kid may be a rotation we have not seen (providers sign with a new key the moment
    // they publish it): look again after the short unknown-kid cooldown, never sooner, so a flood
    // of made-up kids costs the issuer one fetch per that cooldown.
    const kidCooldownS = this.policy.unknownKidCooldownS
    if (!entry && this.keys !== null && this.mayFetch(deps.now(), kidCooldownS)) {
      await this.refresh(deps, kidCooldownS)
      entry = this.find(kid, alg)
    }
    if (!entry) {
      if (this.keys === null)
        throw new GatewayError('jwks_unavailable', this.lastError ?? undefined)
      throw new GatewayError('unknown_kid')
    }
    return this.imported(entry, alg)
  }

  /** Has `cooldownS` (the refresh cooldown unless given) passed since the last fetch attempt? */
  private mayFetch(now: number, cooldownS = this.policy.refreshCooldownS): boolean {
    if (this.lastAttemptMs === null) return true
    const wait = this.keys === null ? Math.min(JWKS_EMPTY_RETRY_S, cooldownS) : cooldownS
    return now - this.lastAttemptMs >= wait * 1000
  }

  private find(kid: string | undefined, alg: JwsAlgorithm): KeyEntry | undefined {
    if (this.keys === null) return undefined
    if (kid !== undefined) return this.keys.get(kid)?.find((e) => e.algorithms.includes(alg))
    // Without a kid, a key is chosen only when exactly one key can verify this algorithm.
    const candidates = [...this.keys.values()].flat().filter((e) => e.algorithms.includes(alg))
    return candidates.length === 1 ? candidates[0] : undefined
  }

  private async imported(entry: KeyEntry, alg: JwsAlgorithm): Promise<CryptoKey> {
    const cached = entry.imported.get(alg)
    if (cached) return cached
    try {
      // jose imports with the JWK's key_ops as usages; ["sign","verify"] on a public key would fail.
      const key = await importJWK({ ...entry.jwk, alg, key_ops: ['verify'] }, alg)
      if (!(key instanceof CryptoKey)) throw new Error('not an asymmetric key')
      entry.imported.set(alg, key)
      return key
    } catch (err) {
      log({ event: 'jwks_key_import_failed', kid: entry.jwk.kid, error: String(err) })
      throw new GatewayError('unknown_kid', 'key import failed')
    }
  }

  /**
   * Fetch the JWKS unless the cooldown forbids it; keep the old keys on failure while they are
   * within stale-if-error.
   *
   * Concurrency: a request must never await a promise created by another request (on Workers it
   * may never settle; jose #355, #509). So the store holds only values: the first request to need a
   * fetch marks it in flight and does it; others that have keys keep using them, and others that
   * have none poll the store on their own timers until the generation changes. If the fetching
   * request dies, the mark expires after the fetch timeout and a waiter fetches instead: a cold
   * isolate makes one fetch, two at worst.
   */
  private async refresh(deps: KeyDeps, cooldownS?: number): Promise<void> {
    const start = deps.now()
    const inFlight =
      this.inFlightSinceMs !== null && start - this.inFlightSinceMs < this.policy.fetchTimeoutMs
    if (inFlight) {
      if (this.keys !== null) return
      const gen = this.generation
      while (this.generation === gen && deps.now() - start < this.policy.fetchTimeoutMs) {
        await sleep(JWKS_WAIT_POLL_MS)
      }
      if (this.generation !== gen) return
    } else if (!this.mayFetch(start, cooldownS)) {
      this.dropIfTooStale(start)
      return
    }
    this.inFlightSinceMs = start
    this.lastAttemptMs = start
    this.fetches++
    try {
      const { keys, maxAgeS } = await this.download(deps)
      this.keys = keys
      this.fetchedAtMs = deps.now()
      this.freshUntilMs = this.fetchedAtMs + maxAgeS * 1000
      this.lastError = null
    } catch (err) {
      this.lastError = messageOf(err)
      // Distinct from token failures: operators need to tell an IdP outage from bad tokens.
      log({
        event: 'jwks_fetch_failed',
        level: 'error',
        url: this.sourceUrl,
        error: this.lastError,
        keptStaleKeys: this.keys !== null,
      })
      this.dropIfTooStale(deps.now())
      if (this.source.kind === 'discovery') this.jwksUrl = null
    } finally {
      this.inFlightSinceMs = null
      this.generation++
    }
  }

  /** Stale keys are safe to serve (signatures must still verify), but only for a bounded time. */
  private dropIfTooStale(now: number): void {
    if (this.keys !== null && now >= this.freshUntilMs + this.policy.staleIfErrorS * 1000) {
      log({ event: 'jwks_stale_keys_dropped', level: 'error' })
      this.keys = null
    }
  }

  private async download(
    deps: KeyDeps,
  ): Promise<{ keys: Map<string, KeyEntry[]>; maxAgeS: number }> {
    const timeout = this.policy.fetchTimeoutMs
    if (this.jwksUrl === null) {
      const { body } = await getJson(this.sourceUrl, timeout, deps)
      const doc = body as { jwks_uri?: unknown; issuer?: unknown } | null
      // A document for another issuer would hand us that issuer's keys (OIDC Discovery §4.3).
      if (this.source.kind === 'discovery' && doc?.issuer !== this.source.issuer) {
        throw new Error('discovery document names another issuer')
      }
      const uri = doc?.jwks_uri
      if (typeof uri !== 'string') throw new Error('discovery document has no jwks_uri')
      this.jwksUrl = keyUrl('jwks_uri', uri)
    }
    const { body, cacheControl } = await getJson(this.jwksUrl, timeout, deps)
    const keys = parseJwks(body, this.algorithms)
    return { keys, maxAgeS: freshnessSeconds(cacheControl, this.policy.cacheTtlS) }
  }
}

/** What verification needs from an issuer's keys, whatever their source. */
export interface KeyProvider {
  keyFor(kid: string | undefined, alg: JwsAlgorithm, deps: KeyDeps): Promise<CryptoKey>
  status(): KeyStoreStatus
}

const HMAC_HASH: Record<string, string> = { HS256: 'SHA-256', HS384: 'SHA-384', HS512: 'SHA-512' }

/** An issuer that signs with a shared secret. Only HS* reach it; the secret never meets a JWKS. */
export class HmacKey implements KeyProvider {
  private readonly imported = new Map<string, CryptoKey>()

  constructor(private readonly secret: string) {}

  async keyFor(_kid: string | undefined, alg: JwsAlgorithm): Promise<CryptoKey> {
    if (!(HMAC_ALGORITHMS as readonly string[]).includes(alg))
      throw new GatewayError('alg_not_allowed')
    let key = this.imported.get(alg)
    if (!key) {
      key = await crypto.subtle.importKey(
        'raw',
        new TextEncoder().encode(this.secret),
        { name: 'HMAC', hash: HMAC_HASH[alg]! },
        false,
        ['verify'],
      )
      this.imported.set(alg, key)
    }
    return key
  }

  status(): KeyStoreStatus {
    return { keys: 1, fetchedAtMs: null, lastAttemptMs: null, lastError: null, fetches: 0 }
  }
}

export function keyProviderFor(
  source: KeySource,
  algorithms: readonly JwsAlgorithm[],
  policy: JwksPolicy,
): KeyProvider {
  return source.kind === 'hmac'
    ? new HmacKey(source.secret)
    : new KeyStore(source, algorithms, policy)
}
