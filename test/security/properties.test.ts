/**
 * Properties over generated input (fast-check): the credential parser, the claim -> header
 * encoding and the config parser never throw anything but the gateway's own error types, a bad
 * configuration answers every request with the one allowed 5xx (500 server_error), and no
 * generated request to a good configuration gets a 5xx. test/properties.test.ts covers
 * bearerToken and the header encoder's round trip; this file adds the rest of the surface.
 */
import { env } from 'cloudflare:test'
import fc from 'fast-check'
import { exportJWK, generateKeyPair } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, parseConfig, type IdentityConfig, type TokenSource } from '../../src/config'
import { findToken, DEFAULT_MAX_TOKEN_BYTES } from '../../src/auth/credentials'
import { GatewayError } from '../../src/errors'
import { claimHeaderValue, identityHeaders } from '../../src/proxy/identity-headers'
import type { Identity } from '../../src/auth/verify'
import {
  AUDIENCE,
  b64u,
  ISSUER,
  makeKey,
  mint,
  send,
  signRaw,
  claims,
  structuredEnv,
  Stub,
  type GatewayEnv,
  type TestKey,
} from '../helpers'

/** Printable ASCII without edge spaces: what a header value can carry verbatim. */
const SAFE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/
const JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
const KV = (env as unknown as { REVOCATIONS: KVNamespace }).REVOCATIONS

/** Only `kind` is allowed to escape: anything else thrown is a bug. */
function onlyThrows<T>(kind: new (...args: never[]) => Error, run: () => T): T | undefined {
  try {
    return run()
  } catch (err) {
    expect(err).toBeInstanceOf(kind)
    return undefined
  }
}

/** Strings rich in what breaks parsers: separators, quotes, controls, non-ASCII, lone surrogates. */
const awkward = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.string({
    unit: fc.constantFrom('a', '.', '-', '_', '=', ';', ',', ' ', '"', '%', '\\', '\u0000', 'é'),
    maxLength: 60,
  }),
  fc.constantFrom('\ud800', 'a\udc00b', "utf-8''x", '__proto__', 'constructor'),
)
/**
 * As a header value: workerd sends non-ASCII header text as UTF-8 with a warning on every use, so
 * header generators stay in ASCII (the credential code treats any byte beyond it alike anyway).
 */
const ascii = (s: string) => s.replace(/[^\x00-\x7e]/g, '~')
const segment = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => b64u(b))
const tokenish = fc.oneof(
  fc.tuple(segment, segment, segment).map((p) => p.join('.')),
  awkward,
  fc
    .integer({ min: DEFAULT_MAX_TOKEN_BYTES - 2, max: DEFAULT_MAX_TOKEN_BYTES + 2 })
    .map((n) => 'a'.repeat(n)),
)

describe('findToken (header, cookie and query sources)', () => {
  const source: fc.Arbitrary<TokenSource> = fc.oneof(
    fc.constant<TokenSource>({ kind: 'header' }),
    fc.constantFrom('at', 'token', 'a b').map((name): TokenSource => ({ kind: 'cookie', name })),
    fc.constantFrom('at', 'access_token').map((name): TokenSource => ({ kind: 'query', name })),
  )
  const cookie = fc
    .tuple(
      fc.array(fc.tuple(fc.constantFrom('at', 'token', 'x', ' at'), tokenish), { maxLength: 4 }),
      fc.constantFrom('; ', ';', ';;'),
    )
    .map(([pairs, sep]) => pairs.map(([k, v]) => `${k}=${v}`).join(sep))
  const query = fc
    .array(fc.tuple(fc.constantFrom('at', 'access_token', 'a%74', 'x'), tokenish), { maxLength: 4 })
    .map((pairs) => pairs.map(([k, v]) => `${k}=${encodeURIComponent(v.toWellFormed())}`).join('&'))

  it('returns null or one strict JWS token, or throws GatewayError: nothing else', () => {
    fc.assert(
      fc.property(
        fc.array(source, { minLength: 1, maxLength: 3 }),
        fc.option(fc.tuple(fc.constantFrom('Bearer ', 'bearer ', 'Basic ', 'Bearer'), tokenish)),
        fc.option(cookie),
        query,
        (sources, auth, cookieHeader, q) => {
          const headers = new Headers()
          try {
            if (auth) headers.set('authorization', ascii(auth.join('')))
            if (cookieHeader !== null) headers.set('cookie', ascii(cookieHeader))
          } catch {
            fc.pre(false) // not a value a header can hold: no request can carry it
          }
          const url = new URL(`https://gw.test/p?${q}`)
          const request = new Request(url, { headers })
          const found = onlyThrows(GatewayError, () => findToken(request, url, sources))
          if (found) {
            expect(found.token).toMatch(JWS)
            expect(found.token.length).toBeLessThanOrEqual(DEFAULT_MAX_TOKEN_BYTES)
            expect(sources).toContainEqual(found.source)
          }
        },
      ),
      { numRuns: 2000 },
    )
  })
})

