/**
 * Parse and validate the worker's environment once into a frozen GatewayConfig.
 * Pure. No I/O. A bad value yields a ConfigError naming the variable; never a partial config.
 */

/** Algorithms the gateway can verify against a JWKS. Symmetric and `none` are not in the list. */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'EdDSA',
  'Ed25519',
] as const
export type Algorithm = (typeof ASYMMETRIC_ALGORITHMS)[number]

/** RFC 9068 access tokens and plain JWTs. A token without `typ` is accepted unless JWT_TYPES is set. */
export const DEFAULT_TOKEN_TYPES = ['JWT', 'at+jwt', 'application/at+jwt'] as const

// 30 s covers a misconfigured issuer clock without stretching every expiry by a minute.
export const DEFAULT_CLOCK_SKEW_S = 30
export const MAX_CLOCK_SKEW_S = 300
export const DEFAULT_JWKS_CACHE_TTL_S = 600
export const DEFAULT_JWKS_REFRESH_COOLDOWN_S = 30
export const DEFAULT_JWKS_STALE_IF_ERROR_S = 86_400
export const DEFAULT_JWKS_FETCH_TIMEOUT_MS = 5_000
export const DEFAULT_ORIGIN_TIMEOUT_MS = 30_000
export const DEFAULT_REALM = 'gateway'
/** How long one isolate trusts a revocation lookup; adds to KV's own ~60 s propagation delay. */
export const DEFAULT_REVOCATION_CACHE_S = 10
export const MAX_REVOCATION_CACHE_S = 300
export const DEFAULT_REVOCATION_TIMEOUT_MS = 2_000
export const DEFAULT_ADMIN_PREFIX = '/_gateway'
/** A shorter admin token could be guessed; 32 characters of a random secret is the floor. */
export const MIN_ADMIN_TOKEN_LENGTH = 32
export const IDENTITY_HEADER_PREFIX = 'x-auth-'

export type KeySource =
  | { readonly kind: 'jwks'; readonly url: string }
  | { readonly kind: 'discovery'; readonly url: string }

export interface JwksPolicy {
  readonly cacheTtlS: number
  readonly refreshCooldownS: number
  readonly staleIfErrorS: number
  readonly fetchTimeoutMs: number
}

export interface IssuerConfig {
  /** The exact `iss` value. */
  readonly issuer: string
  readonly keySource: KeySource
  readonly audiences: readonly string[]
  readonly algorithms: readonly Algorithm[]
  readonly clockSkewS: number
  /** Accepted `typ` values, compared case-insensitively. */
  readonly types: readonly string[]
  /** Whether a token without `typ` passes. */
  readonly typeOptional: boolean
  readonly jwks: JwksPolicy
}

export interface RouteConfig {
  /** Path prefix this route serves; simple mode has one route for `/`. */
  readonly pathPrefix: string
  /** Origin base URL without a trailing slash; the request's path and query are appended. */
  readonly origin: string
  /** `iss` values this route accepts. */
  readonly issuers: readonly string[]
  readonly forwardAuthorization: boolean
  readonly originTimeoutMs: number
}

export interface RevocationConfig {
  /** Seconds a lookup (revoked or not) is reused by this isolate; 0 reads KV on every request. */
  readonly cacheTtlS: number
  /** KV failing: refuse with 503 (false, the default) or let verified tokens through (true). */
  readonly failOpen: boolean
  readonly timeoutMs: number
}

export interface AdminConfig {
  /** Path prefix the gateway keeps for itself; the origin never sees it. */
  readonly prefix: string
  /** The admin bearer token; null disables the admin API (it answers 404). */
  readonly token: string | null
}

export interface GatewayConfig {
  readonly realm: string
  /** Send `Server-Timing: auth;dur=...` to clients (reveals cache hits; off unless asked for). */
  readonly serverTiming: boolean
  readonly issuers: readonly IssuerConfig[]
  readonly routes: readonly RouteConfig[]
  /** null when no REVOCATIONS KV namespace is bound: revocation is off. */
  readonly revocation: RevocationConfig | null
  readonly admin: AdminConfig
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly problem: string,
  ) {
    super(`${variable}: ${problem}`)
    this.name = 'ConfigError'
  }
}

