/**
 * A loopback RFC 7662 introspection endpoint the tests control, for the workerd tests' fault
 * cases and call counts. Every test takes its own namespace (`/ns/<id>/...`), says over HTTP what
 * the endpoint answers, and reads back every call it received (headers and form body), so tests
 * can check client authentication and that nothing else was sent. Node only; started by
 * introspection-setup.ts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'

export interface IntrospectionSetup {
  /** The answer per token; a token not listed gets `{ "active": false }`. */
  answers?: Record<string, unknown>
  /** Answer every call with this text instead (non-JSON, duplicate members, ...). */
  raw?: string
  status?: number
  delayMs?: number
  /** Answer with a 307 (method and body kept) to this URL. */
  redirect?: string
  /** What `POST /ns/<id>/elsewhere` answers to any token: a redirect target that would say yes. */
  elsewhere?: unknown
  /** Answer with a JSON body padded to this many bytes. */
  padToBytes?: number
  /** Leave Content-Length out (chunked), so only the streamed size shows an oversized body. */
  chunked?: boolean
  /** The discovery document's issuer (default: the namespace's URL). */
  issuer?: string
  /** Serve this discovery document instead of the default one. */
  discovery?: unknown
}

/** One call the endpoint received. */
export interface IntrospectionCall {
  headers: Record<string, string | string[] | undefined>
  /** The form body, decoded. */
  form: Record<string, string>
}

interface Namespace {
  setup: IntrospectionSetup
  calls: IntrospectionCall[]
  discoveryFetches: number
}

const namespaces = new Map<string, Namespace>()

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

async function readText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function handle(req: IncomingMessage, res: ServerResponse, base: string): Promise<void> {
  const m = /^\/ns\/([A-Za-z0-9_-]+)(\/.*)?$/.exec((req.url ?? '/').split('?')[0]!)
  if (!m) return json(res, 404, { error: 'no namespace' })
  const id = m[1]!
  const rest = m[2] ?? '/'
  let n = namespaces.get(id)
  if (!n) namespaces.set(id, (n = { setup: {}, calls: [], discoveryFetches: 0 }))
  const s = n.setup

  if (rest === '/_setup' && req.method === 'POST') {
    n.setup = { ...n.setup, ...(JSON.parse(await readText(req)) as IntrospectionSetup) }
    return json(res, 200, { ok: true })
  }
  if (rest === '/_calls') {
    return json(res, 200, { calls: n.calls, discoveryFetches: n.discoveryFetches })
  }
  if (rest === '/.well-known/openid-configuration') {
    n.discoveryFetches++
    return json(
      res,
      200,
      s.discovery ?? {
        issuer: s.issuer ?? `${base}/ns/${id}`,
        introspection_endpoint: `${base}/ns/${id}/introspect`,
      },
    )
  }
  if (rest === '/introspect' && req.method === 'POST') {
    const form = Object.fromEntries(new URLSearchParams(await readText(req)))
    n.calls.push({ headers: req.headers, form })
    if (s.delayMs) await sleep(s.delayMs)
    if (s.redirect) {
      res.writeHead(307, { location: s.redirect })
      return void res.end()
    }
    let text = s.raw ?? JSON.stringify(s.answers?.[form.token ?? ''] ?? { active: false })
    if (s.padToBytes !== undefined) {
      const answer = JSON.parse(text) as Record<string, unknown>
      answer.padding = 'x'.repeat(Math.max(0, s.padToBytes - text.length))
      text = JSON.stringify(answer)
    }
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (!s.chunked) headers['content-length'] = String(Buffer.byteLength(text))
    res.writeHead(s.status ?? 200, headers)
    return void res.end(text)
  }
  if (rest === '/elsewhere' && req.method === 'POST') {
    await readText(req)
    return json(res, 200, s.elsewhere ?? { active: false })
  }
  return json(res, 404, { error: 'not found' })
}

export async function startIntrospectionStub(): Promise<{ url: string; server: Server }> {
  let base = ''
  const server = createServer((req, res) => {
    handle(req, res, base).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: String(err) })
      else res.destroy()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  base = `http://127.0.0.1:${address.port}`
  return { url: base, server }
}
