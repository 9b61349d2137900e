/**
 * Cross-site request forgery check for tokens taken from a cookie: a browser attaches the cookie
 * to a request another site makes it send, so a state-changing one must show it came from this
 * site (Fetch Metadata `Sec-Fetch-Site`) or from an origin the route allows (`Origin`).
 * Pure. No I/O. Throws only GatewayError. Header and query tokens need no such check: a browser
 * never adds them on its own.
 */
import type { CsrfConfig } from '../config'
import { GatewayError } from '../errors'

/** Methods that must not change state (RFC 9110 §9.2.1), so a forged one does no harm. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
/** Sec-Fetch-Site values that mean this site (or the user, typing or bookmarking) made it. */
const OWN_SITE = new Set(['same-origin', 'same-site', 'none'])

export function checkCsrf(request: Request, csrf: CsrfConfig | null): void {
  if (csrf === null || SAFE_METHODS.has(request.method)) return
  const site = request.headers.get('sec-fetch-site')
  if (site !== null && OWN_SITE.has(site.toLowerCase())) return
  const origin = request.headers.get('origin')
  if (origin !== null && csrf.allowedOrigins.includes(origin.toLowerCase())) return
  // Neither header vouches for it: a browser too old to send either, a non-browser client (which
  // should send the token in Authorization), or another site. Refused before any key work.
  throw new GatewayError(
    'cross_site_request',
    site === null
      ? 'cookie token, no Sec-Fetch-Site, Origin not allowed'
      : `Sec-Fetch-Site ${site}`,
  )
}
