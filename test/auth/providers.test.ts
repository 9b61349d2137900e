/**
 * Each major provider's documented token and key-document shapes, reproduced with keys made at
 * test time, through the real worker configured as docs/providers.md says. What each shape is
 * comes from the provider's documentation (cited per case); the keys and signatures are ours.
 */
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config'
import {
  bearer,
  body,
  captureLogs,
  logReasons,
  structuredEnv,
  expectInvalidToken,
  gatewayEnv,
  makeKey,
  send,
  signRaw,
  Stub,
  type GatewayEnv,
  type TestKey,
} from '../helpers'

const now = () => Math.floor(Date.now() / 1000)

/** A token with exactly this header and payload, signed with `key`. */
function sign(key: TestKey, header: Record<string, unknown>, payload: Record<string, unknown>) {
  return signRaw({ alg: key.alg, kid: key.kid, ...header }, payload, key.privateKey as CryptoKey)
}

function guid(): string {
  return crypto.randomUUID()
}

// Microsoft Entra ID: https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference
const ENTRA_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad'
const ENTRA_API_CLIENT_ID = '6e74172b-be56-4843-9ff4-e66a39bb12e3'

function entraV2Claims(extra: Record<string, unknown> = {}) {
  const t = now()
  return {
    aud: ENTRA_API_CLIENT_ID,
    iss: `https://login.microsoftonline.com/${ENTRA_TENANT}/v2.0`,
    iat: t,
    nbf: t,
    exp: t + 3600,
    aio: 'AXQAi/8TAAAA' + 'x'.repeat(40),
    azp: guid(),
    azpacr: '0',
    name: 'Abe Lincoln',
    oid: guid(),
    preferred_username: 'abeli@microsoft.com',
    rh: '0.ARoAv4j5cvGGr0GRqy180BHbR1gP2N8.',
    scp: 'access_as_user User.Read',
    sub: 'AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ',
    tid: ENTRA_TENANT,
    uti: 'fqiBqXLPj0eQa82S-IYFAA',
    ver: '2.0',
    ...extra,
  }
}

function entraEnv(stub: Stub, vars: GatewayEnv = {}): GatewayEnv {
  return gatewayEnv(stub, {
    JWT_ISSUER: `https://login.microsoftonline.com/${ENTRA_TENANT}/v2.0`,
    JWT_AUDIENCE: ENTRA_API_CLIENT_ID,
    ...vars,
  })
}

describe('Microsoft Entra ID: large tokens', () => {
  it('a v2 access token with 200 group ids (~11.8 KB) passes by default', async () => {
    const stub = new Stub()
    const key = await makeKey('RS256')
    await stub.publish(key)
    const groups = Array.from({ length: 200 }, guid)
    const token = await sign(key, { typ: 'JWT' }, entraV2Claims({ groups }))
    expect(token.length).toBeGreaterThan(11_000)
    expect(token.length).toBeLessThan(16_384)
    const res = await send(entraEnv(stub), '/x', bearer(token))
    expect(res.status).toBe(200)
    const seen = (await body(res)).headers as Record<string, string>
    expect(seen['x-auth-sub']).toBe('AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ')
  })

  it('MAX_TOKEN_BYTES lowers or raises the limit; over it: 401 before any key work', async () => {
    const stub = new Stub()
    const key = await makeKey('RS256')
    await stub.publish(key)
    const big = await sign(key, {}, entraV2Claims({ groups: Array.from({ length: 200 }, guid) }))
    const got = await logReasons(async () => {
      await expectInvalidToken(
        await send(entraEnv(stub, { MAX_TOKEN_BYTES: '8192' }), '/x', bearer(big)),
      )
    })
    expect(got).toEqual(['token_too_large'])
    expect((await stub.calls()).jwksFetches).toBe(0)

    // 600 groups (~35 KB): over the default, under a raised limit; the Authorization cap follows.
    const huge = await sign(key, {}, entraV2Claims({ groups: Array.from({ length: 600 }, guid) }))
    expect(huge.length).toBeGreaterThan(30_000)
    await expectInvalidToken(await send(entraEnv(stub), '/x', bearer(huge)))
    expect((await stub.calls()).jwksFetches).toBe(0)
    const raised = entraEnv(stub, { MAX_TOKEN_BYTES: '40960' })
    expect((await send(raised, '/x', bearer(huge))).status).toBe(200)
  })

  it('MAX_TOKEN_BYTES is bounded: 1024 to 65536', () => {
    const base = { ORIGIN_URL: 'https://o.test', JWT_ISSUER: 'https://i.test', JWT_AUDIENCE: 'a' }
    const message = (v: string) => {
      const r = parseConfig({ ...base, MAX_TOKEN_BYTES: v })
      return r.ok ? r.config.maxTokenBytes : r.error.message
    }
    expect(message('65536')).toBe(65536)
    expect(message('1024')).toBe(1024)
    for (const bad of ['65537', '1023', '16k']) {
      expect(message(bad)).toBe(
        `MAX_TOKEN_BYTES: must be a whole number from 1024 to 65536 (got "${bad}")`,
      )
    }
    expect(
      parseConfig(base).ok &&
        (parseConfig(base) as { config: { maxTokenBytes: number } }).config.maxTokenBytes,
    ).toBe(16384)
  })
})

