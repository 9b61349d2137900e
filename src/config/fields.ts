/**
 * Field validators shared by simple and structured mode, and the flat variables both read
 * (revocation, logging, admin). Pure. No I/O. Errors name the variable or field path.
 * Imports only the model.
 */
import {
  ASYMMETRIC_ALGORITHMS,
  type Algorithm,
  DEFAULT_JWKS_CACHE_TTL_S,
  DEFAULT_JWKS_REFRESH_COOLDOWN_S,
  DEFAULT_JWKS_UNKNOWN_KID_COOLDOWN_S,
  DEFAULT_JWKS_STALE_IF_ERROR_S,
  DEFAULT_JWKS_FETCH_TIMEOUT_MS,
  DEFAULT_REALM,
  DEFAULT_REVOCATION_CACHE_S,
  MAX_REVOCATION_CACHE_S,
  DEFAULT_REVOCATION_TIMEOUT_MS,
  DEFAULT_REVOCATION_SYNC_MS,
  MIN_REVOCATION_SYNC_MS,
  MAX_REVOCATION_SYNC_MS,
  DEFAULT_REVOCATION_MAX_STALENESS_S,
  MAX_REVOCATION_MAX_STALENESS_S,
  type RevocationLogConfig,
  DEFAULT_ADMIN_PREFIX,
  DEFAULT_MAX_TOKEN_BYTES,
  MIN_MAX_TOKEN_BYTES,
  MAX_MAX_TOKEN_BYTES,
  MIN_ADMIN_TOKEN_LENGTH,
  IDENTITY_HEADER_PREFIX,
  type JwksPolicy,
  type IdentityConfig,
  type RevocationConfig,
  type AdminConfig,
  type BackchannelLogoutConfig,
  DEFAULT_SESSION_REVOCATION_S,
  MAX_SESSION_REVOCATION_S,
  ConfigError,
  type RawEnv,
  type LogRequests,
  type AudienceRule,
  DEFAULT_CLIENT_ID_CLAIM,
  BINDING_MODES,
  type BindingMode,
  DEFAULT_DPOP_PROOF_WINDOW_S,
  MAX_DPOP_PROOF_WINDOW_S,
  DEFAULT_DPOP_REPLAY_TIMEOUT_MS,
  MIN_DPOP_NONCE_SECRET_BYTES,
  type DpopConfig,
  type MtlsConfig,
  TENANT_PLACEHOLDER,
  TENANT_ID,
} from './model'
export type Obj = Record<string, unknown>

/** A table, or a JSON object given as a string (wrangler vars may be either). */
export function object(value: unknown, path: string): Obj {
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      throw new ConfigError(path, 'must be a table or a JSON object (the JSON does not parse)')
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(path, 'must be a table / JSON object')
  }
  return value as Obj
}

/** Unknown fields are errors: a typo in a security setting must not be silently ignored. */
export function only(o: Obj, path: string, fields: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!fields.includes(k)) throw new ConfigError(`${path}.${k}`, 'is not a known field')
  }
}

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

