/**
 * MCP resource-server mode: the protected-resource metadata document (RFC 9728), the challenge
 * parameters of a refusal, the audience rule (RFC 8707) and the scopes one JSON-RPC body needs.
 * Pure. No I/O: the body arrives as bytes (mcp-request.ts reads it). Throws only GatewayError.
 */
import {
  isLoopback,
  MCP_METADATA_MAX_AGE_S,
  type GatewayConfig,
  type McpConfig,
  type RouteConfig,
} from '../config'
import { GatewayError, type ChallengeOptions } from '../errors'
import type { Identity } from '../auth/identity'
import { ambiguousJson } from '../auth/verify'
import { grantedScopes } from './policy'

/** RFC 9728 §3: the well-known suffix for protected-resource metadata. */
export const METADATA_PATH = '/.well-known/oauth-protected-resource'

export type McpRoute = RouteConfig & { readonly mcp: McpConfig }

export function isMcpRoute(route: RouteConfig): route is McpRoute {
  return route.mcp !== null
}

/**
 * The resource a request on this route is for. A route without a host derives it from the host
 * the request came to (on Workers, one the account routes here): https, except on loopback.
 */
export function resourceFor(route: McpRoute, url: URL): string {
  if (route.mcp.resource !== null) return route.mcp.resource
  const scheme = isLoopback(url.hostname) ? url.protocol : 'https:'
  return `${scheme}//${url.host}${route.pathPrefix === '/' ? '' : route.pathPrefix}`
}

/** The resource's path as the metadata URL carries it: no trailing slash, '' for the root. */
function resourcePath(resource: string): string {
  const path = new URL(resource).pathname
  return path === '/' ? '' : path.replace(/\/$/, '')
}

/** RFC 9728 §3.1: the well-known segment goes between the host and the resource's path. */
export function metadataUrl(resource: string): string {
  return `${new URL(resource).origin}${METADATA_PATH}${resourcePath(resource)}`
}

export function isMetadataPath(pathname: string): boolean {
  return pathname === METADATA_PATH || pathname.startsWith(`${METADATA_PATH}/`)
}

/**
 * The MCP route whose metadata this path asks for, or null (the request is routed as any other).
 * The path-aware form names the resource's path; the bare form, which clients try when they have
 * no `resource_metadata` URL, answers for the host's only MCP route (or its root resource).
 */
export function metadataRoute(
  routes: readonly RouteConfig[],
  url: URL,
): { route: McpRoute; resource: string } | null {
  const rest = url.pathname.slice(METADATA_PATH.length)
  const host = url.host.toLowerCase()
  const here = routes
    .filter(isMcpRoute)
    .filter((r) => r.host === null || r.host === host)
    .map((route) => ({ route, resource: resourceFor(route, url) }))
  const exact = here.filter((m) => resourcePath(m.resource) === rest)
  // Two routes for one resource path differ in host only; the host-specific one wins, as in routing.
  exact.sort((a, b) => Number(b.route.host !== null) - Number(a.route.host !== null))
  if (exact.length > 0) return exact[0]!
  if (rest === '' && here.length === 1) return here[0]!
  return null
}

/** What the metadata says about sender-constrained tokens on a route (RFC 9728 §2). */
export interface SenderMetadata {
  /** Proof algorithms the gateway verifies (RFC 9449 §5.1). */
  readonly dpopAlgorithms: readonly string[]
  /** Every token must be DPoP-bound: the route, or every issuer it trusts, says `binding = dpop`. */
  readonly dpopRequired: boolean
  /** Certificate-bound tokens (RFC 8705) can be checked here: some binding asks for mTLS, or a trusted proxy passes certificates. */
  readonly certificateBound: boolean
}

export function senderMetadata(route: RouteConfig, config: GatewayConfig): SenderMetadata {
  const trusted = config.issuers.filter((i) => route.issuers.includes(i.issuer))
  const modes = [route.binding, ...trusted.map((i) => i.binding)]
  return {
    dpopAlgorithms: config.dpop.algorithms,
    dpopRequired:
      route.binding === 'dpop' ||
      (trusted.length > 0 && trusted.every((i) => i.binding === 'dpop')),
    certificateBound:
      config.mtls.trustClientCertHeader || modes.some((m) => m === 'mtls' || m === 'any'),
  }
}

/** The RFC 9728 §2 document for one resource. */
export function metadataDocument(
  route: McpRoute,
  resource: string,
  assertionJwksUri: string | null,
  sender: SenderMetadata,
): Record<string, unknown> {
  const mcp = route.mcp
  return {
    resource,
    authorization_servers: mcp.authorizationServers,
    ...(mcp.scopesSupported.length > 0 ? { scopes_supported: mcp.scopesSupported } : {}),
    // MCP routes take tokens from the Authorization header only (config refuses other sources).
    bearer_methods_supported: ['header'],
    // The keys the gateway signs this route's identity assertions with.
    ...(route.assertion !== null && assertionJwksUri !== null
      ? { jwks_uri: assertionJwksUri }
      : {}),
    // Every route verifies DPoP proofs (binding `none` accepts Bearer and DPoP alike).
    dpop_signing_alg_values_supported: sender.dpopAlgorithms,
    dpop_bound_access_tokens_required: sender.dpopRequired,
    tls_client_certificate_bound_access_tokens: sender.certificateBound,
  }
}

