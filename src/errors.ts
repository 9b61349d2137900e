/**
 * The gateway's one error type and the one place that turns a reason code into a response.
 * Pure. No I/O. Messages never carry token text, kids or claim values: the reason code is the detail.
 * Imports nothing from src/ but lib/: every stage may throw a GatewayError.
 */
import { makeRoom } from './lib/bounded'

/** Why a request was refused or failed. Stable: these codes appear in logs and dashboards. */
export type ReasonCode =
  // the request itself
  | 'missing_token'
  | 'malformed_request'
  | 'malformed_path'
  /** A state-changing request with a cookie token that no header shows came from this site. */
  | 'cross_site_request'
  | 'no_route'
  | 'body_unreadable'
  | 'method_not_allowed'
  // the token
  | 'malformed_token'
  | 'token_too_large'
  | 'alg_not_allowed'
  | 'unknown_kid'
  | 'jwks_unavailable'
  | 'bad_signature'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'bad_issuer'
  | 'bad_audience'
  /** No `aud` (and no accepted client id in its place); bad_audience is an `aud` that is wrong. */
  | 'missing_audience'
  | 'bad_typ'
  | 'bad_claims'
  | 'verify_error'
  | 'token_revoked'
  /** An opaque token the issuer's introspection endpoint calls not active (RFC 7662 §2.2). */
  | 'token_inactive'
  /** An opaque token not in the cache while this isolate's introspection call budget is spent. */
  | 'introspection_throttled'
  // sender binding: the token's cnf against the request (RFC 9449 DPoP, RFC 8705 mTLS)
  | 'bad_cnf'
  | 'dpop_downgrade'
  | 'dpop_token_unbound'
  | 'mtls_cert_missing'
  | 'mtls_cert_mismatch'
  | 'binding_required'
  // the DPoP proof itself (RFC 9449 §4.3)
  | 'dpop_multiple_proofs'
  | 'dpop_proof_missing'
  | 'dpop_malformed'
  | 'dpop_bad_typ'
  | 'dpop_alg_not_allowed'
  | 'dpop_bad_jwk'
  | 'dpop_bad_signature'
  | 'dpop_htm_mismatch'
  | 'dpop_htu_mismatch'
  | 'dpop_iat_out_of_window'
  | 'dpop_ath_mismatch'
  | 'dpop_jkt_mismatch'
  | 'dpop_replayed'
  | 'dpop_nonce_required'
  | 'dpop_replay_unavailable'
  // policy
  | 'insufficient_scope'
  | 'claim_mismatch'
  // the revocation list and the admin API
  | 'revocation_unavailable'
  // the introspection endpoint
  | 'introspection_unavailable'
  | 'admin_unauthorized'
  | 'admin_bad_request'
  | 'not_found'
  // the gateway and the origin
  | 'config_invalid'
  | 'origin_unreachable'
  | 'origin_timeout'
  | 'internal_error'

export class GatewayError extends Error {
  readonly code: ReasonCode
  /** Operator-facing detail for the log line; never sent to the client unless the code says so. */
  readonly detail: string | undefined

  /**
   * Replaces the generic client-facing description. Only for text the operator wrote or an admin
   * sent (config problems, admin body validation): never token text or claim values.
   */
  readonly publicDescription: string | undefined

  /** insufficient_scope only: the scopes the resource needs (RFC 6750 §3 `scope`). */
  readonly scope: string | undefined

  constructor(code: ReasonCode, detail?: string, publicDescription?: string, scope?: string) {
    super(code)
    this.name = 'GatewayError'
    this.code = code
    this.detail = detail
    this.publicDescription = publicDescription
    this.scope = scope
  }
}

/** Any thrown value as text, for a log line's detail. */
export function messageOf(thrown: unknown): string {
  return thrown instanceof Error ? thrown.message : String(thrown)
}