describe('claim -> header encoding', () => {
  const claimValue = fc.oneof(fc.jsonValue(), awkward, fc.array(awkward, { maxLength: 4 }))

  it('claimHeaderValue never throws; a value is always a safe header value', () => {
    fc.assert(
      fc.property(claimValue, (value) => {
        const encoded = claimHeaderValue(value)
        if (value === null || value === undefined) {
          expect(encoded).toBeUndefined()
          return
        }
        expect(encoded).toMatch(SAFE)
        expect(new Headers([['x-claim', encoded!]]).get('x-claim')).toBe(encoded)
      }),
      { numRuns: 3000 },
    )
  })

  it('identityHeaders never throws; every header it builds is set verbatim', () => {
    const path = fc
      .array(fc.constantFrom('org', 'id', 'roles', '0', '__proto__', 'constructor', ''), {
        minLength: 1,
        maxLength: 3,
      })
      .map((p) => p.join('.'))
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom('org', 'roles', 'id', 'x', '__proto__'), claimValue),
        awkward.filter((s) => s !== ''),
        fc.array(path, { maxLength: 3 }),
        fc.boolean(),
        (extra, sub, paths, sendClaims) => {
          const identity: Identity = {
            issuer: ISSUER,
            sub,
            kid: undefined,
            alg: 'ES256',
            claims: { ...claims(), ...extra, sub },
            encodedClaims: b64u(JSON.stringify({ ...claims(), ...extra, sub })),
          }
          const cfg: IdentityConfig = {
            prefix: 'x-auth-',
            claimHeaders: paths.map((p, i): [string, string] => [`x-claim-${i}`, p]),
            sendClaims,
            keepAuthorization: false,
          }
          const headers = identityHeaders(identity, cfg)
          for (const [name, value] of headers) {
            expect(value).toMatch(SAFE)
            expect(new Headers([[name, value]]).get(name)).toBe(value)
          }
        },
      ),
      { numRuns: 2000 },
    )
  })
})

/**
 * Values a field may hold: mostly the first (valid), else a near miss, else any JSON at all, so
 * generated configurations are often valid as a whole and each error path is still reached.
 */
function field(valid: unknown, ...nearMisses: unknown[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 12, arbitrary: fc.constant(valid) },
    { weight: 2, arbitrary: fc.constantFrom(...nearMisses) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  )
}

/** Some of these fields over `base`, and now and then a field nobody knows. */
function objectOf(
  base: Record<string, unknown>,
  fields: Record<string, fc.Arbitrary<unknown>>,
): fc.Arbitrary<Record<string, unknown>> {
  return fc
    .tuple(
      fc.record(fields, { requiredKeys: [] }),
      fc.option(fc.tuple(fc.constantFrom('typo', 'jwksUri', '__proto__'), fc.jsonValue()), {
        freq: 10,
      }),
    )
    .map(([o, extra]) => {
      const out = { ...base, ...o }
      if (extra) Object.defineProperty(out, extra[0], { value: extra[1], enumerable: true })
      return out
    })
}

