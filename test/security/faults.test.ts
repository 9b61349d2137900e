/**
 * Faults, each with its documented outcome (.github/SECURITY.md) and nothing internal in the
 * answer: the JWKS or discovery endpoint refusing, failing, hanging, huge or redirecting; the
 * origin refusing, slow or resetting mid-body; KV throwing or slow; the client's upload failing
 * mid-way. Leak checks look for the stub's address, its namespace and the logged error text.
 */
import { env } from 'cloudflare:test'
import { beforeAll, describe, expect, it } from 'vitest'
import { MAX_JWKS_BYTES, MAX_JWKS_KEYS } from '../../src/auth/keys'
import {
  gatewayEnv,
  makeKey,
  mint,
  send,
  sleep,
  STUB_URL,
  Stub,
  type GatewayEnv,
  type TestKey,
} from '../helpers'
import { attempt, forwarded, invalidToken, leaked, withToken, type Raw, type Seen } from './harness'

const KV = (env as unknown as { REVOCATIONS: KVNamespace }).REVOCATIONS
const STUB_HOST = new URL(STUB_URL).host

let key: TestKey

beforeAll(async () => {
  key = await makeKey('ES256')
})

/** What the client must not learn: where the upstreams are and what went wrong with them. */
function secrets(stub: Stub, raw: Raw): string[] {
  const logged = raw.logs.flatMap((l) => [l.error, l.detail]).filter((v) => typeof v === 'string')
  return leaked(raw, STUB_HOST, '127.0.0.1', stub.id, ...(logged as string[]))
}

describe('the JWKS endpoint failing: 401 invalid_token, origin not called, nothing leaked', () => {
  const big = (k: TestKey) =>
    JSON.stringify({ keys: [k.publicJwk], pad: 'x'.repeat(MAX_JWKS_BYTES) })
  const cases: [string, (k: TestKey) => Parameters<Stub['setup']>[0], string][] = [
    ['connection refused', () => ({ jwksRefuse: true }), 'jwks_unavailable'],
    ['HTTP 500', () => ({ jwksStatus: 500 }), 'jwks_unavailable'],
    ['HTTP 404', () => ({ jwksStatus: 404 }), 'jwks_unavailable'],
    ['garbage: not JSON', () => ({ jwksRaw: '<html>keys</html>' }), 'jwks_unavailable'],
    ['garbage: JSON without keys', () => ({ jwksRaw: '{"key":[]}' }), 'jwks_unavailable'],
    ['garbage: keys not an array', () => ({ jwksRaw: '{"keys":{}}' }), 'jwks_unavailable'],
    // A document that parses but holds nothing usable: the store has no such key.
    [
      'garbage: keys that are not JWKs',
      () => ({ jwks: { keys: [1, 'x', null, {}] } }),
      'unknown_kid',
    ],
    ['hangs past JWKS_FETCH_TIMEOUT_MS', () => ({ jwksDelayMs: 3000 }), 'jwks_unavailable'],
    ['huge (over MAX_JWKS_BYTES, streamed)', (k) => ({ jwksRaw: big(k) }), 'jwks_unavailable'],
    [
      'huge (over MAX_JWKS_BYTES, declared)',
      (k) => ({ jwksRaw: big(k), jwksHeaders: { 'content-length': String(big(k).length) } }),
      'jwks_unavailable',
    ],
    [
      'more than MAX_JWKS_KEYS keys',
      (k) => ({ jwks: { keys: [...Array(MAX_JWKS_KEYS).fill({ kty: 'EC' }), k.publicJwk] } }),
      'jwks_unavailable',
    ],
    [
      'a redirect off-host',
      () => ({ jwksRedirect: 'https://attacker.example/jwks.json' }),
      'jwks_unavailable',
    ],
  ]
  it.each(cases)('%s', async (_, setup, reason) => {
    const stub = new Stub()
    await stub.setup(setup(key))
    const gw = gatewayEnv(stub, { JWKS_FETCH_TIMEOUT_MS: '100' })
    let raw!: Raw
    const seen = await attempt(
      gw,
      stub,
      '/r',
      { headers: { authorization: `Bearer ${await mint(key)}` } },
      (r) => (raw = r),
    )
    expect(seen).toEqual(invalidToken(reason, 1))
    expect(secrets(stub, raw)).toEqual([])
    const failed = raw.logs.filter((l) => l.event === 'jwks_fetch_failed')
    expect(failed.map((l) => l.level)).toEqual(reason === 'unknown_kid' ? [] : ['error'])
  })

  it('a redirect to a host that has the key: not followed, that host never asked', async () => {
    const elsewhere = new Stub()
    await elsewhere.publish(key)
    const stub = new Stub()
    await stub.setup({ jwksRedirect: elsewhere.jwksUrl })
    const seen = await withToken({ stub, gw: gatewayEnv(stub) }, await mint(key))
    expect(seen).toEqual(invalidToken('jwks_unavailable', 1))
    expect((await elsewhere.calls()).jwksFetches).toBe(0)
  })
})