/** RFC 6749 §3.3 scope-token: they end up in a WWW-Authenticate quoted-string, so no `"` or `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/** A list of scope tokens (array or comma-separated string). */
export function scopeList(src: RawEnv, key: string, path = key): string[] | undefined {
  const scopes = list(src, key, path)
  for (const scope of scopes ?? []) {
    if (!SCOPE_TOKEN.test(scope)) throw new ConfigError(path, `"${scope}" is not a scope token`)
  }
  return scopes
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

export function isLoopback(host: string): boolean {
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
  const x509 = GOOGLE_X509_PATH.exec(url.pathname)
  if (url.hostname === 'www.googleapis.com' && x509) {
    // Firebase documents this URL, but it serves {kid: PEM certificate}, not a JWK Set: caught
    // here rather than as jwks_unavailable on every request. The same keys exist as a JWK Set.
    throw new ConfigError(
      path,
      `serves a {kid: PEM certificate} map, not a JWK Set; use the same keys as a JWK Set: https://www.googleapis.com/service_accounts/v1/jwk/${x509[1]}`,
    )
  }
  return url.href
}

/** Google's x509 certificate map of a service account (Firebase Auth, service-account tokens). */
const GOOGLE_X509_PATH = /^\/robot\/v1\/metadata\/x509\/([^/]+)$/

/**
 * An identifier clients compare exactly (a resource, an issuer): absolute https (plain http only
 * on loopback), no credentials, query or fragment (RFC 8707 §2, RFC 8414 §2). Kept as written:
 * `https://a.example` and `https://a.example/` are different identifiers.
 */
export function httpsIdentifier(path: string, value: string): URL {
  const url = absoluteUrl(path, value)
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
    throw new ConfigError(
      path,
      `must be an absolute https URL (http only for localhost) (got "${value}")`,
    )
  }
  if (url.username || url.password || value.includes('?') || value.includes('#')) {
    throw new ConfigError(path, 'must not contain credentials, a query or a fragment')
  }
  // Clients compare the string: it must be the URL's one spelling (lower-case host, no default
  // port, no dot segments), so every place that derives a URL from it agrees with every client.
  if (url.href !== value && url.href !== `${value}/`) {
    throw new ConfigError(path, `must be written in normal form ("${url.href}")`)
  }
  return url
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
    unknownKidCooldownS: integer(
      src,
      keys.unknownKid,
      Math.min(DEFAULT_JWKS_UNKNOWN_KID_COOLDOWN_S, cooldown),
      1,
      3600,
      path(keys.unknownKid),
    ),
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
  readonly unknownKid: string
  readonly ttl: string
  readonly stale: string
  readonly timeout: string
}

/**
 * An issuer's audiences and accepted client ids. At least one must be given: audience checking is
 * never switched off, only answered by the client-id claim for a token that has no `aud`.
 * `names` maps each field to its variable (simple) or field path (structured).
 */
export function audienceRule(
  src: RawEnv,
  keys: { audiences: string; clientIds: string; claim: string },
  path: (key: string) => string,
): AudienceRule {
  const audiences = list(src, keys.audiences, path(keys.audiences)) ?? []
  const values = list(src, keys.clientIds, path(keys.clientIds))
  const claim = text(src, keys.claim, path(keys.claim))
  if (claim !== undefined && values === undefined) {
    throw new ConfigError(path(keys.claim), `is set but ${path(keys.clientIds)} is not`)
  }
  if (audiences.length === 0 && values === undefined) {
    throw new ConfigError(
      path(keys.audiences),
      `must be a non-empty list (or set ${path(keys.clientIds)} for tokens without aud)`,
    )
  }
  return {
    audiences,
    clientIds: values === undefined ? null : { claim: claim ?? DEFAULT_CLIENT_ID_CLAIM, values },
  }
}

/**
 * An issuer entry's `iss` values (the first names it), and its tenant allow-list. A value with
 * {tenantid} is a template: the placeholder once, as a whole path segment of an https URL, and
 * only in the first value, so no configuration can amount to a wildcard `iss`.
 */
export function issuerNames(
  src: RawEnv,
  keys: { issuer: string; tenants: string },
  path: (key: string) => string,
): { issuer: string; aliases: string[]; tenants: string[] | null } {
  const values = list(src, keys.issuer, path(keys.issuer))
  if (values === undefined) throw new ConfigError(path(keys.issuer), 'is required')
  if (new Set(values).size !== values.length) {
    throw new ConfigError(path(keys.issuer), 'lists one value twice')
  }
  const [issuer, ...aliases] = values as [string, ...string[]]
  if (aliases.some((v) => v.includes(TENANT_PLACEHOLDER))) {
    throw new ConfigError(
      path(keys.issuer),
      `only the first value may contain ${TENANT_PLACEHOLDER}`,
    )
  }
  const tenants = list(src, keys.tenants, path(keys.tenants)) ?? null
  if (issuer.includes(TENANT_PLACEHOLDER)) {
    const [before, after, ...more] = issuer.split(TENANT_PLACEHOLDER)
    if (
      more.length > 0 ||
      !/^https:\/\/[^/{}]+\/(.*\/)?$/.test(before!) ||
      !/^(\/|$)/.test(after!)
    ) {
      throw new ConfigError(
        path(keys.issuer),
        `a template needs ${TENANT_PLACEHOLDER} once, as a path segment of an https URL (got "${issuer}")`,
      )
    }
    for (const t of tenants ?? []) {
      if (!TENANT_ID.test(t)) throw new ConfigError(path(keys.tenants), `"${t}" is not a tenant id`)
    }
  } else if (tenants !== null) {
    throw new ConfigError(path(keys.tenants), `needs an issuer template with ${TENANT_PLACEHOLDER}`)
  }
  return { issuer, aliases, tenants }
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

/** The defaults every route starts from; simple mode's one route is exactly this. */
export function defaultIdentity(keepAuthorization: boolean): IdentityConfig {
  return { prefix: IDENTITY_HEADER_PREFIX, claimHeaders: [], sendClaims: true, keepAuthorization }
}

function hasMethods(value: unknown, ...names: string[]): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    names.every((n) => typeof (value as Record<string, unknown>)[n] === 'function')
  )
}

