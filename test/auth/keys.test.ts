/**
 * The JWKS key store: one fetch serves many requests, unknown kids refresh at most once per
 * cooldown, rotation, OIDC discovery, every way the endpoint can fail (401, never 5xx), weak RSA
 * keys, and stale-if-error. Time-dependent rules run against KeyStore with an injected clock;
 * the worker-level tests use the loopback stub and at most a one-second cooldown.
 */
import { describe, expect, it } from 'vitest'
import { parseConfig, type IssuerConfig } from '../../src/config'
import { GatewayError } from '../../src/errors'
import { freshnessSeconds, KeyStore, MAX_JWKS_BYTES, type KeyDeps } from '../../src/auth/keys'
import {
  b64u,
  bearer,
  captureLogs,
  claims,
  expectInvalidToken,
  gatewayEnv,
  makeKey,
  mint,
  send,
  signRaw,
  sleep,
  Stub,
  type GatewayEnv,
  type LogLine,
  type TestKey,
} from '../helpers'

async function counts(stub: Stub) {
  const c = await stub.calls()
  return { jwks: c.jwksFetches, discovery: c.discoveryFetches, origin: c.origin.length }
}

/** A token no other request sends (the worker caches verified tokens by their text). */
function fresh(key: TestKey, extra: Record<string, unknown> = {}): Promise<string> {
  return mint(key, { jti: crypto.randomUUID(), ...extra })
}