/** The error message of a config, or null when it parses. */
function configError(env: Record<string, unknown>): string | null {
  const r = parseConfig(env)
  return r.ok ? null : r.error.message
}

async function published(alg = 'RS256') {
  const stub = new Stub()
  const key = await makeKey(alg)
  await stub.publish(key)
  return { stub, key }
}

describe('Google: one issuer, two iss spellings', () => {
  // https://developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken
  const CLIENT = '1234987819200-okhs2dv5b1l3qj7m4r0ltqqjnrd7h6ri.apps.googleusercontent.com'
  const googleClaims = (iss: string) => ({
    iss,
    azp: CLIENT,
    aud: CLIENT,
    sub: '110169484474386276334',
    email: 'jsmith@example.com',
    email_verified: true,
    iat: now(),
    exp: now() + 3600,
  })

  it('JWT_ISSUER lists both; each passes, another does not; X-Auth-Iss names the entry', async () => {
    const { stub, key } = await published()
    const gw = gatewayEnv(stub, {
      JWT_ISSUER: 'https://accounts.google.com,accounts.google.com',
      JWT_AUDIENCE: CLIENT,
    })
    for (const iss of ['https://accounts.google.com', 'accounts.google.com']) {
      const res = await send(gw, '/x', bearer(await sign(key, { typ: 'JWT' }, googleClaims(iss))))
      expect(res.status, iss).toBe(200)
      const seen = (await body(res)).headers as Record<string, string>
      expect(seen['x-auth-iss']).toBe('https://accounts.google.com')
    }
    for (const iss of [
      'https://accounts.google.com/',
      'http://accounts.google.com',
      'google.com',
    ]) {
      await expectInvalidToken(await send(gw, '/x', bearer(await sign(key, {}, googleClaims(iss)))))
    }
    expect((await stub.calls()).jwksFetches).toBe(1)
  })

  it('discovery uses the first value; structured mode takes a list; a value in two entries is an error', async () => {
    const stub = new Stub()
    const key = await makeKey('RS256')
    await stub.setup({ jwks: { keys: [key.publicJwk] }, issuer: stub.base })
    const gw = gatewayEnv(stub, {
      JWT_ISSUER: `${stub.base},${stub.base.replace('http://', '')}`,
      JWT_AUDIENCE: CLIENT,
      JWKS_URL: undefined,
    })
    const alt = googleClaims(stub.base.replace('http://', ''))
    expect((await send(gw, '/x', bearer(await sign(key, {}, alt)))).status).toBe(200)
    expect(await stub.calls()).toMatchObject({ discoveryFetches: 1, jwksFetches: 1 })

    const issuers = [
      {
        issuer: ['https://accounts.google.com', 'accounts.google.com'],
        jwksUrl: stub.jwksUrl,
        audiences: [CLIENT],
      },
      { issuer: 'accounts.google.com', jwksUrl: stub.jwksUrl, audiences: [CLIENT] },
    ]
    const routes = [{ path: '/', origin: stub.originUrl }]
    expect(configError({ GATEWAY: { issuers, routes } })).toBe(
      'GATEWAY.issuers[1].issuer: appears twice',
    )
    expect(configError({ GATEWAY: { issuers: issuers.slice(0, 1), routes } })).toBeNull()
    expect(
      configError({
        ORIGIN_URL: 'https://o.test',
        JWT_AUDIENCE: 'a',
        JWT_ISSUER: 'https://a.test,https://a.test',
      }),
    ).toBe('JWT_ISSUER: lists one value twice')
  })
})

