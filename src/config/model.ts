/**
 * The configuration model: every constant default, every type the parsers build, ConfigError.
 * Pure. Imports nothing from the gateway: every other module may import this one.
 */
import type { JWK } from 'jose'

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
/**
 * Least time between two fetches caused by an unknown `kid`: short, since providers sign with a
 * new key as soon as they publish it; still a bound on what a flood of made-up kids can cost.
 */
export const DEFAULT_JWKS_UNKNOWN_KID_COOLDOWN_S = 5
export const DEFAULT_JWKS_STALE_IF_ERROR_S = 86_400
export const DEFAULT_JWKS_FETCH_TIMEOUT_MS = 5_000
export const DEFAULT_ORIGIN_TIMEOUT_MS = 30_000
export const DEFAULT_REALM = 'gateway'
/**
 * Largest token accepted, in bytes, by default: an Entra ID token with 200 group ids (its limit
 * before the overage claim) is ~11.8 KB. Oversize tokens are refused before any parsing.
 */
export const DEFAULT_MAX_TOKEN_BYTES = 16 * 1024
/** Bounds of MAX_TOKEN_BYTES: the Authorization header read is twice it, within Workers' limits. */
export const MIN_MAX_TOKEN_BYTES = 1024
export const MAX_MAX_TOKEN_BYTES = 64 * 1024
/** How long one isolate trusts a revocation lookup; adds to KV's own ~60 s propagation delay. */
export const DEFAULT_REVOCATION_CACHE_S = 10
export const MAX_REVOCATION_CACHE_S = 300
export const DEFAULT_REVOCATION_TIMEOUT_MS = 2_000
/** With the REVOCATION_LOG Durable Object: how often an isolate asks for changes. */
export const DEFAULT_REVOCATION_SYNC_MS = 1_000
export const MIN_REVOCATION_SYNC_MS = 100
export const MAX_REVOCATION_SYNC_MS = 60_000
/** With the log: a snapshot older than this is not trusted (fail closed, or open if asked). */
export const DEFAULT_REVOCATION_MAX_STALENESS_S = 30
export const MAX_REVOCATION_MAX_STALENESS_S = 3_600
export const DEFAULT_ADMIN_PREFIX = '/_gateway'
/** Longest an active introspection result is reused (never past the token's `exp`). */
export const DEFAULT_INTROSPECTION_CACHE_TTL_S = 60
export const MAX_INTROSPECTION_CACHE_TTL_S = 3_600
/** How long an `active: false` answer is reused: short, so a token activated late works soon. */
export const DEFAULT_INTROSPECTION_NEGATIVE_TTL_S = 10
export const MAX_INTROSPECTION_NEGATIVE_TTL_S = 300
export const DEFAULT_INTROSPECTION_TIMEOUT_MS = 3_000
/** Introspection calls one isolate makes per second for tokens not in its cache: the flood bound. */
export const DEFAULT_INTROSPECTION_CALLS_PER_SECOND = 20
export const MAX_INTROSPECTION_CALLS_PER_SECOND = 1_000
/**
 * How long a session (sid) revocation is kept when neither a bound nor the issuer's token age
 * limit says: a day outlives the access tokens of every IdP default we know of (Okta, Entra,
 * Auth0, Keycloak issue 5 minutes to 24 hours).
 */
export const DEFAULT_SESSION_REVOCATION_S = 86_400
export const MAX_SESSION_REVOCATION_S = 30 * 86_400
/** A shorter admin token could be guessed; 32 characters of a random secret is the floor. */
export const MIN_ADMIN_TOKEN_LENGTH = 32
export const IDENTITY_HEADER_PREFIX = 'x-auth-'

/**
 * Sender binding a token must show (RFC 9449 DPoP, RFC 8705 mTLS). `none`: Bearer and DPoP are both
 * accepted, and a bound token still needs its proof; `any`: some binding is required.
 */
