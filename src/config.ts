/**
 * Parse and validate the worker's environment once into a frozen GatewayConfig.
 * Pure. No I/O. A bad value yields a ConfigError naming the variable; never a partial config.
 * Simple mode (flat variables) lives here; structured mode (GATEWAY) in config-structured.ts.
 */
import type { JWK } from 'jose'
import { structuredMode } from './config-structured'

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

export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const
export type HmacAlgorithm = (typeof HMAC_ALGORITHMS)[number]
export type JwsAlgorithm = Algorithm | HmacAlgorithm
/** RFC 7518 §3.2: an HMAC key at least as long as the hash output. */
export const MIN_HMAC_SECRET_BYTES = 32

export type KeySource =
  | { readonly kind: 'jwks'; readonly url: string }
  /** OIDC discovery; the document's `issuer` must equal this one (OIDC Discovery §4.3). */
  | { readonly kind: 'discovery'; readonly url: string; readonly issuer: string }
  /** Public keys written into the config (a JWKS document). */
  | { readonly kind: 'static'; readonly keys: readonly JWK[] }
  /** A shared secret from a wrangler secret; only HS* algorithms, never mixed with a JWKS. */
  | { readonly kind: 'hmac'; readonly secret: string }

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
  readonly algorithms: readonly JwsAlgorithm[]
  readonly clockSkewS: number
  /** Oldest `iat` accepted, in seconds before now; null: no limit (then `iat` is not required). */
  readonly maxTokenAgeS: number | null
  /** Accepted `typ` values, compared case-insensitively. */
  readonly types: readonly string[]
  /** Whether a token without `typ` passes. */
  readonly typeOptional: boolean
  readonly jwks: JwksPolicy
}

export type AuthMode = 'required' | 'optional' | 'public'

export type TokenSource =
  | { readonly kind: 'header' }
  | { readonly kind: 'cookie'; readonly name: string }
  | { readonly kind: 'query'; readonly name: string }

export type Origin =
  | { readonly kind: 'url'; readonly url: string }
  /** A service binding to another Worker, by binding name. */
  | { readonly kind: 'service'; readonly binding: string }

export type ClaimRule =
  | { readonly claim: string; readonly equals: unknown }
  | { readonly claim: string; readonly oneOf: readonly unknown[] }
  | { readonly claim: string; readonly contains: unknown }

export interface IdentityConfig {
  /** Lower-case prefix of identity headers; every client header with it is stripped. */
  readonly prefix: string
  /** Extra headers: [header name (lower case), claim path]. */
  readonly claimHeaders: readonly (readonly [string, string])[]
  /** Send X-Auth-Claims (the whole verified payload). */
  readonly sendClaims: boolean
  /** Forward the client's Authorization header to the origin. */
  readonly keepAuthorization: boolean
}

export interface AssertionConfig {
  /** Header carrying the gateway-signed JWT (lower case). */
  readonly header: string
  /** Claims copied from the verified token besides `sub`. */
  readonly claims: readonly string[]
  readonly ttlS: number
}

export interface RouteConfig {
  /** Where errors point: `routes[2]`, or `ORIGIN_URL` in simple mode. */
  readonly name: string
  /** Lower-case host to match, or null for any host. */
  readonly host: string | null
  /** Path prefix this route serves (`/` for everything); matches at segment boundaries. */
  readonly pathPrefix: string
  /** Upper-case methods, or null for any. */
  readonly methods: readonly string[] | null
  readonly origin: Origin
  readonly auth: AuthMode
  /** `iss` values this route accepts. */
  readonly issuers: readonly string[]
  /** When set, the token's `aud` must also contain one of these. */
  readonly audiences: readonly string[] | null
  readonly scopes: readonly string[]
  readonly claims: readonly ClaimRule[]
  readonly sources: readonly TokenSource[]
  readonly identity: IdentityConfig
  /** Let CORS preflights through unauthenticated. */
  readonly cors: boolean
  readonly originTimeoutMs: number
  readonly assertion: AssertionConfig | null
}

