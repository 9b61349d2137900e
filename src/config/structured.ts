/**
 * Structured mode: the GATEWAY variable (a `[vars.GATEWAY]` table in wrangler.toml, or a JSON
 * string) with several issuers and routes, parsed into the same GatewayConfig as simple mode.
 * Pure. No I/O. Errors name the exact path: `GATEWAY.routes[2].origin: must be an absolute URL`.
 * Unknown fields are errors: a typo in a security setting must not be silently ignored.
 */
import {
  DEFAULT_TOKEN_TYPES,
  DEFAULT_CLOCK_SKEW_S,
  MAX_CLOCK_SKEW_S,
  DEFAULT_ORIGIN_TIMEOUT_MS,
  IDENTITY_HEADER_PREFIX,
  HMAC_ALGORITHMS,
  type HmacAlgorithm,
  MIN_HMAC_SECRET_BYTES,
  type KeySource,
  type IssuerConfig,
  type AuthMode,
  type TokenSource,
  type Origin,
  type ClaimRule,
  type IdentityConfig,
  type AssertionConfig,
  type CsrfConfig,
  type RouteConfig,
  type AssertionKeys,
  type GatewayConfig,
  DEFAULT_INTROSPECTION_CACHE_TTL_S,
  MAX_INTROSPECTION_CACHE_TTL_S,
  DEFAULT_INTROSPECTION_NEGATIVE_TTL_S,
  MAX_INTROSPECTION_NEGATIVE_TTL_S,
  DEFAULT_INTROSPECTION_TIMEOUT_MS,
  DEFAULT_INTROSPECTION_CALLS_PER_SECOND,
  MAX_INTROSPECTION_CALLS_PER_SECOND,
  INTROSPECTION_AUTH_METHODS,
  type IntrospectionAuth,
  type IntrospectionConfig,
  type IntrospectionCredential,
  type TransmitterConfig,
  DEFAULT_SESSION_REVOCATION_S,
  MAX_SESSION_REVOCATION_S,
  ConfigError,
  TENANT_PLACEHOLDER,
  type RawEnv,
} from './model'
import {
  text,
  required,
  list,
  integer,
  flag,
  keyUrl,
  originUrl,
  algorithms,
  jwksPolicy,
  realmOf,
  discoveryUrl,
  defaultIdentity,
  revocation,
  logRequests,
  maxTokenBytes,
  admin,
  audienceRule,
  backchannelLogout,
  sessionBound,
  receiversNeedRevocations,
  bindingMode,
  dpop,
  mtls,
  issuerNames,
} from './fields'
import { object, only, scopeList, type Obj } from './fields'
import { mcpOf } from './mcp'
import type { JWK } from 'jose'

export const DEFAULT_ASSERTION_HEADER = 'x-gateway-assertion'
export const DEFAULT_ASSERTION_TTL_S = 60
export const MAX_ASSERTION_TTL_S = 300
export const DEFAULT_ASSERTION_ISSUER = 'edge-auth-gateway'
export const DEFAULT_ASSERTION_KEY_SECRETS = ['ASSERTION_KEY', 'ASSERTION_KEY_PREVIOUS']

function array(o: Obj, key: string, path: string): unknown[] | undefined {
  const v = o[key]
  if (v === undefined) return undefined
  if (!Array.isArray(v)) throw new ConfigError(path, 'must be an array')
  return v
}

const ISSUER_FIELDS = [
  'issuer',
  'tenants',
  'jwksUrl',
  'discovery',
  'keys',
  'hmacSecret',
  'audiences',
  'clientIds',
  'clientIdClaim',
  'algorithms',
  'clockSkewSeconds',
  'types',
  'maxTokenAgeSeconds',
  'jwksCacheTtlSeconds',
  'jwksRefreshCooldownSeconds',
  'jwksUnknownKidCooldownSeconds',
  'jwksStaleIfErrorSeconds',
  'jwksFetchTimeoutMs',
  'introspection',
  'backchannelLogout',
  'binding',
]

const LOGOUT_FIELDS = ['clientIds', 'requireTyp', 'sessionRevocationSeconds', 'revokeSubject']

