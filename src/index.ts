/**
 * The gateway worker. One request, one pass:
 *   config -> route -> credentials -> verify (keys) -> revocation -> [mcp] -> policy -> forward
 * The gateway's own paths (admin, MCP resource metadata) are answered here, never forwarded.
 * Any failure becomes a GatewayError, which errors.ts turns into an RFC 6750 response.
 */
import { Hono } from 'hono'
import { handleAdmin, isAdminPath } from './admin'
import { authenticate, needsAuth, verified } from './auth/authenticate'
import { authorizationToken, findToken } from './auth/credentials'
import { checkCsrf } from './auth/csrf'
import { bindSender, senderPolicy, type SenderAnswer } from './auth/sender'
import type { Identity } from './auth/identity'
import { GatewayError, toResponse, type ChallengeOptions, type Challenges } from './errors'
import { forward, originHeaders, originTarget } from './proxy/forward'
import { gatewayFor, type Gateway } from './gateway'
import { bindingHeaders, identityHeaders } from './proxy/identity-headers'
import { requestLog, type MetricsSink, type RequestLog } from './observability/log'
import { checkPolicy } from './proxy/policy'
import type { Background } from './revocation/list'
import { matchPath, matchRoute } from './proxy/routes'
import {
  challengeFor,
  isMcpRoute,
  isMetadataPath,
  metadataResponse,
  metadataRoute,
  senderMetadata,
} from './proxy/mcp'
import { checkMcpRequest } from './proxy/mcp-request'

export interface Env {
  readonly [name: string]: unknown
}

// The optional DPoP replay store: bind it as DPOP_REPLAY (docs/dpop-mtls.md#replay).
export { DpopReplayStore } from './auth/dpop-replay'

/** What the answer needs to know from the stages, for a refusal as for a success. */
interface Answer extends SenderAnswer {
  challenges?: Challenges
  /** On an MCP route, what every challenge names (RFC 9728 §5.1); built only for a refusal. */
  mcp?: () => ChallengeOptions
}

const app = new Hono<{ Bindings: Env }>()

// Arrows keep `this` right: workerd throws "Illegal invocation" for a detached fetch.
const io = {
  fetch: (input: RequestInfo | URL, init?: RequestInit) => fetch(input, init),
  now: () => Date.now(),
}
const fetchOrigin = (url: string, init: RequestInit) => fetch(url, init)
const HOP_BY_HOP_RESPONSE = ['connection', 'keep-alive', 'proxy-connection', 'trailer', 'upgrade']

// One handler, no middleware chain: every request pays for the stages below and nothing else.
app.all('*', async (c) => {
  const request = c.req.raw
  const built = gatewayFor(c.env)
  const log = requestLog(
    request,
    metricsOf(c.env),
    !built.ok || built.gateway.config.logRequests === 'all',
  )
  if (!built.ok) {
    // Fail closed and loudly: a misconfigured gateway answers every request with what is wrong.
    const err = new GatewayError('config_invalid', built.error.message)
    const description = `Gateway configuration error: ${built.error.message}`
    return finish(toResponse(err, { realm: 'gateway', description }), log, err)
  }
  const gateway = built.gateway
  const answer: Answer = {}
  try {
    const ctx = c.executionCtx
    const background = (work: Promise<unknown>) => ctx.waitUntil(work)
    const res = await pipeline(request, gateway, log, c.env, background, answer)
    if (answer.dpopNonce !== undefined) res.headers.set('dpop-nonce', answer.dpopNonce)
    return finish(res, log, undefined, gateway)
  } catch (thrown) {
    const err =
      thrown instanceof GatewayError ? thrown : new GatewayError('internal_error', String(thrown))
    const res = toResponse(err, {
      realm: gateway.config.realm,
      challenges: answer.challenges,
      ...answer.mcp?.(),
    })
    // RFC 9449 §8: the nonce to use comes with the refusal that asks for it.
    if (answer.dpopNonce !== undefined && res.status === 401) {
      res.headers.set('dpop-nonce', answer.dpopNonce)
    }
    return finish(res, log, err, gateway)
  }
})

/** Did the client use the DPoP scheme? Read before parsing, so even a malformed one is answered in kind. */
function usesDpop(request: Request): boolean {
  const authorization = request.headers.get('authorization')
  return authorization !== null && /^dpop(?: |$)/i.test(authorization)
}