export type ConfigResult =
  | { readonly ok: true; readonly config: GatewayConfig }
  | { readonly ok: false; readonly error: ConfigError }

type RawEnv = Record<string, unknown>

function text(env: RawEnv, name: string): string | undefined {
  const v = env[name]
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') return v.trim() === '' ? undefined : v.trim()
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  throw new ConfigError(name, `must be a string (got ${typeof v})`)
}

function required(env: RawEnv, name: string): string {
  const v = text(env, name)
  if (v === undefined) throw new ConfigError(name, 'is required')
  return v
}

function list(env: RawEnv, name: string): string[] | undefined {
  const v = text(env, name)
  if (v === undefined) return undefined
  const items = v.split(',').map((s) => s.trim())
  if (items.some((s) => s === '')) {
    throw new ConfigError(name, `must be a comma-separated list without empty items (got "${v}")`)
  }
  return items
}

function integer(env: RawEnv, name: string, dflt: number, min: number, max: number): number {
  const v = text(env, name)
  if (v === undefined) return dflt
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new ConfigError(name, `must be a whole number from ${min} to ${max} (got "${v}")`)
  }
  return Number(v)
}

function flag(env: RawEnv, name: string, dflt: boolean): boolean {
  const v = text(env, name)
  if (v === undefined) return dflt
  if (v === 'true') return true
  if (v === 'false') return false
  throw new ConfigError(name, `must be "true" or "false" (got "${v}")`)
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host)
}

/**
 * Keys fetched over plain HTTP could be swapped by anyone on the path, so key URLs must be https;
 * loopback http is allowed for local development only.
 */
export function keyUrl(name: string, value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ConfigError(name, `must be an absolute URL (got "${value}")`)
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
    throw new ConfigError(name, `must be an https URL (http only for localhost) (got "${value}")`)
  }
  if (url.username || url.password) throw new ConfigError(name, 'must not contain credentials')
  return url.href
}

function originUrl(name: string, value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ConfigError(name, `must be an absolute URL (got "${value}")`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(name, `must be an http or https URL (got "${value}")`)
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(name, 'must not contain a query, fragment or credentials')
  }
  return url.href.replace(/\/+$/, '')
}

