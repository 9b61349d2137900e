/**
 * A real HTTP server on loopback that plays the issuer (JWKS, OIDC discovery) and the origin for
 * the tests running inside workerd. Every test takes its own namespace (`/ns/<id>/...`), configures
 * it over HTTP and reads back what the gateway did to it (fetch counts, origin calls).
 * Node only; started by global-setup.ts.
 */
import { createHash, generateKeyPairSync } from 'node:crypto'
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
  /** Serve this discovery document instead of the default one (which points at this namespace's JWKS). */
  discovery?: unknown
  discoveryStatus?: number
  originStatus?: number
  originDelayMs?: number
  /** Destroy the socket after the origin has sent this many body bytes. */
  originResetAfterBytes?: number
  /** With originResetAfterBytes: send the body chunked (no Content-Length) before the reset. */
  originResetChunked?: boolean
  /**
   * Send the status, headers and a first body chunk, then hold the rest until `POST _release`:
   * a gateway that buffered the response would never hand the test those first bytes.
   */
  originHold?: boolean
  /** Answer with this many pseudo-random bytes in 64 KiB chunks; `x-body-sha256` names their hash. */
  originBodyBytes?: number
  /** Extra response headers from the origin. */
  originHeaders?: Record<string, string | string[]>
}

/** What the origin saw of one request; the workerd tests read these back from `/_calls`. */
export interface OriginCall {
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
  /** Request body bytes the origin has received so far, across calls (`GET _progress`). */
  originBytesSeen: number
  /** Resolves held origin responses (`originHold`). */
  release: () => void
  released: Promise<void>
}

const namespaces = new Map<string, Namespace>()

function ns(id: string): Namespace {
  let n = namespaces.get(id)
  if (!n) {
    let release = () => {}
    const released = new Promise<void>((r) => (release = r))
    n = {
      setup: {},
      jwksFetches: 0,
      discoveryFetches: 0,
      origin: [],
      originBytesSeen: 0,
      release,
      released,
    }
    namespaces.set(id, n)
  }
  return n
}

/** Deterministic, not repeating with any short period, so a dropped or reordered chunk shows. */
function originBytes(length: number): Buffer {
  const b = Buffer.alloc(length)
  for (let i = 0, x = 1; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    b[i] = x >>> 24
  }
  return b
}

function json(res: ServerResponse, status: number, body: unknown, headers = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

async function readBody(
  req: IncomingMessage,
  onChunk: (bytes: number) => void = () => {},
): Promise<{ bytes: number; sha256: string; text: string }> {
  const hash = createHash('sha256')
  let bytes = 0
  const small: Buffer[] = []
  for await (const chunk of req as AsyncIterable<Buffer>) {
    hash.update(chunk)
    bytes += chunk.length
    onChunk(chunk.length)
    if (bytes <= 1 << 20) small.push(chunk)
  }
  return { bytes, sha256: hash.digest('hex'), text: Buffer.concat(small).toString('utf8') }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function handle(req: IncomingMessage, res: ServerResponse, base: string): Promise<void> {
  let url = req.url ?? '/'
  // SSF 1.0 §7.2 puts the well-known path between host and issuer path (as RFC 8414 does).
  const ssf = /^\/\.well-known\/ssf-configuration(\/ns\/[A-Za-z0-9_-]+)$/.exec(url.split('?')[0]!)
  if (ssf) url = `${ssf[1]}/.well-known/ssf-configuration`
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
  // workerd only generates RSA keys in multiples of 128 bits; Node makes the odd sizes tests need.
  const rsa = /^\/_rsa\/(\d{3,4})$/.exec(rest)
  if (rsa) {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: Number(rsa[1]) })
    return json(res, 200, privateKey.export({ format: 'jwk' }))
  }
  if (rest === '/_progress') {
    return json(res, 200, { originBytesSeen: n.originBytesSeen })
  }
  if (rest === '/_release' && req.method === 'POST') {
    n.release()
    return json(res, 200, { ok: true })
  }
  if (rest === '/.well-known/ssf-configuration') {
    n.discoveryFetches++
    // Shared Signals Transmitter Configuration Metadata: the members a push receiver reads.
    const doc = s.discovery ?? {
      spec_version: '1_0',
      issuer: s.issuer ?? `${base}/ns/${id}`,
      jwks_uri: `${base}/ns/${id}/jwks`,
      delivery_methods_supported: ['urn:ietf:rfc:8935'],
    }
    return json(res, s.discoveryStatus ?? 200, doc)
  }
  if (rest === '/.well-known/openid-configuration') {
    n.discoveryFetches++
    // By default the namespace is its own issuer, as a real IdP serving its discovery document is.
    const doc = s.discovery ?? {
      issuer: s.issuer ?? `${base}/ns/${id}`,
      jwks_uri: `${base}/ns/${id}/jwks`,
    }
    return json(res, s.discoveryStatus ?? 200, doc)
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
    const body = await readBody(req, (bytes) => (n.originBytesSeen += bytes))
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
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        ...(s.originResetChunked ? {} : { 'content-length': '100000' }),
      })
      res.write(Buffer.alloc(s.originResetAfterBytes, 97))
      await sleep(20)
      return void req.socket.destroy()
    }
    const headers = { 'x-origin': 'stub', 'set-cookie': 'a=1', ...s.originHeaders }
    if (s.originHold) {
      res.writeHead(s.originStatus ?? 200, { ...headers, 'content-type': 'text/plain' })
      res.write('first\n')
      await n.released
      return void res.end('second\n')
    }
    if (s.originBodyBytes !== undefined) {
      const all = originBytes(s.originBodyBytes)
      res.writeHead(s.originStatus ?? 200, {
        ...headers,
        'content-type': 'application/octet-stream',
        'x-body-sha256': createHash('sha256').update(all).digest('hex'),
      })
      for (let at = 0; at < all.length; at += 65536) {
        if (!res.write(all.subarray(at, at + 65536))) await new Promise((r) => res.once('drain', r))
      }
      return void res.end()
    }
    return json(res, s.originStatus ?? 200, call, headers)
  }
  return json(res, 404, { error: 'unknown stub path' })
}

export async function startStub(): Promise<{ url: string; server: Server }> {
  let base = ''
  // Node's default 16 KiB header limit would answer 431 to the X-Auth-Claims of a large token
  // (MAX_TOKEN_BYTES goes up to 64 KiB): the stub origin accepts what the gateway may send.
  const server = createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
    handle(req, res, base).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: String(err) })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const a = server.address()
  base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`
  return { url: base, server }
}
