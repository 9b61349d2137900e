/**
 * Opaque tokens through RFC 7662 introspection, against a loopback endpoint the tests control
 * (test/node/introspection-stub.ts): the pipeline end to end, the faults with call counts, the
 * cache's TTLs and the flood budget with a frozen clock, and where the credential goes.
 */
import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { exportJWK, generateKeyPair, jwtVerify, type JWK } from 'jose'
import { Introspector } from '../../src/auth/introspection'
import { CALL_BUDGET_WINDOW_MS } from '../../src/auth/introspection-cache'
import { parseConfig, type IssuerConfig } from '../../src/config'
import type { IntrospectionCall, IntrospectionSetup } from '../node/introspection-stub'
import { clientKey, dpopInit, proof } from './sender-helpers'
import {
  AUDIENCE,
  bearer,
  body,
  captureLogs,
  expectInvalidToken,
  expectRefusal,
  fromB64u,
  makeKey,
  mint,
  send,
  structuredEnv,
  Stub,
  type GatewayEnv,
} from '../helpers'

const ENDPOINT_URL = (env as unknown as { INTROSPECTION_STUB_URL: string }).INTROSPECTION_STUB_URL
const CLIENT_ID = 'gateway-client'
const CLIENT_SECRET = 'introspection-secret-Zq8vW1xY'
const ADMIN_TOKEN = 'admin-secret-0123456789abcdef0123456789'

/** One test's introspection endpoint, which is also its issuer (discovery lives beside it). */
class Endpoint {
  readonly id = crypto.randomUUID().replaceAll('-', '')
  readonly base = `${ENDPOINT_URL}/ns/${this.id}`
  readonly url = `${this.base}/introspect`

  async setup(setup: IntrospectionSetup): Promise<void> {
    const res = await fetch(`${this.base}/_setup`, { method: 'POST', body: JSON.stringify(setup) })
    if (!res.ok) throw new Error(`endpoint setup failed: ${res.status}`)
  }

  async calls(): Promise<IntrospectionCall[]> {
    return ((await (await fetch(`${this.base}/_calls`)).json()) as { calls: IntrospectionCall[] })
      .calls
  }

  async discoveryFetches(): Promise<number> {
    const got = (await (await fetch(`${this.base}/_calls`)).json()) as { discoveryFetches: number }
    return got.discoveryFetches
  }

  /** An active answer for this issuer, valid for five minutes. */
  active(extra: Record<string, unknown> = {}): Record<string, unknown> {
    const now = Math.floor(Date.now() / 1000)
    return {
      active: true,
      iss: this.base,
      sub: 'alice',
      aud: AUDIENCE,
      client_id: 'app',
      scope: 'read write',
      iat: now,
      exp: now + 300,
      token_type: 'Bearer',
      ...extra,
    }
  }
}

const opaqueToken = () => `op_${crypto.randomUUID().replaceAll('-', '')}`

interface Options {
  introspection?: Record<string, unknown>
  route?: Record<string, unknown>
  issuer?: Record<string, unknown>
  vars?: GatewayEnv
}

/** A gateway whose one issuer introspects at `ep` (and also verifies JWTs from the stub's JWKS). */
function gateway(stub: Stub, ep: Endpoint, o: Options = {}): GatewayEnv {
  return structuredEnv(
    stub,
    {
      issuers: [
        {
          issuer: ep.base,
          jwksUrl: stub.jwksUrl,
          audiences: [AUDIENCE],
          introspection: {
            endpoint: ep.url,
            clientId: CLIENT_ID,
            clientSecret: 'INTROSPECTION_SECRET',
            ...o.introspection,
          },
          ...o.issuer,
        },
      ],
      routes: [{ path: '/', origin: stub.originUrl, ...o.route }],
    },
    { INTROSPECTION_SECRET: CLIENT_SECRET, ...o.vars },
  )
}

async function ready(o: Options = {}, answers: Record<string, unknown> = {}) {
  const stub = new Stub()
  const ep = new Endpoint()
  await ep.setup({ answers })
  return { stub, ep, gw: gateway(stub, ep, o) }
}

