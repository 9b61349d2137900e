/**
 * Pick the route for a request: host, then longest path prefix, then method.
 * Pure. No I/O. Matching runs on a normalised path so that no spelling of a path (dot segments,
 * percent-encoded unreserved characters) can borrow another route's rules.
 */
import type { RouteConfig } from './config'
import { GatewayError } from './errors'

const UNRESERVED = /%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g

/**
 * RFC 3986 §6.2.2 normalisation: decode percent-encoded unreserved characters, upper-case the
 * remaining escapes, remove dot segments. Encoded `/` and `\` are refused: an origin that decodes
 * them would see a different path (`/public/..%2Fadmin`) than the one we matched.
 */
export function normalisePath(pathname: string): string {
  if (/%(2f|5c)/i.test(pathname) || pathname.includes('\\')) {
    throw new GatewayError('malformed_path', 'encoded slash or backslash in the path')
  }
  const decoded = pathname
    .replace(UNRESERVED, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
    .replace(/%[0-9a-f]{2}/gi, (e) => e.toUpperCase())
  const out: string[] = []
  for (const segment of decoded.split('/').slice(1)) {
    if (segment === '.') continue
    if (segment === '..') out.pop()
    else out.push(segment)
  }
  const last = decoded.split('/').pop()
  // `/a/b/..` names the directory `/a/`, as a URL parser would resolve it.
  if (last === '.' || last === '..') out.push('')
  return `/${out.join('/')}`
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
      (r.pathPrefix.length === best.pathPrefix.length && best.host === null && r.host !== null)
    ) {
      best = r
    }
  }
  return best
}
