/**
 * End to end against a real OpenID Provider: the certified `oidc-provider` (started in Node by
 * test/node/oidc-setup.ts) issues RFC 9068 JWT access tokens to a real client (`openid-client`,
 * running here in workerd with its own fetch aimed at the loopback provider), and the tokens go
 * through the real gateway worker: discovery, several algorithms, and a key rotation.
 */
import { env } from 'cloudflare:test'
import * as client from 'openid-client'
import { describe, expect, it } from 'vitest'
import {
  bearer,
  body,
  captureLogs,
  gatewayEnv,
  logReasons,
  send,
  sleep,
  structuredEnv,
  Stub,
} from '../helpers'

const OIDC_URL = (env as unknown as { OIDC_URL: string }).OIDC_URL
// As in test/node/oidc-setup.ts.
const CLIENT = { id: 'gateway-e2e', secret: 'gateway-e2e-secret-0123456789abcdef' }
const RESOURCE = {
  ES256: 'https://api.gateway.test/es256',
  RS256: 'https://api.gateway.test/rs256',
  PS256: 'https://api.gateway.test/ps256',
  EdDSA: 'https://api.gateway.test/eddsa',
} as const

/** openid-client's view of the provider, from its discovery document (plain http on loopback). */
async function oidcClient(): Promise<client.Configuration> {
  return client.discovery(new URL(OIDC_URL), CLIENT.id, CLIENT.secret, undefined, {
    execute: [client.allowInsecureRequests],
  })
}

async function accessToken(
  config: client.Configuration,
  resource: string,
  scope = 'read',
): Promise<string> {
  const res = await client.clientCredentialsGrant(config, { resource, scope })
  return res.access_token
}

function header(token: string): Record<string, unknown> {
  return JSON.parse(atob(token.split('.')[0]!.replace(/-/g, '+').replace(/_/g, '/')))
}

/** A gateway for the provider's issuer, keys found by OIDC discovery (no JWKS_URL). */
function gateway(stub: Stub, vars: Record<string, unknown> = {}) {
  return gatewayEnv(stub, {
    JWT_ISSUER: OIDC_URL,
    JWT_AUDIENCE: Object.values(RESOURCE).join(','),
    JWKS_URL: undefined,
    JWT_TYPES: 'at+jwt',
    ...vars,
  })
}

describe('a real OpenID Provider (oidc-provider) and a real client (openid-client)', () => {
  it('RFC 9068 access tokens in ES256, RS256, PS256 and EdDSA pass, keys found by discovery', async () => {
    const stub = new Stub()
    const gw = gateway(stub)
    const config = await oidcClient()
    for (const [alg, resource] of Object.entries(RESOURCE)) {
      const token = await accessToken(config, resource)
      expect(header(token)).toMatchObject({ alg, typ: 'at+jwt' })
      const res = await send(gw, '/orders', bearer(token))
      expect(res.status, alg).toBe(200)
      const seen = (await body(res)).headers as Record<string, string>
      expect(seen['x-auth-sub']).toBe(CLIENT.id)
      expect(seen['x-auth-iss']).toBe(OIDC_URL)
      expect(seen.authorization).toBeUndefined()
    }
  })

  it('route scopes are read from the scope claim the provider grants', async () => {
    const stub = new Stub()
    const gw = structuredEnv(stub, {
      issuers: [{ issuer: OIDC_URL, audiences: [RESOURCE.ES256], types: ['at+jwt'] }],
      routes: [{ path: '/', origin: stub.originUrl, scopes: ['write'] }],
    })
    const config = await oidcClient()
    const read = await accessToken(config, RESOURCE.ES256, 'read')
    const write = await accessToken(config, RESOURCE.ES256, 'read write')
    expect((await send(gw, '/x', bearer(read))).status).toBe(403)
    expect((await send(gw, '/x', bearer(write))).status).toBe(200)
  })

  it('a token of another resource (aud) is refused', async () => {
    const stub = new Stub()
    const gw = gateway(stub, { JWT_AUDIENCE: RESOURCE.RS256 })
    const config = await oidcClient()
    const token = await accessToken(config, RESOURCE.ES256)
    const reasons = await logReasons(async () => {
      expect((await send(gw, '/x', bearer(token))).status).toBe(401)
    })
    expect(reasons).toEqual(['bad_audience'])
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  it('a key rotation right after the gateway fetched is accepted within the 5 s unknown-kid cooldown', async () => {
    const stub = new Stub()
    // Default cooldowns: JWKS_REFRESH_COOLDOWN_SECONDS 30, JWKS_UNKNOWN_KID_COOLDOWN_SECONDS 5.
    const gw = gateway(stub)
    const config = await oidcClient()
    const before = await accessToken(config, RESOURCE.ES256)
    expect((await send(gw, '/x', bearer(before))).status).toBe(200)

    // The provider publishes a new key and signs with it at once.
    const rotated = await fetch(`${OIDC_URL}/_harness/rotate`, {
      method: 'POST',
      body: JSON.stringify({ algorithms: ['ES256'] }),
    })
    const { kids } = (await rotated.json()) as { kids: string[] }
    const after = await accessToken(config, RESOURCE.ES256)
    expect(header(after).kid).toBe(kids[0])

    const logs = captureLogs()
    const started = Date.now()
    let status = 0
    try {
      // Just fetched: refused until the unknown-kid cooldown passes, then accepted.
      expect((await send(gw, '/x', bearer(after))).status).toBe(401)
      while (status !== 200 && Date.now() - started < 8_000) {
        await sleep(250)
        status = (await send(gw, '/x', bearer(after))).status
      }
    } finally {
      logs.restore()
    }
    const waited = Date.now() - started
    expect(status).toBe(200)
    expect(waited).toBeGreaterThanOrEqual(4_500)
    expect(waited).toBeLessThan(7_000)
    const reasons = logs.lines.filter((l) => l.event === 'request').map((l) => l.reason)
    expect(new Set(reasons.slice(0, -1))).toEqual(new Set(['unknown_kid']))
    // The old key is still published, so tokens issued before the rotation keep working.
    expect((await send(gw, '/x', bearer(before))).status).toBe(200)
  }, 15_000)
})