describe('key store through the worker', () => {
  it('fetches the JWKS once for many requests and keys', async () => {
    const a = await makeKey('ES256')
    const b = await makeKey('RS256')
    const stub = new Stub()
    await stub.publish(a, b)
    const gw = gatewayEnv(stub)
    for (let i = 0; i < 10; i++) {
      expect((await send(gw, '/r', bearer(await fresh(i % 2 ? a : b)))).status).toBe(200)
    }
    expect(await counts(stub)).toEqual({ jwks: 1, discovery: 0, origin: 10 })
  })

  it('each env (isolate) has its own store', async () => {
    const key = await makeKey()
    const stub = new Stub()
    await stub.publish(key)
    expect((await send(gatewayEnv(stub), '/r', bearer(await fresh(key)))).status).toBe(200)
    expect((await send(gatewayEnv(stub), '/r', bearer(await fresh(key)))).status).toBe(200)
    expect((await counts(stub)).jwks).toBe(2)
  })

  it('30 concurrent requests on a cold isolate: all succeed on at most 2 JWKS fetches', async () => {
    const key = await makeKey('ES256')
    const stub = new Stub()
    await stub.publish(key)
    // A slow endpoint keeps the first fetch in flight while the others arrive.
    await stub.setup({ jwksDelayMs: 150 })
    const gw = gatewayEnv(stub)
    const tokens = await Promise.all(Array.from({ length: 30 }, () => fresh(key)))
    const statuses = await Promise.all(
      tokens.map(async (t) => (await send(gw, '/r', bearer(t))).status),
    )
    expect(statuses).toEqual(Array(30).fill(200))
    const c = await counts(stub)
    expect(c.jwks).toBeGreaterThanOrEqual(1)
    expect(c.jwks).toBeLessThanOrEqual(2)
    expect(c.origin).toBe(30)
  })

  it('30 concurrent requests with discovery: at most 2 discovery and 2 JWKS fetches', async () => {
    const key = await makeKey('ES256')
    const stub = new Stub()
    await stub.publish(key)
    await stub.setup({ jwksDelayMs: 100 })
    const gw = gatewayEnv(stub, { JWKS_URL: undefined, JWT_ISSUER: stub.base })
    const tokens = await Promise.all(
      Array.from({ length: 30 }, () => fresh(key, { iss: stub.base })),
    )
    const statuses = await Promise.all(
      tokens.map(async (t) => (await send(gw, '/r', bearer(t))).status),
    )
    expect(statuses).toEqual(Array(30).fill(200))
    const c = await counts(stub)
    expect(c.discovery).toBeLessThanOrEqual(2)
    expect(c.jwks).toBeLessThanOrEqual(2)
    expect(c.jwks).toBeGreaterThanOrEqual(1)
  })

  it('a flood of random kids costs one JWKS fetch per cooldown', async () => {
    const key = await makeKey('ES256')
    const stub = new Stub()
    await stub.publish(key)
    const gw = gatewayEnv(stub)
    for (let i = 0; i < 40; i++) {
      const t = await mint(key, {}, { header: { kid: crypto.randomUUID() } })
      await expectInvalidToken(await send(gw, '/r', bearer(t)))
    }
    expect(await counts(stub)).toEqual({ jwks: 1, discovery: 0, origin: 0 })
    expect((await send(gw, '/r', bearer(await fresh(key)))).status).toBe(200)
    expect((await counts(stub)).jwks).toBe(1)
  })

  it('rotation: a new kid is picked up after the cooldown, and a flood still costs one fetch', async () => {
    const a = await makeKey('ES256')
    const b = await makeKey('ES256')
    const stub = new Stub()
    await stub.publish(a)
    const gw = gatewayEnv(stub, { JWKS_REFRESH_COOLDOWN_SECONDS: '1' })
    expect((await send(gw, '/r', bearer(await fresh(a)))).status).toBe(200)

    await stub.publish(a, b)
    // Within the cooldown the new kid is unknown and no fetch is made.
    await expectInvalidToken(await send(gw, '/r', bearer(await fresh(b))))
    expect((await counts(stub)).jwks).toBe(1)

    await sleep(1100)
    expect((await send(gw, '/r', bearer(await fresh(b)))).status).toBe(200)
    expect((await counts(stub)).jwks).toBe(2)
    for (let i = 0; i < 20; i++) {
      const t = await mint(a, {}, { header: { kid: crypto.randomUUID() } })
      await expectInvalidToken(await send(gw, '/r', bearer(t)))
    }
    expect((await send(gw, '/r', bearer(await fresh(a)))).status).toBe(200)
    expect(await counts(stub)).toEqual({ jwks: 2, discovery: 0, origin: 3 })
  })

  it('OIDC discovery when JWKS_URL is unset: one discovery, one JWKS fetch', async () => {
    const key = await makeKey('ES256')
    const stub = new Stub()
    await stub.publish(key)
    const gw = gatewayEnv(stub, { JWKS_URL: undefined, JWT_ISSUER: stub.base })
    for (let i = 0; i < 5; i++) {
      expect((await send(gw, '/r', bearer(await fresh(key, { iss: stub.base })))).status).toBe(200)
    }
    // A token for the default issuer is not this gateway's.
    await expectInvalidToken(await send(gw, '/r', bearer(await fresh(key))))
    expect(await counts(stub)).toEqual({ jwks: 1, discovery: 1, origin: 5 })
  })

  it('discovery may point the JWKS at another loopback/https host', async () => {
    const key = await makeKey('ES256')
    const issuer = new Stub()
    const keys = new Stub()
    await keys.publish(key)
    await issuer.setup({ discovery: { issuer: issuer.base, jwks_uri: keys.jwksUrl } })
    const gw = gatewayEnv(issuer, { JWKS_URL: undefined, JWT_ISSUER: issuer.base })
    expect((await send(gw, '/r', bearer(await fresh(key, { iss: issuer.base })))).status).toBe(200)
    expect((await counts(issuer)).discovery).toBe(1)
    expect((await counts(keys)).jwks).toBe(1)
  })

  it('a discovery document naming another issuer is refused: 401, its JWKS never fetched', async () => {
    const key = await makeKey('ES256')
    const stub = new Stub()
    await stub.publish(key)
    await stub.setup({ issuer: 'https://someone-else.example' })
    const gw = gatewayEnv(stub, { JWKS_URL: undefined, JWT_ISSUER: stub.base })
    await expectInvalidToken(await send(gw, '/r', bearer(await fresh(key, { iss: stub.base }))))
    expect(await counts(stub)).toEqual({ jwks: 0, discovery: 1, origin: 0 })
  })

  it('a broken discovery document -> 401, never 5xx', async () => {
    const key = await makeKey('ES256')
    const cases: [string, Parameters<Stub['setup']>[0]][] = [
      ['500', { discoveryStatus: 500 }],
      ['no jwks_uri', { discovery: { issuer: 'x' } }],
      ['jwks_uri not a string', { discovery: { jwks_uri: 7 } }],
      ['jwks_uri over plain http', { discovery: { jwks_uri: 'http://keys.example.com/jwks' } }],
      ['jwks_uri not a URL', { discovery: { jwks_uri: 'not a url' } }],
      ['an array', { discovery: [] }],
    ]
    for (const [name, setup] of cases) {
      const stub = new Stub()
      await stub.publish(key)
      await stub.setup(setup)
      const gw = gatewayEnv(stub, { JWKS_URL: undefined, JWT_ISSUER: stub.base })
      const res = await send(gw, '/r', bearer(await fresh(key, { iss: stub.base })))
      expect({ name, status: res.status }).toEqual({ name, status: 401 })
      await expectInvalidToken(res)
      expect({ name, ...(await counts(stub)) }).toEqual({ name, jwks: 0, discovery: 1, origin: 0 })
    }
  })
})

