/**
 * Structured mode end to end: several issuers, routes with their own policy, token sources and
 * identity headers, and the signed identity assertion, driven through the real worker against the
 * loopback stub (JWKS and origin per namespace, with call counts).
 */
import {
  createLocalJWKSet,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  type JWK,
  type JWTPayload,
} from 'jose'
import { describe, expect, it } from 'vitest'
import {
  bearer,
  expectInvalidToken,
  expectRefusal,
  fromB64u,
  makeKey,
  mint,
  send,
  structuredEnv,
  Stub,
  type GatewayEnv,
  type MintOptions,
  type OriginCall,
  type TestKey,
} from '../helpers'

const AUD = 'api://routes'
const REQUIRED = 'Bearer realm="gateway"'
const REQUIRED_BODY = { error: 'unauthorized', error_description: 'A bearer token is required' }
const EXPIRED =
  'Bearer realm="gateway", error="invalid_token", error_description="The access token expired"'
const EXPIRED_BODY = { error: 'invalid_token', error_description: 'The access token expired' }
const FORBIDDEN_DESCRIPTION = 'The access token does not grant access to this resource'
const FORBIDDEN = `Bearer realm="gateway", error="insufficient_scope", error_description="${FORBIDDEN_DESCRIPTION}"`
const FORBIDDEN_BODY = { error: 'insufficient_scope', error_description: FORBIDDEN_DESCRIPTION }
const NO_ROUTE_BODY = { error: 'not_found', error_description: 'No route for this request' }
const BAD_PATH_BODY = {
  error: 'invalid_request',
  error_description: 'The request path is not acceptable',
}

const now = () => Math.floor(Date.now() / 1000)

/** An issuer of its own: a stub namespace serving its JWKS, and a way to mint its tokens. */
interface Party {
  stub: Stub
  key: TestKey
  iss: string
  /** This issuer's entry in GATEWAY.issuers. */
  issuer: Record<string, unknown>
  token: (claims?: JWTPayload, opts?: MintOptions) => Promise<string>
}

async function party(extra: Record<string, unknown> = {}): Promise<Party> {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  const iss = `https://issuer.test/${stub.id}`
  return {
    stub,
    key,
    iss,
    issuer: { issuer: iss, jwksUrl: stub.jwksUrl, audiences: [AUD], ...extra },
    token: (claims = {}, opts) => mint(key, { iss, aud: AUD, ...claims }, opts),
  }
}

/** The origin's record of the request; fails with the gateway's answer if it was not forwarded. */
async function forwarded(res: Response): Promise<OriginCall> {
  const text = await res.text()
  expect(res.status, text).toBe(200)
  return JSON.parse(text) as OriginCall
}

/** Path the stub origin saw for a route whose origin is `${stub.originUrl}${sub}`. */
const at = (stub: Stub, sub: string, path: string) => `/ns/${stub.id}/origin${sub}${path}`

/** Headers the origin got whose name starts with `prefix`, reading `_` as `-`. */
function prefixed(call: OriginCall, prefix: string): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(call.headers).filter(([name]) => name.replaceAll('_', '-').startsWith(prefix)),
  )
}

async function jwksFetches(...stubs: Stub[]): Promise<number[]> {
  return Promise.all(stubs.map(async (s) => (await s.calls()).jwksFetches))
}

async function originCalls(stub: Stub): Promise<number> {
  return (await stub.calls()).origin.length
}

function hs(secret: string, claims: JWTPayload, alg = 'HS256'): Promise<string> {
  const t = now()
  return new SignJWT({ aud: AUD, sub: 'alice', iat: t, exp: t + 300, ...claims })
    .setProtectedHeader({ alg, typ: 'JWT' })
    .sign(new TextEncoder().encode(secret))
}