const keySource = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ jwksUrl: 'https://a.test/jwks' }) },
  fc.constantFrom<Record<string, unknown>>(
    { discovery: true },
    { discovery: 'no' },
    { jwksUrl: 'http://localhost:8788/jwks' },
    { jwksUrl: 'http://evil.test/jwks' },
    { jwksUrl: 'https://u:p@a.test/jwks' },
    { keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] },
    { keys: [{ kty: 'oct', k: 'k' }] },
    { keys: { keys: [{ d: 'x' }] } },
    { keys: [] },
    { hmacSecret: 'HMAC_SECRET', algorithms: 'HS256' },
    { hmacSecret: 'HMAC_SECRET' },
    { hmacSecret: 'SHORT_SECRET' },
    { hmacSecret: 'MISSING_SECRET' },
    { jwksUrl: 'https://a.test/jwks', discovery: true },
  ),
)

const issuerArb = fc
  .tuple(
    keySource,
    objectOf(
      { issuer: 'https://a.test', audiences: ['api://a'] },
      {
        issuer: field('https://a.test', 'https://b.test', '', ' ', 7),
        audiences: field(['api://a'], 'api://a, api://b', [], [''], 'a,,b', [1]),
        algorithms: field(undefined, 'ES256', ['RS256', 'ES256'], 'HS256', 'none', [], 'rs256'),
        clockSkewSeconds: field(undefined, '30', 0, '301', '-1', '1e2', 1.5),
        types: field(undefined, 'JWT', ['at+jwt'], '', [7]),
        maxTokenAgeSeconds: field(undefined, '300', '0', 'x'),
        jwksCacheTtlSeconds: field(undefined, '600', '1'),
        jwksRefreshCooldownSeconds: field(undefined, '30', '0'),
        jwksStaleIfErrorSeconds: field(undefined, '0', '-5'),
        jwksFetchTimeoutMs: field(undefined, '5000', '10'),
      },
    ),
  )
  .map(([source, rest]) => ({ ...rest, ...source }))

const routeArb = fc
  .tuple(
    fc.oneof(
      { weight: 8, arbitrary: fc.constant({ origin: 'https://o.test' }) },
      fc.constantFrom<Record<string, unknown>>(
        { service: 'ECHO_SERVICE' },
        { service: 'NO_SUCH_BINDING' },
        { service: 'HMAC_SECRET' },
        { origin: 'https://o.test/base/' },
        { origin: 'ftp://o.test' },
        { origin: 'https://o.test/?q=1' },
        { origin: 'o' },
        { origin: 'https://o.test', service: 'ECHO_SERVICE' },
        {},
      ),
    ),
    objectOf(
      { path: '/' },
      {
        host: field(undefined, 'api.gw.test', 'API.GW.TEST:8443', 'bad host', '', 5),
        path: field('/', '/api', '/api/', 'api', '/a/../b', '//x', '/%2F', 3),
        methods: field(undefined, 'GET', ['get', 'POST'], 'G E T', [], ['GET', 7]),
        auth: field(undefined, 'required', 'optional', 'public', 'maybe', ''),
        issuers: field(undefined, ['https://a.test'], 'https://b.test', []),
        audiences: field(undefined, ['api://a'], ['api://zzz'], 'api://a'),
        scopes: field(undefined, 'read', ['read', 'write'], 'a"b', ['x y']),
        claims: field(
          undefined,
          [{ claim: 'role', equals: 'admin' }],
          [{ claim: 'r', oneOf: 'x' }],
          [{ claim: 'r' }],
          [{ claim: 'r', equals: 1, contains: 2 }],
          'x',
          [null],
        ),
        tokenSources: field(undefined, ['header', 'cookie:at'], 'query:at', 'cookie:', 'bogus'),
        identity: field(
          undefined,
          { prefix: 'x-user-' },
          { prefix: 'bad' },
          { headers: { 'x-role': 'role' } },
          { headers: { authorization: 'sub' } },
          { sendClaims: 'yes' },
          { headers: { 'x-r': '' } },
        ),
        cors: field(undefined, true, 'true', 'nope'),
        originTimeoutMs: field(undefined, '100', 5, '99', 'x'),
        assertion: field(
          undefined,
          true,
          { header: 'x-proof' },
          { ttlSeconds: 1 },
          { header: 'host' },
        ),
      },
    ),
  )
  .map(([origin, rest]) => ({ ...rest, ...origin }))

