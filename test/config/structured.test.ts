/**
 * Structured mode (GATEWAY) configuration errors, through the real worker: every request is
 * answered 500 with the exact path of the bad setting, and nothing is fetched or forwarded.
 */
import { env } from 'cloudflare:test'
import { exportJWK, generateKeyPair } from 'jose'
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config'
import {
  bearer,
  expectRefusal,
  gatewayEnv,
  makeKey,
  mint,
  send,
  structuredEnv,
  Stub,
  type GatewayEnv,
} from '../helpers'

const AUD = 'api://structured'
const AUD_B = 'api://structured-b'
const ISS_A = 'https://a.issuer.test'
const ISS_B = 'https://b.issuer.test'
/** Exactly MIN_HMAC_SECRET_BYTES (32): the shortest secret accepted. */
const HMAC_SECRET = 'hmac-secret-exactly-32-bytes-lng'

type Gateway = Record<string, unknown> & {
  issuers: Record<string, unknown>[]
  routes: Record<string, unknown>[]
}

/** A valid configuration the cases below break in one place each. */
function valid(stub: Stub): Gateway {
  return {
    issuers: [
      { issuer: ISS_A, jwksUrl: stub.jwksUrl, audiences: [AUD] },
      { issuer: ISS_B, jwksUrl: stub.jwksUrl, audiences: [AUD_B] },
    ],
    routes: [
      { path: '/', origin: stub.originUrl },
      { path: '/api', origin: stub.originUrl },
      { path: '/admin', origin: stub.originUrl },
    ],
  }
}

async function expectConfigError(gw: GatewayEnv, stub: Stub, message: string): Promise<void> {
  const want = {
    error: 'server_error',
    error_description: `Gateway configuration error: ${message}`,
  }
  const key = await makeKey('ES256')
  // Every request, whatever it is: a proxied path with a token, a POST, the gateway's own paths.
  await expectRefusal(
    await send(gw, '/api/x', bearer(await mint(key, { iss: ISS_A }))),
    500,
    null,
    want,
  )
  await expectRefusal(await send(gw, '/', { method: 'POST', body: 'x' }), 500, null, want)
  await expectRefusal(await send(gw, '/_gateway/health'), 500, null, want)
  await expectRefusal(await send(gw, '/_gateway/jwks.json'), 500, null, want)
  expect(await stub.calls()).toEqual({ jwksFetches: 0, discoveryFetches: 0, origin: [] })
}

async function privateJwk(alg: 'ES256' | 'Ed25519', kid: string): Promise<string> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true })
  return JSON.stringify({ ...(await exportJWK(privateKey)), kid })
}

interface Case {
  name: string
  /** Breaks the valid configuration; may return extra env vars. */
  change: (g: Gateway, stub: Stub) => GatewayEnv | void
  message: string
}