export interface AssertionKeys {
  /** `iss` of the gateway's own assertions. */
  readonly issuer: string
  /** Private JWKs, newest first: the first signs, all are published. */
  readonly keys: readonly JWK[]
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
  /** Which requests get a log line: all, or all but those forwarded to the origin. */
  readonly logRequests: LogRequests
  readonly issuers: readonly IssuerConfig[]
  readonly routes: readonly RouteConfig[]
  /** null when no REVOCATIONS KV namespace is bound: revocation is off. */
  readonly revocation: RevocationConfig | null
  readonly admin: AdminConfig
  /** Keys for signed identity assertions; null when none are configured. */
  readonly assertion: AssertionKeys | null
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

export type RawEnv = Record<string, unknown>

// Validators read `src[key]` and name `path` in errors: the variable in simple mode,
// `GATEWAY.routes[2].origin` in structured mode.

export function text(src: RawEnv, key: string, path = key): string | undefined {
  const v = src[key]
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') return v.trim() === '' ? undefined : v.trim()
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  throw new ConfigError(path, `must be a string (got ${Array.isArray(v) ? 'array' : typeof v})`)
}

export function required(src: RawEnv, key: string, path = key): string {
  const v = text(src, key, path)
  if (v === undefined) throw new ConfigError(path, 'is required')
  return v
}

/** A list, as an array of strings or a comma-separated string. */
export function list(src: RawEnv, key: string, path = key): string[] | undefined {
  const v = src[key]
  if (Array.isArray(v)) {
    if (v.length === 0 || v.some((i) => typeof i !== 'string' || i.trim() === '')) {
      throw new ConfigError(path, 'must be a non-empty list of non-empty strings')
    }
    return v.map((i: string) => i.trim())
  }
  const t = text(src, key, path)
  if (t === undefined) return undefined
  const items = t.split(',').map((i) => i.trim())
  if (items.some((i) => i === '')) {
    throw new ConfigError(path, `must be a comma-separated list without empty items (got "${t}")`)
  }
  return items
}

export function integer(
  src: RawEnv,
  key: string,
  dflt: number,
  min: number,
  max: number,
  path = key,
): number {
  const v = text(src, key, path)
  if (v === undefined) return dflt
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new ConfigError(path, `must be a whole number from ${min} to ${max} (got "${v}")`)
  }
  return Number(v)
}

export function flag(src: RawEnv, key: string, dflt: boolean, path = key): boolean {
  const v = text(src, key, path)
  if (v === undefined) return dflt
  if (v === 'true') return true
  if (v === 'false') return false
  throw new ConfigError(path, `must be "true" or "false" (got "${v}")`)
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host)
}

function absoluteUrl(path: string, value: string): URL {
  try {
    return new URL(value)
  } catch {
    throw new ConfigError(path, `must be an absolute URL (got "${value}")`)
  }
}

/**
 * Keys fetched over plain HTTP could be swapped by anyone on the path, so key URLs must be https;
 * loopback http is allowed for local development only.
 */
export function keyUrl(path: string, value: string): string {
  const url = absoluteUrl(path, value)
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
    throw new ConfigError(path, `must be an https URL (http only for localhost) (got "${value}")`)
  }
  if (url.username || url.password) throw new ConfigError(path, 'must not contain credentials')
  return url.href
}

export function originUrl(path: string, value: string): string {
  const url = absoluteUrl(path, value)
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(path, `must be an http or https URL (got "${value}")`)
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new ConfigError(path, 'must not contain a query, fragment or credentials')
  }
  return url.href.replace(/\/+$/, '')
}

export function algorithms(src: RawEnv, key: string, path = key): Algorithm[] {
  const v = list(src, key, path)
  if (v === undefined) return [...ASYMMETRIC_ALGORITHMS]
  for (const alg of v) {
    if (!(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg)) {
      throw new ConfigError(
        path,
        `"${alg}" is not supported; allowed: ${ASYMMETRIC_ALGORITHMS.join(', ')} (HS* and none are never accepted against a JWKS)`,
      )
    }
  }
  return v as Algorithm[]
}

/** JWKS timing knobs; `names` maps each to its variable (simple) or field (structured). */
export function jwksPolicy(src: RawEnv, path: (key: string) => string, keys: JwksKeys): JwksPolicy {
  const cooldown = integer(
    src,
    keys.cooldown,
    DEFAULT_JWKS_REFRESH_COOLDOWN_S,
    1,
    3600,
    path(keys.cooldown),
  )
  return {
    cacheTtlS: integer(src, keys.ttl, DEFAULT_JWKS_CACHE_TTL_S, cooldown, 86_400, path(keys.ttl)),
    refreshCooldownS: cooldown,
    staleIfErrorS: integer(
      src,
      keys.stale,
      DEFAULT_JWKS_STALE_IF_ERROR_S,
      0,
      7 * 86_400,
      path(keys.stale),
    ),
    fetchTimeoutMs: integer(
      src,
      keys.timeout,
      DEFAULT_JWKS_FETCH_TIMEOUT_MS,
      100,
      30_000,
      path(keys.timeout),
    ),
  }
}

export interface JwksKeys {
  readonly cooldown: string
  readonly ttl: string
  readonly stale: string
  readonly timeout: string
}