const gatewayArb = objectOf(
  {},
  {
    realm: field(undefined, 'api', 'a"b', '', 'é'),
    serverTiming: field(undefined, true, 'false', 'sometimes'),
    issuers: fc.oneof(
      { weight: 8, arbitrary: fc.array(issuerArb, { minLength: 1, maxLength: 2 }) },
      fc.jsonValue({ maxDepth: 1 }),
    ),
    routes: fc.oneof(
      { weight: 8, arbitrary: fc.array(routeArb, { minLength: 1, maxLength: 3 }) },
      fc.jsonValue({ maxDepth: 1 }),
    ),
    assertion: field(undefined, { issuer: 'gw' }, { keySecrets: ['ASSERTION_KEY'] }, 'x'),
  },
).map((g) => ({ issuers: [], routes: [], ...g }))

let assertionKey: string

beforeAll(async () => {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  assertionKey = JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'a1' })
})

/** Variables both modes read (bindings, secrets, revocation, admin), and one mode's own. */
const shared = {
  REVOCATION_CACHE_SECONDS: field(undefined, '10', '301'),
  REVOCATION_FAIL_OPEN: field(undefined, 'false', 'no'),
  ADMIN_PATH_PREFIX: field(undefined, '/_gw', '/../x', 'x', '/_gateway/'),
  ADMIN_TOKEN: field(undefined, 'an-admin-token-of-at-least-32-characters', 'short'),
}

/** A whole env in either mode: variables, GATEWAY (table or JSON text), secrets and bindings. */
function envArb(): fc.Arbitrary<Record<string, unknown>> {
  const simple = objectOf(
    { ORIGIN_URL: 'https://o.test', JWT_ISSUER: 'https://a.test', JWT_AUDIENCE: 'api://a' },
    {
      ...shared,
      ORIGIN_URL: field('https://o.test', 'o.test', 'https://o.test/?a=1', undefined),
      JWT_ISSUER: field('https://a.test', 'http://a.example', '', undefined),
      JWT_AUDIENCE: field('api://a', ' , ', 'a,,b', undefined),
      JWKS_URL: field(undefined, 'https://a.test/jwks', 'http://a.example/jwks', 'jwks'),
      JWT_ALGORITHMS: field(undefined, 'ES256', 'HS256', 'RS256,none'),
      JWT_TYPES: field(undefined, 'at+jwt', ''),
      CLOCK_SKEW_SECONDS: field(undefined, '30', '301', 'x'),
      ORIGIN_TIMEOUT_MS: field(undefined, '100', '99'),
      FORWARD_AUTHORIZATION: field(undefined, 'true', 'yes'),
      GATEWAY_REALM: field(undefined, 'r', 'a"b'),
      SERVER_TIMING: field(undefined, 'true', 1),
    },
  )
  const structured = objectOf(
    {},
    {
      ...shared,
      GATEWAY: fc.oneof(
        { weight: 6, arbitrary: gatewayArb },
        gatewayArb.map((g) => JSON.stringify(g)),
        fc.jsonValue(),
        fc.constant('{not json'),
      ),
      // Either mode's variable beside GATEWAY is an error of its own.
      JWKS_URL: field(undefined, 'https://a.test/jwks'),
    },
  ).map((e) => ({ GATEWAY: {}, ...e }))
  return fc
    .tuple(
      fc.oneof(simple, structured),
      fc.constantFrom<unknown>(KV, undefined, 'not a binding', {}),
      fc.constantFrom<unknown>(undefined, 'ASSERTION', 'not json', { kty: 'EC' }),
    )
    .map(([vars, kv, assertion]) => ({
      ...vars,
      REVOCATIONS: kv,
      HMAC_SECRET: 'a-shared-secret-of-at-least-32-bytes!',
      SHORT_SECRET: 'short',
      ECHO_SERVICE: (env as unknown as Record<string, unknown>).ECHO_SERVICE,
      ASSERTION_KEY: assertion === 'ASSERTION' ? assertionKey : assertion,
    }))
}

