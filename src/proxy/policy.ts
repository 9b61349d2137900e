/**
 * Route requirements on a verified identity: allowed issuers and audiences, scopes, claim rules.
 * Pure. No I/O. Throws GatewayError; returns nothing when the identity may pass.
 */
import type { ClaimRule, RouteConfig } from '../config'
import { GatewayError } from '../errors'
import type { Identity } from '../auth/identity'
import { grantedScopes } from '../auth/claims'

export { grantedScopes }

/** A claim by dotted path (`org.id`); undefined when any step is missing. Own properties only. */
export function claimAt(claims: Record<string, unknown>, path: string): unknown {
  let value: unknown = claims
  for (const step of path.split('.')) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, step)) return undefined
    value = (value as Record<string, unknown>)[step]
  }
  return value
}

function same(a: unknown, b: unknown): boolean {
  // Claims are JSON values: compare primitives directly; objects are never equal to config.
  return a === b
}

function ruleHolds(rule: ClaimRule, claims: Record<string, unknown>): boolean {
  const value = claimAt(claims, rule.claim)
  if ('equals' in rule) return same(value, rule.equals)
  if ('oneOf' in rule) return rule.oneOf.some((v) => same(value, v))
  if (Array.isArray(value)) return value.some((v) => same(v, rule.contains))
  if (typeof value === 'string')
    return typeof rule.contains === 'string' && value.split(' ').includes(rule.contains)
  return false
}

export function checkPolicy(identity: Identity, route: RouteConfig): void {
  // A token of an issuer this route does not trust is invalid here, whatever other routes accept.
  if (!route.issuers.includes(identity.issuer)) {
    throw new GatewayError('bad_issuer', 'issuer not allowed on this route')
  }
  const claims = identity.claims as Record<string, unknown>
  if (route.audiences !== null) {
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
    if (!route.audiences.some((a) => aud.includes(a))) {
      throw new GatewayError('bad_audience', 'audience not allowed on this route')
    }
  }
  if (route.scopes.length > 0) {
    const granted = grantedScopes(claims)
    if (!route.scopes.every((s) => granted.has(s))) {
      throw new GatewayError(
        'insufficient_scope',
        'missing scope',
        undefined,
        route.scopes.join(' '),
      )
    }
  }
  for (const rule of route.claims) {
    if (!ruleHolds(rule, claims))
      throw new GatewayError('claim_mismatch', `claim rule on ${rule.claim}`)
  }
}