const cases: Case[] = [
  {
    name: 'unknown top-level field',
    change: (g) => void (g.route = []),
    message: 'GATEWAY.route: is not a known field',
  },
  {
    name: 'unknown issuer field (a typo of audiences)',
    change: (g) => void (g.issuers[1]!.audience = AUD),
    message: 'GATEWAY.issuers[1].audience: is not a known field',
  },
  {
    name: 'unknown route field (a typo of scopes)',
    change: (g) => void (g.routes[1]!.scope = 'admin'),
    message: 'GATEWAY.routes[1].scope: is not a known field',
  },
  {
    name: 'unknown field in a claim rule',
    change: (g) => void (g.routes[0]!.claims = [{ claim: 'org.id', equal: 'acme' }]),
    message: 'GATEWAY.routes[0].claims[0].equal: is not a known field',
  },
  {
    name: 'missing audiences',
    change: (g) => void delete g.issuers[1]!.audiences,
    message:
      'GATEWAY.issuers[1].audiences: must be a non-empty list (or set GATEWAY.issuers[1].clientIds for tokens without aud)',
  },
  {
    name: 'empty audiences',
    change: (g) => void (g.issuers[0]!.audiences = []),
    message: 'GATEWAY.issuers[0].audiences: must be a non-empty list of non-empty strings',
  },
  {
    name: 'two key sources',
    change: (g) => void (g.issuers[0]!.keys = [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }]),
    message: 'GATEWAY.issuers[0]: set one key source, not jwksUrl and keys',
  },
  {
    name: 'a private key among static keys',
    change: (g) => {
      delete g.issuers[0]!.jwksUrl
      g.issuers[0]!.keys = [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'd' }]
    },
    message: 'GATEWAY.issuers[0].keys[0]: must be a public key (no private or symmetric keys)',
  },
  {
    name: 'bad origin',
    change: (g) => void (g.routes[2]!.origin = 'not a url'),
    message: 'GATEWAY.routes[2].origin: must be an absolute URL (got "not a url")',
  },
  {
    name: 'origin with a query',
    change: (g, stub) => void (g.routes[2]!.origin = `${stub.originUrl}?a=1`),
    message: 'GATEWAY.routes[2].origin: must not contain a query, fragment or credentials',
  },
  {
    name: 'both origin and service',
    change: (g) => void (g.routes[1]!.service = 'ECHO_SERVICE'),
    message: 'GATEWAY.routes[1]: needs exactly one of origin (a URL) or service (a binding name)',
  },
  {
    name: 'a service that is not a binding',
    change: (g) => {
      delete g.routes[1]!.origin
      g.routes[1]!.service = 'STUB_URL'
    },
    message: 'GATEWAY.routes[1].service: names STUB_URL, which is not a service binding',
  },
  {
    name: 'HMAC secret missing',
    change: (g) => {
      g.issuers[1] = { issuer: ISS_B, hmacSecret: 'HS_SECRET', audiences: [AUD_B] }
    },
    message:
      'GATEWAY.issuers[1].hmacSecret: names secret HS_SECRET, which is not set (wrangler secret put HS_SECRET)',
  },
  {
    name: 'HMAC secret one byte short',
    change: (g) => {
      g.issuers[1] = { issuer: ISS_B, hmacSecret: 'HS_SECRET', audiences: [AUD_B] }
      return { HS_SECRET: HMAC_SECRET.slice(1) }
    },
    message: 'GATEWAY.issuers[1].hmacSecret: secret HS_SECRET must be at least 32 bytes',
  },
  {
    name: 'HMAC issuer with an asymmetric algorithm',
    change: (g) => {
      g.issuers[1] = {
        issuer: ISS_B,
        hmacSecret: 'HS_SECRET',
        audiences: [AUD_B],
        algorithms: ['HS256', 'RS256'],
      }
      return { HS_SECRET: HMAC_SECRET }
    },
    message:
      'GATEWAY.issuers[1].algorithms: "RS256" is not an HMAC algorithm (HS256, HS384, HS512)',
  },
  {
    name: 'JWKS issuer with an HMAC algorithm',
    change: (g) => void (g.issuers[0]!.algorithms = ['ES256', 'HS256']),
    message:
      'GATEWAY.issuers[0].algorithms: "HS256" is not supported; allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, Ed25519 (HS* and none are never accepted against a JWKS)',
  },
  {
    name: 'the same issuer twice',
    change: (g, stub) =>
      void (g.issuers[1] = { issuer: ISS_A, jwksUrl: stub.jwksUrl, audiences: [AUD] }),
    message: 'GATEWAY.issuers[1].issuer: appears twice',
  },
  {
    name: 'route issuer not configured',
    change: (g) => void (g.routes[1]!.issuers = [ISS_A, 'https://c.issuer.test']),
    message: 'GATEWAY.routes[1].issuers: "https://c.issuer.test" is not in GATEWAY.issuers',
  },
  {
    name: "route audience none of the route's issuers accepts",
    // AUD_B is ISS_B's audience: configured, but not reachable through ISS_A alone.
    change: (g) => {
      g.routes[1]!.issuers = [ISS_A]
      g.routes[1]!.audiences = [AUD_B]
    },
    message: `GATEWAY.routes[1].audiences: "${AUD_B}" is not an audience of the route's issuers`,
  },
  {
    name: 'duplicate routes',
    change: (g) => void g.routes.push({ path: '/api', origin: 'https://other.example' }),
    message: 'GATEWAY.routes[3]: matches exactly what routes[1] matches',
  },
  {
    name: 'duplicate routes spelled differently (trailing slash, host case)',
    change: (g) => {
      g.routes[1]!.host = 'API.example'
      g.routes.push({ host: 'api.example', path: '/api/', origin: 'https://other.example' })
    },
    message: 'GATEWAY.routes[3]: matches exactly what routes[1] matches',
  },
  {
    name: 'a path that is not normalised',
    change: (g) => void (g.routes[1]!.path = '/api/../admin'),
    message:
      'GATEWAY.routes[1].path: must be a normalised path starting with / (got "/api/../admin")',
  },
  {
    name: 'unknown auth mode',
    change: (g) => void (g.routes[1]!.auth = 'none'),
    message: 'GATEWAY.routes[1].auth: must be required, optional or public (got "none")',
  },
  {
    name: 'bad token source',
    change: (g) => void (g.routes[1]!.tokenSources = ['header', 'cookie']),
    message: 'GATEWAY.routes[1].tokenSources: "cookie" is not header, cookie:NAME or query:NAME',
  },
  {
    name: 'an identity header the gateway may not set',
    change: (g) => void (g.routes[1]!.identity = { headers: { Authorization: 'email' } }),
    message:
      'GATEWAY.routes[1].identity.headers.Authorization: is not a header name the gateway may set',
  },
  {
    name: 'an authenticated route without issuers',
    change: (g) => void (g.issuers = []),
    message: 'GATEWAY.routes[0].issuers: an authenticated route needs an issuer',
  },
  {
    name: 'no routes',
    change: (g) => void (g.routes = []),
    message: 'GATEWAY.routes: needs at least one route',
  },
  {
    name: 'a route asking for an assertion without ASSERTION_KEY',
    change: (g) => void (g.routes[1]!.assertion = { claims: ['email'], ttlSeconds: 60 }),
    message: 'ASSERTION_KEY: is required: a route asks for a signed identity assertion',
  },
]