export function realmOf(value: string | undefined, path: string): string {
  const realm = value ?? DEFAULT_REALM
  if (!/^[\x20-\x7e]+$/.test(realm) || /["\\]/.test(realm)) {
    throw new ConfigError(path, 'must be printable ASCII without quotes or backslashes')
  }
  return realm
}

export function discoveryUrl(issuer: string, path: string): string {
  return keyUrl(path, `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`)
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/** The defaults every route starts from; simple mode's one route is exactly this. */
export function defaultIdentity(keepAuthorization: boolean): IdentityConfig {
  return { prefix: IDENTITY_HEADER_PREFIX, claimHeaders: [], sendClaims: true, keepAuthorization }
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
    : { kind: 'discovery', url: discoveryUrl(issuer, 'JWT_ISSUER'), issuer }
  const types = list(env, 'JWT_TYPES')
  const iss: IssuerConfig = {
    issuer,
    keySource,
    audiences,
    algorithms: algorithms(env, 'JWT_ALGORITHMS'),
    clockSkewS: integer(env, 'CLOCK_SKEW_SECONDS', DEFAULT_CLOCK_SKEW_S, 0, MAX_CLOCK_SKEW_S),
    maxTokenAgeS: null,
    types: types ?? [...DEFAULT_TOKEN_TYPES],
    typeOptional: types === undefined,
    jwks: jwksPolicy(env, (k) => k, {
      cooldown: 'JWKS_REFRESH_COOLDOWN_SECONDS',
      ttl: 'JWKS_CACHE_TTL_SECONDS',
      stale: 'JWKS_STALE_IF_ERROR_SECONDS',
      timeout: 'JWKS_FETCH_TIMEOUT_MS',
    }),
  }
  const route: RouteConfig = {
    name: 'ORIGIN_URL',
    host: null,
    pathPrefix: '/',
    methods: null,
    origin: { kind: 'url', url: originUrl('ORIGIN_URL', required(env, 'ORIGIN_URL')) },
    auth: 'required',
    issuers: [issuer],
    audiences: null,
    scopes: [],
    claims: [],
    sources: [{ kind: 'header' }],
    identity: defaultIdentity(flag(env, 'FORWARD_AUTHORIZATION', false)),
    cors: false,
    originTimeoutMs: integer(env, 'ORIGIN_TIMEOUT_MS', DEFAULT_ORIGIN_TIMEOUT_MS, 100, 600_000),
    assertion: null,
  }
  return {
    realm: realmOf(text(env, 'GATEWAY_REALM'), 'GATEWAY_REALM'),
    serverTiming: flag(env, 'SERVER_TIMING', false),
    logRequests: logRequests(env),
    issuers: [iss],
    routes: [route],
    revocation: revocation(env),
    admin: admin(env),
    assertion: null,
  }
}

export function revocation(env: RawEnv): RevocationConfig | null {
  const kv = env.REVOCATIONS
  if (kv === undefined) return null
  if (
    typeof kv !== 'object' ||
    kv === null ||
    typeof (kv as { get?: unknown }).get !== 'function'
  ) {
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

export type LogRequests = 'all' | 'refused'

/**
 * LOG_REQUESTS, a flat variable in both modes. `refused` keeps the line of every request the
 * gateway answered itself (refusals, errors, admin) and drops only those forwarded to the origin:
 * security events are never lost, and a busy API pays no log line per success.
 */
export function logRequests(env: RawEnv): LogRequests {
  const value = text(env, 'LOG_REQUESTS') ?? 'all'
  if (value !== 'all' && value !== 'refused') {
    throw new ConfigError('LOG_REQUESTS', `must be "all" or "refused" (got "${value}")`)
  }
  return value
}

export function admin(env: RawEnv): AdminConfig {
  const prefix = text(env, 'ADMIN_PATH_PREFIX') ?? DEFAULT_ADMIN_PREFIX
  if (
    !/^\/[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*$/.test(prefix) ||
    prefix.split('/').includes('..')
  ) {
    throw new ConfigError('ADMIN_PATH_PREFIX', `must be a path like /_gateway (got "${prefix}")`)
  }
  const token = text(env, 'ADMIN_TOKEN') ?? null
  if (token !== null) {
    if (token.length < MIN_ADMIN_TOKEN_LENGTH) {
      throw new ConfigError('ADMIN_TOKEN', `must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters`)
    }
    // An admin API with nowhere to write would accept revocations and enforce none.
    if (env.REVOCATIONS === undefined) {
      throw new ConfigError(
        'REVOCATIONS',
        'a KV namespace binding is required when ADMIN_TOKEN is set',
      )
    }
  }
  return { prefix, token }
}

/** Simple-mode variables; setting any of them together with GATEWAY is ambiguous. */
const SIMPLE_ONLY = ['ORIGIN_URL', 'JWT_ISSUER', 'JWT_AUDIENCE', 'JWKS_URL', 'JWT_ALGORITHMS']

export function parseConfig(env: RawEnv): ConfigResult {
  try {
    if (env.GATEWAY === undefined) return { ok: true, config: deepFreeze(simpleMode(env)) }
    const both = SIMPLE_ONLY.find((name) => env[name] !== undefined)
    if (both) throw new ConfigError(both, 'must not be set together with GATEWAY (use one mode)')
    return { ok: true, config: deepFreeze(structuredMode(env)) }
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, error: err }
    throw err
  }
}