const INTROSPECTION_FIELDS = [
  'endpoint',
  'clientId',
  'clientSecret',
  'auth',
  'cacheTtlSeconds',
  'negativeCacheTtlSeconds',
  'timeoutMs',
  'callsPerSecond',
]

/** A secret named in config: its value, or an error naming the field and the secret (never its value). */
function secretNamed(o: Obj, key: string, path: string, env: RawEnv): string {
  const name = required(o, key, path)
  const secret = env[name]
  if (typeof secret !== 'string' || secret === '') {
    throw new ConfigError(
      path,
      `names secret ${name}, which is not set (wrangler secret put ${name})`,
    )
  }
  return secret
}

/** A JWK given as JSON (a secret's value) or as an object; the caller checks what kind. */
function privateJwk(raw: unknown, path: string): JWK {
  let jwk: unknown
  try {
    jwk = typeof raw === 'string' ? JSON.parse(raw) : raw
  } catch {
    throw new ConfigError(path, 'must be a private JWK as JSON')
  }
  if (typeof jwk !== 'object' || jwk === null)
    throw new ConfigError(path, 'must be a private JWK as JSON')
  return jwk as JWK
}

/** The key that signs private_key_jwt assertions: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA). */
function clientKey(raw: string, path: string): IntrospectionCredential {
  const jwk = privateJwk(raw, path)
  const alg =
    typeof jwk.d !== 'string'
      ? null
      : jwk.kty === 'RSA'
        ? 'RS256'
        : jwk.kty === 'EC' && jwk.crv === 'P-256'
          ? 'ES256'
          : jwk.kty === 'OKP' && jwk.crv === 'Ed25519'
            ? 'EdDSA'
            : null
  if (alg === null) throw new ConfigError(path, 'must be a private RSA, EC P-256 or Ed25519 JWK')
  if (jwk.kid !== undefined && typeof jwk.kid !== 'string') {
    throw new ConfigError(path, 'kid must be a string')
  }
  return { kind: 'key', jwk, alg }
}

function introspectionOf(
  raw: unknown,
  path: string,
  issuer: string,
  env: RawEnv,
): IntrospectionConfig | null {
  if (raw === undefined) return null
  const o = object(raw, path)
  only(o, path, INTROSPECTION_FIELDS)
  const at = (k: string) => `${path}.${k}`
  const endpoint = text(o, 'endpoint', at('endpoint'))
  const auth = (text(o, 'auth', at('auth')) ?? 'client_secret_basic') as IntrospectionAuth
  if (!INTROSPECTION_AUTH_METHODS.includes(auth)) {
    throw new ConfigError(at('auth'), `must be one of ${INTROSPECTION_AUTH_METHODS.join(', ')}`)
  }
  const secret = secretNamed(o, 'clientSecret', at('clientSecret'), env)
  return {
    // The credential goes to this URL, so it must be https (http only for localhost).
    endpoint: endpoint === undefined ? null : keyUrl(at('endpoint'), endpoint),
    discoveryUrl: discoveryUrl(issuer, at('endpoint')),
    clientId: required(o, 'clientId', at('clientId')),
    auth,
    credential:
      auth === 'private_key_jwt'
        ? clientKey(secret, at('clientSecret'))
        : { kind: 'secret', secret },
    cacheTtlS: integer(
      o,
      'cacheTtlSeconds',
      DEFAULT_INTROSPECTION_CACHE_TTL_S,
      1,
      MAX_INTROSPECTION_CACHE_TTL_S,
      at('cacheTtlSeconds'),
    ),
    negativeCacheTtlS: integer(
      o,
      'negativeCacheTtlSeconds',
      DEFAULT_INTROSPECTION_NEGATIVE_TTL_S,
      0,
      MAX_INTROSPECTION_NEGATIVE_TTL_S,
      at('negativeCacheTtlSeconds'),
    ),
    timeoutMs: integer(
      o,
      'timeoutMs',
      DEFAULT_INTROSPECTION_TIMEOUT_MS,
      100,
      30_000,
      at('timeoutMs'),
    ),
    callsPerSecond: integer(
      o,
      'callsPerSecond',
      DEFAULT_INTROSPECTION_CALLS_PER_SECOND,
      1,
      MAX_INTROSPECTION_CALLS_PER_SECOND,
      at('callsPerSecond'),
    ),
  }
}