describe('issuers', () => {
  it("two issuers with their own JWKS: each token is checked against its issuer's keys only", async () => {
    const a = await party()
    const b = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer, b.issuer],
      routes: [{ path: '/', origin: a.stub.originUrl }],
    })
    const fromA = await forwarded(await send(gw, '/x', bearer(await a.token())))
    expect([fromA.headers['x-auth-iss'], fromA.headers['x-auth-sub']]).toEqual([a.iss, 'alice'])
    expect(await jwksFetches(a.stub, b.stub)).toEqual([1, 0])

    const fromB = await forwarded(await send(gw, '/x', bearer(await b.token({ sub: 'bob' }))))
    expect([fromB.headers['x-auth-iss'], fromB.headers['x-auth-sub']]).toEqual([b.iss, 'bob'])
    expect(await jwksFetches(a.stub, b.stub)).toEqual([1, 1])

    // A's key claiming to be B: looked up among B's keys only, where its kid is unknown.
    await expectInvalidToken(
      await send(gw, '/x', bearer(await mint(a.key, { iss: b.iss, aud: AUD }))),
    )
    expect(await jwksFetches(a.stub, b.stub)).toEqual([1, 1])
    expect(await originCalls(a.stub)).toBe(2)
  })

  it('an unknown iss is refused with 401 before any key is fetched, on every namespace', async () => {
    const a = await party()
    const b = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer, b.issuer],
      routes: [{ path: '/', origin: a.stub.originUrl }],
    })
    for (const iss of ['https://evil.test', `${a.iss}/`, a.iss.toUpperCase(), undefined]) {
      await expectInvalidToken(await send(gw, '/x', bearer(await mint(a.key, { iss, aud: AUD }))))
    }
    expect(await jwksFetches(a.stub, b.stub)).toEqual([0, 0])
    expect(await originCalls(a.stub)).toBe(0)
    // The same key and claims with the right iss: the counts above would have moved.
    expect((await send(gw, '/x', bearer(await a.token()))).status).toBe(200)
    expect(await jwksFetches(a.stub, b.stub)).toEqual([1, 0])
  })

  it('static keys (a list or a JWKS document) verify without any fetch', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    const impostor = await makeKey('ES256', key.kid)
    await stub.publish(impostor)
    const iss = 'https://static.issuer.test'
    for (const keys of [[key.publicJwk], { keys: [key.publicJwk] }]) {
      const gw = structuredEnv(stub, {
        issuers: [{ issuer: iss, keys, audiences: [AUD] }],
        routes: [{ path: '/', origin: stub.originUrl }],
      })
      const call = await forwarded(await send(gw, '/x', bearer(await mint(key, { iss, aud: AUD }))))
      expect(call.headers['x-auth-iss']).toBe(iss)
      // Same kid, other key: a bad signature, and no fetch to look for another key.
      await expectInvalidToken(
        await send(gw, '/x', bearer(await mint(impostor, { iss, aud: AUD }))),
      )
      const other = await makeKey('ES256')
      await expectInvalidToken(await send(gw, '/x', bearer(await mint(other, { iss, aud: AUD }))))
    }
    expect(await stub.calls()).toMatchObject({ jwksFetches: 0, discoveryFetches: 0 })
    expect(await originCalls(stub)).toBe(2)
  })

  it('an HMAC issuer takes HS256 with its secret; HS and asymmetric tokens never cross issuers', async () => {
    const secret = 'hmac-secret-exactly-32-bytes-lng'
    const hsIss = 'https://hmac.issuer.test'
    const a = await party()
    const gw = structuredEnv(
      a.stub,
      {
        issuers: [
          { issuer: hsIss, hmacSecret: 'HS_SECRET', audiences: [AUD], algorithms: ['HS256'] },
          a.issuer,
        ],
        routes: [{ path: '/', origin: a.stub.originUrl }],
      },
      { HS_SECRET: secret },
    )
    const ok = await forwarded(await send(gw, '/x', bearer(await hs(secret, { iss: hsIss }))))
    expect([ok.headers['x-auth-iss'], ok.headers['x-auth-sub']]).toEqual([hsIss, 'alice'])

    const rsa = await makeKey('RS256')
    const refused = [
      // wrong secret
      await hs('another-secret-of-exactly-32-byt', { iss: hsIss }),
      // right secret, an HS algorithm the issuer does not list
      await hs(secret, { iss: hsIss }, 'HS512'),
      // asymmetric tokens naming the HMAC issuer
      await mint(a.key, { iss: hsIss, aud: AUD }),
      await mint(rsa, { iss: hsIss, aud: AUD }),
      // HS256 naming the JWKS issuer: with the HMAC secret, and with A's public key as the secret
      await hs(secret, { iss: a.iss }),
      await hs(JSON.stringify(a.key.publicJwk), { iss: a.iss }),
    ]
    for (const token of refused) await expectInvalidToken(await send(gw, '/x', bearer(token)))
    // The JWKS issuer refused HS256 by its algorithm list, before looking at any key.
    expect(await jwksFetches(a.stub)).toEqual([0])
    expect(await originCalls(a.stub)).toBe(1)
    expect((await send(gw, '/x', bearer(await a.token()))).status).toBe(200)
    expect(await jwksFetches(a.stub)).toEqual([1])
  })

  it('maxTokenAgeSeconds: an older iat is refused as expired, a missing iat as invalid', async () => {
    const strict = await party({ maxTokenAgeSeconds: 60, clockSkewSeconds: 0 })
    const lax = await party()
    const gw = structuredEnv(strict.stub, {
      issuers: [strict.issuer, lax.issuer],
      routes: [{ path: '/', origin: strict.stub.originUrl }],
    })
    const t = now()
    expect((await send(gw, '/x', bearer(await strict.token({ iat: t - 5 })))).status).toBe(200)
    const old = await send(gw, '/x', bearer(await strict.token({ iat: t - 120 })))
    await expectRefusal(old, 401, EXPIRED, EXPIRED_BODY)
    await expectInvalidToken(await send(gw, '/x', bearer(await strict.token({ iat: undefined }))))
    // The limit is the strict issuer's alone.
    expect((await send(gw, '/x', bearer(await lax.token({ iat: t - 120 })))).status).toBe(200)
    expect((await send(gw, '/x', bearer(await lax.token({ iat: undefined })))).status).toBe(200)
    expect(await originCalls(strict.stub)).toBe(3)
  })

  it('clockSkewSeconds is per issuer', async () => {
    const none = await party({ clockSkewSeconds: 0 })
    const dflt = await party()
    const wide = await party({ clockSkewSeconds: 120 })
    const gw = structuredEnv(none.stub, {
      issuers: [none.issuer, dflt.issuer, wide.issuer],
      routes: [{ path: '/', origin: none.stub.originUrl }],
    })
    const status = async (p: Party, expiredFor: number) => {
      const res = await send(gw, '/x', bearer(await p.token({ exp: now() - expiredFor })))
      if (res.status === 401) await expectRefusal(res, 401, EXPIRED, EXPIRED_BODY)
      return res.status
    }
    // 10 s past exp: inside the default 30 s, outside 0 s.
    expect([await status(none, 10), await status(dflt, 10), await status(wide, 10)]).toEqual([
      401, 200, 200,
    ])
    // 60 s past exp: outside the default, inside 120 s.
    expect([await status(none, 60), await status(dflt, 60), await status(wide, 60)]).toEqual([
      401, 401, 200,
    ])
  })

  it('types: a listed typ is required (case-insensitive, application/ optional)', async () => {
    const typed = await party({ types: ['at+jwt'] })
    const untyped = await party()
    const gw = structuredEnv(typed.stub, {
      issuers: [typed.issuer, untyped.issuer],
      routes: [{ path: '/', origin: typed.stub.originUrl }],
    })
    const status = async (p: Party, typ: string | undefined) =>
      (await send(gw, '/x', bearer(await p.token({}, { header: { typ } })))).status
    const typs = ['at+jwt', 'application/at+jwt', 'AT+JWT', 'JWT', undefined]
    const got = []
    for (const typ of typs) got.push(await status(typed, typ))
    expect(got).toEqual([200, 200, 200, 401, 401])
    const gotUntyped = []
    for (const typ of [...typs, 'secevent+jwt']) gotUntyped.push(await status(untyped, typ))
    expect(gotUntyped).toEqual([200, 200, 200, 200, 200, 401])
  })
})