/** What a refusal on this route says besides its error: where the metadata is, what to ask for. */
export function challengeFor(route: McpRoute, url: URL): ChallengeOptions {
  return {
    resourceMetadata: metadataUrl(resourceFor(route, url)),
    // RFC 6750 §3 `scope`: a client without a token learns what the route needs before it asks.
    ...(route.scopes.length > 0 ? { scope: route.scopes.join(' ') } : {}),
    exposeChallenge: route.cors,
  }
}

/** RFC 8707: a token is for this resource only if its `aud` names it exactly. */
export function checkResource(identity: Identity, resource: string): void {
  const aud = identity.claims.aud
  const audiences = Array.isArray(aud) ? aud : [aud]
  if (!audiences.includes(resource)) {
    throw new GatewayError('bad_audience', 'aud does not name this MCP resource')
  }
}

/** Does this route need to read request bodies to know what they require? */
export function readsBodies(mcp: McpConfig): boolean {
  return mcp.methodScopes.size > 0 || mcp.toolScopes.size > 0
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * The scopes one JSON-RPC message needs beyond the route's own, or null when it cannot be told
 * (the caller then requires the strictest set).
 */
function messageScopes(mcp: McpConfig, message: unknown): readonly string[] | null {
  if (!isObject(message)) return null
  // A response or error the client returns to the server runs nothing on the server.
  if (!Object.hasOwn(message, 'method')) return []
  const method = message.method
  if (typeof method !== 'string') return null
  const scopes = mcp.methodScopes.get(method) ?? []
  if (method !== 'tools/call') return scopes
  const params = message.params
  const name = isObject(params) ? params.name : undefined
  if (typeof name !== 'string') return null
  return [...scopes, ...(mcp.toolScopes.get(name) ?? [])]
}

/**
 * Every scope a POST body needs: the route's, plus those its method and tool name require.
 * `body` is null when it was longer than the bound. Anything the gateway cannot read exactly as
 * the MCP server will (too long, not UTF-8, not JSON, duplicate member names, an odd message)
 * needs the strictest set: a client must not dodge a tool's scope by padding or garbling a body.
 */
export function bodyScopes(route: McpRoute, body: Uint8Array | null): readonly string[] {
  const mcp = route.mcp
  if (body === null) return mcp.strictestScopes
  let value: unknown
  try {
    const text = strictUtf8.decode(body)
    value = JSON.parse(text)
    // Two `method` members would be read as the last by one parser and the first by another.
    if (ambiguousJson(text) !== null) return mcp.strictestScopes
  } catch {
    return mcp.strictestScopes
  }
  const messages = Array.isArray(value) ? value : [value]
  if (messages.length === 0) return mcp.strictestScopes
  const needed = new Set(route.scopes)
  for (const message of messages) {
    const scopes = messageScopes(mcp, message)
    if (scopes === null) return mcp.strictestScopes
    for (const s of scopes) needed.add(s)
  }
  return [...needed]
}

/** Refuses with 403 `insufficient_scope` naming every scope this request needs (RFC 6750 §3.1). */
export function checkScopes(identity: Identity, needed: readonly string[]): void {
  const granted = grantedScopes(identity.claims as Record<string, unknown>)
  if (!needed.every((s) => granted.has(s))) {
    throw new GatewayError('insufficient_scope', 'missing scope', undefined, needed.join(' '))
  }
}

/** Browsers may cache a metadata preflight this long (seconds). */
const METADATA_PREFLIGHT_MAX_AGE_S = 86_400

/** The metadata endpoint's answer: public, cacheable, readable cross-origin, never forwarded. */
export function metadataResponse(
  method: string,
  route: McpRoute,
  resource: string,
  assertionJwksUri: string | null,
  sender: SenderMetadata,
): Response {
  // Public metadata: any page may read it, and nothing here depends on the caller's credentials.
  const cors = { 'access-control-allow-origin': '*' }
  if (method === 'OPTIONS') {
    return new Response(null, {
      status: 204,
      headers: {
        ...cors,
        'access-control-allow-methods': 'GET, HEAD, OPTIONS',
        // The MCP SDK sends MCP-Protocol-Version with its metadata requests.
        'access-control-allow-headers': '*',
        'access-control-max-age': String(METADATA_PREFLIGHT_MAX_AGE_S),
      },
    })
  }
  if (method !== 'GET' && method !== 'HEAD') throw new GatewayError('method_not_allowed')
  const body = JSON.stringify(metadataDocument(route, resource, assertionJwksUri, sender))
  return new Response(method === 'HEAD' ? null : body, {
    headers: {
      ...cors,
      'content-type': 'application/json; charset=utf-8',
      'cache-control': `public, max-age=${MCP_METADATA_MAX_AGE_S}`,
    },
  })
}
