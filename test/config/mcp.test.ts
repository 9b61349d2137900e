/**
 * A route's `mcp` table: defaults, and every configuration error naming its field. The parse is
 * pure; one case goes through the real worker to show a bad MCP route fails closed like any other.
 */
import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { parseConfig, type McpConfig, type RouteConfig } from '../../src/config'
import { expectRefusal, send, structuredEnv, Stub } from '../helpers'

const ISS = 'https://login.example.com/'
const RESOURCE = 'https://mcp.example.com/mcp'
const JWKS = 'https://login.example.com/jwks'

function gateway(route: Record<string, unknown>, issuer: Record<string, unknown> = {}) {
  return {
    issuers: [{ issuer: ISS, jwksUrl: JWKS, audiences: [RESOURCE], ...issuer }],
    routes: [{ path: '/mcp', origin: 'https://origin.internal', ...route }],
  }
}

function parsed(route: Record<string, unknown>, issuer?: Record<string, unknown>): RouteConfig {
  const result = parseConfig({ ...env, GATEWAY: gateway(route, issuer) })
  if (!result.ok) throw result.error
  return result.config.routes[0]!
}

function error(route: Record<string, unknown>, issuer?: Record<string, unknown>): string {
  const result = parseConfig({ ...env, GATEWAY: gateway(route, issuer) })
  if (result.ok) throw new Error('expected a configuration error')
  return result.error.message
}

describe('mcp route defaults', () => {
  it('a host and `mcp = {}`: the resource is https://<host><path>, the route issuers serve', () => {
    const route = parsed({ host: 'mcp.example.com', mcp: {} })
    expect(route.mcp).toEqual({
      resource: RESOURCE,
      authorizationServers: [ISS],
      scopesSupported: [],
      methodScopes: new Map(),
      toolScopes: new Map(),
      strictestScopes: [],
    } satisfies McpConfig)
    expect(parsed({ host: 'mcp.example.com', mcp: true }).mcp).toEqual(route.mcp)
    expect(parsed({ host: 'mcp.example.com', mcp: false }).mcp).toBeNull()
    expect(parsed({}).mcp).toBeNull()
  })

  it('no host: the resource is derived per request (null here)', () => {
    expect(parsed({ mcp: {} }).mcp?.resource).toBeNull()
  })

  it('a loopback host derives an http resource; the path "/" adds nothing', () => {
    const route = parsed(
      { host: '127.0.0.1:8787', path: '/', mcp: {} },
      { audiences: ['http://127.0.0.1:8787'] },
    )
    expect(route.mcp?.resource).toBe('http://127.0.0.1:8787')
  })

  it('scopes: scopes_supported defaults to every scope the route and its operations name', () => {
    const route = parsed({
      scopes: ['mcp'],
      mcp: {
        resource: RESOURCE,
        methodScopes: { 'tools/call': ['tools:call'], 'resources/read': 'res:read, mcp' },
        // As a JSON or TOML table gives it: `__proto__` an own key, not the prototype.
        toolScopes: JSON.parse('{"delete_repo": ["repo:admin"], "__proto__": ["proto"]}'),
      },
    })
    const mcp = route.mcp!
    expect([...mcp.methodScopes]).toEqual([
      ['tools/call', ['tools:call']],
      ['resources/read', ['res:read', 'mcp']],
    ])
    // A tool named like an object's prototype is only a name.
    expect([...mcp.toolScopes]).toEqual([
      ['delete_repo', ['repo:admin']],
      ['__proto__', ['proto']],
    ])
    expect(mcp.strictestScopes).toEqual(['mcp', 'tools:call', 'res:read', 'repo:admin', 'proto'])
    expect(mcp.scopesSupported).toEqual(mcp.strictestScopes)
    const given = parsed({ mcp: { resource: RESOURCE, scopesSupported: ['a', 'b'] } })
    expect(given.mcp?.scopesSupported).toEqual(['a', 'b'])
  })

  it('authorizationServers are kept exactly as written', () => {
    const servers = ['https://as.example.com', 'https://login.example.com/tenant/v2.0']
    const route = parsed({ mcp: { resource: RESOURCE, authorizationServers: servers } })
    expect(route.mcp?.authorizationServers).toEqual(servers)
  })
})