describe('routes', () => {
  it('the longest matching prefix wins, whatever the order of the routes', async () => {
    const stub = new Stub()
    const o = stub.originUrl
    const gw = structuredEnv(stub, {
      routes: [
        { path: '/api', origin: `${o}/api-route`, auth: 'public' },
        { path: '/', origin: `${o}/root-route`, auth: 'public' },
        { path: '/api/v2', origin: `${o}/v2-route`, auth: 'public' },
      ],
    })
    const cases: [string, string][] = [
      ['/api/v2/users', '/v2-route'],
      ['/api/v2', '/v2-route'],
      ['/api/v2/', '/v2-route'],
      ['/api/v2x', '/api-route'],
      ['/api/v', '/api-route'],
      ['/api', '/api-route'],
      ['/apix', '/root-route'],
      ['/v2', '/root-route'],
      ['/', '/root-route'],
    ]
    for (const [path, route] of cases) {
      expect((await forwarded(await send(gw, path))).url, path).toBe(at(stub, route, path))
    }
  })

  it('a prefix matches at segment boundaries only: /api does not match /apix', async () => {
    const stub = new Stub()
    const gw = structuredEnv(stub, {
      routes: [{ path: '/api', origin: stub.originUrl, auth: 'public' }],
    })
    for (const path of ['/apix', '/ap', '/', '/other/api']) {
      await expectRefusal(await send(gw, path), 404, null, NO_ROUTE_BODY)
    }
    expect(await originCalls(stub)).toBe(0)
    for (const path of ['/api', '/api/', '/api/x']) {
      expect((await forwarded(await send(gw, path))).url).toBe(at(stub, '', path))
    }
  })

  it('host: a route for the host beats an any-host route of the same prefix; ports count', async () => {
    const stub = new Stub()
    const o = stub.originUrl
    const gw = structuredEnv(stub, {
      routes: [
        { path: '/', origin: `${o}/any`, auth: 'public' },
        { host: 'A.example', path: '/', origin: `${o}/a`, auth: 'public' },
        { host: 'c.example:8443', path: '/', origin: `${o}/c`, auth: 'public' },
        { host: 'b.example', path: '/only-b', origin: `${o}/b`, auth: 'public' },
      ],
    })
    const cases: [string, string][] = [
      ['https://a.example/x', '/a'],
      ['https://A.EXAMPLE/x', '/a'],
      ['https://a.example/only-b', '/a'],
      ['https://b.example/x', '/any'],
      ['https://b.example/only-b/x', '/b'],
      ['https://c.example:8443/x', '/c'],
      ['https://c.example/x', '/any'],
      ['https://a.example.evil/x', '/any'],
    ]
    for (const [url, route] of cases) {
      expect((await forwarded(await send(gw, url))).url, url).toBe(
        at(stub, route, new URL(url).pathname),
      )
    }
    const hostOnly = structuredEnv(stub, {
      routes: [{ host: 'a.example', path: '/', origin: o, auth: 'public' }],
    })
    await expectRefusal(await send(hostOnly, 'https://z.example/x'), 404, null, NO_ROUTE_BODY)
    expect(await originCalls(stub)).toBe(cases.length)
  })

  it('methods: a route listing the method beats an any-method route of the same prefix', async () => {
    const a = await party()
    const o = a.stub.originUrl
    const reads = { path: '/items', methods: ['get', 'HEAD'], origin: `${o}/read`, auth: 'public' }
    const writes = { path: '/items', origin: `${o}/write` }
    // Both orders: which route serves a request must not depend on where it is written.
    for (const routes of [
      [reads, writes],
      [writes, reads],
    ]) {
      const gw = structuredEnv(a.stub, { issuers: [a.issuer], routes })
      expect((await forwarded(await send(gw, '/items/1'))).url).toBe(
        at(a.stub, '/read', '/items/1'),
      )
      await expectRefusal(
        await send(gw, '/items/1', { method: 'POST', body: 'x' }),
        401,
        REQUIRED,
        REQUIRED_BODY,
      )
      const token = await a.token()
      const post = await send(gw, '/items/1', { method: 'POST', body: 'x', ...bearer(token) })
      expect((await forwarded(post)).url).toBe(at(a.stub, '/write', '/items/1'))
    }
    const onlyGet = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [{ path: '/', methods: ['GET'], origin: o, auth: 'public' }],
    })
    await expectRefusal(await send(onlyGet, '/x', { method: 'DELETE' }), 404, null, NO_ROUTE_BODY)
    expect(await originCalls(a.stub)).toBe(4)
  })

  it('no spelling of a path borrows the public route: dot segments, escapes, encoded slashes', async () => {
    const a = await party()
    const o = a.stub.originUrl
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [
        { path: '/public', auth: 'public', origin: `${o}/pub` },
        { path: '/admin', origin: `${o}/adm` },
        { path: '/', origin: `${o}/root` },
      ],
    })
    // The runtime resolves dot segments, %2e included, before the gateway sees the path.
    for (const path of [
      '/public/../admin',
      '/public/%2e%2e/admin',
      '/public/%2E%2E/admin',
      '/public/.%2e/admin',
      '/public/%2e./admin',
      '/public/./../admin',
    ]) {
      await expectRefusal(await send(gw, path), 401, REQUIRED, REQUIRED_BODY)
      const call = await forwarded(await send(gw, path, bearer(await a.token())))
      expect(call.url, path).toBe(at(a.stub, '/adm', '/admin'))
    }
    // Percent-encoded unreserved characters are decoded for matching, sent on as they came.
    for (const [path, sent] of [
      ['/%70ublic/x', '/%70ublic/x'],
      ['/%70%75%62%6C%69%63/x', '/%70%75%62%6C%69%63/x'],
      ['/admin/../public/x', '/public/x'],
      ['/admin/%2e%2e/public/x', '/public/x'],
    ] as const) {
      const call = await forwarded(await send(gw, path))
      expect(call.url, path).toBe(at(a.stub, '/pub', sent))
      expect(call.headers['x-auth-sub']).toBeUndefined()
    }
    // %61 is "a": /%61dmin is /admin, so it needs a token like /admin.
    await expectRefusal(await send(gw, '/%61dmin/x'), 401, REQUIRED, REQUIRED_BODY)
    // An encoded slash or backslash would let an origin that decodes it see another path.
    for (const path of [
      '/public/..%2Fadmin',
      '/public/..%2fadmin',
      '/public%2F..%2Fadmin',
      '/public/%2e%2e%2fadmin',
      '/public/..%5Cadmin',
      '/public/..%5cadmin',
    ]) {
      await expectRefusal(await send(gw, path, bearer(await a.token())), 400, null, BAD_PATH_BODY)
    }
    // Matching is case-sensitive, like the path itself: /PUBLIC is not /public.
    await expectRefusal(await send(gw, '/PUBLIC/x'), 401, REQUIRED, REQUIRED_BODY)
    expect((await a.stub.calls()).origin.map((c) => c.url)).toEqual([
      ...Array(6).fill(at(a.stub, '/adm', '/admin')),
      at(a.stub, '/pub', '/%70ublic/x'),
      at(a.stub, '/pub', '/%70%75%62%6C%69%63/x'),
      at(a.stub, '/pub', '/public/x'),
      at(a.stub, '/pub', '/public/x'),
    ])
  })

  it('no route: 404 from the gateway, the origin is not called', async () => {
    const stub = new Stub()
    const gw = structuredEnv(stub, {
      routes: [{ path: '/app', origin: stub.originUrl, auth: 'public' }],
    })
    await expectRefusal(await send(gw, '/other', bearer('a.b.c')), 404, null, NO_ROUTE_BODY)
    expect(await stub.calls()).toEqual({ jwksFetches: 0, discoveryFetches: 0, origin: [] })
  })
})