interface Answer {
  status: number
  /** RFC 6750 / RFC 9449 §7.1 error attribute; undefined: a challenge without one (RFC 6750 §3.1). */
  oauthError?:
    | 'invalid_request'
    | 'invalid_token'
    | 'insufficient_scope'
    | 'invalid_dpop_proof'
    | 'use_dpop_nonce'
  /** The JSON body's `error` when there is no OAuth error code. */
  bodyError?: string
  description: string
  challenge: boolean
  retryAfterS?: number
  /** RFC 9110 §15.5.6: the methods the resource answers, for a 405. */
  allow?: string
}

const INVALID_TOKEN: Answer = {
  status: 401,
  oauthError: 'invalid_token',
  description: 'The access token is invalid',
  challenge: true,
}

const INVALID_DPOP_PROOF: Answer = {
  status: 401,
  oauthError: 'invalid_dpop_proof',
  description: 'The DPoP proof is invalid',
  challenge: true,
}

/** Exhaustive: adding a ReasonCode without an answer is a type error. */
function answerFor(code: ReasonCode): Answer {
  switch (code) {
    case 'missing_token':
      return {
        status: 401,
        bodyError: 'unauthorized',
        description: 'A bearer token is required',
        challenge: true,
      }
    case 'malformed_request':
      return {
        status: 400,
        oauthError: 'invalid_request',
        description: 'The Authorization header is malformed',
        challenge: true,
      }
    case 'malformed_path':
      return {
        status: 400,
        bodyError: 'invalid_request',
        description: 'The request path is not acceptable',
        challenge: false,
      }
    case 'cross_site_request':
      // The token may be fine; the request is what is refused, so no challenge to retry with.
      return {
        status: 403,
        bodyError: 'forbidden',
        description: 'A cross-site request with cookie credentials was refused',
        challenge: false,
      }
    case 'no_route':
      return {
        status: 404,
        bodyError: 'not_found',
        description: 'No route for this request',
        challenge: false,
      }
    case 'body_unreadable':
      return {
        status: 400,
        bodyError: 'invalid_request',
        description: 'The request body could not be read',
        challenge: false,
      }
    case 'method_not_allowed':
      return {
        status: 405,
        bodyError: 'method_not_allowed',
        description: 'This endpoint answers GET, HEAD and OPTIONS',
        challenge: false,
        allow: 'GET, HEAD, OPTIONS',
      }
    case 'insufficient_scope':
    case 'claim_mismatch':
      return {
        status: 403,
        oauthError: 'insufficient_scope',
        description: 'The access token does not grant access to this resource',
        challenge: true,
      }
    case 'token_expired':
      // Saying "expired" leaks nothing the holder of the token cannot read from it, and tells
      // well-behaved clients to refresh instead of retrying.
      return { ...INVALID_TOKEN, description: 'The access token expired' }
    case 'malformed_token':
    case 'token_too_large':
    case 'alg_not_allowed':
    case 'unknown_kid':
    case 'jwks_unavailable':
    case 'bad_signature':
    case 'token_not_yet_valid':
    case 'bad_issuer':
    case 'bad_audience':
    case 'missing_audience':
    case 'bad_typ':
    case 'bad_claims':
    case 'verify_error':
    case 'token_revoked':
    case 'token_inactive':
    case 'bad_cnf':
    // A flood of unknown opaque tokens is refused without asking the issuer (the log says why).
    case 'introspection_throttled':
      return INVALID_TOKEN
    case 'dpop_downgrade':
      return { ...INVALID_TOKEN, description: 'This access token must be used with DPoP' }
    case 'dpop_token_unbound':
      return { ...INVALID_TOKEN, description: 'This access token is not bound to a DPoP key' }
    case 'mtls_cert_missing':
    case 'mtls_cert_mismatch':
      return {
        ...INVALID_TOKEN,
        description: 'This access token is bound to a client certificate that was not presented',
      }
    case 'binding_required':
      return { ...INVALID_TOKEN, description: 'A sender-constrained access token is required' }
    case 'dpop_multiple_proofs':
      return {
        status: 400,
        oauthError: 'invalid_request',
        description: 'Exactly one DPoP header is required',
        challenge: true,
      }
    case 'dpop_proof_missing':
      return { ...INVALID_DPOP_PROOF, description: 'A DPoP proof is required' }
    case 'dpop_malformed':
    case 'dpop_bad_typ':
    case 'dpop_alg_not_allowed':
    case 'dpop_bad_jwk':
    case 'dpop_bad_signature':
    case 'dpop_htm_mismatch':
    case 'dpop_htu_mismatch':
    case 'dpop_iat_out_of_window':
    case 'dpop_ath_mismatch':
    case 'dpop_jkt_mismatch':
    case 'dpop_replayed':
      return INVALID_DPOP_PROOF
    case 'dpop_nonce_required':
      return {
        status: 401,
        oauthError: 'use_dpop_nonce',
        description: 'Resource server requires nonce in DPoP proof',
        challenge: true,
      }
    case 'dpop_replay_unavailable':
      // 503 like the revocation list: the proof may be fine, only its first use is unknown.
      return {
        status: 503,
        bodyError: 'temporarily_unavailable',
        description: 'The DPoP replay store could not be checked; retry shortly',
        challenge: false,
        retryAfterS: 5,
      }
    case 'revocation_unavailable':
      // 503, not 401: the token may well be valid, and a 401 would make clients drop it.
      return {
        status: 503,
        bodyError: 'temporarily_unavailable',
        description: 'The revocation list could not be checked; retry shortly',
        challenge: false,
        retryAfterS: 5,
      }
    case 'introspection_unavailable':
      // Fail closed, but as 503: the token may well be active, and a 401 would make clients drop it.
      return {
        status: 503,
        bodyError: 'temporarily_unavailable',
        description: 'The access token could not be checked; retry shortly',
        challenge: false,
        retryAfterS: 5,
      }
    case 'admin_unauthorized':
      return {
        status: 401,
        oauthError: 'invalid_token',
        description: 'A valid admin token is required',
        challenge: true,
      }
    case 'admin_bad_request':
      return {
        status: 400,
        bodyError: 'invalid_request',
        description: 'The request body is invalid',
        challenge: false,
      }
    case 'not_found':
      return { status: 404, bodyError: 'not_found', description: 'Not found', challenge: false }
    case 'config_invalid':
      return {
        status: 500,
        bodyError: 'server_error',
        description: 'The gateway is misconfigured',
        challenge: false,
      }
    case 'origin_unreachable':
      return {
        status: 502,
        bodyError: 'bad_gateway',
        description: 'The upstream service could not be reached',
        challenge: false,
      }
    case 'origin_timeout':
      return {
        status: 504,
        bodyError: 'gateway_timeout',
        description: 'The upstream service did not answer in time',
        challenge: false,
      }
    case 'internal_error':
      return {
        status: 500,
        bodyError: 'server_error',
        description: 'The gateway failed to handle the request',
        challenge: false,
      }
  }
}