function issuerOf(raw: unknown, path: string, env: RawEnv): IssuerConfig {
  const o = object(raw, path)
  only(o, path, ISSUER_FIELDS)
  const at = (k: string) => `${path}.${k}`
  const names = issuerNames(o, { issuer: 'issuer', tenants: 'tenants' }, at)
  const issuer = names.issuer
  const audience = audienceRule(
    o,
    { audiences: 'audiences', clientIds: 'clientIds', claim: 'clientIdClaim' },
    at,
  )

  const given = ['jwksUrl', 'discovery', 'keys', 'hmacSecret'].filter((k) => o[k] !== undefined)
  if (given.length > 1) {
    throw new ConfigError(path, `set one key source, not ${given.join(' and ')}`)
  }
  let keySource: KeySource
  let algs: IssuerConfig['algorithms']
  if (o.hmacSecret !== undefined) {
    const secret = secretNamed(o, 'hmacSecret', at('hmacSecret'), env)
    if (new TextEncoder().encode(secret).length < MIN_HMAC_SECRET_BYTES) {
      throw new ConfigError(
        at('hmacSecret'),
        `secret ${required(o, 'hmacSecret')} must be at least ${MIN_HMAC_SECRET_BYTES} bytes`,
      )
    }
    keySource = { kind: 'hmac', secret }
    const wanted = list(o, 'algorithms', at('algorithms')) ?? ['HS256']
    for (const a of wanted) {
      // An HMAC issuer verifies only HMAC, so its secret can never meet an asymmetric key's bytes.
      if (!(HMAC_ALGORITHMS as readonly string[]).includes(a)) {
        throw new ConfigError(
          at('algorithms'),
          `"${a}" is not an HMAC algorithm (HS256, HS384, HS512)`,
        )
      }
    }
    algs = wanted as HmacAlgorithm[]
  } else {
    if (o.keys !== undefined) {
      const doc = Array.isArray(o.keys) ? { keys: o.keys } : object(o.keys, at('keys'))
      const keys = (doc as { keys?: unknown }).keys
      if (!Array.isArray(keys) || keys.length === 0) {
        throw new ConfigError(at('keys'), 'must be a non-empty array of public JWKs')
      }
      keys.forEach((k, i) => {
        const jwk = object(k, `${at('keys')}[${i}]`)
        if (jwk.d !== undefined || jwk.kty === 'oct') {
          throw new ConfigError(
            `${at('keys')}[${i}]`,
            'must be a public key (no private or symmetric keys)',
          )
        }
      })
      keySource = { kind: 'static', keys: keys as JWK[] }
    } else if (o.jwksUrl !== undefined) {
      keySource = {
        kind: 'jwks',
        url: keyUrl(at('jwksUrl'), required(o, 'jwksUrl', at('jwksUrl'))),
      }
    } else {
      if (o.discovery !== undefined && !flag(o, 'discovery', true, at('discovery'))) {
        throw new ConfigError(
          path,
          'needs a key source: jwksUrl, keys, hmacSecret or discovery = true',
        )
      }
      if (issuer.includes(TENANT_PLACEHOLDER)) {
        throw new ConfigError(
          path,
          'an issuer template needs jwksUrl or keys (discovery needs one issuer)',
        )
      }
      keySource = { kind: 'discovery', url: discoveryUrl(issuer, at('issuer')), issuer }
    }
    algs = algorithms(o, 'algorithms', at('algorithms'))
  }
  const types = list(o, 'types', at('types'))
  const maxAge = text(o, 'maxTokenAgeSeconds', at('maxTokenAgeSeconds'))
  const clockSkewS = integer(
    o,
    'clockSkewSeconds',
    DEFAULT_CLOCK_SKEW_S,
    0,
    MAX_CLOCK_SKEW_S,
    at('clockSkewSeconds'),
  )
  const maxTokenAgeS =
    maxAge === undefined
      ? null
      : integer(o, 'maxTokenAgeSeconds', 0, 1, 365 * 86_400, at('maxTokenAgeSeconds'))
  let logout: IssuerConfig['backchannelLogout'] = null
  if (o.backchannelLogout !== undefined) {
    const lo = object(o.backchannelLogout, at('backchannelLogout'))
    only(lo, at('backchannelLogout'), LOGOUT_FIELDS)
    const lat = (k: string) => `${at('backchannelLogout')}.${k}`
    if (lo.clientIds === undefined) throw new ConfigError(lat('clientIds'), 'is required')
    logout = backchannelLogout(
      lo,
      lat,
      {
        clientIds: 'clientIds',
        requireTyp: 'requireTyp',
        session: 'sessionRevocationSeconds',
        revokeSubject: 'revokeSubject',
      },
      sessionBound(maxTokenAgeS, clockSkewS),
    )
  }
  return {
    ...names,
    keySource,
    ...audience,
    algorithms: algs,
    clockSkewS,
    maxTokenAgeS,
    types: types ?? [...DEFAULT_TOKEN_TYPES],
    typeOptional: types === undefined,
    jwks: jwksPolicy(o, at, {
      cooldown: 'jwksRefreshCooldownSeconds',
      unknownKid: 'jwksUnknownKidCooldownSeconds',
      ttl: 'jwksCacheTtlSeconds',
      stale: 'jwksStaleIfErrorSeconds',
      timeout: 'jwksFetchTimeoutMs',
    }),
    introspection: introspectionOf(o.introspection, at('introspection'), issuer, env),
    binding: bindingMode(o, 'binding', at('binding')),
    backchannelLogout: logout,
  }
}