describe('auth modes', () => {
  const spoofed = {
    'x-auth-sub': 'mallory',
    x_auth_sub: 'mallory',
    'X-Auth_Claims': 'e30',
    'x-auth-iss': 'https://evil.test',
  }

  async function modes() {
    const a = await party()
    const o = a.stub.originUrl
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [
        { path: '/req', origin: o },
        { path: '/opt', origin: o, auth: 'optional' },
        { path: '/pub', origin: o, auth: 'public' },
      ],
    })
    return { a, gw }
  }

  it('required: no token is 401 with a bare challenge; a valid one is forwarded', async () => {
    const { a, gw } = await modes()
    await expectRefusal(await send(gw, '/req', { headers: spoofed }), 401, REQUIRED, REQUIRED_BODY)
    const call = await forwarded(
      await send(gw, '/req', { headers: { ...spoofed, ...bearer(await a.token()).headers } }),
    )
    expect(call.headers['x-auth-sub']).toBe('alice')
    expect(call.headers['x-auth-iss']).toBe(a.iss)
    expect(call.headers.x_auth_sub).toBeUndefined()
    expect(call.headers.authorization).toBeUndefined()
    expect(await originCalls(a.stub)).toBe(1)
  })

  it('optional: no token goes anonymously with identity headers stripped; a bad one is 401', async () => {
    const { a, gw } = await modes()
    const anon = await forwarded(await send(gw, '/opt', { headers: spoofed }))
    expect(prefixed(anon, 'x-auth-')).toEqual({})
    expect(await jwksFetches(a.stub)).toEqual([0])

    const badSignature = (await a.token()).replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'))
    const other = await makeKey('ES256')
    for (const token of [
      badSignature,
      await mint(other, { iss: a.iss, aud: AUD }),
      await a.token({ exp: now() - 3600 }),
    ]) {
      const res = await send(gw, '/opt', {
        headers: { ...spoofed, authorization: `Bearer ${token}` },
      })
      expect(res.status).toBe(401)
      await res.body?.cancel()
    }
    // Not JWS at all: 401 too, never forwarded as if anonymous.
    await expectInvalidToken(await send(gw, '/opt', bearer('not-a-jwt')))
    expect(await originCalls(a.stub)).toBe(1)

    const named = await forwarded(
      await send(gw, '/opt', { headers: { ...spoofed, ...bearer(await a.token()).headers } }),
    )
    expect(prefixed(named, 'x-auth-')).toMatchObject({ 'x-auth-sub': 'alice', 'x-auth-iss': a.iss })
    expect(named.headers.x_auth_sub).toBeUndefined()
  })

  it('public: nothing is verified, even a garbage token, and identity headers are still stripped', async () => {
    const { a, gw } = await modes()
    for (const authorization of [
      'Bearer garbage',
      'Bearer a.b.c, Bearer d.e.f',
      `Bearer ${await a.token()}`,
    ]) {
      const call = await forwarded(
        await send(gw, '/pub/x', { headers: { ...spoofed, authorization } }),
      )
      expect(prefixed(call, 'x-auth-')).toEqual({})
      expect(call.headers.authorization).toBeUndefined()
    }
    expect(await jwksFetches(a.stub)).toEqual([0])
    expect(await originCalls(a.stub)).toBe(3)
  })
})

