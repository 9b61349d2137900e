/**
 * MCP resource-server mode through the real worker against the loopback stub: the RFC 9728
 * metadata document, the challenges (resource_metadata, scope), the RFC 8707 audience rule, and
 * per-operation scopes read from a bounded prefix of the body without changing what the origin gets.
 */
import { describe, expect, it } from 'vitest'
import type { JWTPayload } from 'jose'
import { ASYMMETRIC_ALGORITHMS } from '../../src/config'
import { MAX_PEEKED_BODY_BYTES } from '../../src/proxy/peek'
import {
  expectRefusal,
  makeKey,
  mint,
  send,
  structuredEnv,
  Stub,
  type GatewayEnv,
  type OriginCall,
  type TestKey,
} from '../helpers'

const HOST = 'mcp.gw.test'
const RESOURCE = `https://${HOST}/mcp`
const METADATA = `https://${HOST}/.well-known/oauth-protected-resource/mcp`
const OTHER_RESOURCE = `https://${HOST}/other`

const REQUIRED_BODY = { error: 'unauthorized', error_description: 'A bearer token is required' }
const INVALID_BODY = { error: 'invalid_token', error_description: 'The access token is invalid' }
const FORBIDDEN_DESCRIPTION = 'The access token does not grant access to this resource'
const FORBIDDEN_BODY = { error: 'insufficient_scope', error_description: FORBIDDEN_DESCRIPTION }
const INVALID = `Bearer realm="gateway", error="invalid_token", error_description="The access token is invalid"`
const forbidden = (scope: string) =>
  `Bearer realm="gateway", error="insufficient_scope", error_description="${FORBIDDEN_DESCRIPTION}", scope="${scope}", resource_metadata="${METADATA}"`

interface Setup {
  stub: Stub
  key: TestKey
  iss: string
  gw: GatewayEnv
  token: (claims?: JWTPayload) => Promise<string>
}

/** One issuer whose tokens may name either resource, and an MCP route with per-operation scopes. */
async function setup(
  route: Record<string, unknown> = {},
  gateway: Record<string, unknown> = {},
  vars: GatewayEnv = {},
): Promise<Setup> {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  const iss = `https://issuer.test/${stub.id}`
  const gw = structuredEnv(
    stub,
    {
      issuers: [{ issuer: iss, jwksUrl: stub.jwksUrl, audiences: [RESOURCE, OTHER_RESOURCE] }],
      routes: [
        {
          host: HOST,
          path: '/mcp',
          origin: stub.originUrl,
          scopes: ['mcp'],
          mcp: {
            methodScopes: { 'tools/call': ['tools:call'] },
            toolScopes: { delete_repo: ['repo:admin'] },
          },
          ...route,
        },
        { host: HOST, path: '/other', origin: stub.originUrl },
      ],
      ...gateway,
    },
    vars,
  )
  const token = (claims: JWTPayload = {}) => mint(key, { iss, aud: RESOURCE, ...claims })
  return { stub, key, iss, gw, token }
}

function rpc(method: string, params?: Record<string, unknown>, id = 1): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) })
}

function post(token: string | null, body: BodyInit, headers: Record<string, string> = {}) {
  return {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...headers,
    },
  }
}

async function forwarded(res: Response): Promise<OriginCall> {
  const text = await res.text()
  expect(res.status, text).toBe(200)
  return JSON.parse(text) as OriginCall
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('')
}

/** A tools/call body of exactly `size` bytes, padded inside the tool's arguments. */
function paddedCall(name: string, size: number): Uint8Array {
  const head = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"${name}","arguments":{"pad":"`
  const tail = '"}}}'
  return new TextEncoder().encode(head + 'x'.repeat(size - head.length - tail.length) + tail)
}

/** A stream that delivers `bytes` in 1000-byte chunks and says nothing of its length. */
function chunked(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close()
      controller.enqueue(bytes.slice(at, at + 1000))
      at += 1000
    },
  })
}

