/**
 * OpenID Connect Back-Channel Logout 1.0: validate a logout token exactly as §2.6 says and return
 * the revocations it asks for. Verification goes through auth/verify (the issuer's key store and
 * algorithm rules); nothing is written here: the caller writes the records through the revocation
 * list, then remembers the jti. Key fetches only through `deps.fetch`; time from `deps.now`.
 */
import type { JWTPayload } from 'jose'
import type { KeyDeps } from '../auth/keys'
import { verifyJwt, type Issuer, type JwtProfile } from '../auth/verify'
import type { BackchannelLogoutConfig, IssuerConfig } from '../config'
import { GatewayError } from '../errors'
import type { RevocationRecord } from './list'
import { sessionRevocation, shortText, subjectCutoff } from './records'
import type { ReplayMemory } from './replay'

/** §2.4: the member of `events` that makes a JWT a logout token. */
export const BACKCHANNEL_LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout'
/** §2.4: the explicit type logout tokens should carry. */
export const LOGOUT_TOKEN_TYPE = 'logout+jwt'
/**
 * Oldest logout token accepted (by `iat`), in seconds. IdPs send at logout time; a longer window
 * only widens the one in which a captured token could be replayed to another isolate.
 */
export const MAX_LOGOUT_TOKEN_AGE_S = 600

export interface LogoutOutcome {
  readonly iss: string
  readonly jti: string
  /** Until when the jti must be remembered: after that the token is too old anyway. */
  readonly rememberUntilMs: number
  readonly records: readonly RevocationRecord[]
}

/** Our own checks' text is safe to show the IdP: it names a rule, never a claim's value. */
function bad(detail: string): GatewayError {
  return new GatewayError('bad_claims', detail, detail)
}

function logoutProfile(cfg: IssuerConfig): JwtProfile {
  const bcl = cfg.backchannelLogout!
  return {
    // §2.6 step 3: aud as for ID Tokens, against the RP client ids the IdP logs out.
    audience: { audiences: bcl.clientIds, clientIds: null },
    // `JWT` too unless required: §2.4 makes the explicit type a SHOULD, and not every IdP sends it.
    types: bcl.requireTyp ? [LOGOUT_TOKEN_TYPE] : [LOGOUT_TOKEN_TYPE, 'JWT'],
    typeOptional: !bcl.requireTyp,
    // §2.4: iat and jti are required; exp is optional (jose checks it when present).
    requiredClaims: ['iat', 'jti', 'events'],
    maxTokenAgeS: MAX_LOGOUT_TOKEN_AGE_S,
  }
}

/**
 * `issuers` are those with back-channel logout configured: a token from any other issuer is
 * refused (bad_issuer) before any key is fetched. Throws GatewayError; returns what to revoke.
 */
export async function validateLogoutToken(
  token: string,
  issuers: readonly Issuer[],
  deps: KeyDeps,
  seen: ReplayMemory,
): Promise<LogoutOutcome> {
  const { issuer, claims } = await verifyJwt(token, issuers, deps, logoutProfile)
  const cfg = issuer.config
  const bcl = cfg.backchannelLogout as BackchannelLogoutConfig
  const nowMs = deps.now()

  // §2.6 step 4: the logout event, with a JSON object as its value.
  const events = claims.events
  const event =
    typeof events === 'object' && events !== null && !Array.isArray(events)
      ? (events as Record<string, unknown>)[BACKCHANNEL_LOGOUT_EVENT]
      : undefined
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    throw bad('events has no back-channel logout event object')
  }
  // §2.6 step 5: sub, sid or both.
  const { sub, sid } = subjectOf(claims)
  // §2.6 step 6: a nonce would make this an ID Token, which must never log anyone out.
  if (claims.nonce !== undefined) throw bad('nonce is present')
  const jti = claims.jti
  if (!shortText(jti)) throw bad('jti is not a short string')
  // §2.6 step 7 (optional there, required here): the same logout token twice is a replay.
  if (seen.has(cfg.issuer, jti, nowMs)) throw bad('jti was seen before (replay)')
  const iat = claims.iat as number

  const source = 'backchannel-logout'
  const records: RevocationRecord[] = []
  if (sid !== undefined) {
    records.push(await sessionRevocation(cfg.issuer, sid, bcl.sessionRevocationS, nowMs, source))
  }
  if (sub !== undefined && (sid === undefined || bcl.revokeSubject === 'always')) {
    // At or before the logout token's iat: a session started after the logout is not touched.
    records.push(await subjectCutoff(cfg.issuer, sub, Math.floor(iat), nowMs, source))
  }
  const rememberUntilMs = (iat + MAX_LOGOUT_TOKEN_AGE_S + cfg.clockSkewS) * 1000
  return { iss: cfg.issuer, jti, rememberUntilMs, records }
}

function subjectOf(claims: JWTPayload): { sub?: string; sid?: string } {
  const { sub, sid } = claims as { sub?: unknown; sid?: unknown }
  if (sub === undefined && sid === undefined) throw bad('neither sub nor sid is present')
  if (sub !== undefined && !shortText(sub)) throw bad('sub is not a short string')
  if (sid !== undefined && !shortText(sid)) throw bad('sid is not a short string')
  return { sub: sub as string | undefined, sid: sid as string | undefined }
}
