/**
 * The gateway worker. One request, one pass:
 *   config -> admin paths? -> credentials -> verify (keys) -> revocation -> forward -> origin
 * Any failure becomes a GatewayError, which errors.ts turns into an RFC 6750 response.
 */
import { Hono } from 'hono'
import { handleAdmin, isAdminPath } from './admin'
import { bearerToken } from './credentials'
import { GatewayError, toResponse } from './errors'
import { forward, originHeaders } from './forward'
import { gatewayFor, type Gateway } from './gateway'
import { identityHeaders } from './identity'
import { requestLog, type RequestLog } from './log'
import { verifyToken, type Identity } from './verify'

export interface Env {
  readonly [name: string]: unknown
}

type App = { Bindings: Env; Variables: { gateway: Gateway; log: RequestLog } }

const app = new Hono<App>()

// An arrow keeps `this` right: workerd throws "Illegal invocation" for a detached fetch.
const io = { fetch: (input: RequestInfo | URL, init?: RequestInit) => fetch(input, init), now: Date.now }

app.use(async (c, next) => {
  const log = requestLog(c.req.raw)
  c.set('log', log)
  const built = gatewayFor(c.env)
  if (!built.ok) {
    // Fail closed and loudly: a misconfigured gateway answers every request with what is wrong.
    log.fail(new GatewayError('config_invalid', built.error.message))
    c.res = toResponse(new GatewayError('config_invalid'), {
      realm: 'gateway',
      description: `Gateway configuration error: ${built.error.message}`,
    })
    log.end(c.res.status)
    return
  }
  c.set('gateway', built.gateway)
  await next()
  // The origin's response headers are immutable; a new Response over the same stream is not.
  const res = new Response(c.res.body, c.res)
  res.headers.set('x-request-id', log.requestId)
  const authMs = log.authMs()
  if (built.gateway.config.serverTiming && authMs !== undefined) {
    res.headers.append('server-timing', `auth;dur=${authMs}`)
  }
  // Cleared first, or Hono would copy the old response's headers over the new one's.
  c.res = undefined
  c.res = res
  log.end(res.status)
})

/** Credentials -> signature and claims -> revocation. Throws GatewayError; returns who it is. */
async function authenticate(request: Request, gateway: Gateway, log: RequestLog): Promise<Identity> {
  const token = bearerToken(request.headers.get('authorization'))
  if (token === null) throw new GatewayError('missing_token')
  const started = performance.now()
  const now = Date.now()
  let identity = gateway.verified.get(token, now)
  const cached = identity !== undefined
  if (!identity) {
    identity = await verifyToken(token, gateway.issuers, io)
    gateway.verified.set(token, identity, now)
  }
  // Checked on cache hits too: a revocation applies to tokens already verified.
  const pending = gateway.revocations?.check(identity, now)
  if (pending) await pending
  log.auth(identity, performance.now() - started, cached)
  return identity
}

app.all('*', async (c) => {
  const gateway = c.var.gateway
  const { config } = gateway
  const request = c.req.raw

  // The gateway's own paths never reach the origin, whatever their method or credentials.
  if (isAdminPath(new URL(request.url).pathname, config.admin.prefix)) {
    c.var.log.admin()
    return handleAdmin(request, {
      config,
      issuers: gateway.issuers,
      revocations: gateway.revocations,
      authenticate: (r) => authenticate(r, gateway, c.var.log),
      nowMs: Date.now(),
    })
  }

  const route = config.routes[0]!
  const identity = await authenticate(request, gateway, c.var.log)
  const headers = originHeaders(request.headers, identityHeaders(identity), route)
  headers.set('x-request-id', c.var.log.requestId)
  return forward(request, route, headers, io)
})

app.onError((err, c) => {
  const gatewayErr =
    err instanceof GatewayError ? err : new GatewayError('internal_error', String(err))
  c.var.log?.fail(gatewayErr)
  const realm = c.var.gateway?.config.realm ?? 'gateway'
  return toResponse(gatewayErr, { realm })
})

export default app
