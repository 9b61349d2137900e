import { describe, expect, it, vi } from 'vitest'
import { bearer, body, gatewayEnv, makeKey, mint, send, Stub } from '../helpers'

describe('request id, Server-Timing and health', () => {
  it('keeps a well-formed X-Request-Id end to end and replaces a malformed one', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = gatewayEnv(stub)
    const token = await mint(key)

    const kept = await send(gw, '/a', {
      headers: { authorization: `Bearer ${token}`, 'x-request-id': 'abc-123' },
    })
    expect(kept.headers.get('x-request-id')).toBe('abc-123')
    expect(((await body(kept)).headers as Record<string, string>)['x-request-id']).toBe('abc-123')

    const replaced = await send(gw, '/b', {
      headers: { authorization: `Bearer ${token}`, 'x-request-id': 'bad id<script>' },
    })
    const id = replaced.headers.get('x-request-id')
    expect(id).toMatch(/^[0-9a-f-]{36}$/)
    expect(((await body(replaced)).headers as Record<string, string>)['x-request-id']).toBe(id)

    // Refusals carry it too, so a client can quote it to the operator.
    const refused = await send(gw, '/c', { headers: { 'x-request-id': 'r-1' } })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('x-request-id')).toBe('r-1')
  })

  it('sends Server-Timing only when SERVER_TIMING=true', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const token = await mint(key)
    const off = await send(gatewayEnv(stub), '/a', bearer(token))
    expect(off.headers.get('server-timing')).toBeNull()
    const on = await send(gatewayEnv(stub, { SERVER_TIMING: 'true' }), '/a', bearer(token))
    expect(on.headers.get('server-timing')).toMatch(/^auth;dur=\d+(\.\d+)?$/)
  })

  it('reports health without auth and without secrets, degraded after a failed JWKS fetch', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = gatewayEnv(stub)
    const cold = await send(gw, '/_gateway/health')
    expect(cold.status).toBe(200)
    expect(await body(cold)).toEqual({
      status: 'ok',
      revocation: 'on',
      revocationSnapshot: {
        store: 'kv',
        version: null,
        ageSeconds: null,
        lagMs: null,
        stale: false,
        lastSync: 'none yet',
      },
      issuers: [
        { issuer: 'https://issuer.test', keys: 0, jwksAgeSeconds: null, lastFetch: 'none yet' },
      ],
    })
    expect((await send(gw, '/x', bearer(await mint(key)))).status).toBe(200)
    expect(await body(await send(gw, '/_gateway/health'))).toMatchObject({
      status: 'ok',
      issuers: [{ keys: 1, jwksAgeSeconds: 0, lastFetch: 'ok' }],
    })

    const down = new Stub()
    await down.setup({ jwksStatus: 500 })
    const gw2 = gatewayEnv(down)
    expect((await send(gw2, '/x', bearer(await mint(key)))).status).toBe(401)
    const health = await send(gw2, '/_gateway/health')
    const text = await health.text()
    expect(JSON.parse(text)).toMatchObject({
      status: 'degraded',
      issuers: [{ lastFetch: 'failed' }],
    })
    expect(text).not.toContain('127.0.0.1')
    expect((await down.calls()).origin).toHaveLength(0)
  })

  it('writes one Analytics Engine data point per request when METRICS is bound, none of it secret', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const points: { blobs?: string[]; doubles?: number[]; indexes?: string[] }[] = []
    const gw = gatewayEnv(stub, { METRICS: { writeDataPoint: (p: never) => points.push(p) } })
    const token = await mint(key, { email: 'alice@example.com' })
    expect((await send(gw, '/a', bearer(token))).status).toBe(200)
    expect((await send(gw, '/b')).status).toBe(401)
    expect(points).toHaveLength(2)
    expect(points[0]).toMatchObject({
      indexes: ['ORIGIN_URL'],
      blobs: ['forwarded', '', 'https://issuer.test'],
    })
    expect(points[0]!.doubles![0]).toBe(200)
    expect(points[1]).toMatchObject({ blobs: ['refused', 'missing_token', ''] })
    expect(JSON.stringify(points)).not.toContain('alice')
    expect(JSON.stringify(points)).not.toContain(token.split('.')[2]!)
  })

  it('logs one line per request with auth and origin time, never the token or claims beyond sub', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const token = await mint(key, { email: 'alice@example.com', secret_claim: 's3cr3t' })
    const lines: Record<string, unknown>[] = []
    const spy = vi.spyOn(console, 'log').mockImplementation((line: string) => {
      lines.push(JSON.parse(line) as Record<string, unknown>)
    })
    try {
      expect((await send(gatewayEnv(stub), '/a', bearer(token))).status).toBe(200)
    } finally {
      spy.mockRestore()
    }
    const requests = lines.filter((l) => l.event === 'request')
    expect(requests).toHaveLength(1)
    expect(requests[0]).toMatchObject({
      route: 'ORIGIN_URL',
      outcome: 'forwarded',
      status: 200,
      sub: 'alice',
      kid: key.kid,
      iss: 'https://issuer.test',
    })
    for (const field of ['requestId', 'authMs', 'originMs', 'totalMs']) {
      expect(requests[0]).toHaveProperty(field)
    }
    const all = JSON.stringify(lines)
    expect(all).not.toContain(token.split('.')[1]!)
    expect(all).not.toContain('s3cr3t')
    expect(all).not.toContain('alice@example.com')
  })

  it('escapes U+2028, U+2029, U+0085 and all non-ASCII, so a line-splitting reader sees one line', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256', 'k\u2029{"level":"error","event":"forged"}')
    await stub.publish(key)
    const sub = 'alice\u2028{"level":"error","event":"forged"}\u0085é\u{1f600}'
    const raw: string[] = []
    const spy = vi.spyOn(console, 'log').mockImplementation((line: string) => void raw.push(line))
    try {
      expect((await send(gatewayEnv(stub), '/a', bearer(await mint(key, { sub })))).status).toBe(
        200,
      )
    } finally {
      spy.mockRestore()
    }
    const line = raw.find((l) => l.includes('"event":"request"'))!
    // Printable ASCII only: nothing any reader treats as a line break, and the same JSON value.
    expect(line).toMatch(/^[\x20-\x7e]+$/)
    expect(line.split(/\r\n|[\n\r\u0085\u2028\u2029]/)).toHaveLength(1)
    expect(JSON.parse(line)).toMatchObject({ sub, kid: key.kid, status: 200 })
  })

  it('with LOG_REQUESTS=refused logs every request but those the origin served; metrics count all', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const points: { blobs?: string[] }[] = []
    const vars = { LOG_REQUESTS: 'refused', ADMIN_TOKEN: 'admin-secret-0123456789abcdef0123456789' }
    const gw = gatewayEnv(stub, {
      ...vars,
      METRICS: { writeDataPoint: (p: never) => points.push(p) },
    })
    const unreachable = gatewayEnv(stub, { ...vars, ORIGIN_URL: 'http://127.0.0.1:9/' })
    const lines: Record<string, unknown>[] = []
    const spy = vi.spyOn(console, 'log').mockImplementation((line: string) => {
      lines.push(JSON.parse(line) as Record<string, unknown>)
    })
    try {
      expect((await send(gw, '/served', bearer(await mint(key)))).status).toBe(200)
      expect((await send(gw, '/refused')).status).toBe(401)
      expect((await send(gw, '/_gateway/health')).status).toBe(200)
      expect((await send(unreachable, '/down', bearer(await mint(key)))).status).toBe(502)
    } finally {
      spy.mockRestore()
    }
    const requests = lines.filter((l) => l.event === 'request')
    expect(requests.map((l) => [l.outcome, l.status])).toEqual([
      ['refused', 401],
      ['admin', 200],
      ['refused', 502],
    ])
    expect(points.map((p) => p.blobs![0])).toEqual(['forwarded', 'refused', 'admin'])
  })

  it('refuses to start with an unknown LOG_REQUESTS, naming it', async () => {
    const res = await send(gatewayEnv(new Stub(), { LOG_REQUESTS: 'none' }), '/x')
    expect(res.status).toBe(500)
    expect(await body(res)).toMatchObject({
      error_description: expect.stringContaining('LOG_REQUESTS') as unknown,
    })
  })
})
