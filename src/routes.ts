/**
 * Pick the route for a request: host, then longest path prefix, then method.
 * Pure. No I/O. Matching runs on a normalised path so that no spelling of a path (dot segments,
 * percent-encoded characters, encoded slashes) can borrow another route's rules.
 */
import type { RouteConfig } from './config'
import { GatewayError } from './errors'

const UNRESERVED = /%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g

/**
 * The path routes are matched on, from the URL parser's pathname (dot segments, including their
 * %2e spellings, already resolved). Percent-encoded unreserved characters are decoded (RFC 3986
 * §6.2.2: `/%61dmin` is `/admin`), and encoded `/` and `\` count as separators, as an origin that
 * decodes them would see them. A dot segment that appears only then (`/public/..%2Fadmin`) is
 * refused: no reading of it is safe.
 */
export function matchPath(pathname: string): string {
  const path = pathname
    .replace(UNRESERVED, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    .replace(/%2f|%5c|\\/gi, '/')
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw new GatewayError('malformed_path', 'dot segment hidden behind an encoded separator')
  }
  return path
}

function prefixMatches(prefix: string, path: string): boolean {
  return prefix === '/' || path === prefix || path.startsWith(`${prefix}/`)
}

/** The most specific route for this request, or null (the gateway answers 404). */
export function matchRoute(
  routes: readonly RouteConfig[],
  host: string,
  path: string,
  method: string,
): RouteConfig | null {
  let best: RouteConfig | null = null
  for (const r of routes) {
    if (r.host !== null && r.host !== host.toLowerCase()) continue
    if (r.methods !== null && !r.methods.includes(method)) continue
    if (!prefixMatches(r.pathPrefix, path)) continue
    if (
      best === null ||
      r.pathPrefix.length > best.pathPrefix.length ||
      // Same prefix: a route for this host beats a route for any host.
      (r.pathPrefix.length === best.pathPrefix.length && best.host === null && r.host !== null) ||
      // Same prefix and host: one listing the method beats any-method, whichever is written first.
      (r.pathPrefix.length === best.pathPrefix.length &&
        (best.host === null) === (r.host === null) &&
        best.methods === null &&
        r.methods !== null)
    ) {
      best = r
    }
  }
  return best
}