export const BINDING_MODES = ['none', 'dpop', 'mtls', 'any'] as const
export type BindingMode = (typeof BINDING_MODES)[number]
/** How far a DPoP proof's `iat` may be from now, either way (RFC 9449 §11.1), in seconds. */
export const DEFAULT_DPOP_PROOF_WINDOW_S = 60
export const MAX_DPOP_PROOF_WINDOW_S = 300
/** How long one replay-store call may take before the store counts as unreachable. */
export const DEFAULT_DPOP_REPLAY_TIMEOUT_MS = 1_000
/** The nonce secret is an HMAC key: as long as the hash output (RFC 2104 §3). */
export const MIN_DPOP_NONCE_SECRET_BYTES = 32

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
  /** Least time between fetches for an unknown `kid`; at most refreshCooldownS by default. */
  readonly unknownKidCooldownS: number
  readonly staleIfErrorS: number
  readonly fetchTimeoutMs: number
}

/** The claim Cognito (and RFC 9068 §2.2) names the OAuth client in. */
export const DEFAULT_CLIENT_ID_CLAIM = 'client_id'

/** Tokens without `aud` are accepted only when `claim` holds one of `values` (never otherwise). */
export interface ClientIds {
  readonly claim: string
  readonly values: readonly string[]
}

/** What a token's `aud` (or, when it has none, its client id) must match. */
export interface AudienceRule {
  /** Accepted `aud` values; may be empty only when `clientIds` is set. */
  readonly audiences: readonly string[]
  readonly clientIds: ClientIds | null
}

/** RFC 7662 §2.1 client authentication methods (RFC 6749 §2.3.1, RFC 7523 §2.2). */
export const INTROSPECTION_AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
] as const
export type IntrospectionAuth = (typeof INTROSPECTION_AUTH_METHODS)[number]

/** Signing algorithms for a private_key_jwt client assertion, by the key's type. */
export type ClientAssertionAlgorithm = 'RS256' | 'ES256' | 'EdDSA'

export type IntrospectionCredential =
  | { readonly kind: 'secret'; readonly secret: string }
  /** A private JWK (from a secret) that signs client assertions. */
  | { readonly kind: 'key'; readonly jwk: JWK; readonly alg: ClientAssertionAlgorithm }

/** RFC 7662 token introspection for an issuer's opaque tokens. */
export interface IntrospectionConfig {
  /** The introspection endpoint, or null: read `introspection_endpoint` from discovery. */
  readonly endpoint: string | null
  /** Where discovery is read when `endpoint` is null. */
  readonly discoveryUrl: string
  readonly clientId: string
  readonly auth: IntrospectionAuth
  readonly credential: IntrospectionCredential
  readonly cacheTtlS: number
  readonly negativeCacheTtlS: number
  readonly timeoutMs: number
  readonly callsPerSecond: number
}

/** The placeholder an issuer template names the tenant with (Entra multi-tenant apps). */
export const TENANT_PLACEHOLDER = '{tenantid}'
/** What a tenant id in an `iss` may be: one path segment, no dots or escapes (Entra: a GUID). */
export const TENANT_ID = /^[A-Za-z0-9-]{1,64}$/

export interface IssuerConfig extends AudienceRule {
  /**
   * The entry's name and first accepted `iss` (the one discovery uses). Routes, revocation and
   * logs name the issuer by it. May be a template with {tenantid} (see `tenants`).
   */
  readonly issuer: string
  /** Further exact `iss` spellings accepted with the same keys (Google's `accounts.google.com`). */
  readonly aliases: readonly string[]
  /**
   * Only for an `issuer` with {tenantid}: the token's `tid` must equal the tenant in its `iss`,
   * and be one of these when set (null: any tenant whose tokens the keys verify).
   */
  readonly tenants: readonly string[] | null
  readonly keySource: KeySource
  readonly algorithms: readonly JwsAlgorithm[]
  readonly clockSkewS: number
  /** Oldest `iat` accepted, in seconds before now; null: no limit (then `iat` is not required). */
  readonly maxTokenAgeS: number | null
  /** Accepted `typ` values, compared case-insensitively. */
  readonly types: readonly string[]
  /** Whether a token without `typ` passes. */
  readonly typeOptional: boolean
  readonly jwks: JwksPolicy
  /** Opaque (non-JWS) tokens of this issuer are introspected; null: they are refused. */
  readonly introspection: IntrospectionConfig | null
  /** The binding every token of this issuer must show, on every route. */
  readonly binding: BindingMode
  /** OpenID Connect Back-Channel Logout from this issuer; null: not accepted. */
  readonly backchannelLogout: BackchannelLogoutConfig | null
}

