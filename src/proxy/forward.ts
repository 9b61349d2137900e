/**
 * Folder proxy/: what happens after authentication: route matching (routes.ts), policy
 * (policy.ts), identity headers (identity-headers.ts), the signed assertion (assertion.ts) and
 * forwarding (this file). Must not import revocation/, admin/, observability/ or gateway.ts.
 *
 * Send the authenticated request to the origin and stream the answer back.
 * I/O through the `fetch` it is given. Bodies are streamed both ways, never buffered.
 */
import type { RouteConfig } from '../config'
import type { FoundToken } from '../auth/credentials'
import { GatewayError, messageOf } from '../errors'
import { isIdentityHeader } from './identity-headers'

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

/**
 * The path as the URL parser resolved it (dot segments, including `%2e` spellings, removed, so a
 * request can never climb above the origin's base path) and the query exactly as sent.
 */
export function pathAndQuery(url: string, parsed: URL = new URL(url)): string {
  const hash = url.indexOf('#')
  const raw = hash === -1 ? url : url.slice(0, hash)
  const q = raw.indexOf('?')
  return parsed.pathname + (q === -1 ? '' : raw.slice(q))
}

/** Where the token came from, so that copy can be kept from the origin. */
export type TokenOrigin = {
  readonly kind: 'cookie' | 'query' | 'header'
  readonly name?: string
} | null

/**
 * The headers the origin receives: the client's, minus hop-by-hop, minus Authorization (unless the
 * route keeps it), minus anything identity-shaped, plus ours. Stripping comes first, so nothing a
 * client sends can survive as an identity header.
 */
export function originHeaders(
  incoming: Headers,
  identity: Iterable<readonly [string, string]>,
  route: Pick<RouteConfig, 'identity'>,
  dropped: ReadonlySet<string>,
  token: TokenOrigin = null,
): Headers {
  const out = new Headers(incoming)
  const cfg = route.identity
  let drop = dropped
  const connection = incoming.get('connection')
  if (connection !== null) {
    // Headers the client's Connection header names are hop-by-hop for this request only.
    const named = new Set(drop)
    for (const name of connection.split(',')) named.add(dashed(name.trim().toLowerCase()))
    drop = named
  }
  const prefix = cfg.prefix.replaceAll('_', '-')
  for (const name of [...out.keys()]) {
    // Compared with `_` read as `-`: an origin behind CGI/WSGI-style mapping reads `x_org` and
    // `x-org` as one header, so a client's `x_org` would sit next to the gateway's `x-org`.
    if (drop.has(dashed(name)) || isIdentityHeader(name, prefix)) out.delete(name)
  }
  if (token?.kind === 'cookie' && !cfg.keepAuthorization) {
    const kept = (incoming.get('cookie') ?? '')
      .split(';')
      .filter((pair) => pair.split('=')[0]!.trim() !== token.name && pair.trim() !== '')
      .map((pair) => pair.trim())
    if (kept.length > 0) out.set('cookie', kept.join('; '))
    else out.delete('cookie')
  }
  for (const [name, value] of identity) out.set(name, value)
  return out
}

/** A lower-case header name with `_` read as `-`, the form the dropped-header sets hold. */
function dashed(name: string): string {
  return name.includes('_') ? name.replaceAll('_', '-') : name
}

/**
 * The header names never forwarded on a route, whatever the request: fixed per route, so the
 * gateway builds each set once. `reserved` holds the names only the gateway may set. Names are
 * held with `_` read as `-` (see originHeaders).
 */
export function droppedHeaders(
  cfg: RouteConfig['identity'],
  reserved: ReadonlySet<string>,
): ReadonlySet<string> {
  const names = new Set(HOP_BY_HOP)
  // The DPoP proof travels with the token it proves: kept or dropped together.
  if (!cfg.keepAuthorization) names.add('authorization').add('dpop')
  // Headers any route sets from claims, and assertion headers, are ours alone on every route:
  // a copy captured from one route must not be replayed to an origin through another.
  for (const name of reserved) names.add(dashed(name))
  // The gateway sets the request id itself; a client's `x_request_id` must not shadow it.
  names.add('x-request-id')
  // The Host header names the gateway; the origin's comes from its URL.
  names.add('host')
  return names
}