async function pipeline(
  request: Request,
  gateway: Gateway,
  log: RequestLog,
  env: Env,
  background: Background,
  answer: Answer,
): Promise<Response> {
  const url = new URL(request.url)
  const dpop = usesDpop(request)

  // The gateway's own paths never reach the origin, whatever their method or credentials.
  if (isAdminPath(url.pathname, gateway.config.admin.prefix)) {
    if (dpop) {
      const dpopAlgs = gateway.config.dpop.algorithms.join(' ')
      answer.challenges = { bearer: true, dpopAlgs, usedDpop: true }
    }
    return admin(request, gateway, log, answer)
  }
  const meta = isMetadataPath(url.pathname) ? metadataRoute(gateway.config.routes, url) : null
  if (meta !== null) {
    log.metadata(meta.route.name)
    const jwks = gateway.config.assertion
      ? `${new URL(meta.resource).origin}${gateway.config.admin.prefix}/jwks.json`
      : null
    const sender = senderMetadata(meta.route, gateway.config)
    return metadataResponse(request.method, meta.route, meta.resource, jwks, sender)
  }

  const route = matchRoute(gateway.config.routes, url.host, matchPath(url.pathname), request.method)
  if (route === null) throw new GatewayError('no_route')
  log.route(route.name)
  const challenges = gateway.challenges.get(route)!
  answer.challenges = dpop ? challenges.dpop : challenges.bearer
  if (isMcpRoute(route)) answer.mcp = () => challengeFor(route, url)

  const verify = needsAuth(route, request)
  const opaque = gateway.routeIntrospector.has(route)
  const found = verify
    ? findToken(request, url, route.sources, opaque, gateway.config.maxTokenBytes)
    : null
  if (found?.source.kind === 'cookie') checkCsrf(request, route.csrf)
  const identity = verify ? await authenticate(found, route, gateway, log, io, background) : null
  const binding =
    identity && found
      ? await bindSender(
          request,
          url,
          found,
          identity,
          senderPolicy(route, issuerConfig(gateway, identity)),
          gateway.sender,
          io.now(),
          answer,
        )
      : null
  // MCP routes: a token for this resource only, with the scopes this operation needs.
  const body =
    identity && isMcpRoute(route)
      ? await checkMcpRequest(identity, route, request, url)
      : request.body
  if (identity) checkPolicy(identity, route)

  const headers = originHeaders(
    request.headers,
    identity ? identityHeaders(identity, route.identity) : [],
    route,
    gateway.droppedHeaders.get(route)!,
    found?.source ?? null,
  )
  if (binding) {
    log.binding(binding.kind)
    for (const [name, value] of bindingHeaders(binding, route.identity)) headers.set(name, value)
  }
  if (identity && route.assertion && gateway.assertion) {
    const assertion = await gateway.assertion.sign(
      identity,
      route,
      route.assertion,
      io.now(),
      binding,
    )
    headers.set(route.assertion.header, assertion)
  }
  headers.set('x-request-id', log.requestId)
  const started = performance.now()
  const target = originTarget(route, request, url, found, env, fetchOrigin)
  const res = await forward(request, route, headers, target, body)
  log.origin(performance.now() - started)
  // The origin's response headers are immutable; a new Response over the same stream is not.
  const out = new Response(res.body, res)
  // Hop-by-hop headers describe the origin's connection, not ours to the client.
  for (const name of HOP_BY_HOP_RESPONSE) out.headers.delete(name)
  return out
}

/** Every answer leaves through here: request id, optional Server-Timing, the log line. */
function finish(res: Response, log: RequestLog, err?: GatewayError, gateway?: Gateway): Response {
  if (err) log.fail(err)
  res.headers.set('x-request-id', log.requestId)
  const authMs = log.authMs()
  if (gateway?.config.serverTiming && authMs !== undefined) {
    res.headers.append('server-timing', `auth;dur=${authMs}`)
  }
  log.end(res.status)
  return res
}

/** The optional Analytics Engine binding METRICS; anything else bound under that name is ignored. */
function metricsOf(env: Env): MetricsSink | undefined {
  const m = env.METRICS as Partial<MetricsSink> | undefined
  return typeof m?.writeDataPoint === 'function' ? (m as MetricsSink) : undefined
}

function issuerConfig(gateway: Gateway, identity: Identity) {
  return gateway.issuers.find((i) => i.config.issuer === identity.issuer)?.config
}

function admin(
  request: Request,
  gateway: Gateway,
  log: RequestLog,
  answer: Answer,
): Promise<Response> {
  log.admin()
  return handleAdmin(request, {
    config: gateway.config,
    issuers: gateway.issuers,
    introspectors: gateway.introspectors,
    revocations: gateway.revocations,
    assertion: gateway.config.assertion,
    // Self-service logout authenticates like any Authorization-header route, across all issuers,
    // and a DPoP-bound token logs out with its proof, like anywhere else.
    authenticate: async (r) => {
      const found = authorizationToken(
        r.headers.get('authorization'),
        false,
        gateway.config.maxTokenBytes,
      )
      if (found === null) throw new GatewayError('missing_token')
      const identity = await verified(found.token, gateway.issuers, gateway, log, io)
      const policy = senderPolicy(null, issuerConfig(gateway, identity))
      await bindSender(r, new URL(r.url), found, identity, policy, gateway.sender, io.now(), answer)
      return identity
    },
    nowMs: io.now(),
    receivers: {
      logoutIssuers: gateway.logoutIssuers,
      transmitters: gateway.transmitters,
      replays: gateway.replays,
      keyDeps: io,
    },
  })
}

export default app
// The revocation log's Durable Object class, for deployments that bind REVOCATION_LOG to it.
export { RevocationLog } from './revocation/log-object'