const SERVICE_UNAVAILABLE = {
  error: 'temporarily_unavailable',
  error_description: 'The access token could not be checked; retry shortly',
}

describe('opaque tokens through the pipeline', () => {
  it('forwards an active token with the same identity headers as a JWT, and caches it', async () => {
    const stub = new Stub()
    const ep = new Endpoint()
    const token = opaqueToken()
    const answer = ep.active({ jti: 'j-1' })
    await ep.setup({ answers: { [token]: answer } })
    const gw = gateway(stub, ep)

    const first = await send(gw, '/hello', bearer(token))
    expect(first.status).toBe(200)
    const seen = (await body(first)).headers as Record<string, string>
    expect(seen['x-auth-sub']).toBe('alice')
    expect(seen['x-auth-iss']).toBe(ep.base)
    // X-Auth-Claims is the exact JSON the endpoint answered, as for a JWT its payload.
    expect(JSON.parse(fromB64u(seen['x-auth-claims']!))).toEqual(answer)
    expect(seen.authorization).toBeUndefined()

    expect((await send(gw, '/hello', bearer(token))).status).toBe(200)
    const calls = await ep.calls()
    expect(calls).toHaveLength(1)
    expect(calls[0]!.form).toEqual({ token, token_type_hint: 'access_token' })
    expect((await stub.calls()).origin).toHaveLength(2)
  })

  it('refuses an inactive token with 401 invalid_token and remembers the answer', async () => {
    const { stub, ep, gw } = await ready()
    const token = opaqueToken()
    await expectInvalidToken(await send(gw, '/x', bearer(token)))
    await expectInvalidToken(await send(gw, '/x', bearer(token)))
    expect(await ep.calls()).toHaveLength(1)
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  it('applies the JWT checks to the answer: iss, aud, exp, nbf, sub, token type', async () => {
    const { stub, ep, gw } = await ready()
    const now = Math.floor(Date.now() / 1000)
    const cases: [string, Record<string, unknown>][] = [
      ['another iss', { iss: 'https://elsewhere.test' }],
      ['another aud', { aud: 'api://other' }],
      ['no aud and no accepted client id', { aud: undefined }],
      ['expired', { exp: now - 3600 }],
      ['not yet valid', { nbf: now + 3600 }],
      ['no sub', { sub: undefined }],
      ['a refresh token (Okta, Keycloak)', { token_type: 'refresh_token' }],
      ['a refresh token (Hydra)', { token_use: 'refresh_token' }],
      ['exp not a number', { exp: 'soon' }],
    ]
    const answers: Record<string, unknown> = {}
    const tokens = cases.map(([, extra]) => {
      const t = opaqueToken()
      answers[t] = ep.active(extra)
      return t
    })
    await ep.setup({ answers })
    for (const [i, t] of tokens.entries()) {
      const res = await send(gw, '/x', bearer(t))
      expect(res.status, cases[i]![0]).toBe(401)
      await res.body?.cancel()
    }
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  it('accepts an answer without iss or exp (RFC 7662 makes them optional)', async () => {
    const { ep, gw } = await ready()
    const token = opaqueToken()
    await ep.setup({ answers: { [token]: { ...ep.active(), iss: undefined, exp: undefined } } })
    expect((await send(gw, '/x', bearer(token))).status).toBe(200)
  })

  it("accepts an answer without aud when its client id is on the issuer's list", async () => {
    const { ep, gw } = await ready({ issuer: { clientIds: ['app'] } })
    const token = opaqueToken()
    const other = opaqueToken()
    await ep.setup({
      answers: {
        [token]: { ...ep.active(), aud: undefined },
        [other]: { ...ep.active(), aud: undefined, client_id: 'stranger' },
      },
    })
    expect((await send(gw, '/x', bearer(token))).status).toBe(200)
    await expectInvalidToken(await send(gw, '/x', bearer(other)))
  })

  it("enforces the route's scopes on the answer's scope", async () => {
    const { ep, gw } = await ready({ route: { scopes: ['admin'] } })
    const token = opaqueToken()
    const admin = opaqueToken()
    await ep.setup({
      answers: { [token]: ep.active(), [admin]: ep.active({ scope: 'read admin' }) },
    })
    await expectRefusal(
      await send(gw, '/x', bearer(token)),
      403,
      'Bearer realm="gateway", error="insufficient_scope", error_description="The access token does not grant access to this resource", scope="admin"',
      {
        error: 'insufficient_scope',
        error_description: 'The access token does not grant access to this resource',
      },
    )
    expect((await send(gw, '/x', bearer(admin))).status).toBe(200)
  })

  it('checks revocation: a revoked jti and a subject cut-off refuse cached tokens too', async () => {
    const stub = new Stub()
    const ep = new Endpoint()
    const byJti = opaqueToken()
    const bySub = opaqueToken()
    const now = Math.floor(Date.now() / 1000)
    await ep.setup({
      answers: {
        [byJti]: ep.active({ jti: `j-${ep.id}` }),
        [bySub]: ep.active({ sub: `bob-${ep.id}`, iat: now - 10 }),
      },
    })
    const gw = gateway(stub, ep, { vars: { ADMIN_TOKEN } })
    expect((await send(gw, '/x', bearer(byJti))).status).toBe(200)
    expect((await send(gw, '/x', bearer(bySub))).status).toBe(200)
    const revoke = (payload: unknown) =>
      send(gw, '/_gateway/revocations', {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(payload),
      })
    expect((await revoke({ jti: `j-${ep.id}` })).status).toBe(201)
    expect((await revoke({ sub: `bob-${ep.id}`, before: now })).status).toBe(201)
    await expectInvalidToken(await send(gw, '/x', bearer(byJti)))
    await expectInvalidToken(await send(gw, '/x', bearer(bySub)))
    // Both refusals came from the cache and the list: no new introspection call.
    expect(await ep.calls()).toHaveLength(2)
  })

  it("binds the answer's cnf.jkt like a JWT's: Bearer refused, the key's DPoP proof accepted", async () => {
    const { stub, ep, gw } = await ready()
    const key = await clientKey()
    const other = await clientKey()
    const token = opaqueToken()
    await ep.setup({
      answers: { [token]: ep.active({ token_type: 'DPoP', cnf: { jkt: key.jkt } }) },
    })
    const url = 'https://gw.test/x'
    const asBearer = await send(gw, '/x', bearer(token))
    expect(asBearer.status).toBe(401)
    expect(asBearer.headers.get('www-authenticate')).toContain('invalid_token')
    await asBearer.body?.cancel()
    const stolen = await send(gw, '/x', dpopInit(token, await proof(other, url, 'GET', token)))
    expect(stolen.status).toBe(401)
    await stolen.body?.cancel()
    const res = await send(gw, '/x', dpopInit(token, await proof(key, url, 'GET', token)))
    expect(res.status).toBe(200)
    expect((await stub.calls()).origin).toHaveLength(1)
    // One answer, cached: the binding is checked on every request, not the introspection.
    expect(await ep.calls()).toHaveLength(1)
  })

  it('verifies a JWT on the same route without calling the endpoint', async () => {
    const { stub, ep, gw } = await ready()
    const key = await makeKey('ES256')
    await stub.publish(key)
    expect((await send(gw, '/x', bearer(await mint(key, { iss: ep.base })))).status).toBe(200)
    expect(await ep.calls()).toHaveLength(0)
  })

  it('never sends a JWS-shaped token to the endpoint, even a broken one', async () => {
    const { ep, gw } = await ready()
    await expectInvalidToken(await send(gw, '/x', bearer('aaaa.bbbb.cccc')))
    expect(await ep.calls()).toHaveLength(0)
  })

  it('refuses opaque tokens as malformed on a route whose issuers do not introspect', async () => {
    const stub = new Stub()
    const ep = new Endpoint()
    const gw = structuredEnv(stub, {
      issuers: [{ issuer: ep.base, jwksUrl: stub.jwksUrl, audiences: [AUDIENCE] }],
      routes: [{ path: '/', origin: stub.originUrl }],
    })
    await expectInvalidToken(await send(gw, '/x', bearer(opaqueToken())))
    expect(await ep.calls()).toHaveLength(0)
  })

  it('reads introspection_endpoint from discovery once', async () => {
    const { ep, gw } = await ready({ introspection: { endpoint: undefined } })
    const token = opaqueToken()
    await ep.setup({ answers: { [token]: ep.active() } })
    expect((await send(gw, '/x', bearer(token))).status).toBe(200)
    expect((await send(gw, '/x', bearer(opaqueToken()))).status).toBe(401)
    expect(await ep.discoveryFetches()).toBe(1)
    expect(await ep.calls()).toHaveLength(2)
  })

  it('refuses a discovery document naming another issuer: 503, the endpoint never called', async () => {
    const { ep, gw } = await ready({ introspection: { endpoint: undefined } })
    await ep.setup({ issuer: 'https://elsewhere.test' })
    await expectRefusal(await send(gw, '/x', bearer(opaqueToken())), 503, null, SERVICE_UNAVAILABLE)
    expect(await ep.calls()).toHaveLength(0)
  })
})

describe('introspection faults: 503 with Retry-After, never the origin, cached tokens still work', () => {
  const faults: [string, IntrospectionSetup, Record<string, unknown>?][] = [
    ['a timeout', { delayMs: 1_500 }, { timeoutMs: 200 }],
    ['a 500', { status: 500 }],
    ['a 401 (our credential refused)', { status: 401 }],
    ['a body that is not JSON', { raw: '<html>busy</html>' }],
    ['a JSON array', { raw: '[]' }],
    ['no boolean active', { raw: '{"active":"true","sub":"alice"}' }],
    ['duplicate member names', { raw: '{"active":true,"sub":"alice","sub":"root"}' }],
    ['an oversized body (declared)', { padToBytes: 20_000 }],
    ['an oversized body (streamed)', { padToBytes: 20_000, chunked: true }],
    // Followed, it would reach an endpoint that says yes to any token.
    ['a redirect', { redirect: 'elsewhere' }],
  ]
  for (const [name, fault, introspection] of faults) {
    it(`${name}`, async () => {
      const { stub, ep, gw } = await ready({ introspection })
      const cached = opaqueToken()
      await ep.setup({ answers: { [cached]: ep.active() } })
      expect((await send(gw, '/x', bearer(cached))).status).toBe(200)

      await ep.setup(
        fault.redirect ? { redirect: `${ep.base}/elsewhere`, elsewhere: ep.active() } : fault,
      )
      const logs = captureLogs()
      let res: Response
      try {
        res = await send(gw, '/x', bearer(opaqueToken()))
      } finally {
        logs.restore()
      }
      expect(res.headers.get('retry-after')).toBe('5')
      await expectRefusal(res, 503, null, SERVICE_UNAVAILABLE)
      expect(logs.lines.some((l) => l.event === 'introspection_failed')).toBe(true)
      expect(logs.lines.find((l) => l.event === 'request')?.reason).toBe(
        'introspection_unavailable',
      )
      // Not cached: the next request asks again.
      const again = await send(gw, '/x', bearer(opaqueToken()))
      expect(again.status).toBe(503)
      await again.body?.cancel()
      expect(await ep.calls()).toHaveLength(3)
      // The token already known keeps working through the outage.
      expect((await send(gw, '/x', bearer(cached))).status).toBe(200)
      expect(await ep.calls()).toHaveLength(3)
      expect((await stub.calls()).origin).toHaveLength(2)
    })
  }
})

describe('health', () => {
  it("shows each introspecting issuer's last call, without its URL or error text", async () => {
    const { ep, gw } = await ready()
    const health = async () => {
      const res = await send(gw, '/_gateway/health')
      const text = await res.text()
      expect(text).not.toContain(ep.url)
      return JSON.parse(text) as { status: string; issuers: Record<string, unknown>[] }
    }
    expect((await health()).issuers[0]).toMatchObject({ lastIntrospection: 'none yet' })
    await (await send(gw, '/x', bearer(opaqueToken()))).body?.cancel()
    expect(await health()).toMatchObject({
      status: 'ok',
      issuers: [{ introspectionCalls: 1, lastIntrospection: 'ok' }],
    })
    await ep.setup({ status: 500 })
    await (await send(gw, '/x', bearer(opaqueToken()))).body?.cancel()
    const after = await health()
    expect(after).toMatchObject({
      status: 'degraded',
      issuers: [{ introspectionCalls: 2, lastIntrospection: 'failed' }],
    })
    expect(JSON.stringify(after)).not.toContain('HTTP 500')
  })
})

/** The introspecting issuer of a parsed config, for driving the client with a frozen clock. */
function issuerConfig(ep: Endpoint, introspection: Record<string, unknown> = {}): IssuerConfig {
  const stub = new Stub()
  const parsed = parseConfig(gateway(stub, ep, { introspection }))
  if (!parsed.ok) throw parsed.error
  return parsed.config.issuers[0]!
}

function frozen(startMs: number) {
  const clock = { ms: startMs }
  const deps = {
    fetch: (input: RequestInfo | URL, init?: RequestInit) => fetch(input, init),
    now: () => clock.ms,
  }
  return { clock, deps }
}

describe('the introspection cache, with a frozen clock', () => {
  it('keeps an active answer for the configured TTL, then asks again', async () => {
    const ep = new Endpoint()
    const token = opaqueToken()
    const now = Date.now()
    await ep.setup({ answers: { [token]: ep.active({ exp: Math.floor(now / 1000) + 3600 }) } })
    const intro = new Introspector(issuerConfig(ep))
    const { clock, deps } = frozen(now)
    expect((await intro.identity(token, deps)).cached).toBe(false)
    clock.ms = now + 59_999
    expect((await intro.identity(token, deps)).cached).toBe(true)
    expect(await ep.calls()).toHaveLength(1)
    clock.ms = now + 60_000
    expect((await intro.identity(token, deps)).cached).toBe(false)
    expect(await ep.calls()).toHaveLength(2)
  })

  it('keeps an active answer no later than its exp, even with a longer TTL', async () => {
    const ep = new Endpoint()
    const token = opaqueToken()
    const now = Date.now()
    const exp = Math.floor(now / 1000) + 20
    await ep.setup({ answers: { [token]: ep.active({ exp }) } })
    const intro = new Introspector(issuerConfig(ep, { cacheTtlSeconds: 600 }))
    const { clock, deps } = frozen(now)
    await intro.identity(token, deps)
    clock.ms = exp * 1000 - 1
    expect((await intro.identity(token, deps)).cached).toBe(true)
    // Past exp the endpoint is asked again (and, with the clock past exp and leeway, refuses).
    clock.ms = exp * 1000 + 31_000
    await expect(intro.identity(token, deps)).rejects.toMatchObject({ code: 'token_expired' })
    expect(await ep.calls()).toHaveLength(2)
  })

  it('honours a configured TTL', async () => {
    const ep = new Endpoint()
    const token = opaqueToken()
    const now = Date.now()
    await ep.setup({ answers: { [token]: ep.active() } })
    const intro = new Introspector(issuerConfig(ep, { cacheTtlSeconds: 5 }))
    const { clock, deps } = frozen(now)
    await intro.identity(token, deps)
    clock.ms = now + 4_999
    expect((await intro.identity(token, deps)).cached).toBe(true)
    clock.ms = now + 5_000
    expect((await intro.identity(token, deps)).cached).toBe(false)
  })

  it('keeps an inactive answer for the negative TTL (10 s by default)', async () => {
    const ep = new Endpoint()
    const token = opaqueToken()
    const now = Date.now()
    await ep.setup({})
    const intro = new Introspector(issuerConfig(ep))
    const { clock, deps } = frozen(now)
    await expect(intro.identity(token, deps)).rejects.toMatchObject({ code: 'token_inactive' })
    clock.ms = now + 9_999
    await expect(intro.identity(token, deps)).rejects.toMatchObject({ code: 'token_inactive' })
    expect(await ep.calls()).toHaveLength(1)
    clock.ms = now + 10_000
    // Activated meanwhile: the next call sees it.
    await ep.setup({ answers: { [token]: ep.active() } })
    expect((await intro.identity(token, deps)).cached).toBe(false)
    expect(await ep.calls()).toHaveLength(2)
  })

  it('holds hashes, never the token', async () => {
    const ep = new Endpoint()
    const token = opaqueToken()
    await ep.setup({ answers: { [token]: ep.active() } })
    const intro = new Introspector(issuerConfig(ep))
    await intro.identity(token, frozen(Date.now()).deps)
    const keys = [
      ...(
        intro.cache as unknown as { active: { entries: Map<string, unknown> } }
      ).active.entries.keys(),
    ]
    expect(keys).toHaveLength(1)
    expect(keys[0]).toMatch(/^[0-9a-f]{64}$/)
    expect(keys[0]).not.toContain(token)
  })
})

describe('the flood bound', () => {
  it('makes at most callsPerSecond calls per second for unknown tokens; the rest are 401 unasked', async () => {
    const ep = new Endpoint()
    await ep.setup({})
    const intro = new Introspector(issuerConfig(ep, { callsPerSecond: 3 }))
    const now = Date.now()
    const { clock, deps } = frozen(now)
    const logs = captureLogs()
    const codes: string[] = []
    try {
      for (let i = 0; i < 10; i++) {
        await intro.identity(opaqueToken(), deps).catch((e: { code: string }) => codes.push(e.code))
      }
    } finally {
      logs.restore()
    }
    expect(codes).toEqual([
      ...Array(3).fill('token_inactive'),
      ...Array(7).fill('introspection_throttled'),
    ])
    expect(await ep.calls()).toHaveLength(3)
    // Logged once per window, not once per refused token.
    expect(logs.lines.filter((l) => l.event === 'introspection_throttled')).toHaveLength(1)

    clock.ms = now + CALL_BUDGET_WINDOW_MS
    await expect(intro.identity(opaqueToken(), deps)).rejects.toMatchObject({
      code: 'token_inactive',
    })
    expect(await ep.calls()).toHaveLength(4)
  })

  it('answers a throttled token 401 invalid_token through the gateway, and cached tokens pass', async () => {
    const { ep, gw } = await ready({ introspection: { callsPerSecond: 1 } })
    const known = opaqueToken()
    await ep.setup({ answers: { [known]: ep.active() } })
    expect((await send(gw, '/x', bearer(known))).status).toBe(200)
    const logs = captureLogs()
    let res: Response
    try {
      res = await send(gw, '/x', bearer(opaqueToken()))
    } finally {
      logs.restore()
    }
    // One call per second: unless the second ticked over, this one is refused unasked.
    const calls = (await ep.calls()).length
    if (calls === 1) {
      await expectInvalidToken(res)
      expect(logs.lines.find((l) => l.event === 'request')?.reason).toBe('introspection_throttled')
    } else await res.body?.cancel()
    expect((await send(gw, '/x', bearer(known))).status).toBe(200)
  })
})

async function privateKeyJwk(): Promise<{ secret: string; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const secret = JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'client-key-1' })
  return { secret, publicJwk: await exportJWK(publicKey) }
}

describe('client authentication, and where the credential goes', () => {
  it('client_secret_basic (the default): form-encoded id and secret in Basic', async () => {
    const { ep, gw } = await ready({ introspection: { clientId: 'gw client:1' } })
    await send(gw, '/x', bearer(opaqueToken()))
    const [call] = await ep.calls()
    const basic = `Basic ${btoa(`gw+client%3A1:${CLIENT_SECRET}`)}`
    expect(call!.headers.authorization).toBe(basic)
    expect(call!.form.client_secret).toBeUndefined()
  })

  it('client_secret_post: id and secret in the form, no Authorization', async () => {
    const { ep, gw } = await ready({ introspection: { auth: 'client_secret_post' } })
    await send(gw, '/x', bearer(opaqueToken()))
    const [call] = await ep.calls()
    expect(call!.headers.authorization).toBeUndefined()
    expect(call!.form).toMatchObject({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET })
  })

  it('private_key_jwt: a fresh signed assertion per call, aud the endpoint', async () => {
    const { secret, publicJwk } = await privateKeyJwk()
    const { ep, gw } = await ready({
      introspection: { auth: 'private_key_jwt', clientSecret: 'CLIENT_KEY' },
      vars: { CLIENT_KEY: secret },
    })
    await send(gw, '/x', bearer(opaqueToken()))
    await send(gw, '/x', bearer(opaqueToken()))
    const calls = await ep.calls()
    expect(calls).toHaveLength(2)
    const jtis = new Set<unknown>()
    for (const call of calls) {
      expect(call.headers.authorization).toBeUndefined()
      expect(call.form.client_assertion_type).toBe(
        'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      )
      const { payload, protectedHeader } = await jwtVerify(call.form.client_assertion!, publicJwk, {
        issuer: CLIENT_ID,
        subject: CLIENT_ID,
        audience: ep.url,
      })
      expect(protectedHeader).toMatchObject({ alg: 'ES256', kid: 'client-key-1' })
      expect(payload.exp! - payload.iat!).toBe(60)
      jtis.add(payload.jti)
    }
    expect(jtis.size).toBe(2)
  })

  it('the credential and the token never reach the origin or a log line', async () => {
    const { secret } = await privateKeyJwk()
    for (const auth of ['client_secret_basic', 'client_secret_post', 'private_key_jwt']) {
      const jwt = auth === 'private_key_jwt'
      const { stub, ep, gw } = await ready({
        introspection: { auth, ...(jwt ? { clientSecret: 'CLIENT_KEY' } : {}) },
        vars: { CLIENT_KEY: secret },
        route: { identity: { sendClaims: true } },
      })
      const token = opaqueToken()
      await ep.setup({ answers: { [token]: ep.active() } })
      const logs = captureLogs()
      try {
        expect((await send(gw, '/x', bearer(token))).status).toBe(200)
        await ep.setup({ status: 500 })
        const failed = await send(gw, '/x', bearer(opaqueToken()))
        expect(failed.status).toBe(503)
        await failed.body?.cancel()
      } finally {
        logs.restore()
      }
      const [call] = await ep.calls()
      const sent = JSON.stringify(call)
      const credential =
        auth === 'private_key_jwt'
          ? call!.form.client_assertion!
          : auth === 'client_secret_basic'
            ? String(call!.headers.authorization).slice('Basic '.length)
            : CLIENT_SECRET
      expect(sent).toContain(credential)
      const origin = JSON.stringify((await stub.calls()).origin)
      for (const secretText of [credential, CLIENT_SECRET, btoa(`${CLIENT_ID}:${CLIENT_SECRET}`)]) {
        expect(origin, auth).not.toContain(secretText)
        expect(logs.text(), auth).not.toContain(secretText)
      }
      expect(origin).not.toContain(token)
      expect(logs.text()).not.toContain(token)
      expect(logs.text()).not.toContain(JSON.parse(secret).d)
    }
  })
})

describe('introspection config', () => {
  function parsed(gateway: unknown, vars: GatewayEnv = {}) {
    const stub = new Stub()
    const result = parseConfig(structuredEnv(stub, gateway, vars))
    return result.ok ? result.config : result.error.message
  }
  const issuer = (iss: string, introspection?: unknown) => ({
    issuer: iss,
    jwksUrl: 'https://keys.test/jwks',
    audiences: [AUDIENCE],
    ...(introspection === undefined ? {} : { introspection }),
  })
  const intro = { clientId: 'c', clientSecret: 'S' }

  it('defaults: basic auth, 60 s, 10 s, 3000 ms, 20 calls per second; endpoint from discovery', () => {
    const config = parsed(
      {
        issuers: [issuer('https://a.test', intro)],
        routes: [{ path: '/', origin: 'https://o.test' }],
      },
      { S: 'secret' },
    )
    if (typeof config === 'string') throw new Error(config)
    expect(config.issuers[0]!.introspection).toEqual({
      endpoint: null,
      discoveryUrl: 'https://a.test/.well-known/openid-configuration',
      clientId: 'c',
      auth: 'client_secret_basic',
      credential: { kind: 'secret', secret: 'secret' },
      cacheTtlS: 60,
      negativeCacheTtlS: 10,
      timeoutMs: 3000,
      callsPerSecond: 20,
    })
    expect(config.routes[0]!.opaqueIssuer).toBe('https://a.test')
  })

  it('names the field of every mistake, never the secret value', () => {
    const route = { path: '/', origin: 'https://o.test' }
    const cases: [unknown, GatewayEnv, string][] = [
      [
        { ...intro, clientSecret: 'MISSING' },
        {},
        'GATEWAY.issuers[0].introspection.clientSecret: names secret MISSING, which is not set (wrangler secret put MISSING)',
      ],
      [
        { ...intro, auth: 'none' },
        { S: 'x' },
        'GATEWAY.issuers[0].introspection.auth: must be one of client_secret_basic, client_secret_post, private_key_jwt',
      ],
      [
        { ...intro, endpoint: 'http://idp.test/introspect' },
        { S: 'x' },
        'GATEWAY.issuers[0].introspection.endpoint: must be an https URL (http only for localhost) (got "http://idp.test/introspect")',
      ],
      [
        { ...intro, auth: 'private_key_jwt' },
        { S: 'not-json-s3cret' },
        'GATEWAY.issuers[0].introspection.clientSecret: must be a private JWK as JSON',
      ],
      [
        { ...intro, auth: 'private_key_jwt' },
        { S: '{"kty":"oct","k":"s3cret"}' },
        'GATEWAY.issuers[0].introspection.clientSecret: must be a private RSA, EC P-256 or Ed25519 JWK',
      ],
      [
        { ...intro, cacheTtl: 5 },
        { S: 'x' },
        'GATEWAY.issuers[0].introspection.cacheTtl: is not a known field',
      ],
      [
        { ...intro, callsPerSecond: 0 },
        { S: 'x' },
        'GATEWAY.issuers[0].introspection.callsPerSecond: must be a whole number from 1 to 1000 (got "0")',
      ],
      [{ clientSecret: 'S' }, { S: 'x' }, 'GATEWAY.issuers[0].introspection.clientId: is required'],
    ]
    for (const [introspection, vars, message] of cases) {
      const got = parsed(
        { issuers: [issuer('https://a.test', introspection)], routes: [route] },
        vars,
      )
      expect(got).toBe(message)
      expect(got).not.toContain('s3cret')
    }
  })

  it('a route with several introspecting issuers must name one in opaqueIssuer', () => {
    const issuers = [
      issuer('https://a.test', intro),
      issuer('https://b.test', intro),
      issuer('https://c.test'),
    ]
    const vars = { S: 'x' }
    expect(parsed({ issuers, routes: [{ path: '/', origin: 'https://o.test' }] }, vars)).toBe(
      "GATEWAY.routes[0].opaqueIssuer: is required: several of the route's issuers introspect (https://a.test, https://b.test)",
    )
    expect(
      parsed(
        {
          issuers,
          routes: [{ path: '/', origin: 'https://o.test', opaqueIssuer: 'https://c.test' }],
        },
        vars,
      ),
    ).toBe(
      'GATEWAY.routes[0].opaqueIssuer: "https://c.test" is not one of the route\'s issuers with introspection',
    )
    const ok = parsed(
      {
        issuers,
        routes: [
          { path: '/', origin: 'https://o.test', opaqueIssuer: 'https://b.test' },
          { path: '/a', origin: 'https://o.test', issuers: ['https://a.test', 'https://c.test'] },
          { path: '/c', origin: 'https://o.test', issuers: ['https://c.test'] },
        ],
      },
      vars,
    )
    if (typeof ok === 'string') throw new Error(ok)
    expect(ok.routes.map((r) => r.opaqueIssuer)).toEqual(['https://b.test', 'https://a.test', null])
  })
})