export function revocation(env: RawEnv): RevocationConfig | null {
  const kv = env.REVOCATIONS
  const logged = env.REVOCATION_LOG !== undefined
  if (kv === undefined && !logged) return null
  if (kv !== undefined && !hasMethods(kv, 'get')) {
    throw new ConfigError('REVOCATIONS', 'must be a KV namespace binding')
  }
  const config: RevocationConfig = {
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
  return logged ? { ...config, log: revocationLog(env) } : config
}

/** The Durable Object log's settings; only read when REVOCATION_LOG is bound. */
function revocationLog(env: RawEnv): RevocationLogConfig {
  if (!hasMethods(env.REVOCATION_LOG, 'idFromName', 'get')) {
    throw new ConfigError('REVOCATION_LOG', 'must be a Durable Object namespace binding')
  }
  const syncMs = integer(
    env,
    'REVOCATION_SYNC_MS',
    DEFAULT_REVOCATION_SYNC_MS,
    MIN_REVOCATION_SYNC_MS,
    MAX_REVOCATION_SYNC_MS,
  )
  const maxStalenessS = integer(
    env,
    'REVOCATION_MAX_STALENESS_SECONDS',
    DEFAULT_REVOCATION_MAX_STALENESS_S,
    1,
    MAX_REVOCATION_MAX_STALENESS_S,
  )
  // Below two sync intervals, one slow sync would already fail requests.
  if (maxStalenessS * 1000 < 2 * syncMs) {
    throw new ConfigError(
      'REVOCATION_MAX_STALENESS_SECONDS',
      `must be at least twice REVOCATION_SYNC_MS (got ${maxStalenessS} s with ${syncMs} ms)`,
    )
  }
  return { syncMs, maxStalenessS }
}

/** MAX_TOKEN_BYTES, a flat variable in both modes. */
export function maxTokenBytes(env: RawEnv): number {
  return integer(
    env,
    'MAX_TOKEN_BYTES',
    DEFAULT_MAX_TOKEN_BYTES,
    MIN_MAX_TOKEN_BYTES,
    MAX_MAX_TOKEN_BYTES,
  )
}

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
    if (env.REVOCATIONS === undefined && env.REVOCATION_LOG === undefined) {
      throw new ConfigError(
        'REVOCATIONS',
        'a KV namespace binding (or the REVOCATION_LOG Durable Object) is required when ADMIN_TOKEN is set',
      )
    }
  }
  return { prefix, token }
}

/** How long a session revocation is kept by default: the issuer's token age limit, else a day. */
export function sessionBound(maxTokenAgeS: number | null, clockSkewS: number): number {
  return maxTokenAgeS === null
    ? DEFAULT_SESSION_REVOCATION_S
    : Math.min(MAX_SESSION_REVOCATION_S, maxTokenAgeS + clockSkewS)
}

