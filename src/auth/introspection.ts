/**
 * RFC 7662 token introspection for one issuer's opaque access tokens: the endpoint (configured, or
 * `introspection_endpoint` from discovery), client authentication, the call and the answer's
 * shape. An active answer becomes the same Identity a JWT yields, through the same claim checks
 * (verify.ts), so route policy, identity headers and revocation treat both alike.
 * I/O only through the `fetch` it is given; time comes from `now`. Holds values only, never a
 * promise shared across requests. The credential goes only to the endpoint: never into an error,
 * a log line or anything returned.
 */
import { importJWK, SignJWT } from 'jose'
import { keyUrl, type IntrospectionConfig, type IssuerConfig } from '../config'
import { GatewayError, messageOf } from '../errors'
import { log } from '../observability/log'
import { fetchJson } from './fetch-json'
import type { Identity } from './identity'
import { IntrospectionCache, introspectionKey } from './introspection-cache'
import type { KeyDeps } from './keys'
import { ambiguousJson, introspectedIdentity } from './verify'

/** Largest introspection answer read, in bytes. Real ones are well under 2 KiB. */
export const MAX_INTROSPECTION_RESPONSE_BYTES = 16 * 1024
/** Largest discovery document read for `introspection_endpoint`, in bytes. */
export const MAX_DISCOVERY_BYTES = 64 * 1024
/** Lifetime of a private_key_jwt client assertion; each call signs a new one (fresh `jti`). */
export const CLIENT_ASSERTION_TTL_S = 60
/** RFC 7523 §2.2. */
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
/** RFC 6749 §7.1 token types an access token presented here may have. */
const ACCESS_TOKEN_TYPES = new Set(['bearer', 'dpop'])

export type Answer =
  | { readonly active: false }
  | { readonly active: true; readonly text: string; readonly claims: Record<string, unknown> }

/** Application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks for the Basic credentials too. */
function formEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2)
}

/** Why an active answer is not an access token's, or null. Refresh and other tokens say so here. */
function notAnAccessToken(claims: Record<string, unknown>): string | null {
  const type = claims.token_type
  if (
    type !== undefined &&
    !(typeof type === 'string' && ACCESS_TOKEN_TYPES.has(type.toLowerCase()))
  )
    return 'token_type is not an access token type'
  // Ory Hydra names the kind of token it introspected.
  if (claims.token_use !== undefined && claims.token_use !== 'access_token')
    return 'token_use is not access_token'
  return null
}

/** The RFC 7662 §2.2 answer, or an Error naming what is wrong with it (the endpoint's fault). */
export function parseAnswer(text: string, body: unknown): Answer {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new Error('answer is not a JSON object')
  // Read one way here and another by the origin (X-Auth-Claims) would split who is calling.
  const why = ambiguousJson(text)
  if (why !== null) throw new Error(`answer: ${why}`)
  const claims = body as Record<string, unknown>
  // Only the boolean true is active; anything else but false is a broken endpoint.
  if (claims.active === false) return { active: false }
  if (claims.active !== true) throw new Error('answer has no boolean "active"')
  return { active: true, text, claims }
}

export class Introspector {
  readonly cache: IntrospectionCache
  readonly cfg: IntrospectionConfig
  /** From config, or from discovery once read (a value, kept for the isolate's life). */
  private endpoint: string | null
  private key: CryptoKey | null = null
  private calls = 0
  private lastError: string | null = null

  constructor(readonly issuer: IssuerConfig) {
    if (issuer.introspection === null) throw new TypeError('issuer has no introspection')
    this.cfg = issuer.introspection
    this.endpoint = this.cfg.endpoint
    this.cache = new IntrospectionCache(this.cfg, issuer.clockSkewS)
  }

  /** For health: calls made by this isolate, and whether the last one failed. */
  status(): { calls: number; failed: boolean } {
    return { calls: this.calls, failed: this.lastError !== null }
  }

