/**
 * One request on an MCP route, after its token verified: the token must be for this resource
 * (RFC 8707) and carry the scopes this operation needs, read from the start of a POST body.
 * I/O on the request body only (peek.ts); what the origin receives is unchanged.
 */
import type { Identity } from '../auth/identity'
import {
  bodyScopes,
  checkResource,
  checkScopes,
  readsBodies,
  resourceFor,
  type McpRoute,
} from './mcp'
import { peekBody } from './peek'

/** Returns the body to forward: the client's stream, or the same bytes after a peek. */
export async function checkMcpRequest(
  identity: Identity,
  route: McpRoute,
  request: Request,
  url: URL,
): Promise<ReadableStream | Uint8Array | null> {
  checkResource(identity, resourceFor(route, url))
  // GET (the SSE stream) and DELETE (end of session) carry no JSON-RPC message to read.
  if (request.body === null || !readsBodies(route.mcp)) {
    checkScopes(identity, route.scopes)
    return request.body
  }
  const peeked = await peekBody(request)
  const empty = peeked.bytes !== null && peeked.bytes.byteLength === 0
  checkScopes(identity, empty ? route.scopes : bodyScopes(route, peeked.bytes))
  return peeked.body
}