describe('protected-resource metadata (RFC 9728)', () => {
  it('the path-aware URL serves the document: public, cacheable, CORS-readable, no origin call', async () => {
    const { stub, gw, iss } = await setup()
    const res = await send(gw, METADATA)
    expect(res.status).toBe(200)
    expect(Object.fromEntries(res.headers)).toMatchObject({
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'public, max-age=600',
      'access-control-allow-origin': '*',
    })
    expect(await res.json()).toEqual({
      resource: RESOURCE,
      authorization_servers: [iss],
      scopes_supported: ['mcp', 'tools:call', 'repo:admin'],
      bearer_methods_supported: ['header'],
      dpop_signing_alg_values_supported: [...ASYMMETRIC_ALGORITHMS],
      dpop_bound_access_tokens_required: false,
      tls_client_certificate_bound_access_tokens: false,
    })
    // The bare form too: the host's only MCP route.
    const bare = await send(gw, `https://${HOST}/.well-known/oauth-protected-resource`)
    expect((await bare.json()) as unknown).toMatchObject({ resource: RESOURCE })
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  it('HEAD has no body, OPTIONS is a preflight answer, other methods are 405 with Allow', async () => {
    const { stub, gw } = await setup()
    const head = await send(gw, METADATA, { method: 'HEAD' })
    expect([head.status, await head.text()]).toEqual([200, ''])
    const preflight = await send(gw, METADATA, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'mcp-protocol-version',
      },
    })
    expect(preflight.status).toBe(204)
    expect(Object.fromEntries(preflight.headers)).toMatchObject({
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, HEAD, OPTIONS',
      'access-control-allow-headers': '*',
    })
    const res = await send(gw, METADATA, { method: 'POST', body: '{}' })
    expect(res.headers.get('allow')).toBe('GET, HEAD, OPTIONS')
    await expectRefusal(res, 405, null, {
      error: 'method_not_allowed',
      error_description: 'This endpoint answers GET, HEAD and OPTIONS',
    })
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  it('a token is neither needed nor looked at: a bad one still gets the document', async () => {
    const { gw } = await setup()
    const res = await send(gw, METADATA, { headers: { authorization: 'Bearer not.a.token' } })
    expect(res.status).toBe(200)
  })

  it('jwks_uri names the gateway assertion keys when the route signs assertions', async () => {
    const key = await makeKey('ES256')
    const jwk = { ...(await crypto.subtle.exportKey('jwk', key.privateKey)), kid: key.kid }
    const { gw } = await setup({ assertion: true }, {}, { ASSERTION_KEY: JSON.stringify(jwk) })
    const doc = (await (await send(gw, METADATA)).json()) as Record<string, unknown>
    expect(doc.jwks_uri).toBe(`https://${HOST}/_gateway/jwks.json`)
    const plain = await setup()
    expect(await (await send(plain.gw, METADATA)).json()).not.toHaveProperty('jwks_uri')
  })

  it('DPoP and certificate-bound token fields follow the route and its issuers (RFC 9728 §2)', async () => {
    const doc = async (route: Record<string, unknown>, vars: GatewayEnv = {}) => {
      const { gw } = await setup(route, {}, vars)
      return (await (await send(gw, METADATA)).json()) as Record<string, unknown>
    }
    const fields = (d: Record<string, unknown>) => [
      d.dpop_signing_alg_values_supported,
      d.dpop_bound_access_tokens_required,
      d.tls_client_certificate_bound_access_tokens,
    ]
    expect(fields(await doc({ binding: 'dpop' }, { DPOP_ALGORITHMS: 'ES256' }))).toEqual([
      ['ES256'],
      true,
      false,
    ])
    expect(fields(await doc({ binding: 'mtls' }))).toEqual([
      [...ASYMMETRIC_ALGORITHMS],
      false,
      true,
    ])
    expect(fields(await doc({ binding: 'any' }))).toEqual([[...ASYMMETRIC_ALGORITHMS], false, true])
    expect(fields(await doc({}, { TRUST_CLIENT_CERT_HEADER: 'true' }))[2]).toBe(true)
  })

  it('a route without a host: the resource is derived from the request host (https, http on loopback)', async () => {
    const { gw } = await setup({ host: undefined })
    const cases: [string, string][] = [
      ['https://a.example', 'https://a.example/mcp'],
      ['http://a.example', 'https://a.example/mcp'],
      ['http://127.0.0.1:8787', 'http://127.0.0.1:8787/mcp'],
    ]
    for (const [base, resource] of cases) {
      const res = await send(gw, `${base}/.well-known/oauth-protected-resource/mcp`)
      expect(((await res.json()) as { resource: string }).resource).toBe(resource)
      // And the challenge points at the same host's document.
      const refused = await send(gw, `${base}/mcp`, post(null, rpc('ping')))
      expect(refused.headers.get('www-authenticate')).toContain(
        `resource_metadata="${new URL(resource).origin}/.well-known/oauth-protected-resource/mcp"`,
      )
    }
  })

  it('two MCP routes on a host: each path-aware URL its own; the bare form names neither', async () => {
    const stub = new Stub()
    const two = structuredEnv(stub, {
      issuers: [
        {
          issuer: 'https://issuer.test',
          jwksUrl: stub.jwksUrl,
          audiences: [RESOURCE, OTHER_RESOURCE],
        },
      ],
      routes: [
        { host: HOST, path: '/mcp', origin: stub.originUrl, mcp: {} },
        { host: HOST, path: '/other', origin: stub.originUrl, mcp: {} },
      ],
    })
    const other = await send(two, `https://${HOST}/.well-known/oauth-protected-resource/other`)
    expect(((await other.json()) as { resource: string }).resource).toBe(OTHER_RESOURCE)
    const mcp = await send(two, METADATA)
    expect(((await mcp.json()) as { resource: string }).resource).toBe(RESOURCE)
    // No MCP route claims the bare path, and no route serves it: routed as any request (404).
    const bare = await send(two, `https://${HOST}/.well-known/oauth-protected-resource`)
    expect(bare.status).toBe(404)
  })

  it('a gateway without MCP routes routes the well-known path like any other path', async () => {
    const stub = new Stub()
    const gw = structuredEnv(stub, {
      routes: [{ path: '/', origin: stub.originUrl, auth: 'public' }],
    })
    const call = await forwarded(await send(gw, METADATA))
    expect(call.url).toBe(`/ns/${stub.id}/origin/.well-known/oauth-protected-resource/mcp`)
  })
})

describe('challenges on an MCP route', () => {
  it('every 401 names the metadata URL and the route scopes; other routes are unchanged', async () => {
    const { key, iss, gw } = await setup()
    const required = `Bearer realm="gateway", scope="mcp", resource_metadata="${METADATA}"`
    await expectRefusal(
      await send(gw, RESOURCE, post(null, rpc('ping'))),
      401,
      required,
      REQUIRED_BODY,
    )
    await expectRefusal(
      await send(gw, RESOURCE, { headers: { accept: 'text/event-stream' } }),
      401,
      required,
      REQUIRED_BODY,
    )
    const bad = (await mint(key, { iss, aud: RESOURCE, scope: 'mcp' })).slice(0, -4) + 'AAAA'
    await expectRefusal(
      await send(gw, RESOURCE, post(bad, rpc('ping'))),
      401,
      `${INVALID}, scope="mcp", resource_metadata="${METADATA}"`,
      INVALID_BODY,
    )
    // The non-MCP route of the same gateway: a plain RFC 6750 challenge.
    await expectRefusal(
      await send(gw, `https://${HOST}/other`),
      401,
      'Bearer realm="gateway"',
      REQUIRED_BODY,
    )
  })

  it('a DPoP route: the DPoP challenge names the metadata and scopes too (RFC 9449 §7.1)', async () => {
    const { gw } = await setup({ binding: 'dpop' }, {}, { DPOP_ALGORITHMS: 'ES256' })
    const res = await send(gw, RESOURCE, post(null, rpc('ping')))
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toBe(
      `DPoP realm="gateway", scope="mcp", resource_metadata="${METADATA}", algs="ES256"`,
    )
  })

  it('an MCP route without scopes: resource_metadata only', async () => {
    const { gw } = await setup({ scopes: undefined, mcp: {} })
    const res = await send(gw, RESOURCE, post(null, rpc('ping')))
    expect(res.headers.get('www-authenticate')).toBe(
      `Bearer realm="gateway", resource_metadata="${METADATA}"`,
    )
  })

  it('with cors = true, refusals expose WWW-Authenticate to browser clients', async () => {
    const { stub, gw } = await setup({ cors: true })
    const res = await send(gw, RESOURCE, post(null, rpc('ping'), { origin: 'https://app.example' }))
    expect(res.status).toBe(401)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    expect(res.headers.get('access-control-expose-headers')).toBe('WWW-Authenticate')
    // The preflight itself goes to the MCP server, which answers its own CORS.
    const preflight = await send(gw, RESOURCE, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
    })
    expect((await forwarded(preflight)).method).toBe('OPTIONS')
    expect((await stub.calls()).origin).toHaveLength(1)
    const closed = await setup()
    const plain = await send(closed.gw, RESOURCE, post(null, rpc('ping')))
    expect(plain.headers.get('access-control-expose-headers')).toBeNull()
  })
})

describe('audience (RFC 8707)', () => {
  it('a token whose aud does not name this resource exactly is a 401, though the issuer accepts it', async () => {
    const { stub, gw, token } = await setup()
    for (const aud of [OTHER_RESOURCE, [OTHER_RESOURCE], `${RESOURCE}/`]) {
      const res = await send(gw, RESOURCE, post(await token({ aud, scope: 'mcp' }), rpc('ping')))
      await expectRefusal(
        res,
        401,
        `${INVALID}, scope="mcp", resource_metadata="${METADATA}"`,
        INVALID_BODY,
      )
    }
    // Checked before scopes: a token for another resource is never told to step up.
    const res = await send(gw, RESOURCE, post(await token({ aud: OTHER_RESOURCE }), rpc('ping')))
    expect(res.status).toBe(401)
    expect((await stub.calls()).origin).toHaveLength(0)
    for (const aud of [RESOURCE, [OTHER_RESOURCE, RESOURCE]]) {
      await forwarded(
        await send(gw, RESOURCE, post(await token({ aud, scope: 'mcp' }), rpc('ping'))),
      )
    }
  })
})

describe('per-operation scopes', () => {
  it('403 insufficient_scope names every scope the request needs', async () => {
    const { stub, gw, token } = await setup()
    const cases: [string, string, number, string?][] = [
      ['', rpc('tools/list'), 403, 'mcp'],
      ['mcp', rpc('tools/list'), 200],
      ['mcp', rpc('tools/call', { name: 'echo', arguments: {} }), 403, 'mcp tools:call'],
      ['mcp tools:call', rpc('tools/call', { name: 'echo', arguments: {} }), 200],
      [
        'mcp tools:call',
        rpc('tools/call', { name: 'delete_repo' }),
        403,
        'mcp tools:call repo:admin',
      ],
      ['tools:call', rpc('tools/call', { name: 'delete_repo' }), 403, 'mcp tools:call repo:admin'],
      ['mcp tools:call repo:admin', rpc('tools/call', { name: 'delete_repo' }), 200],
      // A batch needs what each of its messages needs.
      [
        'mcp',
        `[${rpc('tools/list')},${rpc('tools/call', { name: 'echo' }, 2)}]`,
        403,
        'mcp tools:call',
      ],
      // A response to the server runs nothing: the route's scopes.
      ['mcp', JSON.stringify({ jsonrpc: '2.0', id: 7, result: {} }), 200],
    ]
    let passed = 0
    for (const [scope, body, status, needed] of cases) {
      const res = await send(gw, RESOURCE, post(await token({ scope }), body))
      if (status === 200) {
        const call = await forwarded(res)
        expect(call.bodySha256).toBe(await sha256(new TextEncoder().encode(body)))
        passed++
      } else {
        await expectRefusal(res, 403, forbidden(needed!), FORBIDDEN_BODY)
      }
    }
    expect((await stub.calls()).origin).toHaveLength(passed)
  })

  it('GET (the SSE stream) and DELETE (end of session) need the route scopes only', async () => {
    const { gw, token } = await setup()
    const t = await token({ scope: 'mcp' })
    for (const method of ['GET', 'DELETE']) {
      const call = await forwarded(
        await send(gw, RESOURCE, { method, headers: { authorization: `Bearer ${t}` } }),
      )
      expect(call.method).toBe(method)
    }
  })

  it('a body the gateway cannot read as the server will needs the strictest scopes', async () => {
    const { gw, token } = await setup()
    const strictest = 'mcp tools:call repo:admin'
    const unreadable = [
      // Two `method` members: parsers disagree on which one counts.
      '{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_repo"}}',
      'not json',
      '\ufeff' + rpc('tools/list'),
      '[]',
      '42',
      '{"jsonrpc":"2.0","id":1,"method":7}',
      rpc('tools/call', { arguments: {} }),
      rpc('tools/call', { name: ['delete_repo'] }),
    ]
    for (const body of unreadable) {
      const res = await send(gw, RESOURCE, post(await token({ scope: 'mcp tools:call' }), body))
      await expectRefusal(res, 403, forbidden(strictest), FORBIDDEN_BODY)
    }
    const invalidUtf8 = new Uint8Array([...new TextEncoder().encode(rpc('tools/list')), 0xff])
    const res = await send(gw, RESOURCE, post(await token({ scope: 'mcp' }), invalidUtf8))
    await expectRefusal(res, 403, forbidden(strictest), FORBIDDEN_BODY)
  })

  it('a body longer than the bound needs the strictest scopes, and padding gains nothing', async () => {
    const { gw, token } = await setup()
    const body = paddedCall('echo', MAX_PEEKED_BODY_BYTES + 1)
    const res = await send(gw, RESOURCE, post(await token({ scope: 'mcp tools:call' }), body))
    await expectRefusal(res, 403, forbidden('mcp tools:call repo:admin'), FORBIDDEN_BODY)
    // At the bound exactly it is read, and the tool's own scopes decide.
    const fits = paddedCall('echo', MAX_PEEKED_BODY_BYTES)
    await forwarded(await send(gw, RESOURCE, post(await token({ scope: 'mcp tools:call' }), fits)))
  })

  it('the origin receives the identical bytes: small, at the bound, over it, with and without a length', async () => {
    const { stub, gw, token } = await setup()
    const all = await token({ scope: 'mcp tools:call repo:admin' })
    const sizes = [200, MAX_PEEKED_BODY_BYTES, MAX_PEEKED_BODY_BYTES + 1, 3 * MAX_PEEKED_BODY_BYTES]
    for (const size of sizes) {
      const body = paddedCall('delete_repo', size)
      const want = { bytes: size, sha: await sha256(body) }
      // As a client on the network sends it: the length in the header.
      const length = { 'content-length': String(size) }
      const sized = await forwarded(await send(gw, RESOURCE, post(all, body, length)))
      expect({ bytes: sized.bodyBytes, sha: sized.bodySha256 }, `length-delimited ${size}`).toEqual(
        want,
      )
      expect(sized.headers['content-length']).toBe(String(size))
      const request = new Request(RESOURCE, {
        ...post(all, chunked(body)),
        duplex: 'half',
      } as RequestInit)
      expect(request.headers.get('content-length')).toBeNull()
      const streamed = await forwarded(await send(gw, request))
      expect({ bytes: streamed.bodyBytes, sha: streamed.bodySha256 }, `chunked ${size}`).toEqual(
        want,
      )
    }
    expect((await stub.calls()).origin).toHaveLength(2 * sizes.length)
  })

  it('a route without operation scopes never reads the body', async () => {
    const { gw, token, stub } = await setup({ mcp: {} })
    // Garbage that would need the strictest scopes if it were read.
    const call = await forwarded(
      await send(gw, RESOURCE, post(await token({ scope: 'mcp' }), 'not json')),
    )
    expect(call.bodyBytes).toBe(8)
    expect((await stub.calls()).origin).toHaveLength(1)
  })
})

describe('MCP traffic to the server', () => {
  it('session, protocol-version and last-event-id headers pass; the token never does', async () => {
    const { gw, token } = await setup()
    const t = await token({ scope: 'mcp' })
    const call = await forwarded(
      await send(
        gw,
        RESOURCE,
        post(t, rpc('tools/list'), {
          'mcp-session-id': 'session-1',
          'mcp-protocol-version': '2025-11-25',
          'last-event-id': 'event-9',
        }),
      ),
    )
    expect(call.headers).toMatchObject({
      'mcp-session-id': 'session-1',
      'mcp-protocol-version': '2025-11-25',
      'last-event-id': 'event-9',
      'x-auth-sub': 'alice',
    })
    expect(call.headers.authorization).toBeUndefined()
    expect(JSON.stringify(call.headers)).not.toContain(t)
  })

  it('the server response headers (Mcp-Session-Id) come back to the client', async () => {
    const { stub, gw, token } = await setup()
    await stub.setup({ originHeaders: { 'mcp-session-id': 'session-2' } })
    const res = await send(gw, RESOURCE, post(await token({ scope: 'mcp' }), rpc('initialize')))
    expect(res.headers.get('mcp-session-id')).toBe('session-2')
  })
})
