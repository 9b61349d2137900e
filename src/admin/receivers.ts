/**
 * The IdP-facing receivers under the admin prefix: OpenID Connect Back-Channel Logout
 * (`POST /backchannel-logout`, a form with `logout_token`) and Shared Signals push delivery
 * (`POST /signals`, a SET as `application/secevent+jwt`, RFC 8935). Each reads a size-capped body,
 * hands the token to its validator in revocation/ and writes the revocations returned through the
 * revocation list: nothing is written for a token that fails any check.
 */
import { jwsToken } from '../auth/credentials'
import { readCapped } from '../auth/fetch-json'
import type { KeyDeps } from '../auth/keys'
import type { Issuer } from '../auth/verify'
import { GatewayError, messageOf, type ReasonCode } from '../errors'
import { log } from '../observability/log'
import { sameSecret } from '../lib/secret'
import {
  MAX_LOGOUT_TOKEN_AGE_S,
  LOGOUT_TOKEN_TYPE,
  validateLogoutToken,
} from '../revocation/backchannel-logout'
import type { RevocationList, RevocationRecord } from '../revocation/list'
import type { ReplayMemory } from '../revocation/replay'
import { SetError, validateSet, type Transmitter } from '../revocation/signals'

/** Largest receiver body read, in bytes: a token is at most 8 KiB, form-encoding adds little. */
export const MAX_RECEIVER_BODY_BYTES = 16 * 1024
/** How long a transmitter or IdP is asked to wait before retrying when we cannot write. */
export const RECEIVER_RETRY_AFTER_S = 5

export interface ReceiverDeps {
  readonly revocations: RevocationList
  /** Issuers with back-channel logout configured (their key stores are the pipeline's). */
  readonly logoutIssuers: readonly Issuer[]
  readonly transmitters: readonly Transmitter[]
  readonly replays: ReplayMemory
  readonly keyDeps: KeyDeps
}

const NO_STORE = { 'cache-control': 'no-store' }

function jsonError(status: number, body: Record<string, string>, extra: HeadersInit = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...NO_STORE, ...extra },
  })
}