describe('policy', () => {
  it('scopes from `scope` and `scp`, each a space-delimited string or an array; a missing one is 403 naming the scopes', async () => {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [{ path: '/', origin: a.stub.originUrl, scopes: ['a', 'b'] }],
    })
    for (const claims of [
      { scope: 'a b' },
      { scope: 'x b a' },
      { scp: ['b', 'a'] },
      { scope: 'a', scp: ['b'] },
      // Entra's delegated scopes: `scp` as a string; some issuers write `scope` as an array.
      { scp: 'a b' },
      { scope: ['a', 'b'] },
      { scope: ['a'], scp: 'b' },
    ]) {
      expect(
        (await send(gw, '/x', bearer(await a.token(claims)))).status,
        JSON.stringify(claims),
      ).toBe(200)
    }
    const challenge = `${FORBIDDEN}, scope="a b"`
    for (const claims of [
      {},
      { scope: 'a' },
      { scope: 'ab' },
      { scope: 'a,b' },
      { scp: 'a,b' },
      { scope: ['a b'] },
      { scp: ['a'] },
      { scp: { a: true, b: true } },
    ]) {
      const res = await send(gw, '/x', bearer(await a.token(claims)))
      await expectRefusal(res, 403, challenge, FORBIDDEN_BODY)
    }
    expect(await originCalls(a.stub)).toBe(7)
  })

  it('claim rules: equals, oneOf and contains, with nested paths', async () => {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [
        {
          path: '/',
          origin: a.stub.originUrl,
          claims: [
            { claim: 'org.id', equals: 'acme' },
            { claim: 'tier', oneOf: ['gold', 'silver'] },
            { claim: 'roles', contains: 'admin' },
            { claim: 'level', equals: 3 },
          ],
        },
      ],
    })
    const good = { org: { id: 'acme' }, tier: 'gold', roles: ['user', 'admin'], level: 3 }
    for (const claims of [good, { ...good, tier: 'silver' }, { ...good, roles: 'user admin' }]) {
      expect(
        (await send(gw, '/x', bearer(await a.token(claims)))).status,
        JSON.stringify(claims),
      ).toBe(200)
    }
    for (const claims of [
      { ...good, org: { id: 'evil' } },
      { ...good, org: undefined },
      { ...good, org: 'acme' },
      // a top-level claim literally named "org.id" is not the nested path
      { ...good, org: undefined, 'org.id': 'acme' },
      { ...good, org: { id: ['acme'] } },
      { ...good, tier: 'bronze' },
      { ...good, tier: ['gold'] },
      { ...good, roles: ['administrator'] },
      { ...good, roles: 'administrator' },
      { ...good, roles: undefined },
      { ...good, level: '3' },
    ]) {
      const res = await send(gw, '/x', bearer(await a.token(claims)))
      await expectRefusal(res, 403, FORBIDDEN, FORBIDDEN_BODY)
    }
    expect(await originCalls(a.stub)).toBe(3)
  })

  it('a claim path never reaches inherited properties', async () => {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [
        {
          path: '/',
          origin: a.stub.originUrl,
          // Read through prototypes, `{}.__proto__.__proto__` is null: every token would pass.
          claims: [{ claim: 'org.__proto__.__proto__', equals: null }],
        },
      ],
    })
    for (const org of [{}, { id: 'acme' }, []]) {
      const res = await send(gw, '/x', bearer(await a.token({ org })))
      await expectRefusal(res, 403, FORBIDDEN, FORBIDDEN_BODY)
    }
    // The same path as own members (JSON.parse makes "__proto__" an ordinary key) passes.
    const own = JSON.parse('{"org": {"__proto__": {"__proto__": null}}}') as JWTPayload
    expect((await send(gw, '/x', bearer(await a.token(own)))).status).toBe(200)
    expect(await originCalls(a.stub)).toBe(1)
  })

  it("a route's issuers restrict which tokens it takes, without touching other issuers' keys", async () => {
    const a = await party()
    const b = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer, b.issuer],
      routes: [
        { path: '/a-only', origin: a.stub.originUrl, issuers: [a.issuer.issuer] },
        { path: '/', origin: a.stub.originUrl },
      ],
    })
    const bToken = await b.token()
    await expectInvalidToken(await send(gw, '/a-only', bearer(bToken)))
    expect(await jwksFetches(a.stub, b.stub)).toEqual([0, 0])
    expect((await send(gw, '/a-only', bearer(await a.token()))).status).toBe(200)
    expect((await send(gw, '/elsewhere', bearer(bToken))).status).toBe(200)
    // B's token is now in the verified cache; the restricted route still refuses it.
    await expectInvalidToken(await send(gw, '/a-only', bearer(bToken)))
    expect(await jwksFetches(a.stub, b.stub)).toEqual([1, 1])
    expect(await originCalls(a.stub)).toBe(2)
  })

  it("a route's audiences narrow its issuers' audiences", async () => {
    const a = await party({ audiences: [AUD, 'api://other'] })
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [
        { path: '/narrow', origin: a.stub.originUrl, audiences: ['api://other'] },
        { path: '/', origin: a.stub.originUrl },
      ],
    })
    const forAud = await a.token({ aud: AUD })
    expect((await send(gw, '/wide', bearer(forAud))).status).toBe(200)
    await expectInvalidToken(await send(gw, '/narrow', bearer(forAud)))
    for (const aud of ['api://other', [AUD, 'api://other']]) {
      expect((await send(gw, '/narrow', bearer(await a.token({ aud })))).status).toBe(200)
    }
    // An audience no issuer accepts is refused everywhere.
    await expectInvalidToken(
      await send(gw, '/wide', bearer(await a.token({ aud: 'api://nobody' }))),
    )
    expect(await originCalls(a.stub)).toBe(3)
  })
})