/** Back-channel logout settings of one issuer, or null when no client id is given (off). */
export function backchannelLogout(
  src: RawEnv,
  at: (key: string) => string,
  names: { clientIds: string; requireTyp: string; session: string; revokeSubject: string },
  defaultSessionS: number,
): BackchannelLogoutConfig | null {
  const clientIds = list(src, names.clientIds, at(names.clientIds))
  if (clientIds === undefined) {
    for (const k of [names.requireTyp, names.session, names.revokeSubject]) {
      if (src[k] !== undefined) throw new ConfigError(at(k), `needs ${at(names.clientIds)}`)
    }
    return null
  }
  const revokeSubject = text(src, names.revokeSubject, at(names.revokeSubject)) ?? 'always'
  if (revokeSubject !== 'always' && revokeSubject !== 'without-sid') {
    throw new ConfigError(
      at(names.revokeSubject),
      `must be always or without-sid (got "${revokeSubject}")`,
    )
  }
  return {
    clientIds,
    requireTyp: flag(src, names.requireTyp, false, at(names.requireTyp)),
    sessionRevocationS: integer(
      src,
      names.session,
      defaultSessionS,
      60,
      MAX_SESSION_REVOCATION_S,
      at(names.session),
    ),
    revokeSubject,
  }
}

/** The logout and signal receivers write revocations: without a list they would enforce none. */
export function receiversNeedRevocations(env: RawEnv, what: string | null): void {
  if (what !== null && env.REVOCATIONS === undefined && env.REVOCATION_LOG === undefined) {
    throw new ConfigError(
      'REVOCATIONS',
      `a revocation store (KV or REVOCATION_LOG) is required by ${what}`,
    )
  }
}

export function bindingMode(src: RawEnv, key: string, path = key): BindingMode {
  const value = text(src, key, path) ?? 'none'
  if (!(BINDING_MODES as readonly string[]).includes(value)) {
    throw new ConfigError(path, `must be ${BINDING_MODES.join(', ')} (got "${value}")`)
  }
  return value as BindingMode
}

/** The DPoP variables, the same in both modes. */
export function dpop(env: RawEnv): DpopConfig {
  const base = text(env, 'PUBLIC_BASE_URL')
  let publicBaseUrl: string | null = null
  if (base !== undefined) {
    const url = absoluteUrl('PUBLIC_BASE_URL', base)
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new ConfigError('PUBLIC_BASE_URL', `must be an http or https URL (got "${base}")`)
    }
    if (url.search || url.hash || url.username || url.password) {
      throw new ConfigError('PUBLIC_BASE_URL', 'must not contain a query, fragment or credentials')
    }
    publicBaseUrl = url.href.replace(/\/+$/, '')
  }
  const secret = text(env, 'DPOP_NONCE_SECRET') ?? null
  if (secret !== null && new TextEncoder().encode(secret).length < MIN_DPOP_NONCE_SECRET_BYTES) {
    throw new ConfigError(
      'DPOP_NONCE_SECRET',
      `must be at least ${MIN_DPOP_NONCE_SECRET_BYTES} bytes`,
    )
  }
  const store = env.DPOP_REPLAY
  if (
    store !== undefined &&
    (typeof store !== 'object' ||
      store === null ||
      typeof (store as { idFromName?: unknown }).idFromName !== 'function')
  ) {
    throw new ConfigError('DPOP_REPLAY', 'must be a Durable Object namespace binding')
  }
  return {
    algorithms: algorithms(env, 'DPOP_ALGORITHMS'),
    proofWindowS: integer(
      env,
      'DPOP_PROOF_WINDOW_SECONDS',
      DEFAULT_DPOP_PROOF_WINDOW_S,
      1,
      MAX_DPOP_PROOF_WINDOW_S,
    ),
    publicBaseUrl,
    nonceSecret: secret,
    replay:
      store === undefined
        ? null
        : {
            failOpen: flag(env, 'DPOP_REPLAY_FAIL_OPEN', false),
            timeoutMs: integer(
              env,
              'DPOP_REPLAY_TIMEOUT_MS',
              DEFAULT_DPOP_REPLAY_TIMEOUT_MS,
              50,
              30_000,
            ),
          },
  }
}

export function mtls(env: RawEnv): MtlsConfig {
  return { trustClientCertHeader: flag(env, 'TRUST_CLIENT_CERT_HEADER', false) }
}
