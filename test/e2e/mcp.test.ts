/**
 * End to end with components no one here wrote: the official MCP TypeScript SDK's client (running
 * here in workerd, its `fetch` aimed at the real gateway worker for the MCP host and at loopback for
 * everything else) connects without a token, discovers the protected-resource metadata from the
 * gateway's 401, gets a token from a real authorization server (oidc-provider, client credentials,
 * RFC 8707 resource indicator) and talks to an MCP server built with the SDK (Streamable HTTP, in
 * Node; test/node/mcp-setup.ts) through the gateway.
 */
import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js'
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { OAuthClientMetadata } from '@modelcontextprotocol/sdk/shared/auth.js'
import { fromB64u, send, sleep, structuredEnv, Stub, type GatewayEnv } from '../helpers'

const { MCP_SERVER_URL, MCP_OIDC_URL } = env as unknown as Record<string, string>
// As in test/node/mcp-setup.ts.
const RESOURCE = 'https://mcp.gateway.test/mcp'
const OTHER_RESOURCE = 'https://mcp.gateway.test/other'
const METADATA = 'https://mcp.gateway.test/.well-known/oauth-protected-resource/mcp'
const CLIENT = { id: 'mcp-e2e', secret: 'mcp-e2e-secret-0123456789abcdef0123' }

function gateway(): GatewayEnv {
  return structuredEnv(new Stub(), {
    issuers: [
      {
        issuer: MCP_OIDC_URL,
        audiences: [RESOURCE, OTHER_RESOURCE],
        types: ['at+jwt'],
      },
    ],
    routes: [
      {
        host: 'mcp.gateway.test',
        path: '/mcp',
        origin: MCP_SERVER_URL,
        scopes: ['mcp'],
        mcp: {
          methodScopes: { 'tools/call': ['tools:call'] },
          toolScopes: { write_file: ['files:write'] },
        },
      },
    ],
  })
}

interface Seen {
  method: string
  status: number
  contentType: string | null
  challenge: string | null
}

/** The SDK's fetch: the MCP host goes to the gateway worker, everything else to loopback. */
function routedFetch(gw: GatewayEnv, seen: Seen[], onResponse?: (res: Response) => void) {
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init)
    if (new URL(request.url).host !== 'mcp.gateway.test') return fetch(request)
    const res = await send(gw, request)
    seen.push({
      method: request.method,
      status: res.status,
      contentType: res.headers.get('content-type'),
      challenge: res.headers.get('www-authenticate'),
    })
    onResponse?.(res)
    return res
  }
}

/**
 * Client credentials that ask for the scope the last challenge named. The SDK passes a challenge's
 * scope to interactive authorization only; a client-credentials client acts on it itself.
 */
class SteppingUpClient extends ClientCredentialsProvider {
  scope: string

  constructor(scope: string) {
    super({ clientId: CLIENT.id, clientSecret: CLIENT.secret, expectedIssuer: MCP_OIDC_URL, scope })
    this.scope = scope
  }

  override get clientMetadata(): OAuthClientMetadata {
    return { ...super.clientMetadata, scope: this.scope }
  }

  /** For the transport's fetch: take the scopes a 403 insufficient_scope asks for. */
  observe(res: Response): void {
    const { error, scope } = extractWWWAuthenticateParams(res)
    if (res.status === 403 && error === 'insufficient_scope' && scope) this.scope = scope
  }
}

async function connect(gw: GatewayEnv, provider: SteppingUpClient, seen: Seen[]) {
  const transport = new StreamableHTTPClientTransport(new URL(RESOURCE), {
    authProvider: provider,
    fetch: routedFetch(gw, seen, (res) => provider.observe(res)),
  })
  const client = new Client({ name: 'gateway-e2e-client', version: '1.0.0' })
  await client.connect(transport)
  return client
}

/** The claims of an access token the authorization server issued (decoded, not verified). */
function claimsOf(token: string): Record<string, unknown> & { scope: string } {
  return JSON.parse(fromB64u(token.split('.')[1]!))
}

function text(result: unknown): string {
  return ((result as { content: { text: string }[] }).content[0] ?? { text: '' }).text
}

/** A token straight from the authorization server's token endpoint, for any resource. */
async function tokenFor(resource: string, scope: string): Promise<string> {
  const discovery = (await (
    await fetch(`${MCP_OIDC_URL}/.well-known/openid-configuration`)
  ).json()) as { token_endpoint: string }
  const res = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${btoa(`${CLIENT.id}:${CLIENT.secret}`)}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope }),
  })
  expect(res.status, await res.clone().text()).toBe(200)
  return ((await res.json()) as { access_token: string }).access_token
}