describe('mcp route errors name the field', () => {
  const P = 'GATEWAY.routes[0]'
  const cases: [string, Record<string, unknown>, string, Record<string, unknown>?][] = [
    ['unknown field', { mcp: { resources: RESOURCE } }, `${P}.mcp.resources: is not a known field`],
    [
      'not a table',
      { mcp: 'yes' },
      `${P}.mcp: must be a table or a JSON object (the JSON does not parse)`,
    ],
    [
      'plain http resource',
      { mcp: { resource: 'http://mcp.example.com/mcp' } },
      `${P}.mcp.resource: must be an absolute https URL (http only for localhost) (got "http://mcp.example.com/mcp")`,
    ],
    [
      'relative resource',
      { mcp: { resource: '/mcp' } },
      `${P}.mcp.resource: must be an absolute URL (got "/mcp")`,
    ],
    [
      'resource with a fragment',
      { mcp: { resource: `${RESOURCE}#x` } },
      `${P}.mcp.resource: must not contain credentials, a query or a fragment`,
    ],
    [
      'resource with a query',
      { mcp: { resource: `${RESOURCE}?v=1` } },
      `${P}.mcp.resource: must not contain credentials, a query or a fragment`,
    ],
    [
      'resource not in normal form',
      { mcp: { resource: 'https://MCP.example.com:443/mcp' } },
      `${P}.mcp.resource: must be written in normal form ("https://mcp.example.com/mcp")`,
    ],
    [
      'resource on another host',
      { host: 'other.example.com', mcp: { resource: RESOURCE } },
      `${P}.mcp.resource: must be on the route's host other.example.com`,
    ],
    [
      'resource outside the route path',
      { mcp: { resource: 'https://mcp.example.com/mcpx' } },
      `${P}.mcp.resource: must be under the route's path /mcp`,
    ],
    [
      'resource no issuer accepts',
      { mcp: { resource: 'https://mcp.example.com/mcp/v2' } },
      `${P}.mcp.resource: "https://mcp.example.com/mcp/v2" is not in the audiences of the route's issuers`,
    ],
    [
      'derived resource no issuer accepts',
      { host: 'mcp2.example.com', mcp: {} },
      `${P}.mcp: "https://mcp2.example.com/mcp" is not in the audiences of the route's issuers`,
    ],
    [
      'optional auth',
      { auth: 'optional', mcp: { resource: RESOURCE } },
      `${P}.auth: must be "required" on an MCP route`,
    ],
    [
      'token in the query',
      { tokenSources: ['header', 'query:access_token'], mcp: { resource: RESOURCE } },
      `${P}.tokenSources: must be ["header"] on an MCP route`,
    ],
    [
      'token passthrough',
      { identity: { keepAuthorization: true }, mcp: { resource: RESOURCE } },
      `${P}.identity.keepAuthorization: must be false on an MCP route`,
    ],
    [
      'http authorization server',
      { mcp: { resource: RESOURCE, authorizationServers: ['http://as.example.com'] } },
      `${P}.mcp.authorizationServers: must be an absolute https URL (http only for localhost) (got "http://as.example.com")`,
    ],
    [
      'issuer that is not a URL, no authorizationServers',
      { mcp: {} },
      `${P}.mcp.authorizationServers: is required: the route's issuer "login" is not an https issuer URL clients can discover`,
      { issuer: 'login' },
    ],
    [
      'bad scope token',
      { mcp: { resource: RESOURCE, toolScopes: { t: ['a"b'] } } },
      `${P}.mcp.toolScopes.t: "a\"b" is not a scope token`,
    ],
    [
      'empty scope list',
      { mcp: { resource: RESOURCE, methodScopes: { 'tools/call': [] } } },
      `${P}.mcp.methodScopes.tools/call: must be a non-empty list of non-empty strings`,
    ],
    [
      'bad scopesSupported',
      { mcp: { resource: RESOURCE, scopesSupported: ['a b'] } },
      `${P}.mcp.scopesSupported: "a b" is not a scope token`,
    ],
  ]
  for (const [name, route, message, issuer] of cases) {
    it(name, () => expect(error(route, issuer)).toBe(message))
  }

  it('through the worker: every request is a 500 naming the field', async () => {
    const stub = new Stub()
    const gw = structuredEnv(stub, gateway({ mcp: { resource: 'http://mcp.example.com/mcp' } }))
    for (const path of ['/mcp', '/.well-known/oauth-protected-resource/mcp']) {
      await expectRefusal(await send(gw, `https://mcp.example.com${path}`), 500, null, {
        error: 'server_error',
        error_description: `Gateway configuration error: GATEWAY.routes[0].mcp.resource: must be an absolute https URL (http only for localhost) (got "http://mcp.example.com/mcp")`,
      })
    }
  })
})