/** Quote a value for an auth-param (RFC 7235 quoted-string). Our values are fixed ASCII. */
function quoted(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`
}

/** Which authentication schemes the answer offers (RFC 9449 §7.1: one challenge per scheme). */
export interface Challenges {
  /** The route accepts the Bearer scheme. */
  readonly bearer: boolean
  /** The DPoP challenge's `algs` (space-separated), or null for no DPoP challenge. */
  readonly dpopAlgs: string | null
  /** The client used DPoP: the error attribute goes on the DPoP challenge, listed first. */
  readonly usedDpop: boolean
}

/** Every answer before DPoP existed: one Bearer challenge. */
export const BEARER_ONLY: Challenges = { bearer: true, dpopAlgs: null, usedDpop: false }

/** What a challenge says besides its error, on routes that publish resource metadata. */
export interface ChallengeOptions {
  /** RFC 9728 §5.1: where the protected resource's metadata is. */
  resourceMetadata?: string
  /**
   * RFC 6750 §3 `scope` of the route, for challenges without a more specific one (an
   * insufficient_scope error carries the scopes its request needs, which win).
   */
  scope?: string
  /** Let browser clients read the challenge (CORS `Access-Control-Expose-Headers`). */
  exposeChallenge?: boolean
}

export interface ToResponseOptions extends ChallengeOptions {
  realm: string
  challenges?: Challenges
  /**
   * Replaces the generic description. Only config errors use it: the operator must see which
   * variable is wrong, and config text is the operator's, not the client's.
   */
  description?: string
}

/** A refusal's status, body and headers, built once per (code, realm): refusals are the flood case. */
interface Prepared {
  readonly status: number
  readonly body: string
  /** Copied by every Response made from it (the runtime copies a Headers faster than pairs). */
  readonly headers: Headers
}

/**
 * Reason codes x realms x challenge options. Realms come from config; a metadata URL derived
 * from the request's host could be many, so the map is bounded.
 */
const prepared = new Map<string, Prepared>()
/** Most prepared answers kept; a few dozen are used when every metadata URL comes from config. */
const MAX_PREPARED_ANSWERS = 1_000

export function toResponse(err: GatewayError, opts: ToResponseOptions): Response {
  // Only the generic answers are shared; one naming a variable or a scope is built each time.
  const shared =
    opts.description === undefined && err.publicDescription === undefined && err.scope === undefined
  const c = opts.challenges ?? BEARER_ONLY
  const memo = shared
    ? `${err.code}\n${opts.realm}\n${c.bearer}\n${c.usedDpop}\n${c.dpopAlgs}\n${opts.resourceMetadata}\n${opts.scope}\n${opts.exposeChallenge === true}`
    : undefined
  let answer = memo === undefined ? undefined : prepared.get(memo)
  if (answer === undefined) {
    answer = prepare(err, opts)
    if (memo !== undefined) {
      makeRoom(prepared, MAX_PREPARED_ANSWERS)
      prepared.set(memo, answer)
    }
  }
  return new Response(answer.body, { status: answer.status, headers: answer.headers })
}

function prepare(err: GatewayError, opts: ToResponseOptions): Prepared {
  const a = answerFor(err.code)
  const description = opts.description ?? err.publicDescription ?? a.description
  const headers: [string, string][] = [
    ['content-type', 'application/json; charset=utf-8'],
    ['cache-control', 'no-store'],
  ]
  if (a.challenge) {
    const c = opts.challenges ?? BEARER_ONLY
    const proofError = a.oauthError === 'invalid_dpop_proof' || a.oauthError === 'use_dpop_nonce'
    // A proof error is only meaningful in the DPoP challenge; otherwise the error goes with the
    // scheme the client used, or the only one the route accepts.
    const dpop = c.dpopAlgs !== null || proofError
    const onDpop = dpop && (proofError || c.usedDpop || !c.bearer)
    const params = (withError: boolean) => {
      const p = [`realm=${quoted(opts.realm)}`]
      if (withError && a.oauthError) {
        p.push(`error=${quoted(a.oauthError)}`, `error_description=${quoted(description)}`)
      }
      // Scope tokens are validated at config time: no quotes or backslashes can reach here.
      const scope = (withError ? err.scope : undefined) ?? opts.scope
      if (scope !== undefined) p.push(`scope=${quoted(scope)}`)
      if (opts.resourceMetadata !== undefined) {
        p.push(`resource_metadata=${quoted(opts.resourceMetadata)}`)
      }
      return p
    }
    const bearer = c.bearer ? `Bearer ${params(!onDpop).join(', ')}` : null
    const dpopChallenge = dpop
      ? `DPoP ${[...params(onDpop), `algs=${quoted(c.dpopAlgs ?? '')}`].join(', ')}`
      : null
    const ordered = onDpop ? [dpopChallenge, bearer] : [bearer, dpopChallenge]
    for (const value of ordered) if (value !== null) headers.push(['www-authenticate', value])
    if (opts.exposeChallenge) {
      // A refusal holds nothing private; without these a browser client cannot see the challenge.
      headers.push(
        ['access-control-allow-origin', '*'],
        ['access-control-expose-headers', 'WWW-Authenticate'],
      )
    }
  }
  if (a.retryAfterS !== undefined) headers.push(['retry-after', String(a.retryAfterS)])
  if (a.allow !== undefined) headers.push(['allow', a.allow])
  const body = { error: a.oauthError ?? a.bodyError, error_description: description }
  return { status: a.status, body: JSON.stringify(body), headers: new Headers(headers) }
}
