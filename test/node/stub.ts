/**
 * A real HTTP server on loopback that plays the issuer (JWKS, OIDC discovery) and the origin for
 * the tests running inside workerd. Every test takes its own namespace (`/ns/<id>/...`), configures
 * it over HTTP and reads back what the gateway did to it (fetch counts, origin calls).
 * Node only; started by global-setup.ts.
 */
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'

export interface NamespaceSetup {
  /** The JWKS document served, or raw text when `jwksRaw` is set. */
  jwks?: unknown
  jwksRaw?: string
  jwksStatus?: number
  jwksHeaders?: Record<string, string>
  jwksDelayMs?: number
  /** Answer the JWKS request with a redirect to this URL. */
  jwksRedirect?: string
  /** Close the connection instead of answering the JWKS request. */
  jwksRefuse?: boolean
  /** Issuer named in the discovery document. */
  issuer?: string
  originStatus?: number
  originDelayMs?: number
  /** Destroy the socket after the origin has sent this many body bytes. */
  originResetAfterBytes?: number
}

interface OriginCall {
  method: string
  url: string
  headers: Record<string, string | string[] | undefined>
  rawHeaders: string[]
  bodyBytes: number
  bodySha256: string
}

interface Namespace {
  setup: NamespaceSetup
  jwksFetches: number
  discoveryFetches: number
  origin: OriginCall[]
}

const namespaces = new Map<string, Namespace>()

function ns(id: string): Namespace {
  let n = namespaces.get(id)
  if (!n) {
    n = { setup: {}, jwksFetches: 0, discoveryFetches: 0, origin: [] }
    namespaces.set(id, n)
  }
  return n
}

function json(res: ServerResponse, status: number, body: unknown, headers = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

async function readBody(req: IncomingMessage): Promise<{ bytes: number; sha256: string; text: string }> {
  const hash = createHash('sha256')
  let bytes = 0
  const small: Buffer[] = []
  for await (const chunk of req as AsyncIterable<Buffer>) {
    hash.update(chunk)
    bytes += chunk.length
    if (bytes <= 1 << 20) small.push(chunk)
  }
  return { bytes, sha256: hash.digest('hex'), text: Buffer.concat(small).toString('utf8') }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function handle(req: IncomingMessage, res: ServerResponse, base: string): Promise<void> {
  const url = req.url ?? '/'
  const m = /^\/ns\/([A-Za-z0-9_-]+)(\/.*)?$/.exec(url.split('?')[0]!)
  if (!m) return json(res, 404, { error: 'no namespace' })
  const id = m[1]!
  const rest = m[2] ?? '/'
  const n = ns(id)
  const s = n.setup

  if (rest === '/_setup' && req.method === 'POST') {
    n.setup = { ...n.setup, ...(JSON.parse((await readBody(req)).text) as NamespaceSetup) }
    return json(res, 200, { ok: true })
  }
  if (rest === '/_calls') {
    return json(res, 200, {
      jwksFetches: n.jwksFetches,
      discoveryFetches: n.discoveryFetches,
      origin: n.origin,
    })
  }
  if (rest === '/.well-known/openid-configuration') {
    n.discoveryFetches++
    return json(res, 200, { issuer: s.issuer, jwks_uri: `${base}/ns/${id}/jwks` })
  }
  if (rest === '/jwks') {
    n.jwksFetches++
    if (s.jwksDelayMs) await sleep(s.jwksDelayMs)
    if (s.jwksRefuse) return void req.socket.destroy()
    if (s.jwksRedirect) {
      res.writeHead(302, { location: s.jwksRedirect })
      return void res.end()
    }
    res.writeHead(s.jwksStatus ?? 200, { 'content-type': 'application/json', ...s.jwksHeaders })
    return void res.end(s.jwksRaw ?? JSON.stringify(s.jwks ?? { keys: [] }))
  }
  if (rest.startsWith('/origin')) {
    const body = await readBody(req)
    const call: OriginCall = {
      method: req.method ?? '',
      url,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      bodyBytes: body.bytes,
      bodySha256: body.sha256,
    }
    n.origin.push(call)
    if (s.originDelayMs) await sleep(s.originDelayMs)
    if (s.originResetAfterBytes !== undefined) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '100000' })
      res.write(Buffer.alloc(s.originResetAfterBytes, 97))
      await sleep(20)
      return void req.socket.destroy()
    }
    return json(res, s.originStatus ?? 200, call, { 'x-origin': 'stub', 'set-cookie': 'a=1' })
  }
  return json(res, 404, { error: 'unknown stub path' })
}

export async function startStub(): Promise<{ url: string; server: Server }> {
  let base = ''
  const server = createServer((req, res) => {
    handle(req, res, base).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: String(err) })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const a = server.address()
  base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`
  return { url: base, server }
}