/** The query with every `name=` parameter removed and every other byte kept as sent. */
export function withoutQueryParam(pathQuery: string, name: string): string {
  const q = pathQuery.indexOf('?')
  if (q === -1) return pathQuery
  const kept = pathQuery
    .slice(q + 1)
    .split('&')
    .filter((part) => {
      const key = part.split('=')[0]!
      let decoded = key
      try {
        decoded = decodeURIComponent(key.replaceAll('+', ' '))
      } catch {
        // An undecodable name is not the token's parameter.
      }
      return decoded !== name
    })
  return kept.length > 0 ? `${pathQuery.slice(0, q)}?${kept.join('&')}` : pathQuery.slice(0, q)
}

/** Fetch with a URL and init, not a Request: one object fewer for the runtime to build and copy. */
export type OriginFetch = (url: string, init: RequestInit) => Promise<Response>

export interface ForwardTarget {
  readonly fetch: OriginFetch
  readonly url: string
}

/** Why the origin request was aborted (the AbortSignal's reason). */
const TIMED_OUT = 'origin timeout'
const UPLOAD_FAILED = 'request body failed mid-upload'

/**
 * The client's body for the origin request. A body of unknown length (no Content-Length: chunked,
 * or HTTP/2 without it) is pumped through here, because workerd ends a chunked upload cleanly when
 * its source fails: a client gone mid-upload would hand the origin a truncated body that looks
 * complete. Aborting the origin request instead makes the origin see the upload fail. With a
 * Content-Length the runtime already fails the origin request when fewer bytes arrive.
 */
function uploadBody(
  body: ReadableStream | Uint8Array | null,
  request: Request,
  ac: AbortController,
): ReadableStream | Uint8Array | null {
  if (body === null || body instanceof Uint8Array || request.headers.has('content-length')) {
    return body
  }
  const reader = body.getReader()
  return new ReadableStream({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>
      try {
        chunk = await reader.read()
      } catch (err) {
        ac.abort(UPLOAD_FAILED)
        controller.error(err)
        return
      }
      if (chunk.done) controller.close()
      else controller.enqueue(chunk.value)
    },
    cancel: (reason) => reader.cancel(reason),
  })
}

/** `body` replaces the client's stream when a stage has read its start (peek.ts): same bytes. */
export async function forward(
  request: Request,
  route: RouteConfig,
  headers: Headers,
  target: ForwardTarget,
  body: ReadableStream | Uint8Array | null = request.body,
): Promise<Response> {
  const ac = new AbortController()
  // The timeout covers the wait for the origin's headers only: a long download must not be cut.
  const timer = setTimeout(() => ac.abort(TIMED_OUT), route.originTimeoutMs)
  try {
    const hasBody = request.method !== 'GET' && request.method !== 'HEAD'
    return await target.fetch(target.url, {
      method: request.method,
      headers,
      body: hasBody ? uploadBody(body, request, ac) : null,
      // The client, not the gateway, decides whether to follow the origin's redirects.
      redirect: 'manual',
      signal: ac.signal,
    })
  } catch (err) {
    // The detail (which may name internal hosts) goes to the log only.
    if (ac.signal.reason === TIMED_OUT) {
      throw new GatewayError('origin_timeout', `no response in ${route.originTimeoutMs} ms`)
    }
    if (ac.signal.reason === UPLOAD_FAILED)
      throw new GatewayError('origin_unreachable', UPLOAD_FAILED)
    throw new GatewayError('origin_unreachable', messageOf(err))
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Where the request goes: the route's origin URL (or service binding) plus the path and query
 * as sent, less the token's query parameter when the token came in the query.
 */
export function originTarget(
  route: RouteConfig,
  request: Request,
  url: URL,
  found: FoundToken | null,
  env: Record<string, unknown>,
  fetcher: OriginFetch,
): ForwardTarget {
  let pathQuery = pathAndQuery(request.url, url)
  if (found?.source.kind === 'query' && !route.identity.keepAuthorization) {
    pathQuery = withoutQueryParam(pathQuery, found.source.name)
  }
  if (route.origin.kind === 'url') return { url: route.origin.url + pathQuery, fetch: fetcher }
  const service = env[route.origin.binding] as Fetcher
  return { url: url.origin + pathQuery, fetch: (u, init) => service.fetch(u, init) }
}