/** The media type of a request, lower case, without parameters. */
function mediaType(request: Request): string {
  return (request.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase()
}

/** The body as text, or null when it is larger than MAX_RECEIVER_BODY_BYTES. */
async function cappedBody(request: Request): Promise<string | null> {
  const declared = Number(request.headers.get('content-length') ?? '0')
  // Refused before reading: junk costs a header check, not a download.
  if (!(declared <= MAX_RECEIVER_BODY_BYTES)) {
    await request.body?.cancel()
    return null
  }
  try {
    return await readCapped(request, MAX_RECEIVER_BODY_BYTES)
  } catch {
    return null
  }
}

/** Writes each record, never moving a cut-off earlier. Throws when the store fails. */
async function writeAll(deps: ReceiverDeps, records: readonly RevocationRecord[]) {
  const nowMs = deps.keyDeps.now()
  for (const record of records) await deps.revocations.putUnlessCovered(record, nowMs)
}

const LOGOUT_DESCRIPTIONS: Partial<Record<ReasonCode, string>> = {
  bad_issuer: 'iss is not an issuer with back-channel logout configured',
  bad_audience: 'aud does not contain a configured client id',
  missing_audience: 'aud is missing',
  bad_signature: 'the signature does not verify with the issuer’s keys',
  unknown_kid: 'no key of the issuer matches kid and alg',
  alg_not_allowed: 'alg is not allowed for this issuer',
  token_expired: `expired, or iat older than ${MAX_LOGOUT_TOKEN_AGE_S} s`,
  token_not_yet_valid: 'iat or nbf is in the future',
  bad_typ: `typ is not ${LOGOUT_TOKEN_TYPE}`,
  malformed_token: 'logout_token is not a signed JWT',
  token_too_large: 'logout_token is too large',
  bad_claims: 'a required claim (iat, jti, events) is missing or malformed',
}

/** OpenID Connect Back-Channel Logout 1.0 §2.5 (request) and §2.8 (response). */
export async function backchannelLogout(request: Request, deps: ReceiverDeps): Promise<Response> {
  const refuse = (reason: string, description: string) => {
    log({ level: 'warn', event: 'backchannel_logout_refused', reason })
    // §2.8: 400 with an OAuth-style JSON error; no-store so no cache keeps a refusal.
    return jsonError(400, { error: 'invalid_request', error_description: description })
  }
  if (mediaType(request) !== 'application/x-www-form-urlencoded') {
    return refuse('content_type', 'the body must be application/x-www-form-urlencoded')
  }
  const text = await cappedBody(request)
  if (text === null) return refuse('body_too_large', `body over ${MAX_RECEIVER_BODY_BYTES} bytes`)
  const tokens = new URLSearchParams(text).getAll('logout_token')
  if (tokens.length !== 1) return refuse('no_logout_token', 'exactly one logout_token is required')

  let outcome
  try {
    outcome = await validateLogoutToken(
      jwsToken(tokens[0]!),
      deps.logoutIssuers,
      deps.keyDeps,
      deps.replays,
    )
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err
    // Keys we cannot fetch are not the IdP's mistake in this token: let it retry.
    if (err.code === 'jwks_unavailable') return unavailable('backchannel_logout', err.detail)
    const description =
      err.publicDescription ?? LOGOUT_DESCRIPTIONS[err.code] ?? 'the logout token does not verify'
    return refuse(err.code, description)
  }
  try {
    await writeAll(deps, outcome.records)
  } catch (err) {
    return unavailable('backchannel_logout', messageOf(err))
  }
  deps.replays.remember(outcome.iss, outcome.jti, outcome.rememberUntilMs)
  log({
    event: 'backchannel_logout',
    source: outcome.iss,
    revoked: outcome.records.map((r) => r.id).join(' '),
  })
  return new Response(null, { status: 200, headers: NO_STORE })
}

/** RFC 8935 §2: one SET per POST; 202 when accepted, 400 with {err, description} when not. */
export async function signals(request: Request, deps: ReceiverDeps): Promise<Response> {
  const refuse = (err: SetError) => {
    log({ level: 'warn', event: 'signal_refused', err: err.err, detail: err.description })
    return jsonError(400, { err: err.err, description: err.description })
  }
  if (mediaType(request) !== 'application/secevent+jwt') {
    return refuse(new SetError('invalid_request', 'the body must be application/secevent+jwt'))
  }
  // Junk from anyone without the push credential is refused before any parsing or key work.
  const authorization = request.headers.get('authorization')
  const gated = deps.transmitters.every((t) => t.config.authorization !== null)
  if (gated && !(await anyAuthorization(deps.transmitters, authorization))) {
    return refuse(new SetError('authentication_failed', 'Authorization is missing or wrong'))
  }
  const text = await cappedBody(request)
  if (text === null) {
    return refuse(new SetError('invalid_request', `body over ${MAX_RECEIVER_BODY_BYTES} bytes`))
  }
  let outcome
  try {
    const token = jwsToken(text.trim())
    outcome = await validateSet(token, deps.transmitters, deps.keyDeps, deps.replays)
  } catch (err) {
    if (err instanceof SetError) return refuse(err)
    if (err instanceof GatewayError && err.code === 'jwks_unavailable') {
      return unavailable('signal', err.detail)
    }
    if (err instanceof GatewayError) {
      return refuse(new SetError('invalid_request', 'the body is not a signed JWT'))
    }
    throw err
  }
  const expected = outcome.transmitter.config.authorization
  if (expected !== null && !(await sameSecret(authorization ?? '', expected))) {
    return refuse(new SetError('authentication_failed', 'Authorization is missing or wrong'))
  }
  try {
    await writeAll(
      deps,
      outcome.signals.flatMap((s) => s.records),
    )
  } catch (err) {
    return unavailable('signal', messageOf(err))
  }
  const source = outcome.transmitter.config.signer.issuer
  deps.replays.remember(source, outcome.jti, outcome.rememberUntilMs)
  for (const s of outcome.signals) {
    // Record ids are hashes of issuer and subject: the log names no subject in the clear.
    log({
      event: s.action === 'revoked' ? 'signal_applied' : 'signal_acknowledged',
      source,
      setEvent: s.event,
      why: s.why,
      revoked: s.records.map((r) => r.id).join(' ') || undefined,
    })
  }
  return new Response(null, { status: 202, headers: NO_STORE })
}

/** Our side failed (keys unreachable, the store down): 503 so the sender retries, not a 400. */
function unavailable(what: 'backchannel_logout' | 'signal', detail: string | undefined): Response {
  log({ level: 'error', event: `${what}_unavailable`, detail })
  const description = 'the gateway cannot process this now; retry later'
  const body: Record<string, string> =
    what === 'signal'
      ? { err: 'temporarily_unavailable', description }
      : { error: 'temporarily_unavailable', error_description: description }
  return jsonError(503, body, { 'retry-after': String(RECEIVER_RETRY_AFTER_S) })
}

async function anyAuthorization(
  transmitters: readonly Transmitter[],
  given: string | null,
): Promise<boolean> {
  if (given === null) return false
  for (const t of transmitters) {
    if (t.config.authorization !== null && (await sameSecret(given, t.config.authorization))) {
      return true
    }
  }
  return false
}
