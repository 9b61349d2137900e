/**
 * The gateway worker. One request, one pass:
 *   config -> credentials -> verify (keys) -> forward (strip + identity) -> origin
 * Any failure becomes a GatewayError, which errors.ts turns into an RFC 6750 response.
 */
import { Hono } from 'hono'
import { bearerToken } from './credentials'
import { GatewayError, toResponse } from './errors'
import { forward, originHeaders } from './forward'
import { gatewayFor, type Gateway } from './gateway'
import { identityHeaders } from './identity'
import { requestLog, type RequestLog } from './log'
import { verifyToken } from './verify'

export interface Env {
  readonly [name: string]: unknown
}

type App = { Bindings: Env; Variables: { gateway: Gateway; log: RequestLog } }

const app = new Hono<App>()

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
  log.end(c.res.status)
})

app.all('*', async (c) => {
  const { config, issuers } = c.var.gateway
  const log = c.var.log
  const route = config.routes[0]!
  const deps = { fetch: globalThis.fetch.bind(globalThis), now: Date.now }

  const token = bearerToken(c.req.header('authorization') ?? null)
  if (token === null) throw new GatewayError('missing_token')

  const authStart = performance.now()
  const identity = await verifyToken(token, issuers, deps)
  log.auth(identity, performance.now() - authStart)

  const headers = originHeaders(c.req.raw.headers, identityHeaders(identity), route)
  headers.set('x-request-id', log.requestId)
  return forward(c.req.raw, route, headers, deps)
})

app.onError((err, c) => {
  const gatewayErr =
    err instanceof GatewayError ? err : new GatewayError('internal_error', String(err))
  c.var.log?.fail(gatewayErr)
  const realm = c.var.gateway?.config.realm ?? 'gateway'
  return toResponse(gatewayErr, { realm })
})

export default app
