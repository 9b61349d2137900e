/**
 * globalSetup for the MCP end-to-end suite (test/e2e/mcp.test.ts): an MCP server built with the
 * official TypeScript SDK (Streamable HTTP transport, stateful sessions) and a real authorization
 * server (oidc-provider through test/node/oidc-provider.ts, resource indicators issuing RFC 9068
 * JWT access tokens whose `aud` is the resource). Both on 127.0.0.1, port 0; handed to workerd as
 * MCP_SERVER_URL and MCP_OIDC_URL.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { TestProject } from 'vitest/node'
import * as z from 'zod'
import { jwtAccessTokens, startOidcProvider } from './oidc-provider'

declare module 'vitest' {
  export interface ProvidedContext {
    mcpServerUrl: string
    mcpOidcUrl: string
  }
}

/** What test/e2e/mcp.test.ts restates: the MCP resource the gateway guards, and a second one. */
export const MCP_RESOURCE = 'https://mcp.gateway.test/mcp'
export const MCP_OTHER_RESOURCE = 'https://mcp.gateway.test/other'
export const MCP_CLIENT = { id: 'mcp-e2e', secret: 'mcp-e2e-secret-0123456789abcdef0123' }

/** Held `slow` tool calls, released by `POST /release/<key>`. */
const held = new Map<string, () => void>()

function heldUntilReleased(key: string): Promise<void> {
  return new Promise((resolve) => held.set(key, resolve))
}

function mcpServer(): McpServer {
  const server = new McpServer({ name: 'gateway-e2e-mcp', version: '1.0.0' })
  server.registerTool(
    'echo',
    { description: 'Echoes its text', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  )
  server.registerTool(
    'whoami',
    { description: 'What the server received from the gateway', inputSchema: {} },
    async (_args, extra) => {
      const h = extra.requestInfo?.headers ?? {}
      const seen = {
        authorization: h.authorization ?? null,
        sub: h['x-auth-sub'] ?? null,
        iss: h['x-auth-iss'] ?? null,
        protocolVersion: h['mcp-protocol-version'] ?? null,
        session: h['mcp-session-id'] ?? null,
      }
      return { content: [{ type: 'text', text: JSON.stringify(seen) }] }
    },
  )
  server.registerTool(
    'write_file',
    { description: 'Needs files:write at the gateway', inputSchema: { path: z.string() } },
    async ({ path }) => ({ content: [{ type: 'text', text: `wrote ${path}` }] }),
  )
  server.registerTool(
    'slow',
    {
      description: 'Sends a progress event, then answers only once released',
      inputSchema: { key: z.string() },
    },
    async ({ key }, extra) => {
      const released = heldUntilReleased(key)
      const progressToken = extra._meta?.progressToken
      if (progressToken !== undefined) {
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken, progress: 1, total: 2, message: 'started' },
        })
      }
      await released
      return { content: [{ type: 'text', text: `done ${key}` }] }
    },
  )
  return server
}

async function startMcpServer(): Promise<{ url: string; close: () => Promise<void> }> {
  const sessions = new Map<string, StreamableHTTPServerTransport>()
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const release = /^\/release\/([\w-]+)$/.exec(req.url ?? '')
    if (release && req.method === 'POST') {
      const done = held.get(release[1]!)
      held.delete(release[1]!)
      done?.()
      res.writeHead(done ? 200 : 404).end()
      return
    }
    const sid = req.headers['mcp-session-id']
    let transport = typeof sid === 'string' ? sessions.get(sid) : undefined
    if (transport === undefined) {
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => void sessions.set(id, created),
      })
      created.onclose = () => {
        if (created.sessionId) sessions.delete(created.sessionId)
      }
      await mcpServer().connect(created)
      transport = created
    }
    await transport.handleRequest(req, res)
  }
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const t of sessions.values()) await t.close()
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

export default async function ({ provide }: TestProject) {
  const op = await startOidcProvider({
    algorithms: ['ES256'],
    configuration: {
      clients: [
        {
          client_id: MCP_CLIENT.id,
          client_secret: MCP_CLIENT.secret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          // The provider signs with ES256 only (oidc-provider defaults ID tokens to RS256).
          id_token_signed_response_alg: 'ES256',
        },
      ],
      features: {
        clientCredentials: { enabled: true },
        devInteractions: { enabled: false },
        resourceIndicators: jwtAccessTokens({
          [MCP_RESOURCE]: { scope: 'mcp tools:call files:write', alg: 'ES256' },
          [MCP_OTHER_RESOURCE]: { scope: 'mcp tools:call files:write', alg: 'ES256' },
        }),
      },
      ttl: { ClientCredentials: 300 },
    },
  })
  const mcp = await startMcpServer()
  provide('mcpOidcUrl', op.url)
  provide('mcpServerUrl', mcp.url)
  return async () => {
    await mcp.close()
    await op.close()
  }
}