  /**
   * The identity of an opaque token: from the cache, or by asking the endpoint within this
   * isolate's call budget. Throws GatewayError: the token's refusal (401), throttling (401) or
   * introspection_unavailable (503; never cached, so the next request asks again).
   */
  async identity(token: string, deps: KeyDeps): Promise<{ identity: Identity; cached: boolean }> {
    const key = introspectionKey(token)
    const now = deps.now()
    const hit = this.cache.get(key, now)
    if (hit instanceof GatewayError) throw hit
    if (hit !== undefined) return { identity: hit, cached: true }

    const take = this.cache.budget.take(now)
    if (!take.ok) {
      if (take.first) {
        log({ event: 'introspection_throttled', level: 'warn', issuer: this.issuer.issuer })
      }
      throw new GatewayError('introspection_throttled', 'introspection call budget spent')
    }
    const answer = await this.ask(token, deps)
    try {
      if (!answer.active) throw new GatewayError('token_inactive', 'introspection: not active')
      const why = notAnAccessToken(answer.claims)
      if (why !== null) throw new GatewayError('bad_claims', why)
      const identity = introspectedIdentity(answer.text, answer.claims, this.issuer, deps.now())
      this.cache.accept(key, identity, deps.now())
      return { identity, cached: false }
    } catch (err) {
      if (err instanceof GatewayError) this.cache.refuse(key, err, deps.now())
      throw err
    }
  }

  /** One introspection call. Any fault of the endpoint is introspection_unavailable. */
  private async ask(token: string, deps: KeyDeps): Promise<Answer> {
    this.calls++
    try {
      const endpoint = await this.endpointUrl(deps)
      const { headers, params } = await this.clientAuth(endpoint, deps.now())
      const body = new URLSearchParams({ token, token_type_hint: 'access_token', ...params })
      const got = await fetchJson(
        endpoint,
        {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
          body: body.toString(),
        },
        { timeoutMs: this.cfg.timeoutMs, maxBytes: MAX_INTROSPECTION_RESPONSE_BYTES },
        deps.fetch,
      )
      const answer = parseAnswer(got.text, got.body)
      this.lastError = null
      return answer
    } catch (err) {
      this.lastError = messageOf(err)
      // Distinct from token failures: operators must tell an endpoint outage from bad tokens.
      log({
        event: 'introspection_failed',
        level: 'error',
        issuer: this.issuer.issuer,
        error: this.lastError,
      })
      throw new GatewayError('introspection_unavailable', this.lastError)
    }
  }

  /** The configured endpoint, or `introspection_endpoint` from the issuer's discovery document. */
  private async endpointUrl(deps: KeyDeps): Promise<string> {
    if (this.endpoint !== null) return this.endpoint
    const { body } = await fetchJson(
      this.cfg.discoveryUrl,
      {},
      { timeoutMs: this.cfg.timeoutMs, maxBytes: MAX_DISCOVERY_BYTES },
      deps.fetch,
    )
    const doc = body as { issuer?: unknown; introspection_endpoint?: unknown } | null
    // Another issuer's document would send our credential and tokens to its endpoint.
    if (doc?.issuer !== this.issuer.issuer)
      throw new Error('discovery document names another issuer')
    const url = doc.introspection_endpoint
    if (typeof url !== 'string') throw new Error('discovery document has no introspection_endpoint')
    try {
      this.endpoint = keyUrl('introspection_endpoint', url)
    } catch (err) {
      throw new Error(messageOf(err))
    }
    return this.endpoint
  }

  /** RFC 7662 §2.1: the client authenticates as the token endpoint would have it authenticate. */
  private async clientAuth(
    endpoint: string,
    nowMs: number,
  ): Promise<{ headers: Record<string, string>; params: Record<string, string> }> {
    const { clientId, credential } = this.cfg
    if (credential.kind === 'secret') {
      if (this.cfg.auth === 'client_secret_post') {
        return { headers: {}, params: { client_id: clientId, client_secret: credential.secret } }
      }
      const basic = btoa(`${formEncode(clientId)}:${formEncode(credential.secret)}`)
      return { headers: { authorization: `Basic ${basic}` }, params: {} }
    }
    this.key ??= (await importJWK(credential.jwk, credential.alg)) as CryptoKey
    const now = Math.floor(nowMs / 1000)
    // RFC 7523 §3: iss = sub = client_id; aud names the endpoint called (what Okta requires and
    // oidc-provider and Keycloak accept); a fresh jti each time, since servers refuse replays.
    const assertion = await new SignJWT({})
      .setProtectedHeader({
        alg: credential.alg,
        ...(credential.jwk.kid === undefined ? {} : { kid: credential.jwk.kid }),
      })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience(endpoint)
      .setJti(crypto.randomUUID())
      .setIssuedAt(now)
      .setExpirationTime(now + CLIENT_ASSERTION_TTL_S)
      .sign(this.key)
    return {
      headers: {},
      params: {
        client_id: clientId,
        client_assertion_type: JWT_BEARER,
        client_assertion: assertion,
      },
    }
  }
}
