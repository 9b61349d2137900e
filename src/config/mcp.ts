/**
 * A route's `mcp` table: MCP resource-server mode (RFC 9728 metadata, RFC 8707 audience,
 * per-operation scopes). Pure. No I/O. Errors name the field: `GATEWAY.routes[1].mcp.resource`.
 */
import { ConfigError, type IssuerConfig, type McpConfig, type RouteConfig } from './model'
import {
  httpsIdentifier,
  isLoopback,
  list,
  object,
  only,
  scopeList,
  text,
  type Obj,
} from './fields'

const MCP_FIELDS = [
  'resource',
  'authorizationServers',
  'scopesSupported',
  'methodScopes',
  'toolScopes',
]

type RouteBase = Pick<
  RouteConfig,
  'name' | 'host' | 'pathPrefix' | 'auth' | 'issuers' | 'scopes' | 'sources' | 'identity'
>

/** `{ "tools/call" = ["a"] }`: a name -> scope-token list table, as a Map (names are data). */
function scopeTable(o: Obj, key: string, path: string): Map<string, readonly string[]> {
  const table = new Map<string, readonly string[]>()
  if (o[key] === undefined) return table
  const t = object(o[key], path)
  for (const name of Object.keys(t)) {
    // Own keys only, read as data: a method called `__proto__` is just a name.
    const scopes = scopeList(t, name, `${path}.${name}`)
    if (scopes === undefined) throw new ConfigError(`${path}.${name}`, 'needs at least one scope')
    table.set(name, scopes)
  }
  return table
}

function union(...lists: (readonly string[])[]): string[] {
  return [...new Set(lists.flat())]
}

function within(prefix: string, path: string): boolean {
  return prefix === '/' || path === prefix || path.startsWith(`${prefix}/`)
}

/** The route's resource identifier, or null when the route has no host to derive one from. */
function resourceOf(o: Obj, path: string, route: RouteBase): string | null {
  const given = text(o, 'resource', `${path}.resource`)
  const suffix = route.pathPrefix === '/' ? '' : route.pathPrefix
  if (given === undefined) {
    if (route.host === null) return null
    // A public resource is https; plain http names only a loopback development server.
    const scheme = isLoopback(route.host.replace(/:\d+$/, '')) ? 'http' : 'https'
    return `${scheme}://${route.host}${suffix}`
  }
  const url = httpsIdentifier(`${path}.resource`, given)
  // A resource the route does not serve would send clients somewhere else: a config mistake.
  if (route.host !== null && url.host !== route.host) {
    throw new ConfigError(`${path}.resource`, `must be on the route's host ${route.host}`)
  }
  if (!within(route.pathPrefix, url.pathname === '/' ? '/' : url.pathname.replace(/\/$/, ''))) {
    throw new ConfigError(`${path}.resource`, `must be under the route's path ${route.pathPrefix}`)
  }
  return given
}

export function mcpOf(
  raw: unknown,
  path: string,
  route: RouteBase,
  issuers: readonly IssuerConfig[],
): McpConfig | null {
  if (raw === undefined || raw === false) return null
  const o = raw === true ? {} : object(raw, path)
  only(o, path, MCP_FIELDS)
  const at = (k: string) => `${route.name}.${k}`
  // MCP clients act on the 401 challenge; an anonymous pass would never show them one.
  if (route.auth !== 'required') {
    throw new ConfigError(at('auth'), 'must be "required" on an MCP route')
  }
  // MCP authorization: tokens travel in the Authorization header, never in the query string.
  if (route.sources.some((s) => s.kind !== 'header')) {
    throw new ConfigError(at('tokenSources'), 'must be ["header"] on an MCP route')
  }
  // MCP forbids token passthrough: the server behind the gateway never sees the client's token.
  if (route.identity.keepAuthorization) {
    throw new ConfigError(at('identity.keepAuthorization'), 'must be false on an MCP route')
  }

  const resource = resourceOf(o, path, route)
  if (resource !== null) {
    const audiences = issuers
      .filter((i) => route.issuers.includes(i.issuer))
      .flatMap((i) => i.audiences)
    // The token must name this resource in `aud`, and the issuer's own audience check runs first.
    if (!audiences.includes(resource)) {
      throw new ConfigError(
        o.resource === undefined ? path : `${path}.resource`,
        `"${resource}" is not in the audiences of the route's issuers`,
      )
    }
  }

  const servers = list(o, 'authorizationServers', `${path}.authorizationServers`)
  for (const server of servers ?? route.issuers) {
    try {
      httpsIdentifier(`${path}.authorizationServers`, server)
    } catch (err) {
      if (servers !== undefined || !(err instanceof ConfigError)) throw err
      throw new ConfigError(
        `${path}.authorizationServers`,
        `is required: the route's issuer "${server}" is not an https issuer URL clients can discover`,
      )
    }
  }

  const methodScopes = scopeTable(o, 'methodScopes', `${path}.methodScopes`)
  const toolScopes = scopeTable(o, 'toolScopes', `${path}.toolScopes`)
  const strictestScopes = union(route.scopes, ...methodScopes.values(), ...toolScopes.values())
  return {
    resource,
    authorizationServers: servers ?? [...route.issuers],
    scopesSupported: scopeList(o, 'scopesSupported', `${path}.scopesSupported`) ?? strictestScopes,
    methodScopes,
    toolScopes,
    strictestScopes,
  }
}