describe('token sources', () => {
  async function sourced(tokenSources: string[]) {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [{ path: '/', origin: a.stub.originUrl, tokenSources }],
    })
    return { a, gw }
  }

  it('a cookie: the token cookie is removed, the others kept as sent', async () => {
    const { a, gw } = await sourced(['cookie:session'])
    const token = await a.token()
    const cookie = `theme=dark; session=${token}; csrf=a=b%20c; q="x y"`
    const call = await forwarded(await send(gw, '/x', { headers: { cookie } }))
    expect(call.headers['x-auth-sub']).toBe('alice')
    expect(call.headers.cookie).toBe('theme=dark; csrf=a=b%20c; q="x y"')
    // The only cookie: no Cookie header at all.
    const alone = await forwarded(await send(gw, '/x', { headers: { cookie: `session=${token}` } }))
    expect(alone.headers.cookie).toBeUndefined()
    // The header is not a source on this route.
    await expectRefusal(await send(gw, '/x', bearer(token)), 401, REQUIRED, REQUIRED_BODY)
    // A cookie whose name merely contains the name is not the token.
    await expectRefusal(
      await send(gw, '/x', { headers: { cookie: `xsession=${token}` } }),
      401,
      REQUIRED,
      REQUIRED_BODY,
    )
  })

  it('a query parameter: removed from the URL the origin sees, other parameters byte for byte', async () => {
    const { a, gw } = await sourced(['query:access_token'])
    const token = await a.token()
    const cases: [string, string][] = [
      [`/q?a=1&access_token=${token}&b=%2F%20x+y&c&d=&a=2`, '/q?a=1&b=%2F%20x+y&c&d=&a=2'],
      [`/q?access_token=${token}`, '/q'],
      [`/q?access%5Ftoken=${token}&z=%5F`, '/q?z=%5F'],
      [`/q/?x=%E2%9C%93&access_token=${token}`, '/q/?x=%E2%9C%93'],
    ]
    for (const [path, sent] of cases) {
      const call = await forwarded(await send(gw, path))
      expect(call.url, path).toBe(at(a.stub, '', sent))
      expect(call.headers['x-auth-sub']).toBe('alice')
    }
    await expectRefusal(await send(gw, '/q?token=x'), 401, REQUIRED, REQUIRED_BODY)
  })

  it('the same token in two places is 400 invalid_request, before any key work', async () => {
    const { a, gw } = await sourced(['header', 'cookie:session', 'query:t'])
    const token = await a.token()
    const twice =
      'Bearer realm="gateway", error="invalid_request", error_description="The Authorization header is malformed"'
    const twiceBody = {
      error: 'invalid_request',
      error_description: 'The Authorization header is malformed',
    }
    for (const [path, init] of [
      ['/x', { headers: { authorization: `Bearer ${token}`, cookie: `session=${token}` } }],
      [`/x?t=${token}`, { headers: { cookie: `session=${token}` } }],
      [`/x?t=${token}&t=${token}`, {}],
      ['/x', { headers: { cookie: `session=${token}; session=${token}` } }],
    ] as [string, RequestInit][]) {
      await expectRefusal(await send(gw, path, init), 400, twice, twiceBody)
    }
    expect(await a.stub.calls()).toEqual({ jwksFetches: 0, discoveryFetches: 0, origin: [] })
    for (const [path, init] of [
      ['/x', bearer(token)],
      ['/x', { headers: { cookie: `session=${token}` } }],
      [`/x?t=${token}`, {}],
    ] as [string, RequestInit][]) {
      expect((await send(gw, path, init)).status).toBe(200)
    }
  })
})

describe('identity headers per route', () => {
  it('a custom prefix: our headers carry it, client copies in - and _ spellings are stripped', async () => {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [{ path: '/', origin: a.stub.originUrl, identity: { prefix: 'X-User-' } }],
    })
    const token = await a.token()
    const call = await forwarded(
      await send(gw, '/x', {
        headers: {
          authorization: `Bearer ${token}`,
          'x-user-sub': 'mallory',
          x_user_sub: 'mallory',
          'X-User_Role': 'admin',
          'x-user-anything': 'forged',
          'x-auth-sub': 'mallory',
          'x-userx': 'kept',
        },
      }),
    )
    expect(prefixed(call, 'x-user-')).toEqual({
      'x-user-binding': 'none',
      'x-user-sub': 'alice',
      'x-user-iss': a.iss,
      'x-user-claims': expect.any(String),
    })
    expect(JSON.parse(fromB64u(call.headers['x-user-claims'] as string))).toMatchObject({
      sub: 'alice',
      iss: a.iss,
    })
    expect(prefixed(call, 'x-auth-')).toEqual({})
    expect(call.headers['x-userx']).toBe('kept')
  })

  it('claim headers: nested paths, arrays joined with ",", unsafe values encoded, client copies stripped', async () => {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [
        {
          path: '/',
          origin: a.stub.originUrl,
          identity: {
            headers: {
              'X-User-Email': 'email',
              'X-Org': 'org.id',
              'X-Roles': 'roles',
              'X-Level': 'level',
              'X-Missing': 'nope',
            },
          },
        },
      ],
    })
    const client = { 'x-org': 'evil', 'x-missing': 'forged', 'X-Roles': 'admin' }
    const send1 = async (claims: JWTPayload) =>
      forwarded(
        await send(gw, '/x', { headers: { ...client, ...bearer(await a.token(claims)).headers } }),
      )

    const call = await send1({
      email: 'a@example.com',
      org: { id: 'acme' },
      roles: ['admin', 'dev'],
      level: 3,
    })
    expect({
      email: call.headers['x-user-email'],
      org: call.headers['x-org'],
      roles: call.headers['x-roles'],
      level: call.headers['x-level'],
      missing: call.headers['x-missing'],
    }).toEqual({
      email: 'a@example.com',
      org: 'acme',
      roles: 'admin,dev',
      level: '3',
      missing: undefined,
    })

    const hostile = await send1({
      email: 'a@example.com\r\nx-evil: 1',
      org: { id: 'Zoë' },
      roles: ['a,b', 'c'],
    })
    expect(hostile.headers['x-user-email']).toBe("utf-8''a%40example.com%0D%0Ax-evil%3A%201")
    expect(hostile.headers['x-evil']).toBeUndefined()
    expect(hostile.headers['x-org']).toBe("utf-8''Zo%C3%AB")
    // An element with a comma would be ambiguous joined: the array goes as JSON.
    expect(hostile.headers['x-roles']).toBe('["a,b","c"]')
    expect(hostile.headers['x-level']).toBeUndefined()
    expect(hostile.headers['x-missing']).toBeUndefined()
  })

  it('sendClaims false drops X-Auth-Claims; keepAuthorization true forwards the Authorization header', async () => {
    const a = await party()
    const o = a.stub.originUrl
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [
        { path: '/lean', origin: o, identity: { sendClaims: false } },
        { path: '/keep', origin: o, identity: { keepAuthorization: true } },
        { path: '/', origin: o },
      ],
    })
    const token = await a.token()
    const lean = await forwarded(await send(gw, '/lean', bearer(token)))
    expect(prefixed(lean, 'x-auth-')).toEqual({
      'x-auth-binding': 'none',
      'x-auth-sub': 'alice',
      'x-auth-iss': a.iss,
    })
    expect(lean.headers.authorization).toBeUndefined()
    const keep = await forwarded(await send(gw, '/keep', bearer(token)))
    expect(keep.headers.authorization).toBe(`Bearer ${token}`)
    expect(Object.keys(prefixed(keep, 'x-auth-')).sort()).toEqual([
      'x-auth-binding',
      'x-auth-claims',
      'x-auth-iss',
      'x-auth-sub',
    ])
    const dflt = await forwarded(await send(gw, '/x', bearer(token)))
    expect(dflt.headers.authorization).toBeUndefined()
    expect(Object.keys(prefixed(dflt, 'x-auth-')).sort()).toEqual([
      'x-auth-binding',
      'x-auth-claims',
      'x-auth-iss',
      'x-auth-sub',
    ])
  })
})