/** What a transmitter adds to an issuer's verification fields (jwksUrl, keys, audiences, ...). */
const TRANSMITTER_FIELDS = [
  'issuers',
  'credentialChange',
  'emailClaim',
  'authorizationSecret',
  'sessionRevocationSeconds',
]
/** Issuer fields that mean nothing for a transmitter's SETs. */
const NOT_FOR_TRANSMITTERS = [
  'hmacSecret',
  'clientIds',
  'clientIdClaim',
  'types',
  'maxTokenAgeSeconds',
  'introspection',
  'backchannelLogout',
  // Sender binding (DPoP, mTLS) is about access tokens presented by clients, not pushed SETs.
  'binding',
]
/** RFC 8417 §2.3: the media type a SET may declare in `typ`. */
export const SET_TYPE = 'secevent+jwt'

/**
 * SSF 1.0 §7.2: Transmitter Configuration Metadata sits at the issuer with
 * `/.well-known/ssf-configuration` inserted between host and path (as RFC 8414 does).
 */
export function ssfDiscoveryUrl(issuer: string, path: string): string {
  const u = new URL(issuer)
  const tail = u.pathname.replace(/\/+$/, '')
  return keyUrl(path, `${u.origin}/.well-known/ssf-configuration${tail}`)
}

function transmitterOf(
  raw: unknown,
  path: string,
  env: RawEnv,
  issuers: readonly IssuerConfig[],
): TransmitterConfig {
  const o = object(raw, path)
  only(o, path, [...ISSUER_FIELDS, ...TRANSMITTER_FIELDS])
  for (const k of NOT_FOR_TRANSMITTERS) {
    if (o[k] !== undefined) throw new ConfigError(`${path}.${k}`, 'is not a transmitter field')
  }
  const at = (k: string) => `${path}.${k}`
  const verifying = Object.fromEntries(
    Object.entries(o).filter(([k]) => !TRANSMITTER_FIELDS.includes(k)),
  )
  const base = issuerOf(verifying, path, env)
  const keySource =
    base.keySource.kind === 'discovery'
      ? {
          kind: 'discovery' as const,
          url: ssfDiscoveryUrl(base.issuer, at('issuer')),
          issuer: base.issuer,
        }
      : base.keySource
  // A SET says `secevent+jwt` or nothing; an access or logout token must not pass as one.
  const signer: IssuerConfig = { ...base, keySource, types: [SET_TYPE], typeOptional: true }

  const known = issuers.map((i) => i.issuer)
  const own = known.includes(base.issuer) ? [base.issuer] : undefined
  const revokes = list(o, 'issuers', at('issuers')) ?? own
  if (!revokes) {
    throw new ConfigError(
      at('issuers'),
      'is required: the GATEWAY.issuers whose tokens this transmitter may revoke',
    )
  }
  for (const iss of revokes) {
    if (!known.includes(iss))
      throw new ConfigError(at('issuers'), `"${iss}" is not in GATEWAY.issuers`)
  }
  const credentialChange = text(o, 'credentialChange', at('credentialChange')) ?? 'revoke'
  if (credentialChange !== 'revoke' && credentialChange !== 'ignore') {
    throw new ConfigError(
      at('credentialChange'),
      `must be revoke or ignore (got "${credentialChange}")`,
    )
  }
  const emailClaim = text(o, 'emailClaim', at('emailClaim')) ?? null
  // Revocations are kept per subject; a claim other than sub would need a kind of its own.
  if (emailClaim !== null && emailClaim !== 'sub') {
    throw new ConfigError(at('emailClaim'), `must be "sub" (the only claim revocations key on)`)
  }
  const authorization =
    o.authorizationSecret === undefined
      ? null
      : secretNamed(o, 'authorizationSecret', at('authorizationSecret'), env)
  return {
    signer,
    issuers: revokes,
    credentialChange,
    emailClaim,
    authorization,
    sessionRevocationS: integer(
      o,
      'sessionRevocationSeconds',
      DEFAULT_SESSION_REVOCATION_S,
      60,
      MAX_SESSION_REVOCATION_S,
      at('sessionRevocationSeconds'),
    ),
  }
}