describe('Microsoft Entra ID: multi-tenant issuer template', () => {
  const TEMPLATE = 'https://login.microsoftonline.com/{tenantid}/v2.0'
  const A = '72f988bf-86f1-41af-91ab-2d7cd011db47'
  const B = 'f8cdef31-a31e-4b4a-93e4-5f571e91255a'
  const claimsOf = (tenantInIss: string, tid: unknown) =>
    entraV2Claims({ iss: `https://login.microsoftonline.com/${tenantInIss}/v2.0`, tid })

  it('any tenant whose tid equals the tenant in iss; a mismatch, a missing tid or a non-tenant is refused', async () => {
    const { stub, key } = await published()
    const gw = entraEnv(stub, { JWT_ISSUER: TEMPLATE })
    for (const t of [A, B]) {
      const res = await send(gw, '/x', bearer(await sign(key, {}, claimsOf(t, t))))
      expect(res.status, t).toBe(200)
      expect(((await body(res)).headers as Record<string, string>)['x-auth-iss']).toBe(TEMPLATE)
    }
    const bad = [
      claimsOf(A, B),
      claimsOf(A, undefined),
      claimsOf(A, [A]),
      entraV2Claims({ iss: `https://login.microsoftonline.com/${A}/x/v2.0`, tid: `${A}/x` }),
      entraV2Claims({ iss: 'https://login.microsoftonline.com//v2.0', tid: '' }),
      entraV2Claims({ iss: `https://login.microsoftonline.com/${A}/v2.0/`, tid: A }),
      entraV2Claims({ iss: `https://evil.example/${A}/v2.0`, tid: A }),
      entraV2Claims({ iss: TEMPLATE, tid: '{tenantid}' }),
    ]
    const reasons = await logReasons(async () => {
      for (const c of bad)
        await expectInvalidToken(await send(gw, '/x', bearer(await sign(key, {}, c))))
    })
    expect(new Set(reasons)).toEqual(new Set(['bad_issuer']))
    expect((await stub.calls()).origin).toHaveLength(2)
  })

  it('JWT_TENANTS allows only the listed tenants; structured tenants likewise', async () => {
    const { stub, key } = await published()
    const gw = entraEnv(stub, { JWT_ISSUER: TEMPLATE, JWT_TENANTS: A })
    expect((await send(gw, '/x', bearer(await sign(key, {}, claimsOf(A, A))))).status).toBe(200)
    await expectInvalidToken(await send(gw, '/x', bearer(await sign(key, {}, claimsOf(B, B)))))
    const structured = structuredEnv(stub, {
      issuers: [
        {
          issuer: TEMPLATE,
          tenants: [B],
          jwksUrl: stub.jwksUrl,
          audiences: [ENTRA_API_CLIENT_ID],
        },
      ],
      routes: [{ path: '/', origin: stub.originUrl }],
    })
    expect((await send(structured, '/x', bearer(await sign(key, {}, claimsOf(B, B))))).status).toBe(
      200,
    )
    await expectInvalidToken(
      await send(structured, '/x', bearer(await sign(key, {}, claimsOf(A, A)))),
    )
  })

  it('never a wildcard: the template must be a whole https path segment, with a JWKS URL', () => {
    const base = {
      ORIGIN_URL: 'https://o.test',
      JWT_AUDIENCE: 'a',
      JWKS_URL: 'https://k.test/keys',
    }
    const bad = [
      '{tenantid}',
      'https://{tenantid}',
      'https://login.microsoftonline.com/x{tenantid}/v2.0',
      'https://login.microsoftonline.com/{tenantid}{tenantid}/v2.0',
      'http://login.microsoftonline.com/{tenantid}/v2.0',
      'https://login.microsoftonline.com/{tenantid}x/v2.0',
    ]
    for (const iss of bad) {
      expect(configError({ ...base, JWT_ISSUER: iss }), iss).toMatch(
        /^JWT_ISSUER: a template needs/,
      )
    }
    expect(configError({ ...base, JWT_ISSUER: `https://a.test,${TEMPLATE}` })).toBe(
      'JWT_ISSUER: only the first value may contain {tenantid}',
    )
    expect(configError({ ...base, JWT_ISSUER: 'https://a.test', JWT_TENANTS: A })).toBe(
      'JWT_TENANTS: needs an issuer template with {tenantid}',
    )
    expect(configError({ ...base, JWT_ISSUER: TEMPLATE, JWT_TENANTS: 'a/b' })).toBe(
      'JWT_TENANTS: "a/b" is not a tenant id',
    )
    expect(configError({ ...base, JWKS_URL: undefined, JWT_ISSUER: TEMPLATE })).toBe(
      'JWKS_URL: is required with an issuer template (discovery needs one issuer)',
    )
    expect(configError({ ...base, JWT_ISSUER: 'https://sts.windows.net/{tenantid}/' })).toBeNull()
  })

  it('Entra v1: sts.windows.net issuer with its trailing slash, App ID URI audience', async () => {
    const { stub, key } = await published()
    const iss = `https://sts.windows.net/${ENTRA_TENANT}/`
    const gw = gatewayEnv(stub, { JWT_ISSUER: iss, JWT_AUDIENCE: `api://${ENTRA_API_CLIENT_ID}` })
    const v1 = {
      ...entraV2Claims({ iss, aud: `api://${ENTRA_API_CLIENT_ID}`, ver: '1.0' }),
      appid: guid(),
    }
    expect(await send(gw, '/x', bearer(await sign(key, { typ: 'JWT' }, v1)))).toMatchObject({
      status: 200,
    })
    const noSlash = { ...v1, iss: iss.slice(0, -1) }
    await expectInvalidToken(await send(gw, '/x', bearer(await sign(key, {}, noSlash))))
  })
})