describe('an RSA key under 2048 bits', () => {
  async function rsaKey(bits: number, hash = 'SHA-256') {
    const pair = (await crypto.subtle.generateKey(
      {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: bits,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash,
      },
      true,
      ['sign', 'verify'],
    )) as CryptoKeyPair
    const jwk = (await crypto.subtle.exportKey('jwk', pair.publicKey)) as JsonWebKey
    return { privateKey: pair.privateKey, jwk: { kty: 'RSA', n: jwk.n!, e: jwk.e! } }
  }

  it('is never used, and the answer is 401, never 500', async () => {
    const weak = await rsaKey(1024)
    const good = await makeKey('ES256')
    const zeroPadded = b64u(
      Uint8Array.from([
        0,
        0,
        0,
        0,
        ...Uint8Array.from(atob(weak.jwk.n.replace(/-/g, '+').replace(/_/g, '/')), (c) =>
          c.charCodeAt(0),
        ),
      ]),
    )
    const variants = [
      { ...weak.jwk, kid: 'weak', alg: 'RS256', use: 'sig' },
      { ...weak.jwk, kid: 'weak' },
      // Leading zero bytes do not make the modulus any longer.
      { ...weak.jwk, n: zeroPadded, kid: 'weak', alg: 'RS256' },
      { ...weak.jwk, n: `AAAA${weak.jwk.n}`, kid: 'weak', alg: 'RS256' },
    ]
    for (const jwk of variants) {
      const stub = new Stub()
      await stub.setup({ jwks: { keys: [jwk, good.publicJwk] } })
      const gw = gatewayEnv(stub)
      const token = await signRaw(
        { alg: 'RS256', kid: 'weak', typ: 'JWT' },
        claims(),
        weak.privateKey,
      )
      await expectInvalidToken(await send(gw, '/r', bearer(token)))
      // Without a kid, the weak key is not a candidate either.
      const noKid = await signRaw({ alg: 'RS256', typ: 'JWT' }, claims(), weak.privateKey)
      await expectInvalidToken(await send(gw, '/r', bearer(noKid)))
      // The rest of the JWKS still works.
      expect((await send(gw, '/r', bearer(await fresh(good)))).status).toBe(200)
      expect(await counts(stub)).toEqual({ jwks: 1, discovery: 0, origin: 1 })
    }
  })

  it('a 2040-bit key that passes the JWKS filter is still refused by verification: 401', async () => {
    const stub = new Stub()
    const { n, e, ...priv } = await stub.rsaPrivateJwk(2040)
    const privateKey = await crypto.subtle.importKey(
      'jwk',
      { ...priv, n, e } as JsonWebKey,
      { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      false,
      ['sign'],
    )
    await stub.setup({ jwks: { keys: [{ kty: 'RSA', n, e, kid: 'k2040', alg: 'RS256' }] } })
    const gw = gatewayEnv(stub)
    const logs = captureLogs()
    try {
      const token = await signRaw({ alg: 'RS256', kid: 'k2040', typ: 'JWT' }, claims(), privateKey)
      await expectInvalidToken(await send(gw, '/r', bearer(token)))
    } finally {
      logs.restore()
    }
    // jose's own 2048-bit floor caught it, after the key was imported.
    expect(logs.lines.find((l) => l.event === 'request')?.reason).toBe('verify_error')
    expect(await counts(stub)).toEqual({ jwks: 1, discovery: 0, origin: 0 })
  })
})

describe('the JWKS endpoint failing', () => {
  const big = (keys: unknown[]) => JSON.stringify({ keys, pad: 'x'.repeat(MAX_JWKS_BYTES) })

  async function failing(
    setup: (key: TestKey, stub: Stub) => Parameters<Stub['setup']>[0],
    vars: GatewayEnv = {},
    key?: TestKey,
  ): Promise<{ logs: LogLine[]; stub: Stub }> {
    key ??= await makeKey('ES256')
    const stub = new Stub()
    await stub.publish(key)
    await stub.setup(setup(key, stub))
    const gw = gatewayEnv(stub, { JWKS_FETCH_TIMEOUT_MS: '100', ...vars })
    const logs = captureLogs()
    try {
      const res = await send(gw, '/r', bearer(await fresh(key)))
      expect(res.status).toBe(401)
      await expectInvalidToken(res)
      // Within the retry delay a second request does not fetch again.
      await expectInvalidToken(await send(gw, '/r', bearer(await fresh(key))))
    } finally {
      logs.restore()
    }
    expect(await counts(stub)).toEqual({ jwks: 1, discovery: 0, origin: 0 })
    return { logs: logs.lines, stub }
  }

  function fetchFailure(lines: LogLine[]): string | undefined {
    const failed = lines.filter((l) => l.event === 'jwks_fetch_failed')
    expect(failed).toHaveLength(1)
    expect(failed[0]!.level).toBe('error')
    const requests = lines.filter((l) => l.event === 'request')
    expect(requests.map((r) => r.reason)).toEqual(['jwks_unavailable', 'jwks_unavailable'])
    return failed[0]!.error
  }

  it('connection refused -> 401', async () => {
    const { logs } = await failing(() => ({ jwksRefuse: true }))
    expect(fetchFailure(logs)).not.toMatch(/^HTTP|timed out|not JSON|bytes/)
  })

  it('slower than JWKS_FETCH_TIMEOUT_MS -> 401', async () => {
    const { logs } = await failing(() => ({ jwksDelayMs: 400 }))
    expect(fetchFailure(logs)).toBe('timed out after 100 ms')
  })

  it('HTTP 500 and 404 -> 401', async () => {
    expect(fetchFailure((await failing(() => ({ jwksStatus: 500 }))).logs)).toBe('HTTP 500')
    expect(fetchFailure((await failing(() => ({ jwksStatus: 404 }))).logs)).toBe('HTTP 404')
  })

  it('not JSON, or JSON without a keys array -> 401', async () => {
    const notJson = await failing(() => ({ jwksRaw: '<html>keys</html>' }))
    expect(fetchFailure(notJson.logs)).toBe('body is not JSON')
    const noKeys = await failing((k) => ({ jwksRaw: JSON.stringify({ key: [k.publicJwk] }) }))
    expect(fetchFailure(noKeys.logs)).toBe('JWKS has no "keys" array')
    const tooMany = await failing((k) => ({
      jwks: { keys: [...Array(64).fill({ kty: 'EC' }), k.publicJwk] },
    }))
    expect(fetchFailure(tooMany.logs)).toBe('JWKS has more than 64 keys')
  })

  it('over 64 KiB -> 401, whether or not Content-Length says so', async () => {
    // The key is in there: only the size makes it unusable.
    const declared = await failing((k) => ({
      jwksRaw: big([k.publicJwk]),
      jwksHeaders: { 'content-length': String(big([k.publicJwk]).length) },
    }))
    expect(fetchFailure(declared.logs)).toBe('body over 65536 bytes')
    const streamed = await failing((k) => ({ jwksRaw: big([k.publicJwk]) }))
    expect(fetchFailure(streamed.logs)).toBe('body over 65536 bytes')
  })

  it('a JWKS just under 64 KiB is read', async () => {
    const key = await makeKey('ES256')
    const stub = new Stub()
    const doc = JSON.stringify({ keys: [key.publicJwk], pad: '' })
    await stub.setup({
      jwksRaw: doc.replace('"pad":""', `"pad":"${'x'.repeat(MAX_JWKS_BYTES - doc.length)}"`),
    })
    expect((await send(gatewayEnv(stub), '/r', bearer(await fresh(key)))).status).toBe(200)
  })

  it('a redirect is not followed, even to a JWKS that has the key -> 401', async () => {
    const key = await makeKey('ES256')
    const elsewhere = new Stub()
    await elsewhere.publish(key)
    const { logs } = await failing(() => ({ jwksRedirect: elsewhere.jwksUrl }), {}, key)
    expect(fetchFailure(logs)).toBe('HTTP 302')
    expect((await counts(elsewhere)).jwks).toBe(0)
  })

  it('keys already held keep working when the endpoint later fails (stale-if-error)', async () => {
    const key = await makeKey('ES256')
    const vars = {
      JWKS_CACHE_TTL_SECONDS: '1',
      JWKS_REFRESH_COOLDOWN_SECONDS: '1',
      JWKS_FETCH_TIMEOUT_MS: '100',
    }
    const modes: Parameters<Stub['setup']>[0][] = [
      { jwksStatus: 500 },
      { jwksRefuse: true },
      { jwksDelayMs: 300 },
      { jwksRaw: 'not json' },
    ]
    const stale = await Promise.all(
      modes.map(async (mode) => {
        const stub = new Stub()
        await stub.publish(key)
        const gw = gatewayEnv(stub, vars)
        expect((await send(gw, '/r', bearer(await fresh(key)))).status).toBe(200)
        await stub.setup(mode)
        return { stub, gw }
      }),
    )
    // The same, with no stale window: the keys go as soon as a refresh fails.
    const strictStub = new Stub()
    await strictStub.publish(key)
    const strict = gatewayEnv(strictStub, { ...vars, JWKS_STALE_IF_ERROR_SECONDS: '0' })
    expect((await send(strict, '/r', bearer(await fresh(key)))).status).toBe(200)
    await strictStub.setup({ jwksStatus: 500 })

    await sleep(1100)
    for (const { stub, gw } of stale) {
      expect((await send(gw, '/r', bearer(await fresh(key)))).status).toBe(200)
      // The failed refresh counts toward the cooldown: no retry on the next request.
      expect((await send(gw, '/r', bearer(await fresh(key)))).status).toBe(200)
      expect(await counts(stub)).toEqual({ jwks: 2, discovery: 0, origin: 3 })
    }
    await expectInvalidToken(await send(strict, '/r', bearer(await fresh(key))))
    expect(await counts(strictStub)).toEqual({ jwks: 2, discovery: 0, origin: 1 })
  })
})

/** The key sources a KeyStore takes (JWKS URL or discovery). */
type KeySourceOf = ConstructorParameters<typeof KeyStore>[0]

describe('KeyStore with an injected clock and fetch', () => {
  const T0 = 1_900_000_000_000

  function issuerConfig(vars: Record<string, string> = {}): IssuerConfig {
    const parsed = parseConfig({
      ORIGIN_URL: 'https://origin.test',
      JWT_ISSUER: 'https://issuer.test',
      JWT_AUDIENCE: 'api',
      JWKS_URL: 'https://issuer.test/jwks',
      ...vars,
    })
    if (!parsed.ok) throw parsed.error
    return parsed.config.issuers[0]!
  }

  /** A store plus a controllable JWKS endpoint and clock. */
  function harness(vars: Record<string, string> = {}) {
    const cfg = issuerConfig(vars)
    const store = new KeyStore(cfg.keySource as KeySourceOf, cfg.algorithms, cfg.jwks)
    const state = {
      now: T0,
      keys: [] as TestKey[],
      cacheControl: null as string | null,
      fail: false,
      fetches: 0,
    }
    const deps: KeyDeps = {
      now: () => state.now,
      fetch: (async (input: RequestInfo | URL) => {
        state.fetches++
        expect(String(input)).toBe('https://issuer.test/jwks')
        if (state.fail) return new Response('down', { status: 503 })
        const headers: Record<string, string> = state.cacheControl
          ? { 'cache-control': state.cacheControl }
          : {}
        return new Response(JSON.stringify({ keys: state.keys.map((k) => k.publicJwk) }), {
          headers,
        })
      }) as typeof fetch,
    }
    const lookup = async (kid: string | undefined): Promise<string> => {
      try {
        await store.keyFor(kid, 'ES256', deps)
        return 'ok'
      } catch (err) {
        if (err instanceof GatewayError) return err.code
        throw err
      }
    }
    return { store, state, deps, lookup }
  }

  it('Cache-Control max-age sets freshness, within 60 s .. 24 h', async () => {
    const key = await makeKey('ES256')
    const cases: [string | null, number][] = [
      ['max-age=120', 120],
      ['public, max-age=300, must-revalidate', 300],
      ['max-age=5', 60],
      ['max-age=0', 60],
      ['no-store', 60],
      ['no-cache, max-age=3600', 60],
      ['max-age=999999999', 86_400],
      ['s-maxage=10', 600],
      [null, 600],
    ]
    for (const [cacheControl, seconds] of cases) {
      const h = harness({ JWKS_REFRESH_COOLDOWN_SECONDS: '1' })
      h.state.keys = [key]
      h.state.cacheControl = cacheControl
      expect(await h.lookup(key.kid)).toBe('ok')
      h.state.now = T0 + seconds * 1000 - 1
      expect(await h.lookup(key.kid)).toBe('ok')
      expect({ cacheControl, fetches: h.state.fetches }).toEqual({ cacheControl, fetches: 1 })
      h.state.now = T0 + seconds * 1000
      expect(await h.lookup(key.kid)).toBe('ok')
      expect({ cacheControl, fetches: h.state.fetches }).toEqual({ cacheControl, fetches: 2 })
    }
    expect(freshnessSeconds('max-age="90"', 600)).toBe(90)
    expect(freshnessSeconds('MAX-AGE=90', 600)).toBe(90)
    expect(freshnessSeconds('max-age=abc', 600)).toBe(600)
  })

  it('an unknown kid refreshes after the 5 s unknown-kid cooldown (not the 30 s one), then at most once per 5 s', async () => {
    const key = await makeKey('ES256')
    const h = harness({ JWKS_REFRESH_COOLDOWN_SECONDS: '30' })
    h.state.keys = [key]
    expect(await h.lookup(key.kid)).toBe('ok')
    expect(h.state.fetches).toBe(1)
    // Just fetched: an unknown kid does not fetch again before the unknown-kid cooldown.
    h.state.now = T0 + 4_999
    expect(await h.lookup('nope')).toBe('unknown_kid')
    expect(h.state.fetches).toBe(1)
    h.state.now = T0 + 5_000
    expect(await h.lookup('nope')).toBe('unknown_kid')
    expect(h.state.fetches).toBe(2)
    // A flood of made-up kids: one fetch per 5 s, whatever the rate.
    for (let i = 0; i < 200; i++) {
      h.state.now = T0 + 5_000 + i * 24
      expect(await h.lookup(crypto.randomUUID())).toBe('unknown_kid')
    }
    expect(h.state.fetches).toBe(2)
    h.state.now = T0 + 10_000
    expect(await h.lookup(crypto.randomUUID())).toBe('unknown_kid')
    expect(h.state.fetches).toBe(3)
    expect(await h.lookup(key.kid)).toBe('ok')
    expect(h.state.fetches).toBe(3)
  })

  it('rotation right after a fetch: the new kid is found 5 s later, with the refresh cooldown at 30 s', async () => {
    const a = await makeKey('ES256')
    const b = await makeKey('ES256')
    const h = harness({ JWKS_REFRESH_COOLDOWN_SECONDS: '30' })
    h.state.keys = [a]
    expect(await h.lookup(a.kid)).toBe('ok')
    // The provider publishes b and signs with it at once (oidc-provider does).
    h.state.keys = [a, b]
    h.state.now = T0 + 4_000
    expect(await h.lookup(b.kid)).toBe('unknown_kid')
    h.state.now = T0 + 5_000
    expect(await h.lookup(b.kid)).toBe('ok')
    // And a removed key goes at the next refresh.
    h.state.keys = [b]
    h.state.now = T0 + 5_000 + 600_000
    expect(await h.lookup(a.kid)).toBe('unknown_kid')
    expect(await h.lookup(b.kid)).toBe('ok')
    expect(h.state.fetches).toBe(3)
  })

  it('JWKS_UNKNOWN_KID_COOLDOWN_SECONDS sets it; its default never exceeds the refresh cooldown', async () => {
    const a = await makeKey('ES256')
    const b = await makeKey('ES256')
    const slow = harness({ JWKS_UNKNOWN_KID_COOLDOWN_SECONDS: '20' })
    slow.state.keys = [a]
    expect(await slow.lookup(a.kid)).toBe('ok')
    slow.state.keys = [a, b]
    slow.state.now = T0 + 19_999
    expect(await slow.lookup(b.kid)).toBe('unknown_kid')
    slow.state.now = T0 + 20_000
    expect(await slow.lookup(b.kid)).toBe('ok')
    const policy = (vars: Record<string, string>) => {
      try {
        return issuerConfig(vars).jwks
      } catch (err) {
        return (err as Error).message
      }
    }
    expect(policy({})).toMatchObject({ refreshCooldownS: 30, unknownKidCooldownS: 5 })
    expect(policy({ JWKS_REFRESH_COOLDOWN_SECONDS: '2' })).toMatchObject({ unknownKidCooldownS: 2 })
    expect(policy({ JWKS_UNKNOWN_KID_COOLDOWN_SECONDS: '0' })).toBe(
      'JWKS_UNKNOWN_KID_COOLDOWN_SECONDS: must be a whole number from 1 to 3600 (got "0")',
    )
  })

  it('stale-if-error: held keys serve until JWKS_STALE_IF_ERROR_SECONDS past freshness', async () => {
    const key = await makeKey('ES256')
    const h = harness({
      JWKS_REFRESH_COOLDOWN_SECONDS: '30',
      JWKS_STALE_IF_ERROR_SECONDS: '3600',
    })
    h.state.keys = [key]
    h.state.cacheControl = 'max-age=60'
    expect(await h.lookup(key.kid)).toBe('ok')
    h.state.fail = true
    h.state.now = T0 + 60_000
    expect(await h.lookup(key.kid)).toBe('ok')
    expect(h.store.status().lastError).toBe('HTTP 503')
    h.state.now = T0 + 60_000 + 3_599_999
    expect(await h.lookup(key.kid)).toBe('ok')
    h.state.now = T0 + 60_000 + 3_600_000
    expect(await h.lookup(key.kid)).toBe('jwks_unavailable')
    // Once the endpoint recovers, the next permitted fetch restores service.
    h.state.fail = false
    h.state.now += 5_000
    expect(await h.lookup(key.kid)).toBe('ok')
  })

  it('with no keys at all, a failed fetch is retried after 5 s, not every request', async () => {
    const key = await makeKey('ES256')
    const h = harness({ JWKS_REFRESH_COOLDOWN_SECONDS: '30' })
    h.state.keys = [key]
    h.state.fail = true
    expect(await h.lookup(key.kid)).toBe('jwks_unavailable')
    for (let i = 0; i < 50; i++) {
      h.state.now = T0 + i * 99
      expect(await h.lookup(key.kid)).toBe('jwks_unavailable')
    }
    expect(h.state.fetches).toBe(1)
    h.state.fail = false
    h.state.now = T0 + 5_000
    expect(await h.lookup(key.kid)).toBe('ok')
    expect(h.state.fetches).toBe(2)
  })

  it('concurrent cold lookups share one fetch', async () => {
    const key = await makeKey('ES256')
    const cfg = issuerConfig()
    const store = new KeyStore(cfg.keySource as KeySourceOf, cfg.algorithms, cfg.jwks)
    let fetches = 0
    const deps: KeyDeps = {
      now: Date.now,
      fetch: (async () => {
        fetches++
        await sleep(50)
        return new Response(JSON.stringify({ keys: [key.publicJwk] }))
      }) as unknown as typeof fetch,
    }
    const results = await Promise.all(
      Array.from({ length: 30 }, () => store.keyFor(key.kid, 'ES256', deps)),
    )
    expect(results.every((k) => k instanceof CryptoKey)).toBe(true)
    expect(fetches).toBe(1)
  })
})