function algorithms(env: RawEnv, name: string): Algorithm[] {
  const v = list(env, name)
  if (v === undefined) return [...ASYMMETRIC_ALGORITHMS]
  for (const alg of v) {
    if (!(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg)) {
      throw new ConfigError(
        name,
        `"${alg}" is not supported; allowed: ${ASYMMETRIC_ALGORITHMS.join(', ')} (HS* and none are never accepted against a JWKS)`,
      )
    }
  }
  return v as Algorithm[]
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/** Simple mode: one issuer and one catch-all route, built from flat variables. */
function simpleMode(env: RawEnv): GatewayConfig {
  const issuer = required(env, 'JWT_ISSUER')
  const audiences = list(env, 'JWT_AUDIENCE')
  if (!audiences) {
    throw new ConfigError('JWT_AUDIENCE', 'must be a non-empty comma-separated list (got "")')
  }
  const jwksUrl = text(env, 'JWKS_URL')
  const keySource: KeySource = jwksUrl
    ? { kind: 'jwks', url: keyUrl('JWKS_URL', jwksUrl) }
    : {
        kind: 'discovery',
        url: keyUrl(
          'JWT_ISSUER',
          `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`,
        ),
      }
  const types = list(env, 'JWT_TYPES')
  const cooldown = integer(
    env,
    'JWKS_REFRESH_COOLDOWN_SECONDS',
    DEFAULT_JWKS_REFRESH_COOLDOWN_S,
    1,
    3600,
  )
  const iss: IssuerConfig = {
    issuer,
    keySource,
    audiences,
    algorithms: algorithms(env, 'JWT_ALGORITHMS'),
    clockSkewS: integer(env, 'CLOCK_SKEW_SECONDS', DEFAULT_CLOCK_SKEW_S, 0, MAX_CLOCK_SKEW_S),
    types: types ?? [...DEFAULT_TOKEN_TYPES],
    typeOptional: types === undefined,
    jwks: {
      cacheTtlS: integer(env, 'JWKS_CACHE_TTL_SECONDS', DEFAULT_JWKS_CACHE_TTL_S, cooldown, 86_400),
      refreshCooldownS: cooldown,
      staleIfErrorS: integer(
        env,
        'JWKS_STALE_IF_ERROR_SECONDS',
        DEFAULT_JWKS_STALE_IF_ERROR_S,
        0,
        7 * 86_400,
      ),
      fetchTimeoutMs: integer(
        env,
        'JWKS_FETCH_TIMEOUT_MS',
        DEFAULT_JWKS_FETCH_TIMEOUT_MS,
        100,
        30_000,
      ),
    },
  }
  const route: RouteConfig = {
    pathPrefix: '/',
    origin: originUrl('ORIGIN_URL', required(env, 'ORIGIN_URL')),
    issuers: [issuer],
    forwardAuthorization: flag(env, 'FORWARD_AUTHORIZATION', false),
    originTimeoutMs: integer(env, 'ORIGIN_TIMEOUT_MS', DEFAULT_ORIGIN_TIMEOUT_MS, 100, 600_000),
  }
  const realm = text(env, 'GATEWAY_REALM') ?? DEFAULT_REALM
  if (!/^[\x20-\x7e]+$/.test(realm) || /["\\]/.test(realm)) {
    throw new ConfigError('GATEWAY_REALM', 'must be printable ASCII without quotes or backslashes')
  }
  return {
    realm,
    serverTiming: flag(env, 'SERVER_TIMING', false),
    issuers: [iss],
    routes: [route],
    revocation: revocation(env),
    admin: admin(env),
  }
}

function revocation(env: RawEnv): RevocationConfig | null {
  const kv = env.REVOCATIONS
  if (kv === undefined) return null
  if (typeof kv !== 'object' || kv === null || typeof (kv as { get?: unknown }).get !== 'function') {
    throw new ConfigError('REVOCATIONS', 'must be a KV namespace binding')
  }
  return {
    cacheTtlS: integer(
      env,
      'REVOCATION_CACHE_SECONDS',
      DEFAULT_REVOCATION_CACHE_S,
      0,
      MAX_REVOCATION_CACHE_S,
    ),
    failOpen: flag(env, 'REVOCATION_FAIL_OPEN', false),
    timeoutMs: integer(env, 'REVOCATION_TIMEOUT_MS', DEFAULT_REVOCATION_TIMEOUT_MS, 50, 30_000),
  }
}

function admin(env: RawEnv): AdminConfig {
  const prefix = text(env, 'ADMIN_PATH_PREFIX') ?? DEFAULT_ADMIN_PREFIX
  if (!/^\/[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*$/.test(prefix) || prefix.split('/').includes('..')) {
    throw new ConfigError('ADMIN_PATH_PREFIX', `must be a path like /_gateway (got "${prefix}")`)
  }
  const token = text(env, 'ADMIN_TOKEN') ?? null
  if (token !== null) {
    if (token.length < MIN_ADMIN_TOKEN_LENGTH) {
      throw new ConfigError('ADMIN_TOKEN', `must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters`)
    }
    // An admin API with nowhere to write would accept revocations and enforce none.
    if (env.REVOCATIONS === undefined) {
      throw new ConfigError('REVOCATIONS', 'a KV namespace binding is required when ADMIN_TOKEN is set')
    }
  }
  return { prefix, token }
}

export function parseConfig(env: RawEnv): ConfigResult {
  try {
    return { ok: true, config: deepFreeze(simpleMode(env)) }
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, error: err }
    throw err
  }
}