describe('OIDC discovery failing: 401 invalid_token, origin not called, nothing leaked', () => {
  // The gateway's discovery URL is JWT_ISSUER + /.well-known/openid-configuration on the stub.
  const cases: [string, (stub: Stub) => Parameters<Stub['setup']>[0]][] = [
    ['HTTP 500', () => ({ discoveryStatus: 500 })],
    [
      'jwks_uri over plain http to another host',
      (stub) => ({ discovery: { issuer: stub.base, jwks_uri: 'http://attacker.example/jwks' } }),
    ],
    ['jwks_uri missing', (stub) => ({ discovery: { issuer: stub.base } })],
    ['a document for another issuer', () => ({ issuer: 'https://other.example' })],
  ]
  it.each(cases)('%s: the JWKS is never fetched', async (_, setup) => {
    const stub = new Stub()
    await stub.publish(key)
    await stub.setup(setup(stub))
    const gw = gatewayEnv(stub, { JWT_ISSUER: stub.base, JWKS_URL: undefined })
    let raw!: Raw
    const seen = await attempt(
      gw,
      stub,
      '/r',
      { headers: { authorization: `Bearer ${await mint(key, { iss: stub.base })}` } },
      (r) => (raw = r),
    )
    expect(seen).toEqual(invalidToken('jwks_unavailable', 0))
    expect((await stub.calls()).discoveryFetches).toBe(1)
    expect(secrets(stub, raw)).toEqual([])
  })
})

describe('the origin failing', () => {
  const BAD_GATEWAY = {
    error: 'bad_gateway',
    error_description: 'The upstream service could not be reached',
  }

  it('refused: 502 bad_gateway, nothing about the origin in the answer', async () => {
    const stub = new Stub()
    await stub.publish(key)
    const gw = gatewayEnv(stub, { ORIGIN_URL: 'http://127.0.0.1:9/internal-api' })
    let raw!: Raw
    const seen = await attempt(
      gw,
      stub,
      '/r',
      { headers: { authorization: `Bearer ${await mint(key)}` } },
      (r) => (raw = r),
    )
    expect(seen).toEqual<Seen>({
      status: 502,
      challenge: null,
      body: BAD_GATEWAY,
      reason: 'origin_unreachable',
      origin: 0,
      jwks: 1,
    })
    expect([...secrets(stub, raw), ...leaked(raw, ':9', 'internal-api')]).toEqual([])
  })

  it('slower than ORIGIN_TIMEOUT_MS: 504 gateway_timeout, nothing about the origin', async () => {
    const stub = new Stub()
    await stub.publish(key)
    await stub.setup({ originDelayMs: 1000 })
    const gw = gatewayEnv(stub, { ORIGIN_TIMEOUT_MS: '100' })
    let raw!: Raw
    const seen = await attempt(
      gw,
      stub,
      '/r',
      { headers: { authorization: `Bearer ${await mint(key)}` } },
      (r) => (raw = r),
    )
    // The origin did receive the request; it only failed to answer in time.
    expect(seen).toEqual<Seen>({
      status: 504,
      challenge: null,
      body: {
        error: 'gateway_timeout',
        error_description: 'The upstream service did not answer in time',
      },
      reason: 'origin_timeout',
      origin: 1,
      jwks: 1,
    })
    expect(secrets(stub, raw)).toEqual([])
  })

  it('resets mid-body: the status and headers were already sent, so the body stream errors', async () => {
    const stub = new Stub()
    await stub.publish(key)
    await stub.setup({ originResetAfterBytes: 1000 })
    const res = await send(gatewayEnv(stub), '/r', {
      headers: { authorization: `Bearer ${await mint(key)}` },
    })
    // No second answer is possible: the client sees the origin's 200 and a body cut short of the
    // Content-Length the origin promised.
    expect(res.status).toBe(200)
    expect(res.headers.get('content-length')).toBe('100000')
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    await expect(res.arrayBuffer()).rejects.toThrow()
  })
})