const ROUTE_FIELDS = [
  'host',
  'path',
  'methods',
  'origin',
  'service',
  'auth',
  'issuers',
  'opaqueIssuer',
  'audiences',
  'scopes',
  'claims',
  'tokenSources',
  'identity',
  'cors',
  'csrf',
  'originTimeoutMs',
  'assertion',
  'binding',
  'dpopNonce',
  'allowUnboundDpop',
  'mcp',
]

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
/** Headers an identity map may never set: they carry transport or the client's own credentials. */
const RESERVED_HEADERS = new Set([
  'authorization',
  'host',
  'cookie',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'x-request-id',
])

function pathPrefix(o: Obj, path: string): string {
  const p = required(o, 'path', path)
  // Prefixes are compared with normalised request paths, so they must be normal themselves.
  if (!/^\/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$/.test(p) || /\/\/|\/\.\.?(\/|$)/.test(p)) {
    throw new ConfigError(path, `must be a normalised path starting with / (got "${p}")`)
  }
  return p.length > 1 ? p.replace(/\/+$/, '') : p
}

function tokenSources(o: Obj, path: string): TokenSource[] {
  const items = list(o, 'tokenSources', path) ?? ['header']
  return items.map((item) => {
    if (item === 'header') return { kind: 'header' }
    const m = /^(cookie|query):([!#$%&'*+.^_`|~0-9A-Za-z-]+)$/.exec(item)
    if (!m) throw new ConfigError(path, `"${item}" is not header, cookie:NAME or query:NAME`)
    return { kind: m[1] as 'cookie' | 'query', name: m[2]! }
  })
}

function claimRules(o: Obj, path: string): ClaimRule[] {
  return (array(o, 'claims', path) ?? []).map((raw, i) => {
    const at = `${path}[${i}]`
    const r = object(raw, at)
    only(r, at, ['claim', 'equals', 'oneOf', 'contains'])
    const claim = required(r, 'claim', `${at}.claim`)
    const ops = ['equals', 'oneOf', 'contains'].filter((k) => r[k] !== undefined)
    if (ops.length !== 1) throw new ConfigError(at, 'needs exactly one of equals, oneOf, contains')
    if (r.oneOf !== undefined) {
      if (!Array.isArray(r.oneOf)) throw new ConfigError(`${at}.oneOf`, 'must be an array')
      return { claim, oneOf: r.oneOf }
    }
    return r.equals !== undefined ? { claim, equals: r.equals } : { claim, contains: r.contains }
  })
}

function identityOf(o: Obj, path: string): IdentityConfig {
  if (o.identity === undefined) return defaultIdentity(false)
  const id = object(o.identity, path)
  only(id, path, ['prefix', 'headers', 'sendClaims', 'keepAuthorization'])
  const prefix = (text(id, 'prefix', `${path}.prefix`) ?? IDENTITY_HEADER_PREFIX).toLowerCase()
  if (!/^[a-z0-9][a-z0-9_-]*[-_]$/.test(prefix)) {
    throw new ConfigError(
      `${path}.prefix`,
      `must be a header-name prefix ending in - or _ (got "${prefix}")`,
    )
  }
  const headers = id.headers === undefined ? {} : object(id.headers, `${path}.headers`)
  const claimHeaders = Object.entries(headers).map(([name, claim]): [string, string] => {
    const at = `${path}.headers.${name}`
    if (!TOKEN.test(name) || RESERVED_HEADERS.has(name.toLowerCase())) {
      throw new ConfigError(at, 'is not a header name the gateway may set')
    }
    if (typeof claim !== 'string' || claim === '') throw new ConfigError(at, 'must name a claim')
    return [name.toLowerCase(), claim]
  })
  return {
    prefix,
    claimHeaders,
    sendClaims: flag(id, 'sendClaims', true, `${path}.sendClaims`),
    keepAuthorization: flag(id, 'keepAuthorization', false, `${path}.keepAuthorization`),
  }
}

/** `csrf`: true (the default), false, or `{ allowedOrigins = [...] }`. */
function csrfOf(o: Obj, path: string): CsrfConfig | null {
  const v = o.csrf
  if (v === false || v === 'false') return null
  if (v === undefined || v === true || v === 'true') return { allowedOrigins: [] }
  const c = object(v, path)
  only(c, path, ['allowedOrigins'])
  const origins = list(c, 'allowedOrigins', `${path}.allowedOrigins`) ?? []
  return {
    allowedOrigins: origins.map((origin) => {
      const lower = origin.toLowerCase()
      let url: URL | null = null
      try {
        url = new URL(lower)
      } catch {
        // reported below
      }
      // Compared with the Origin header byte for byte: it must be exactly a serialized origin.
      if (url === null || !/^https?:$/.test(url.protocol) || url.origin !== lower) {
        throw new ConfigError(
          `${path}.allowedOrigins`,
          `"${origin}" is not an origin like https://app.example.com (no path or trailing slash)`,
        )
      }
      return lower
    }),
  }
}

function assertionOf(o: Obj, path: string): AssertionConfig | null {
  const v = o.assertion
  if (v === undefined || v === false) return null
  const a = v === true ? {} : object(v, path)
  only(a, path, ['header', 'claims', 'ttlSeconds'])
  const header = (text(a, 'header', `${path}.header`) ?? DEFAULT_ASSERTION_HEADER).toLowerCase()
  if (!TOKEN.test(header) || RESERVED_HEADERS.has(header)) {
    throw new ConfigError(`${path}.header`, 'is not a header name the gateway may set')
  }
  return {
    header,
    claims: list(a, 'claims', `${path}.claims`) ?? [],
    ttlS: integer(
      a,
      'ttlSeconds',
      DEFAULT_ASSERTION_TTL_S,
      5,
      MAX_ASSERTION_TTL_S,
      `${path}.ttlSeconds`,
    ),
  }
}

function routeOf(
  raw: unknown,
  path: string,
  env: RawEnv,
  issuers: readonly IssuerConfig[],
): RouteConfig {
  const o = object(raw, path)
  only(o, path, ROUTE_FIELDS)
  const at = (k: string) => `${path}.${k}`

  let origin: Origin
  if ((o.origin === undefined) === (o.service === undefined)) {
    throw new ConfigError(path, 'needs exactly one of origin (a URL) or service (a binding name)')
  }
  if (o.service !== undefined) {
    const binding = required(o, 'service', at('service'))
    const svc = env[binding] as { fetch?: unknown } | undefined
    if (typeof svc !== 'object' || svc === null || typeof svc.fetch !== 'function') {
      throw new ConfigError(at('service'), `names ${binding}, which is not a service binding`)
    }
    origin = { kind: 'service', binding }
  } else {
    origin = { kind: 'url', url: originUrl(at('origin'), required(o, 'origin', at('origin'))) }
  }

  const auth = (text(o, 'auth', at('auth')) ?? 'required') as AuthMode
  if (!['required', 'optional', 'public'].includes(auth)) {
    throw new ConfigError(at('auth'), `must be required, optional or public (got "${auth}")`)
  }
  const known = issuers.map((i) => i.issuer)
  const routeIssuers = list(o, 'issuers', at('issuers')) ?? known
  for (const iss of routeIssuers) {
    if (!known.includes(iss))
      throw new ConfigError(at('issuers'), `"${iss}" is not in GATEWAY.issuers`)
  }
  const introspecting = issuers
    .filter((i) => routeIssuers.includes(i.issuer) && i.introspection !== null)
    .map((i) => i.issuer)
  const opaqueIssuer = text(o, 'opaqueIssuer', at('opaqueIssuer')) ?? null
  if (opaqueIssuer !== null && !introspecting.includes(opaqueIssuer)) {
    throw new ConfigError(
      at('opaqueIssuer'),
      `"${opaqueIssuer}" is not one of the route's issuers with introspection`,
    )
  }
  // An opaque token names no issuer: which endpoint judges it must be the route's choice, not a guess.
  if (opaqueIssuer === null && introspecting.length > 1) {
    throw new ConfigError(
      at('opaqueIssuer'),
      `is required: several of the route's issuers introspect (${introspecting.join(', ')})`,
    )
  }
  const audiences = list(o, 'audiences', at('audiences')) ?? null
  const reachable = new Set(
    issuers.filter((i) => routeIssuers.includes(i.issuer)).flatMap((i) => i.audiences),
  )
  for (const aud of audiences ?? []) {
    // A route audience no allowed issuer accepts could never match: a config mistake, not a policy.
    if (!reachable.has(aud))
      throw new ConfigError(at('audiences'), `"${aud}" is not an audience of the route's issuers`)
  }
  const methods = list(o, 'methods', at('methods'))?.map((m) => m.toUpperCase()) ?? null
  for (const m of methods ?? []) {
    if (!TOKEN.test(m)) throw new ConfigError(at('methods'), `"${m}" is not a method`)
  }
  const host = text(o, 'host', at('host'))?.toLowerCase() ?? null
  if (host !== null && !/^[a-z0-9.-]+(:\d{1,5})?$/.test(host)) {
    throw new ConfigError(at('host'), `must be a host name (got "${host}")`)
  }
  const scopes = scopeList(o, 'scopes', at('scopes')) ?? []
  const route: Omit<RouteConfig, 'mcp'> = {
    name: path,
    host,
    pathPrefix: pathPrefix(o, at('path')),
    methods,
    origin,
    auth,
    issuers: routeIssuers,
    opaqueIssuer: opaqueIssuer ?? introspecting[0] ?? null,
    audiences,
    scopes,
    claims: claimRules(o, at('claims')),
    sources: tokenSources(o, at('tokenSources')),
    identity: identityOf(o, at('identity')),
    cors: flag(o, 'cors', false, at('cors')),
    csrf: csrfOf(o, at('csrf')),
    originTimeoutMs: integer(
      o,
      'originTimeoutMs',
      DEFAULT_ORIGIN_TIMEOUT_MS,
      100,
      600_000,
      at('originTimeoutMs'),
    ),
    assertion: assertionOf(o, at('assertion')),
    binding: bindingMode(o, 'binding', at('binding')),
    dpopNonce: flag(o, 'dpopNonce', false, at('dpopNonce')),
    allowUnboundDpop: flag(o, 'allowUnboundDpop', false, at('allowUnboundDpop')),
  }
  return { ...route, mcp: mcpOf(o.mcp, at('mcp'), route, issuers) }
}

function assertionKeys(o: Obj, env: RawEnv, needed: boolean): AssertionKeys | null {
  const path = 'GATEWAY.assertion'
  const a = o.assertion === undefined ? {} : object(o.assertion, path)
  only(a, path, ['issuer', 'keySecrets'])
  const names = list(a, 'keySecrets', `${path}.keySecrets`) ?? DEFAULT_ASSERTION_KEY_SECRETS
  const keys: JWK[] = []
  for (const name of names) {
    const raw = env[name]
    if (raw === undefined) continue
    const jwk = privateJwk(raw, name)
    const ok =
      typeof jwk.d === 'string' &&
      typeof jwk.kid === 'string' &&
      ((jwk.kty === 'EC' && jwk.crv === 'P-256') || (jwk.kty === 'OKP' && jwk.crv === 'Ed25519'))
    if (!ok) throw new ConfigError(name, 'must be a private EC P-256 or Ed25519 JWK with a kid')
    keys.push(jwk)
  }
  if (keys.length === 0) {
    if (needed)
      throw new ConfigError(names[0]!, 'is required: a route asks for a signed identity assertion')
    return null
  }
  return { issuer: text(a, 'issuer', `${path}.issuer`) ?? DEFAULT_ASSERTION_ISSUER, keys }
}

export function structuredMode(env: RawEnv): GatewayConfig {
  const g = object(env.GATEWAY, 'GATEWAY')
  only(g, 'GATEWAY', ['realm', 'serverTiming', 'issuers', 'routes', 'assertion', 'transmitters'])
  const rawIssuers = array(g, 'issuers', 'GATEWAY.issuers') ?? []
  const issuers = rawIssuers.map((raw, i) => issuerOf(raw, `GATEWAY.issuers[${i}]`, env))
  const seen = new Set<string>()
  issuers.forEach((iss, i) => {
    // The token's iss picks one entry: a value two entries accept would make that a guess.
    for (const value of [iss.issuer, ...iss.aliases]) {
      if (seen.has(value)) throw new ConfigError(`GATEWAY.issuers[${i}].issuer`, 'appears twice')
      seen.add(value)
    }
  })
  const rawTransmitters = array(g, 'transmitters', 'GATEWAY.transmitters') ?? []
  const transmitters = rawTransmitters.map((raw, i) =>
    transmitterOf(raw, `GATEWAY.transmitters[${i}]`, env, issuers),
  )
  transmitters.forEach((t, i) => {
    // The SET's iss picks the transmitter: two with one iss would make that a guess.
    if (transmitters.findIndex((o) => o.signer.issuer === t.signer.issuer) !== i) {
      throw new ConfigError(`GATEWAY.transmitters[${i}].issuer`, 'appears twice')
    }
  })
  const logoutAt = issuers.findIndex((i) => i.backchannelLogout !== null)
  receiversNeedRevocations(
    env,
    logoutAt !== -1
      ? `GATEWAY.issuers[${logoutAt}].backchannelLogout`
      : transmitters.length > 0
        ? 'GATEWAY.transmitters'
        : null,
  )
  const rawRoutes = array(g, 'routes', 'GATEWAY.routes')
  if (!rawRoutes || rawRoutes.length === 0)
    throw new ConfigError('GATEWAY.routes', 'needs at least one route')
  const routes = rawRoutes.map((raw, i) => routeOf(raw, `GATEWAY.routes[${i}]`, env, issuers))
  routes.forEach((r, i) => {
    if (r.auth !== 'public' && r.issuers.length === 0) {
      throw new ConfigError(
        `GATEWAY.routes[${i}].issuers`,
        'an authenticated route needs an issuer',
      )
    }
    const twin = routes.findIndex(
      (o) =>
        o.host === r.host &&
        o.pathPrefix === r.pathPrefix &&
        String(o.methods?.toSorted()) === String(r.methods?.toSorted()),
    )
    if (twin !== i)
      throw new ConfigError(`GATEWAY.routes[${i}]`, `matches exactly what routes[${twin}] matches`)
  })
  const dpopConfig = dpop(env)
  routes.forEach((r, i) => {
    if (r.dpopNonce && dpopConfig.nonceSecret === null) {
      throw new ConfigError(
        `GATEWAY.routes[${i}].dpopNonce`,
        'needs DPOP_NONCE_SECRET (wrangler secret put DPOP_NONCE_SECRET)',
      )
    }
  })
  return {
    realm: realmOf(text(g, 'realm', 'GATEWAY.realm'), 'GATEWAY.realm'),
    serverTiming: flag(g, 'serverTiming', false, 'GATEWAY.serverTiming'),
    logRequests: logRequests(env),
    maxTokenBytes: maxTokenBytes(env),
    issuers,
    routes,
    revocation: revocation(env),
    admin: admin(env),
    assertion: assertionKeys(
      g,
      env,
      routes.some((r) => r.assertion !== null),
    ),
    transmitters,
    dpop: dpopConfig,
    mtls: mtls(env),
  }
}
