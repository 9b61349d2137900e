/**
 * Send the authenticated request to the origin and stream the answer back.
 * I/O through the `fetch` it is given. Bodies are streamed both ways, never buffered.
 */
import type { RouteConfig } from './config'
import { GatewayError } from './errors'
import { isIdentityHeader } from './identity'

export interface ForwardDeps {
  fetch: typeof fetch
}

/** RFC 9110 §7.6.1 hop-by-hop headers, plus the non-standard ones proxies still see. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]

/** Path and query exactly as the client sent them (no re-encoding by a URL parser). */
export function pathAndQuery(url: string): string {
  const afterScheme = url.indexOf('//') + 2
  const slash = url.indexOf('/', afterScheme)
  const rest = slash === -1 ? '/' : url.slice(slash)
  const hash = rest.indexOf('#')
  return hash === -1 ? rest : rest.slice(0, hash)
}

/**
 * The headers the origin receives: the client's, minus hop-by-hop, minus Authorization (unless the
 * route keeps it), minus anything identity-shaped, plus ours. Stripping comes first, so nothing a
 * client sends can survive as an identity header.
 */
export function originHeaders(
  incoming: Headers,
  identity: Iterable<[string, string]>,
  route: Pick<RouteConfig, 'forwardAuthorization'>,
): Headers {
  const out = new Headers(incoming)
  const connection = incoming.get('connection')
  const drop = new Set(HOP_BY_HOP)
  for (const name of connection?.split(',') ?? []) drop.add(name.trim().toLowerCase())
  if (!route.forwardAuthorization) drop.add('authorization')
  for (const name of [...out.keys()]) {
    if (drop.has(name) || isIdentityHeader(name)) out.delete(name)
  }
  for (const [name, value] of identity) out.set(name, value)
  return out
}

export async function forward(
  request: Request,
  route: RouteConfig,
  headers: Headers,
  deps: ForwardDeps,
): Promise<Response> {
  const target = route.origin + pathAndQuery(request.url)
  const ac = new AbortController()
  // The timeout covers the wait for the origin's headers only: a long download must not be cut.
  const timer = setTimeout(() => ac.abort(), route.originTimeoutMs)
  try {
    const hasBody = request.method !== 'GET' && request.method !== 'HEAD'
    return await deps.fetch(target, {
      method: request.method,
      headers,
      body: hasBody ? request.body : null,
      // The client, not the gateway, decides whether to follow the origin's redirects.
      redirect: 'manual',
      signal: ac.signal,
    })
  } catch (err) {
    // The detail (which may name internal hosts) goes to the log only.
    if (ac.signal.aborted) throw new GatewayError('origin_timeout', `no response in ${route.originTimeoutMs} ms`)
    throw new GatewayError('origin_unreachable', err instanceof Error ? err.message : String(err))
  } finally {
    clearTimeout(timer)
  }
}