export interface BackchannelLogoutConfig {
  /** The RP client ids the IdP sends logout tokens to: `aud` must contain one of them. */
  readonly clientIds: readonly string[]
  /** Refuse logout tokens without `typ: logout+jwt` (the spec's SHOULD; some IdPs omit it). */
  readonly requireTyp: boolean
  /** Seconds a `sid` revocation is kept: past the life of any token of that session. */
  readonly sessionRevocationS: number
  /** Cut off the subject too when the logout token has a `sid` (always), or only without one. */
  readonly revokeSubject: 'always' | 'without-sid'
}

/** A Shared Signals transmitter whose SETs (RFC 8417, pushed per RFC 8935) revoke tokens. */
export interface TransmitterConfig {
  /** How its SETs are verified, in an issuer's shape, so they share the verifier and key store. */
  readonly signer: IssuerConfig
  /** The gateway issuers whose tokens its signals may revoke. */
  readonly issuers: readonly string[]
  /** CAEP credential-change: cut off the subject's tokens, or acknowledge and log only. */
  readonly credentialChange: 'revoke' | 'ignore'
  /** Which token claim an `email` subject identifier is matched against; null: not acted on. */
  readonly emailClaim: 'sub' | null
  /** The exact Authorization header value the transmitter must send; null: none required. */
  readonly authorization: string | null
  /** Seconds a session (sid) revocation from a CAEP session-revoked event is kept. */
  readonly sessionRevocationS: number
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

/**
 * MCP resource-server mode on a route (RFC 9728 metadata, RFC 8707 audience, per-operation scopes).
 * Every scope list here has been checked to be RFC 6749 scope-tokens.
 */
export interface McpConfig {
  /**
   * The resource identifier clients use, exactly (RFC 8707 §2); null: derived per request from the
   * request's origin and the route's path (a route without a host serves any host).
   */
  readonly resource: string | null
  /** RFC 8414 issuer identifiers of the authorization servers clients should use. */
  readonly authorizationServers: readonly string[]
  /** Published as `scopes_supported`; empty leaves the member out. */
  readonly scopesSupported: readonly string[]
  /** Extra scopes per JSON-RPC method (`tools/call`), on top of the route's `scopes`. */
  readonly methodScopes: ReadonlyMap<string, readonly string[]>
  /** Extra scopes per tool name, for `tools/call` requests. */
  readonly toolScopes: ReadonlyMap<string, readonly string[]>
  /**
   * What a body the gateway cannot read within its bound needs: the route's scopes and every
   * scope an operation names (padding a body must not dodge a per-tool scope).
   */
  readonly strictestScopes: readonly string[]
}

/** Seconds clients and caches may keep a protected-resource metadata document. */
export const MCP_METADATA_MAX_AGE_S = 600

/** The CSRF check on cookie-borne tokens (src/auth/csrf.ts). */
export interface CsrfConfig {
  /** Serialized origins (`https://app.example.com`, lower case) allowed to send state-changing requests. */
  readonly allowedOrigins: readonly string[]
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
  /**
   * The issuer whose introspection endpoint judges opaque tokens on this route, or null when none
   * of the route's issuers introspects (opaque tokens are then refused as malformed).
   */
  readonly opaqueIssuer: string | null
  /** When set, the token's `aud` must also contain one of these. */
  readonly audiences: readonly string[] | null
  readonly scopes: readonly string[]
  readonly claims: readonly ClaimRule[]
  readonly sources: readonly TokenSource[]
  readonly identity: IdentityConfig
  /** Let CORS preflights through unauthenticated. */
  readonly cors: boolean
  /**
   * For a token taken from a cookie, the CSRF check of state-changing methods; null: off. On by
   * default for routes with a cookie source.
   */
  readonly csrf: CsrfConfig | null
  readonly originTimeoutMs: number
  readonly assertion: AssertionConfig | null
  /** The binding tokens must show on this route (on top of their issuer's). */
  readonly binding: BindingMode
  /** Require a server nonce in DPoP proofs (RFC 9449 §8); needs DPOP_NONCE_SECRET. */
  readonly dpopNonce: boolean
  /** Accept a DPoP proof with a token that has no `cnf.jkt` (the token stays unbound). */
  readonly allowUnboundDpop: boolean
  /** MCP resource-server mode; null on other routes. */
  readonly mcp: McpConfig | null
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
  /** Present when the REVOCATION_LOG Durable Object is bound: it, not KV, holds the list. */
  readonly log?: RevocationLogConfig
}

export interface RevocationLogConfig {
  /** Least time between two background syncs of one isolate's snapshot. */
  readonly syncMs: number
  /** A snapshot older than this is not used: one sync is awaited, then fail closed (or open). */
  readonly maxStalenessS: number
}

export interface AdminConfig {
  /** Path prefix the gateway keeps for itself; the origin never sees it. */
  readonly prefix: string
  /** The admin bearer token; null disables the admin API (it answers 404). */
  readonly token: string | null
}

/** DPoP proof checking, the same for every route (flat variables in both modes). */
export interface DpopConfig {
  /** Proof signature algorithms accepted (asymmetric only), also sent as the challenge's `algs`. */
  readonly algorithms: readonly Algorithm[]
  readonly proofWindowS: number
  /**
   * The URL clients use to reach the gateway (scheme, host, optional path prefix), when another
   * proxy in front changes it; null: the request URL as the Worker sees it.
   */
  readonly publicBaseUrl: string | null
  /** HMAC key for stateless server nonces; null: no route may require nonces. */
  readonly nonceSecret: string | null
  /** The DPOP_REPLAY Durable Object binding's settings; null when it is not bound. */
  readonly replay: { readonly failOpen: boolean; readonly timeoutMs: number } | null
}

export interface MtlsConfig {
  /**
   * Read the client certificate from an RFC 9440 `Client-Cert` header set by a trusted proxy in
   * front. When false, that header is stripped from every request and never read.
   */
  readonly trustClientCertHeader: boolean
}

export interface GatewayConfig {
  readonly realm: string
  /** Largest token accepted, in bytes (MAX_TOKEN_BYTES); the Authorization cap is twice it. */
  readonly maxTokenBytes: number
  /** Send `Server-Timing: auth;dur=...` to clients (reveals cache hits; off unless asked for). */
  readonly serverTiming: boolean
  /** Which requests get a log line: all, or all but those forwarded to the origin. */
  readonly logRequests: LogRequests
  readonly issuers: readonly IssuerConfig[]
  readonly routes: readonly RouteConfig[]
  /** null when neither REVOCATIONS (KV) nor REVOCATION_LOG (Durable Object) is bound: off. */
  readonly revocation: RevocationConfig | null
  readonly admin: AdminConfig
  /** Keys for signed identity assertions; null when none are configured. */
  readonly assertion: AssertionKeys | null
  /** Shared Signals transmitters (structured mode); empty: the receiver is off. */
  readonly transmitters: readonly TransmitterConfig[]
  readonly dpop: DpopConfig
  readonly mtls: MtlsConfig
}

export type LogRequests = 'all' | 'refused'

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
