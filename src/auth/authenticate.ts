/**
 * Folder auth/: who is calling. Owns finding the credential (credentials.ts), verifying a JWT
 * (verify.ts) against the issuer's keys (keys.ts, the JWKS store), introspecting an opaque token
 * (introspection.ts, its cache beside it), the per-isolate token caches (token-cache.ts) and this
 * orchestration. Must not import proxy/ or admin/.
 *
 * Who is calling: a found token -> verified or introspected identity (through the per-isolate
 * caches) -> not revoked. I/O only through the key stores, the introspection endpoints and the
 * revocation list. Route policy is policy.ts's job.
 */
import type { RouteConfig } from '../config'
import type { FoundToken } from './credentials'
import { GatewayError } from '../errors'
import type { Gateway } from '../gateway'
import type { KeyDeps } from './keys'
import type { RequestLog } from '../observability/log'
import type { Background } from '../revocation/list'
import { verifyToken, type Identity, type Issuer } from './verify'

/** CORS preflights carry no credentials by design (Fetch standard); routes opt in to pass them. */
export function isPreflight(request: Request): boolean {
  return (
    request.method === 'OPTIONS' &&
    request.headers.has('origin') &&
    request.headers.has('access-control-request-method')
  )
}

/** Does this request on this route go through verification at all? */
export function needsAuth(route: RouteConfig, request: Request): boolean {
  return route.auth !== 'public' && !(route.cors && isPreflight(request))
}

/** The verified identity, or null for an anonymous request the route allows. */
export async function authenticate(
  found: FoundToken | null,
  route: RouteConfig,
  gateway: Gateway,
  log: RequestLog,
  deps: KeyDeps,
  background?: Background,
): Promise<Identity | null> {
  if (found === null) {
    if (route.auth === 'required') throw new GatewayError('missing_token')
    return null
  }
  // Optional routes verify a token that is present, and refuse it if it fails: a failed token is
  // never forwarded as if anonymous.
  if (found.opaque) return introspected(found.token, route, gateway, log, deps, background)
  const issuers = gateway.routeIssuers.get(route) ?? []
  return verified(found.token, issuers, gateway, log, deps, background)
}

/** An opaque token, judged by the introspection endpoint of the route's opaque issuer. */
async function introspected(
  token: string,
  route: RouteConfig,
  gateway: Gateway,
  log: RequestLog,
  deps: KeyDeps,
  background?: Background,
): Promise<Identity> {
  const started = performance.now()
  // credentials.ts lets opaque tokens through only on routes that have an introspector.
  const introspector = gateway.routeIntrospector.get(route)
  if (!introspector) throw new GatewayError('malformed_token', 'opaque token on this route')
  const { identity, cached } = await introspector.identity(token, deps)
  return accepted(identity, cached, started, gateway, log, deps.now(), background)
}

export async function verified(
  token: string,
  issuers: readonly Issuer[],
  gateway: Gateway,
  log: RequestLog,
  deps: KeyDeps,
  background?: Background,
): Promise<Identity> {
  const started = performance.now()
  const now = deps.now()
  let identity = gateway.verified.get(token, now)
  const cached = identity !== undefined
  if (!identity) {
    const refused = gateway.rejected.get(token, issuers, now)
    // Same answer as before, no signature work; the log says it was remembered.
    if (refused) throw refused
    try {
      identity = await verifyToken(token, issuers, deps)
    } catch (err) {
      if (err instanceof GatewayError) gateway.rejected.set(token, issuers, err, now)
      throw err
    }
    gateway.verified.set(token, identity, now)
  }
  return accepted(identity, cached, started, gateway, log, now, background)
}

/** What every identity goes through after its token checked out, JWT or opaque, cached or not. */
async function accepted(
  identity: Identity,
  cached: boolean,
  started: number,
  gateway: Gateway,
  log: RequestLog,
  now: number,
  background?: Background,
): Promise<Identity> {
  // Checked on cache hits too: a revocation applies to tokens already verified.
  const pending = gateway.revocations?.check(identity, now, background)
  if (pending) await pending
  log.auth(identity, performance.now() - started, cached)
  return identity
}