describe('CORS preflight', () => {
  const preflight = {
    method: 'OPTIONS',
    headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
  }

  it('an OPTIONS preflight is refused on a route without cors: true', async () => {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [{ path: '/', origin: a.stub.originUrl }],
    })
    await expectRefusal(await send(gw, '/x', preflight), 401, REQUIRED, REQUIRED_BODY)
    expect(await originCalls(a.stub)).toBe(0)
  })

  it('passes unauthenticated only on a cors: true route, and only as a real preflight', async () => {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [
        { path: '/cors', origin: a.stub.originUrl, cors: true },
        { path: '/', origin: a.stub.originUrl },
      ],
    })
    const call = await forwarded(await send(gw, '/cors/x', preflight))
    expect(call.method).toBe('OPTIONS')
    expect(prefixed(call, 'x-auth-')).toEqual({})
    await expectRefusal(await send(gw, '/other', preflight), 401, REQUIRED, REQUIRED_BODY)
    // Not a preflight: OPTIONS without Access-Control-Request-Method, or a GET.
    const bare = { method: 'OPTIONS', headers: { origin: 'https://app.example' } }
    await expectRefusal(await send(gw, '/cors/x', bare), 401, REQUIRED, REQUIRED_BODY)
    await expectRefusal(await send(gw, '/cors/x'), 401, REQUIRED, REQUIRED_BODY)
    expect(await originCalls(a.stub)).toBe(1)
  })
})

describe('service binding origin', () => {
  it('a route with service forwards to the bound Worker with identity headers', async () => {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [{ path: '/svc', service: 'ECHO_SERVICE' }],
    })
    const res = await send(gw, '/svc/x?y=1', {
      headers: { authorization: `Bearer ${await a.token()}`, 'x-auth-sub': 'mallory' },
    })
    expect(res.status).toBe(200)
    const got = (await res.json()) as {
      service: string
      url: string
      headers: Record<string, string>
    }
    expect(got.service).toBe('echo')
    expect(got.url).toBe('https://gw.test/svc/x?y=1')
    expect(got.headers['x-auth-sub']).toBe('alice')
    expect(got.headers.authorization).toBeUndefined()
    expect(await originCalls(a.stub)).toBe(0)
    expect(await send(gw, '/svc/x').then((r) => r.status)).toBe(401)
  })
})