describe('parseConfig', () => {
  it('never throws: every env is a config or a ConfigError naming a variable', () => {
    let ok = 0
    fc.assert(
      fc.property(envArb(), (raw) => {
        const result = parseConfig(raw)
        if (result.ok) {
          ok++
          expect(Object.isFrozen(result.config)).toBe(true)
        } else {
          expect(result.error).toBeInstanceOf(ConfigError)
          expect(result.error.message.startsWith(`${result.error.variable}: `)).toBe(true)
        }
      }),
      { numRuns: 3000 },
    )
    // The generator reaches valid configurations too, not only the first error.
    expect(ok).toBeGreaterThan(0)
  }, 30_000) // 3,000 generated environments: several seconds on a busy 2-core machine

  it('never throws on values of any type at all', () => {
    const names = [
      'ORIGIN_URL',
      'JWT_ISSUER',
      'JWT_AUDIENCE',
      'JWKS_URL',
      'CLOCK_SKEW_SECONDS',
      'GATEWAY',
      'REVOCATIONS',
      'ADMIN_TOKEN',
    ]
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.constantFrom(...names),
          fc.anything({
            withBigInt: true,
            withNullPrototype: true,
            withBoxedValues: true,
            withMap: true,
            withSet: true,
            withDate: true,
            withTypedArray: true,
          }),
        ),
        (raw) => {
          const result = parseConfig(raw)
          if (!result.ok) expect(result.error).toBeInstanceOf(ConfigError)
        },
      ),
      { numRuns: 2000 },
    )
  })
})