describe('structured config errors name the exact path and fail every request', () => {
  it('the valid configuration the cases start from works (so each case fails for its own change)', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = structuredEnv(stub, valid(stub), { HS_SECRET: HMAC_SECRET })
    const res = await send(gw, '/api/x', bearer(await mint(key, { iss: ISS_A, aud: AUD })))
    expect(res.status).toBe(200)
    expect((await stub.calls()).origin.map((c) => c.url)).toEqual([`/ns/${stub.id}/origin/api/x`])
  })

  it.each(cases)('$name', async ({ change, message }) => {
    const stub = new Stub()
    const g = valid(stub)
    const vars = change(g, stub) ?? {}
    await expectConfigError(structuredEnv(stub, g, vars), stub, message)
  })

  it('GATEWAY as a JSON string works, and JSON that does not parse is an error', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const ok = structuredEnv(stub, JSON.stringify(valid(stub)))
    expect((await send(ok, '/x', bearer(await mint(key, { iss: ISS_A, aud: AUD })))).status).toBe(
      200,
    )

    const bad = new Stub()
    await expectConfigError(
      structuredEnv(bad, JSON.stringify(valid(bad)).slice(0, -1)),
      bad,
      'GATEWAY: must be a table or a JSON object (the JSON does not parse)',
    )
  })

  it('GATEWAY together with any simple-mode variable is an error naming that variable', async () => {
    for (const name of ['ORIGIN_URL', 'JWT_ISSUER', 'JWT_AUDIENCE', 'JWKS_URL', 'JWT_ALGORITHMS']) {
      const stub = new Stub()
      // gatewayEnv sets the first four; structuredEnv unsets them, so put back exactly one.
      const vars = {
        [name]: name === 'JWT_ALGORITHMS' ? 'ES256' : (gatewayEnv(stub)[name] as string),
      }
      await expectConfigError(
        structuredEnv(stub, valid(stub), vars),
        stub,
        `${name}: must not be set together with GATEWAY (use one mode)`,
      )
    }
  })

  it('an assertion key that is not a private P-256 or Ed25519 JWK with a kid is an error', async () => {
    const publicOnly = JSON.parse(await privateJwk('ES256', 'k1')) as Record<string, unknown>
    delete publicOnly.d
    const noKid = JSON.parse(await privateJwk('Ed25519', 'k2')) as Record<string, unknown>
    delete noKid.kid
    for (const [name, value] of [
      ['ASSERTION_KEY', JSON.stringify(publicOnly)],
      ['ASSERTION_KEY', JSON.stringify(noKid)],
      ['ASSERTION_KEY_PREVIOUS', JSON.stringify(publicOnly)],
    ] as const) {
      const stub = new Stub()
      const g = valid(stub)
      g.routes[1]!.assertion = { claims: ['email'] }
      const vars = { ASSERTION_KEY: await privateJwk('ES256', 'good'), [name]: value }
      await expectConfigError(
        structuredEnv(stub, g, vars),
        stub,
        `${name}: must be a private EC P-256 or Ed25519 JWK with a kid`,
      )
    }
  })
})

describe('structured config defaults', () => {
  it('a minimal route: any host and method, auth required, header token, x-auth- identity', () => {
    const stub = new Stub()
    const parsed = parseConfig({
      ...env,
      GATEWAY: {
        issuers: [{ issuer: ISS_A, jwksUrl: stub.jwksUrl, audiences: AUD }],
        routes: [{ path: '/api/', origin: `${stub.originUrl}/` }],
      },
    })
    if (!parsed.ok) throw parsed.error
    const [route] = parsed.config.routes
    expect(route).toEqual({
      name: 'GATEWAY.routes[0]',
      host: null,
      pathPrefix: '/api',
      methods: null,
      origin: { kind: 'url', url: stub.originUrl },
      auth: 'required',
      issuers: [ISS_A],
      opaqueIssuer: null,
      audiences: null,
      scopes: [],
      claims: [],
      sources: [{ kind: 'header' }],
      identity: { prefix: 'x-auth-', claimHeaders: [], sendClaims: true, keepAuthorization: false },
      cors: false,
      csrf: { allowedOrigins: [] },
      originTimeoutMs: 30_000,
      assertion: null,
      binding: 'none',
      dpopNonce: false,
      allowUnboundDpop: false,
      mcp: null,
    })
    expect(parsed.config.issuers[0]).toMatchObject({
      audiences: [AUD],
      clockSkewS: 30,
      maxTokenAgeS: null,
      typeOptional: true,
      introspection: null,
    })
    expect(Object.isFrozen(route)).toBe(true)
  })
})