describe('signed identity assertion', () => {
  async function privateJwk(alg: 'ES256' | 'Ed25519', kid: string): Promise<string> {
    const { privateKey } = await generateKeyPair(alg, { extractable: true })
    return JSON.stringify({ ...(await exportJWK(privateKey)), kid })
  }

  async function setup(vars: GatewayEnv, gatewayExtra: Record<string, unknown> = {}) {
    const a = await party()
    const o = a.stub.originUrl
    const gw = structuredEnv(
      a.stub,
      {
        issuers: [a.issuer],
        routes: [
          {
            path: '/signed',
            origin: `${o}/signed`,
            assertion: { claims: ['email'], ttlSeconds: 60 },
          },
          { path: '/maybe', origin: `${o}/maybe`, auth: 'optional', assertion: true },
          { path: '/svc', service: 'ECHO_SERVICE', assertion: { header: 'X-Proof' } },
          { path: '/', origin: o },
        ],
        ...gatewayExtra,
      },
      vars,
    )
    return { a, gw, o }
  }

  async function publishedJwks(gw: GatewayEnv): Promise<{ keys: JWK[] }> {
    const res = await send(gw, '/_gateway/jwks.json')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
    return res.json()
  }

  it('the origin gets a JWT it can verify against /_gateway/jwks.json; both keys published, no private part', async () => {
    const current = await privateJwk('ES256', 'gw-2')
    const previous = await privateJwk('Ed25519', 'gw-1')
    const { a, gw, o } = await setup({ ASSERTION_KEY: current, ASSERTION_KEY_PREVIOUS: previous })

    const jwks = await publishedJwks(gw)
    expect(jwks.keys.map((k) => [k.kid, k.kty, k.crv, k.alg])).toEqual([
      ['gw-2', 'EC', 'P-256', 'ES256'],
      ['gw-1', 'OKP', 'Ed25519', 'EdDSA'],
    ])
    for (const k of jwks.keys) expect(Object.keys(k)).not.toContain('d')
    expect(JSON.stringify(jwks)).not.toContain((JSON.parse(current) as JWK).d)
    expect(JSON.stringify(jwks)).not.toContain((JSON.parse(previous) as JWK).d)

    const call = await forwarded(
      await send(gw, '/signed/x', {
        headers: {
          ...bearer(await a.token({ email: 'alice@example.com', role: 'admin' })).headers,
          'x-gateway-assertion': 'forged.by.client',
        },
      }),
    )
    const assertion = call.headers['x-gateway-assertion'] as string
    expect(decodeProtectedHeader(assertion)).toEqual({ alg: 'ES256', kid: 'gw-2', typ: 'JWT' })
    const { payload } = await jwtVerify(assertion, createLocalJWKSet(jwks), {
      issuer: 'edge-auth-gateway',
      audience: `${o}/signed`,
    })
    expect(payload).toEqual({
      iss: 'edge-auth-gateway',
      aud: `${o}/signed`,
      sub: 'alice',
      email: 'alice@example.com',
      orig_iss: a.iss,
      iat: expect.any(Number),
      exp: expect.any(Number),
    })
    expect(payload.exp! - payload.iat!).toBe(60)
    // Bound to its origin: another route's origin would refuse it.
    await expect(
      jwtVerify(assertion, createLocalJWKSet(jwks), { audience: `${o}/maybe` }),
    ).rejects.toThrow('unexpected "aud" claim value')
  })

  it('optional route: a verified caller gets an assertion, an anonymous one none (client copy stripped)', async () => {
    const { a, gw, o } = await setup({ ASSERTION_KEY: await privateJwk('Ed25519', 'only') })
    const jwks = createLocalJWKSet(await publishedJwks(gw))
    const anon = await forwarded(
      await send(gw, '/maybe', { headers: { 'x-gateway-assertion': 'forged' } }),
    )
    expect(anon.headers['x-gateway-assertion']).toBeUndefined()
    const named = await forwarded(await send(gw, '/maybe', bearer(await a.token({ email: 'e@x' }))))
    const { payload, protectedHeader } = await jwtVerify(
      named.headers['x-gateway-assertion'] as string,
      jwks,
      {
        issuer: 'edge-auth-gateway',
        audience: `${o}/maybe`,
      },
    )
    expect(protectedHeader.alg).toBe('EdDSA')
    // Default: no claims beyond sub, 60 s.
    expect([payload.sub, payload.email, payload.exp! - payload.iat!]).toEqual([
      'alice',
      undefined,
      60,
    ])
    // Routes without an assertion send none.
    const plain = await forwarded(await send(gw, '/x', bearer(await a.token())))
    expect(plain.headers['x-gateway-assertion']).toBeUndefined()
  })

  it('a service route: custom header and issuer, audience names the binding', async () => {
    const { a, gw } = await setup(
      { ASSERTION_KEY: await privateJwk('ES256', 'k') },
      { assertion: { issuer: 'https://gateway.example' } },
    )
    const res = await send(gw, '/svc', {
      headers: { ...bearer(await a.token()).headers, 'x-proof': 'forged' },
    })
    const got = (await res.json()) as { headers: Record<string, string> }
    expect(res.status).toBe(200)
    const { payload } = await jwtVerify(
      got.headers['x-proof']!,
      createLocalJWKSet(await publishedJwks(gw)),
      {
        issuer: 'https://gateway.example',
        audience: 'service:ECHO_SERVICE',
      },
    )
    expect(payload.sub).toBe('alice')
    expect(got.headers['x-gateway-assertion']).toBeUndefined()
  })

  it('rotation: an assertion signed by the old key still verifies once the new key is current', async () => {
    const old = await privateJwk('ES256', 'old')
    const next = await privateJwk('ES256', 'new')
    const before = await setup({ ASSERTION_KEY: old })
    const signedOld = (
      await forwarded(await send(before.gw, '/signed', bearer(await before.a.token())))
    ).headers['x-gateway-assertion'] as string
    const after = await setup({ ASSERTION_KEY: next, ASSERTION_KEY_PREVIOUS: old })
    const signedNew = (
      await forwarded(await send(after.gw, '/signed', bearer(await after.a.token())))
    ).headers['x-gateway-assertion'] as string
    const jwks = createLocalJWKSet(await publishedJwks(after.gw))
    expect((await jwtVerify(signedOld, jwks)).protectedHeader.kid).toBe('old')
    expect((await jwtVerify(signedNew, jwks)).protectedHeader.kid).toBe('new')
    // The old gateway never published the new key.
    await expect(
      jwtVerify(signedNew, createLocalJWKSet(await publishedJwks(before.gw))),
    ).rejects.toThrow()
  })

  it('no assertion configured: /_gateway/jwks.json is 404', async () => {
    const a = await party()
    const gw = structuredEnv(a.stub, {
      issuers: [a.issuer],
      routes: [{ path: '/', origin: a.stub.originUrl }],
    })
    await expectRefusal(await send(gw, '/_gateway/jwks.json'), 404, null, {
      error: 'not_found',
      error_description: 'Not found',
    })
    expect(await originCalls(a.stub)).toBe(0)
  })
})
