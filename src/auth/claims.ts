/**
 * Readers of standard claims that more than one stage needs: the granted scopes and the audience
 * rule of an issuer. Pure. No I/O. Throws only GatewayError.
 */
import type { AudienceRule } from '../config'
import { GatewayError } from '../errors'

/** Add each scope of a space-delimited string (RFC 6749 §3.3) or an array of strings. */
function addScopes(granted: Set<string>, value: unknown): void {
  if (typeof value === 'string') {
    for (const s of value.split(' ')) if (s) granted.add(s)
  } else if (Array.isArray(value)) {
    for (const s of value) if (typeof s === 'string' && s) granted.add(s)
  }
}

/**
 * Granted scopes: `scope` (RFC 8693 §4.2, RFC 9068 §2.2.3) and `scp` (Entra: a space-delimited
 * string; Okta: an array), each read in either shape.
 */
export function grantedScopes(claims: Record<string, unknown>): Set<string> {
  const granted = new Set<string>()
  addScopes(granted, claims.scope)
  addScopes(granted, claims.scp)
  return granted
}

/**
 * The issuer's audience rule on verified claims. `aud` present: one of its values must be an
 * accepted audience. `aud` absent: the client-id claim must be an accepted client (the rule AWS's
 * aws-jwt-verify applies to Cognito access tokens), and only when the issuer configured clients.
 * Audience checking is never skipped: a token with neither passes nothing.
 */
export function checkAudience(claims: Record<string, unknown>, rule: AudienceRule): void {
  const aud = claims.aud
  if (aud !== undefined) {
    const values = Array.isArray(aud) ? aud : [aud]
    if (!values.some((v) => typeof v === 'string' && rule.audiences.includes(v))) {
      throw new GatewayError('bad_audience', 'aud is not an accepted audience')
    }
    return
  }
  const clients = rule.clientIds
  if (clients === null) throw new GatewayError('missing_audience', 'aud is missing')
  const client = claims[clients.claim]
  if (typeof client !== 'string' || !clients.values.includes(client)) {
    throw new GatewayError(
      'missing_audience',
      `aud is missing and ${clients.claim} is not accepted`,
    )
  }
}