describe('AWS Cognito, Okta, Auth0, Keycloak, GitHub Actions, Firebase', () => {
  it('Cognito: access tokens (no aud, client_id) pass on JWT_CLIENT_IDS; the id token (aud) does not unless listed', async () => {
    // https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-access-token.html
    const { stub, key } = await published()
    const iss = 'https://cognito-idp.us-east-1.amazonaws.com/us-east-1_EXAMPLE'
    const client = '3n4b5urk1ft4fl3mg5e62d9ado'
    const access = {
      sub: 'aaaaaaaa-bbbb-cccc-dddd-example',
      iss,
      client_id: client,
      origin_jti: guid(),
      event_id: guid(),
      token_use: 'access',
      scope: 'aws.cognito.signin.user.admin',
      auth_time: now(),
      exp: now() + 3600,
      iat: now(),
      jti: guid(),
      username: 'my-user',
    }
    const id = {
      ...access,
      aud: client,
      token_use: 'id',
      client_id: undefined,
      email: 'a@example.com',
    }
    const m2m = { ...access, scope: 'orders/read', username: undefined }
    const gw = gatewayEnv(stub, {
      JWT_ISSUER: iss,
      JWT_AUDIENCE: undefined,
      JWT_CLIENT_IDS: client,
    })
    expect((await send(gw, '/x', bearer(await sign(key, {}, access)))).status).toBe(200)
    expect((await send(gw, '/x', bearer(await sign(key, {}, m2m)))).status).toBe(200)
    await expectInvalidToken(await send(gw, '/x', bearer(await sign(key, {}, id))))
    const both = gatewayEnv(stub, { JWT_ISSUER: iss, JWT_AUDIENCE: client, JWT_CLIENT_IDS: client })
    expect((await send(both, '/x', bearer(await sign(key, {}, id)))).status).toBe(200)
  })

  it('Okta: no typ in the header, scp as an array, cid as the client claim', async () => {
    // https://developer.okta.com/docs/guides/validate-access-tokens/
    const { stub, key } = await published()
    const iss = 'https://dev-133337.okta.com/oauth2/default'
    const claims = {
      ver: 1,
      jti: 'AT.' + 'x'.repeat(40),
      iss,
      aud: 'api://default',
      iat: now(),
      exp: now() + 3600,
      cid: '0oa1abcdEFGH2ijkl3m4',
      uid: '00u1abcd',
      scp: ['openid', 'orders:read'],
      auth_time: now(),
      sub: 'user@example.com',
    }
    const gw = structuredEnvFor(
      stub,
      { issuer: iss, audiences: ['api://default'] },
      { scopes: ['orders:read'] },
    )
    expect((await send(gw, '/x', bearer(await sign(key, {}, claims)))).status).toBe(200)
    // Requiring typ (JWT_TYPES / types) refuses every Okta token: the pitfall docs/providers.md names.
    const strict = structuredEnvFor(stub, {
      issuer: iss,
      audiences: ['api://default'],
      types: ['at+jwt'],
    })
    const reasons = await logReasons(async () => {
      await expectInvalidToken(await send(strict, '/x', bearer(await sign(key, {}, claims))))
    })
    expect(reasons).toEqual(['bad_typ'])
  })

  it('Auth0: issuer with its trailing slash, aud an array with /userinfo, scope string', async () => {
    // https://auth0.com/docs/secure/tokens/access-tokens/access-token-profiles
    const { stub, key } = await published()
    const iss = 'https://example-tenant.us.auth0.com/'
    const claims = {
      iss,
      sub: 'auth0|5f7c8ec7c33c6c004bbafe82',
      aud: ['https://api.example.com', `${iss}userinfo`],
      iat: now(),
      exp: now() + 86400,
      scope: 'openid profile read:orders',
      azp: 'my-client-id',
      permissions: ['read:orders'],
    }
    const gw = structuredEnvFor(
      stub,
      { issuer: iss, audiences: ['https://api.example.com'] },
      { scopes: ['read:orders'] },
    )
    expect((await send(gw, '/x', bearer(await sign(key, { typ: 'at+jwt' }, claims)))).status).toBe(
      200,
    )
    const noSlash = structuredEnvFor(stub, {
      issuer: iss.slice(0, -1),
      audiences: ['https://api.example.com'],
    })
    await expectInvalidToken(await send(noSlash, '/x', bearer(await sign(key, {}, claims))))
  })

  it('Keycloak: with the audience mapper aud names the API; without it (aud "account") it is refused', async () => {
    // https://www.keycloak.org/docs/latest/server_admin/#audience-support
    const { stub, key } = await published()
    const iss = 'https://keycloak.example.com/realms/acme'
    const base = {
      exp: now() + 300,
      iat: now(),
      jti: guid(),
      iss,
      sub: guid(),
      typ: 'Bearer',
      azp: 'orders-web',
      scope: 'openid profile email',
      preferred_username: 'alice',
    }
    const gw = structuredEnvFor(stub, { issuer: iss, audiences: ['orders-api'] })
    expect(
      (
        await send(
          gw,
          '/x',
          bearer(await sign(key, { typ: 'JWT' }, { ...base, aud: ['orders-api', 'account'] })),
        )
      ).status,
    ).toBe(200)
    const reasons = await logReasons(async () => {
      await expectInvalidToken(
        await send(gw, '/x', bearer(await sign(key, { typ: 'JWT' }, { ...base, aud: 'account' }))),
      )
    })
    expect(reasons).toEqual(['bad_audience'])
  })

  it('GitHub Actions: the audience you request, and claim rules pinning the repository', async () => {
    // https://docs.github.com/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect
    const { stub, key } = await published()
    const iss = 'https://token.actions.githubusercontent.com'
    const claims = (repo: string) => ({
      jti: guid(),
      sub: `repo:${repo}:ref:refs/heads/main`,
      aud: 'https://deploy.example.com',
      ref: 'refs/heads/main',
      repository: repo,
      repository_owner: repo.split('/')[0],
      event_name: 'push',
      workflow: 'deploy',
      iss,
      nbf: now(),
      exp: now() + 300,
      iat: now(),
    })
    const gw = structuredEnvFor(
      stub,
      { issuer: iss, audiences: ['https://deploy.example.com'] },
      {
        claims: [
          { claim: 'repository', equals: 'acme/infra' },
          { claim: 'ref', equals: 'refs/heads/main' },
        ],
      },
    )
    expect(
      (
        await send(
          gw,
          '/x',
          bearer(await sign(key, { typ: 'JWT', x5t: 'abc' }, claims('acme/infra'))),
        )
      ).status,
    ).toBe(200)
    expect(
      (await send(gw, '/x', bearer(await sign(key, {}, claims('mallory/infra'))))).status,
    ).toBe(403)
  })

  it('Firebase: the documented x509 key URL is a config error naming the JWK Set URL; a PEM map served anyway is named in the log', async () => {
    // https://firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library
    const x509 =
      'https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com'
    const base = {
      ORIGIN_URL: 'https://o.test',
      JWT_ISSUER: 'https://securetoken.google.com/my-project',
      JWT_AUDIENCE: 'my-project',
    }
    expect(configError({ ...base, JWKS_URL: x509 })).toBe(
      'JWKS_URL: serves a {kid: PEM certificate} map, not a JWK Set; use the same keys as a JWK Set: https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com',
    )
    expect(
      configError({
        ...base,
        JWKS_URL:
          'https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com',
      }),
    ).toBeNull()
    const stub = new Stub()
    await stub.setup({
      jwks: { abc123: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' },
    })
    const key = await makeKey('RS256')
    const logs = captureLogs()
    try {
      await expectInvalidToken(
        await send(
          gatewayEnv(stub),
          '/x',
          bearer(
            await sign(
              key,
              {},
              { iss: 'https://issuer.test', aud: 'api://gateway-test', sub: 'u', exp: now() + 60 },
            ),
          ),
        ),
      )
    } finally {
      logs.restore()
    }
    expect(logs.lines.find((l) => l.event === 'jwks_fetch_failed')?.error).toBe(
      'JWKS has no "keys" array (it is a {kid: PEM certificate} map; point at the issuer\'s JWK Set instead)',
    )
  })
})

/** One issuer (its JWKS on the stub) and one catch-all route, in structured mode. */
function structuredEnvFor(
  stub: Stub,
  issuer: Record<string, unknown>,
  route: Record<string, unknown> = {},
) {
  return structuredEnv(stub, {
    issuers: [{ jwksUrl: stub.jwksUrl, ...issuer }],
    routes: [{ path: '/', origin: stub.originUrl, ...route }],
  })
}