describe('the MCP SDK client through the gateway to an MCP SDK server', () => {
  it('starts without a token, discovers the metadata from the 401, gets a token, lists and calls tools', async () => {
    const gw = gateway()
    const seen: Seen[] = []
    const provider = new SteppingUpClient('mcp tools:call')
    const client = await connect(gw, provider, seen)
    try {
      // The first answer was the gateway's 401 naming the metadata and the route's scope.
      expect(seen[0]).toMatchObject({
        method: 'POST',
        status: 401,
        challenge: `Bearer realm="gateway", scope="mcp", resource_metadata="${METADATA}"`,
      })
      // The client read that document from the gateway, then went to the authorization server.
      expect(seen.some((s) => s.method === 'GET' && s.status === 200)).toBe(true)
      const payload = claimsOf(provider.tokens()!.access_token)
      expect(payload).toMatchObject({ iss: MCP_OIDC_URL, aud: RESOURCE, scope: 'mcp tools:call' })

      const tools = await client.listTools()
      expect(tools.tools.map((t) => t.name).sort()).toEqual([
        'echo',
        'slow',
        'whoami',
        'write_file',
      ])
      expect(text(await client.callTool({ name: 'echo', arguments: { text: 'hi' } }))).toBe('hi')

      // What the MCP server received: identity headers, the MCP headers, never the token.
      const who = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} })))
      expect(who).toMatchObject({ authorization: null, sub: CLIENT.id, iss: MCP_OIDC_URL })
      expect(who.protocolVersion).toMatch(/^\d{4}-\d{2}-\d{2}$/)
      expect(who.session).toMatch(/^[0-9a-f-]{36}$/)
      // The server answered tool calls as SSE streams, which the gateway passed through.
      expect(seen.some((s) => s.status === 200 && s.contentType === 'text/event-stream')).toBe(true)
    } finally {
      await client.close()
    }
  })

  it('streams: a progress event reaches the client while the server still holds the call open', async () => {
    const gw = gateway()
    const client = await connect(gw, new SteppingUpClient('mcp tools:call'), [])
    try {
      const key = crypto.randomUUID()
      const progress: string[] = []
      let finished = false
      const call = client
        .callTool({ name: 'slow', arguments: { key } }, undefined, {
          onprogress: (p) => void progress.push(p.message ?? ''),
        })
        .then((r) => {
          finished = true
          return r
        })
      for (let i = 0; i < 100 && progress.length === 0; i++) await sleep(20)
      // The first SSE event arrived, and the origin has not ended the stream.
      expect(progress).toEqual(['started'])
      expect(finished).toBe(false)
      const released = await fetch(`${MCP_SERVER_URL}/release/${key}`, { method: 'POST' })
      expect(released.status).toBe(200)
      expect(text(await call)).toBe(`done ${key}`)
    } finally {
      await client.close()
    }
  })

  it('a missing scope is a 403 the client acts on: it asks for the named scopes and retries', async () => {
    const gw = gateway()
    const seen: Seen[] = []
    const provider = new SteppingUpClient('mcp tools:call')
    const client = await connect(gw, provider, seen)
    try {
      const result = await client.callTool({ name: 'write_file', arguments: { path: '/a' } })
      expect(text(result)).toBe('wrote /a')
      const refused = seen.find((s) => s.status === 403)
      expect(refused?.challenge).toBe(
        'Bearer realm="gateway", error="insufficient_scope", error_description="The access token does not grant access to this resource", ' +
          `scope="mcp tools:call files:write", resource_metadata="${METADATA}"`,
      )
      const payload = claimsOf(provider.tokens()!.access_token)
      expect(payload.scope.split(' ').sort()).toEqual(['files:write', 'mcp', 'tools:call'])
    } finally {
      await client.close()
    }
  })

  it('a token the same authorization server issued for another resource is refused (401)', async () => {
    const gw = gateway()
    const other = await tokenFor(OTHER_RESOURCE, 'mcp tools:call')
    const seen: Seen[] = []
    // An SDK client holding that token and no way to get another.
    const transport = new StreamableHTTPClientTransport(new URL(RESOURCE), {
      requestInit: { headers: { authorization: `Bearer ${other}` } },
      fetch: routedFetch(gw, seen),
    })
    const client = new Client({ name: 'gateway-e2e-client', version: '1.0.0' })
    await expect(client.connect(transport)).rejects.toMatchObject({ code: 401 })
    expect(seen[0]).toMatchObject({
      status: 401,
      challenge:
        'Bearer realm="gateway", error="invalid_token", error_description="The access token is invalid", ' +
        `scope="mcp", resource_metadata="${METADATA}"`,
    })
    // The same client and scopes, this resource: accepted.
    const mine = await tokenFor(RESOURCE, 'mcp tools:call')
    const ok = await send(gw, RESOURCE, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${mine}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-06-18',
          capabilities: {},
          clientInfo: { name: 'raw', version: '1' },
        },
      }),
    })
    expect(ok.status).toBe(200)
    await ok.body?.cancel()
  })
})