describe('KV (the revocation list) failing', () => {
  const UNAVAILABLE: Seen = {
    status: 503,
    challenge: null,
    body: {
      error: 'temporarily_unavailable',
      error_description: 'The revocation list could not be checked; retry shortly',
    },
    reason: 'revocation_unavailable',
    origin: 0,
    jwks: 1,
  }
  function kvWith(get: () => Promise<unknown>): KVNamespace {
    return new Proxy(KV, {
      get: (target, prop) => (prop === 'get' ? get : Reflect.get(target, prop)),
    })
  }
  const throwing = kvWith(() => Promise.reject(new Error('KV is down at kv.internal:7')))
  const slow = kvWith(() => new Promise((r) => setTimeout(() => r(null), 1000)))
  // A hand-written record for a subject or everyone must carry a numeric `before`.
  const malformed = kvWith(() => Promise.resolve('not a record'))

  const cases: [string, GatewayEnv][] = [
    ['throwing', { REVOCATIONS: throwing }],
    ['slower than REVOCATION_TIMEOUT_MS', { REVOCATIONS: slow, REVOCATION_TIMEOUT_MS: '50' }],
    ['holding a malformed record', { REVOCATIONS: malformed }],
  ]
  it.each(cases)('%s: 503 with Retry-After (fail closed, the default)', async (_, vars) => {
    const stub = new Stub()
    await stub.publish(key)
    let raw!: Raw
    const seen = await attempt(
      gatewayEnv(stub, vars),
      stub,
      '/r',
      { headers: { authorization: `Bearer ${await mint(key)}` } },
      (r) => (raw = r),
    )
    expect(seen).toEqual(UNAVAILABLE)
    expect(raw.headers.get('retry-after')).toBe('5')
    expect(leaked(raw, 'KV', 'kv.internal', 'record')).toEqual([])
  })

  it('throwing, with REVOCATION_FAIL_OPEN=true: verified tokens pass, and the log says so', async () => {
    const stub = new Stub()
    await stub.publish(key)
    let raw!: Raw
    const gw = gatewayEnv(stub, { REVOCATIONS: throwing, REVOCATION_FAIL_OPEN: 'true' })
    const seen = await attempt(
      gw,
      stub,
      '/r',
      { headers: { authorization: `Bearer ${await mint(key)}` } },
      (r) => (raw = r),
    )
    expect(seen).toEqual(forwarded())
    expect(raw.logs.filter((l) => l.event === 'revocation_check_failed')).toMatchObject([
      { level: 'error', failOpen: true },
    ])
    // Fail-open never lets an unverified token through.
    const forged = await mint(await makeKey('ES256'), {}, { header: { kid: key.kid } })
    expect((await withToken({ stub, gw }, forged)).status).toBe(401)
  })
})

describe('the client upload failing mid-way (a client gone mid-upload)', () => {
  const CHUNK = 64 * 1024
  const BAD_GATEWAY: Seen = {
    status: 502,
    challenge: null,
    body: { error: 'bad_gateway', error_description: 'The upstream service could not be reached' },
    reason: 'origin_unreachable',
    origin: 0,
    jwks: 1,
  }

  async function waitForOrigin(stub: Stub, bytes: number): Promise<number> {
    let seen = 0
    for (let i = 0; i < 200 && seen < bytes; i++) {
      seen = await stub.originBytesSeen()
      if (seen < bytes) await sleep(10)
    }
    return seen
  }

  function upload(body: ReadableStream, headers: Record<string, string> = {}) {
    return async (token: string) =>
      new Request('https://gw.test/upload', {
        method: 'POST',
        body,
        headers: { authorization: `Bearer ${token}`, ...headers },
      })
  }

  // A body of unknown length: workerd alone would end it cleanly and the origin would take the
  // first MiB for the whole upload. The gateway aborts the origin request instead.
  it('chunked, the stream erroring after 1 MiB: the origin sees the upload fail, 502', async () => {
    const stub = new Stub()
    await stub.publish(key)
    let ctl!: ReadableStreamDefaultController<Uint8Array>
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) })
    for (let i = 0; i < 16; i++) ctl.enqueue(new Uint8Array(CHUNK))
    let raw!: Raw
    const pending = attempt(
      gatewayEnv(stub),
      stub,
      await upload(body)(await mint(key)),
      undefined,
      (r) => (raw = r),
    )
    expect(await waitForOrigin(stub, 16 * CHUNK)).toBe(16 * CHUNK)
    ctl.error(new Error('client gone'))
    // The request settles (nothing is left waiting on the origin), and no complete call was made.
    expect(await pending).toEqual(BAD_GATEWAY)
    expect(raw.logs.find((l) => l.event === 'request')?.detail).toBe(
      'request body failed mid-upload',
    )
    expect(await stub.originBytesSeen()).toBe(16 * CHUNK)
  })

  it('chunked, the connection it streams from reset: the same', async () => {
    const source = new Stub()
    await source.setup({ originResetAfterBytes: 256 * 1024, originResetChunked: true })
    const from = await fetch(`${source.originUrl}/client`)
    const stub = new Stub()
    await stub.publish(key)
    const seen = await attempt(gatewayEnv(stub), stub, await upload(from.body!)(await mint(key)))
    expect(seen).toEqual(BAD_GATEWAY)
    expect(await stub.originBytesSeen()).toBeLessThanOrEqual(256 * 1024)
  })

  // With a declared length the runtime already fails the origin request when the body stops short.
  it('with Content-Length, the connection reset short of it: the origin sees the upload fail, 502', async () => {
    const source = new Stub()
    await source.setup({ originResetAfterBytes: 50_000 })
    const from = await fetch(`${source.originUrl}/client`)
    const stub = new Stub()
    await stub.publish(key)
    const request = await upload(from.body!, { 'content-length': '100000' })(await mint(key))
    const seen = await attempt(gatewayEnv(stub), stub, request)
    expect(seen).toEqual(BAD_GATEWAY)
    expect(await stub.originBytesSeen()).toBeLessThan(100_000)
  })
})
