/** Simple mode: flat variables, one issuer and one catch-all route. Pure. No I/O. */
import {
  DEFAULT_TOKEN_TYPES,
  DEFAULT_CLOCK_SKEW_S,
  MAX_CLOCK_SKEW_S,
  DEFAULT_ORIGIN_TIMEOUT_MS,
  type KeySource,
  type IssuerConfig,
  type RouteConfig,
  type GatewayConfig,
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
/** Simple mode: one issuer and one catch-all route, built from flat variables. */
export function simpleMode(env: RawEnv): GatewayConfig {
  const names = issuerNames(env, { issuer: 'JWT_ISSUER', tenants: 'JWT_TENANTS' }, (k) => k)
  const issuer = names.issuer
  const audience = audienceRule(
    env,
    { audiences: 'JWT_AUDIENCE', clientIds: 'JWT_CLIENT_IDS', claim: 'JWT_CLIENT_ID_CLAIM' },
    (k) => k,
  )
  const jwksUrl = text(env, 'JWKS_URL')
  if (!jwksUrl && issuer.includes(TENANT_PLACEHOLDER)) {
    throw new ConfigError(
      'JWKS_URL',
      'is required with an issuer template (discovery needs one issuer)',
    )
  }
  const keySource: KeySource = jwksUrl
    ? { kind: 'jwks', url: keyUrl('JWKS_URL', jwksUrl) }
    : { kind: 'discovery', url: discoveryUrl(issuer, 'JWT_ISSUER'), issuer }
  const types = list(env, 'JWT_TYPES')
  const clockSkewS = integer(env, 'CLOCK_SKEW_SECONDS', DEFAULT_CLOCK_SKEW_S, 0, MAX_CLOCK_SKEW_S)
  const logout = backchannelLogout(
    env,
    (k) => k,
    {
      clientIds: 'BACKCHANNEL_LOGOUT_CLIENT_IDS',
      requireTyp: 'BACKCHANNEL_LOGOUT_REQUIRE_TYP',
      session: 'BACKCHANNEL_LOGOUT_SESSION_SECONDS',
      revokeSubject: 'BACKCHANNEL_LOGOUT_REVOKE_SUBJECT',
    },
    sessionBound(null, clockSkewS),
  )
  receiversNeedRevocations(env, logout && 'BACKCHANNEL_LOGOUT_CLIENT_IDS')
  const iss: IssuerConfig = {
    ...names,
    keySource,
    ...audience,
    algorithms: algorithms(env, 'JWT_ALGORITHMS'),
    clockSkewS,
    maxTokenAgeS: null,
    types: types ?? [...DEFAULT_TOKEN_TYPES],
    typeOptional: types === undefined,
    jwks: jwksPolicy(env, (k) => k, {
      cooldown: 'JWKS_REFRESH_COOLDOWN_SECONDS',
      unknownKid: 'JWKS_UNKNOWN_KID_COOLDOWN_SECONDS',
      ttl: 'JWKS_CACHE_TTL_SECONDS',
      stale: 'JWKS_STALE_IF_ERROR_SECONDS',
      timeout: 'JWKS_FETCH_TIMEOUT_MS',
    }),
    // Introspection is configured per issuer in structured mode only.
    introspection: null,
    backchannelLogout: logout,
    // Simple mode has one route: its binding is the only one, so the issuer's is left at none.
    binding: 'none',
  }
  const route: RouteConfig = {
    name: 'ORIGIN_URL',
    host: null,
    pathPrefix: '/',
    methods: null,
    origin: { kind: 'url', url: originUrl('ORIGIN_URL', required(env, 'ORIGIN_URL')) },
    auth: 'required',
    issuers: [issuer],
    opaqueIssuer: null,
    audiences: null,
    scopes: [],
    claims: [],
    sources: [{ kind: 'header' }],
    identity: defaultIdentity(flag(env, 'FORWARD_AUTHORIZATION', false)),
    cors: false,
    csrf: null,
    originTimeoutMs: integer(env, 'ORIGIN_TIMEOUT_MS', DEFAULT_ORIGIN_TIMEOUT_MS, 100, 600_000),
    assertion: null,
    binding: bindingMode(env, 'TOKEN_BINDING'),
    dpopNonce: flag(env, 'DPOP_NONCE', false),
    allowUnboundDpop: flag(env, 'DPOP_ALLOW_UNBOUND', false),
    mcp: null,
  }
  const dpopConfig = dpop(env)
  if (route.dpopNonce && dpopConfig.nonceSecret === null) {
    throw new ConfigError('DPOP_NONCE', 'needs DPOP_NONCE_SECRET (wrangler secret put)')
  }
  return {
    realm: realmOf(text(env, 'GATEWAY_REALM'), 'GATEWAY_REALM'),
    serverTiming: flag(env, 'SERVER_TIMING', false),
    logRequests: logRequests(env),
    maxTokenBytes: maxTokenBytes(env),
    issuers: [iss],
    routes: [route],
    revocation: revocation(env),
    admin: admin(env),
    assertion: null,
    transmitters: [],
    dpop: dpopConfig,
    mtls: mtls(env),
  }
}
