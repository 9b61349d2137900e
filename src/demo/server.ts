/**
 * The demo's issuer and origin, one Node HTTP server on loopback (127.0.0.1:8788).
 * Issuer: an ES256 key pair made in memory at start (gone when the process ends), its JWKS, an OIDC
 * discovery document, and POST /token, which mints a token the demo gateway accepts.
 * Origin: /origin/... echoes what the gateway forwarded (method, path, identity headers) as JSON.
 * Demo only: anyone who can reach /token gets a token, so it listens on loopback and refuses
 * requests not addressed to it by a loopback name.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import {
  DEFAULT_TOKEN_TTL_S,
  DEMO_AUDIENCE,
  DEMO_BASE_URL,
  DEMO_HOST,
  DEMO_ISSUER,
  DEMO_JWKS_PATH,
  DEMO_ORIGIN_PATH,
  DEMO_PORT,
  DEMO_TOKEN_PATH,
  MAX_TOKEN_TTL_S,
} from './constants.ts'

const ALG = 'ES256'
/** Token requests are a few hundred bytes; anything bigger is not one. */
const MAX_TOKEN_REQUEST_BYTES = 4096
/** The gateway caches the JWKS for this long (it clamps max-age to at least 60 s). */
const JWKS_MAX_AGE_S = 300

export interface TokenRequest {
  sub?: string
  scope?: string
  aud?: string
  ttl_s?: number
}

export interface DemoServer {
  readonly url: string
  readonly kid: string
  close(): Promise<void>
}

class HttpError extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.status = status
  }
}

function json(res: ServerResponse, status: number, body: unknown, headers = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers })
  res.end(JSON.stringify(body, null, 2) + '\n')
}

async function readBody(req: IncomingMessage, cap: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > cap) throw new HttpError(413, `request body over ${cap} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** The origin echoes the body's size, not the body: it may be large. */
async function countBytes(req: IncomingMessage): Promise<number> {
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) size += chunk.length
  return size
}

/** A loopback client that named this server as the host: not a web page reached by DNS rebinding. */
function fromLoopback(req: IncomingMessage): boolean {
  const peer = req.socket.remoteAddress ?? ''
  const loopbackPeer = peer === '::1' || /^(::ffff:)?127\./.test(peer)
  const hosts = [`${DEMO_HOST}:${DEMO_PORT}`, `localhost:${DEMO_PORT}`]
  return loopbackPeer && hosts.includes(req.headers.host ?? '')
}

function tokenRequest(body: Buffer): Required<TokenRequest> {
  let raw: unknown
  try {
    raw = body.length === 0 ? {} : JSON.parse(body.toString('utf8'))
  } catch {
    throw new HttpError(400, 'body must be JSON')
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new HttpError(400, 'body must be a JSON object')
  }
  const r = raw as Record<string, unknown>
  const str = (name: string, dflt: string): string => {
    const v = r[name] ?? dflt
    if (typeof v !== 'string' || v === '' || v.length > 256) {
      throw new HttpError(400, `${name} must be a string of 1 to 256 characters`)
    }
    return v
  }
  const ttl = r.ttl_s ?? DEFAULT_TOKEN_TTL_S
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_S) {
    throw new HttpError(400, `ttl_s must be a whole number from 1 to ${MAX_TOKEN_TTL_S}`)
  }
  return {
    sub: str('sub', 'alice'),
    scope: str('scope', 'read'),
    aud: str('aud', DEMO_AUDIENCE),
    ttl_s: ttl,
  }
}

/** The X-Auth-Claims header is base64url JSON; decoded here so the echo is readable. */
function decodeClaims(header: string | undefined): unknown {
  if (header === undefined) return null
  try {
    return JSON.parse(Buffer.from(header, 'base64url').toString('utf8'))
  } catch {
    return null
  }
}

export async function startDemoServer(): Promise<DemoServer> {
  const { privateKey, publicKey } = await generateKeyPair(ALG)
  const publicJwk: JWK = await exportJWK(publicKey)
  const kid = await calculateJwkThumbprint(publicJwk)
  const jwks = { keys: [{ ...publicJwk, kid, alg: ALG, use: 'sig' }] }

  async function mint(req: Required<TokenRequest>): Promise<string> {
    return new SignJWT({ scope: req.scope })
      .setProtectedHeader({ alg: ALG, kid, typ: 'at+jwt' })
      .setIssuer(DEMO_ISSUER)
      .setAudience(req.aud)
      .setSubject(req.sub)
      .setIssuedAt()
      .setExpirationTime(`${req.ttl_s}s`)
      .setJti(randomUUID())
      .sign(privateKey)
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/'
    const path = url.split('?')[0]!

    if (path === DEMO_JWKS_PATH && req.method === 'GET') {
      return json(res, 200, jwks, { 'cache-control': `public, max-age=${JWKS_MAX_AGE_S}` })
    }
    if (path === '/.well-known/openid-configuration' && req.method === 'GET') {
      return json(res, 200, {
        issuer: DEMO_ISSUER,
        jwks_uri: DEMO_BASE_URL + DEMO_JWKS_PATH,
        token_endpoint: DEMO_BASE_URL + DEMO_TOKEN_PATH,
      })
    }
    if (path === DEMO_TOKEN_PATH) {
      if (req.method !== 'POST') throw new HttpError(405, 'use POST')
      if (!fromLoopback(req))
        throw new HttpError(403, 'tokens are minted for loopback clients only')
      // A JSON content type makes a cross-site browser request need a CORS preflight, never answered.
      if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
        throw new HttpError(415, 'content-type must be application/json')
      }
      const t = tokenRequest(await readBody(req, MAX_TOKEN_REQUEST_BYTES))
      const token = await mint(t)
      return json(
        res,
        200,
        { access_token: token, token_type: 'Bearer', expires_in: t.ttl_s },
        { 'cache-control': 'no-store' },
      )
    }
    if (path === DEMO_ORIGIN_PATH || path.startsWith(`${DEMO_ORIGIN_PATH}/`)) {
      const bodyBytes = await countBytes(req)
      const identity = Object.fromEntries(
        Object.entries(req.headers).filter(([name]) => /^x[-_]auth[-_]/.test(name)),
      )
      return json(res, 200, {
        origin: 'demo',
        method: req.method,
        path: url,
        identityHeaders: identity,
        claims: decodeClaims(req.headers['x-auth-claims'] as string | undefined),
        requestId: req.headers['x-request-id'] ?? null,
        authorizationReceived: req.headers.authorization !== undefined,
        bodyBytes,
      })
    }
    throw new HttpError(404, 'not found')
  }

  const server: Server = createServer((req, res) => {
    handle(req, res)
      .catch((err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500
        if (!(err instanceof HttpError)) console.error('demo server error:', err)
        if (!res.headersSent)
          json(res, status, { error: err instanceof Error ? err.message : 'error' })
        else res.destroy()
      })
      .finally(() => {
        console.log(`[demo] ${req.method} ${(req.url ?? '/').split('?')[0]} -> ${res.statusCode}`)
      })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(DEMO_PORT, DEMO_HOST, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return {
    url: DEMO_BASE_URL,
    kid,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

if (import.meta.main) {
  // Standalone: `node src/demo/server.ts`, then run `wrangler dev --env demo` yourself.
  const demo = await startDemoServer()
  console.log(`demo issuer and origin on ${demo.url} (kid ${demo.kid})`)
}
