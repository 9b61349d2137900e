/**
 * Pick the route for a request: host, then longest path prefix, then method.
 * Pure. No I/O. Matching runs on a normalised path so that no spelling of a path (dot segments,
 * percent-encoded characters, encoded slashes) can borrow another route's rules.
 */
import type { RouteConfig } from '../config'
import { GatewayError } from '../errors'

const UNRESERVED = /%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g

/**
 * The path routes are matched on, from the URL parser's pathname (dot segments, including their
 * %2e spellings, already resolved). Percent-encoded unreserved characters are decoded (RFC 3986
 * §6.2.2: `/%61dmin` is `/admin`), and encoded `/` and `\` count as separators, as an origin that
 * decodes them would see them; `;` path parameters are dropped, as servlet containers drop them.
 * A dot segment that appears only then (`/public/..%2Fadmin`, `/public/..;/admin`) is refused: no
 * reading of it is safe.
 */
export function matchPath(pathname: string): string {
  // The URL parser has removed dot segments and reads `\` as `/`: with no escape and no `;`,
  // there is nothing left to normalise.
  if (!pathname.includes('%') && !pathname.includes(';')) return pathname
  const path = pathname
    .replace(UNRESERVED, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    .replace(/%2f|%5c|\\/gi, '/')
    // Servlet containers drop `;params` from each segment (`/admin;x/users` is `/admin/users`).
    .replace(/;[^/]*/g, '')
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw new GatewayError('malformed_path', 'dot segment hidden behind an encoded separator')
  }
  return path
}

function prefixMatches(prefix: string, path: string): boolean {
  return prefix === '/' || path === prefix || path.startsWith(`${prefix}/`)
}

/** How specific a matching route is: host first (as virtual hosts), then prefix, then method. */
function rank(r: RouteConfig): [number, number, number] {
  return [r.host === null ? 0 : 1, r.pathPrefix.length, r.methods === null ? 0 : 1]
}

function beats(a: RouteConfig, b: RouteConfig): boolean {
  const [x, y] = [rank(a), rank(b)]
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! > y[i]!
  return false
}

/**
 * The most specific route for this request, or null (the gateway answers 404). Routes for this
 * host are chosen over any-host routes whatever their prefixes, as virtual hosts are; then the
 * longest prefix; then a route listing the method over an any-method one. The order routes are
 * written in never matters.
 */
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
    if (best === null || beats(r, best)) best = r
  }
  return best
}