describe('through the worker', () => {
  it('a bad configuration answers every request 500 server_error, and nothing else', async () => {
    const stub = new Stub()
    const bad = fc.sample(
      envArb().filter((raw) => !parseConfig(raw).ok),
      40,
    )
    for (const raw of bad) {
      const res = await send({ ...raw, STUB_URL: undefined } as GatewayEnv, '/any', {
        headers: { authorization: 'Bearer a.b.c' },
      })
      const body = (await res.json()) as { error: string; error_description: string }
      expect([res.status, res.headers.get('www-authenticate'), body.error]).toEqual([
        500,
        null,
        'server_error',
      ])
      expect(body.error_description).toMatch(/^Gateway configuration error: /)
    }
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  describe('a good configuration never answers a generated request with a 5xx', () => {
    let key: TestKey
    let stub: Stub
    let gw: GatewayEnv
    let tokens: string[]

    beforeAll(async () => {
      key = await makeKey('ES256')
      stub = new Stub()
      await stub.publish(key)
      const issuer = { issuer: ISSUER, jwksUrl: stub.jwksUrl, audiences: [AUDIENCE] }
      gw = structuredEnv(
        stub,
        {
          issuers: [issuer],
          routes: [
            { path: '/', origin: stub.originUrl },
            {
              path: '/opt',
              origin: stub.originUrl,
              auth: 'optional',
              tokenSources: ['header', 'cookie:at'],
            },
            { path: '/pub', origin: stub.originUrl, auth: 'public' },
            {
              path: '/q',
              origin: stub.originUrl,
              tokenSources: ['query:at'],
              methods: ['GET', 'POST'],
            },
            {
              path: '/cors',
              origin: stub.originUrl,
              cors: true,
              scopes: ['read'],
              claims: [{ claim: 'role', oneOf: ['a', 'b'] }],
            },
            {
              path: '/svc',
              service: 'ECHO_SERVICE',
              identity: { headers: { 'x-user-role': 'role' } },
            },
            { host: 'api.gw.test', path: '/', origin: stub.originUrl },
          ],
        },
        { ADMIN_TOKEN: 'an-admin-token-of-at-least-32-characters' },
      )
      const now = Math.floor(Date.now() / 1000)
      const other = await makeKey('ES256')
      tokens = [
        await mint(key),
        await mint(key, { scope: 'read', role: 'a' }),
        await mint(key, { sub: 'x\r\ny' }),
        await mint(key, { exp: now - 3600 }),
        await mint(key, { aud: 'api://other' }),
        await mint(other, {}, { header: { kid: key.kid } }),
        await signRaw({ alg: 'none', kid: key.kid }, claims(), key.privateKey, 'ES256'),
        'a.b.c',
      ]
    })

    it('any method, host, path, query, headers and token', async () => {
      const request = fc.record({
        method: fc.constantFrom(
          'GET',
          'HEAD',
          'POST',
          'PUT',
          'PATCH',
          'DELETE',
          'OPTIONS',
          'PROPFIND',
          'X-CUSTOM',
        ),
        host: fc.constantFrom('gw.test', 'api.gw.test', 'API.GW.TEST'),
        path: fc.oneof(
          fc.webPath(),
          fc
            .array(
              fc.constantFrom(
                'opt',
                'pub',
                'q',
                'cors',
                'svc',
                '_gateway',
                'health',
                'revocations',
                'logout',
                '..',
                '.',
                '%2e%2e',
                '%2F',
                '%5C',
                ';x',
                'é',
                '%zz',
                '//',
              ),
              { maxLength: 5 },
            )
            .map((s) => `/${s.join('/')}`),
        ),
        query: fc.option(
          fc.array(
            fc.tuple(
              fc.constantFrom('at', 'x', 'access_token'),
              fc.oneof(fc.constantFrom(...tokens), tokenish),
            ),
            { maxLength: 3 },
          ),
        ),
        authorization: fc.option(
          fc.oneof(
            fc.constantFrom(...tokens).map((t) => `Bearer ${t}`),
            tokenish.map((t) => `Bearer ${t}`),
            awkward,
          ),
        ),
        cookie: fc.option(
          fc.oneof(
            fc.constantFrom(...tokens).map((t) => `at=${t}`),
            awkward,
          ),
        ),
        extra: fc.array(
          fc.tuple(
            fc.constantFrom(
              'x-auth-sub',
              'X_Auth_Sub',
              'x-user-role',
              'x-gateway-assertion',
              'connection',
              'x-request-id',
              'origin',
              'access-control-request-method',
              'te',
              'x-forwarded-for',
            ),
            awkward,
          ),
          { maxLength: 4 },
        ),
        body: fc.option(fc.string({ maxLength: 64 })),
      })

      await fc.assert(
        fc.asyncProperty(request, async (r) => {
          const headers = new Headers()
          let req: Request
          try {
            if (r.authorization !== null) headers.set('authorization', ascii(r.authorization))
            if (r.cookie !== null) headers.set('cookie', ascii(r.cookie))
            for (const [name, value] of r.extra) headers.append(name, ascii(value))
            const q = r.query
              ?.map(([k, v]) => `${k}=${encodeURIComponent(v.toWellFormed())}`)
              .join('&')
            const hasBody = r.body !== null && r.method !== 'GET' && r.method !== 'HEAD'
            req = new Request(`https://${r.host}${r.path}${q === undefined ? '' : `?${q}`}`, {
              method: r.method,
              headers,
              body: hasBody ? r.body : null,
            })
          } catch {
            fc.pre(false) // no client could send it
            return
          }
          const res = await send(gw, req)
          const text = await res.text()
          expect(res.status, text).toBeLessThan(500)
        }),
        { numRuns: 400 },
      )
    })
  })
})
