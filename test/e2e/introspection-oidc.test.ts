/**
 * Opaque access tokens end to end against a real authorization server: `oidc-provider` (started
 * in Node by test/node/oidc-introspection-setup.ts) issues opaque tokens and answers RFC 7662
 * introspection, and the gateway worker introspects them with each client authentication method.
 */
import { env } from 'cloudflare:test'
import * as client from 'openid-client'
import { describe, expect, it } from 'vitest'
import {
  bearer,
  body,
  captureLogs,
  expectInvalidToken,
  fromB64u,
  send,
  structuredEnv,
  Stub,
  type GatewayEnv,
} from '../helpers'

const vars = env as unknown as {
  OIDC_INTROSPECTION_URL: string
  OIDC_INTROSPECTION_CLIENT_KEY: string
}
const OP = vars.OIDC_INTROSPECTION_URL
// As in test/node/oidc-introspection-setup.ts.
const OPAQUE_RESOURCE = 'https://api.gateway.test/opaque'
const APP = { id: 'opaque-app', secret: 'opaque-app-secret-0123456789abcdef' }
const RS_BASIC = { id: 'gateway-rs-basic', secret: 'gateway-rs-basic-secret-0123456789' }
const RS_POST = { id: 'gateway-rs-post', secret: 'gateway-rs-post-secret-0123456789ab' }
const RS_JWT = { id: 'gateway-rs-jwt' }

/** The request line's reason code for one request through the gateway. */
async function refusedFor(gw: GatewayEnv, token: string): Promise<unknown> {
  const logs = captureLogs()
  try {
    await expectInvalidToken(await send(gw, '/x', bearer(token)))
  } finally {
    logs.restore()
  }
  return logs.lines.find((l) => l.event === 'request')?.reason
}

async function control(name: string, payload: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${OP}/_harness/${name}`, {
    method: 'POST',
    body: JSON.stringify(payload),
  })
  if (!res.ok) throw new Error(`${name}: ${res.status} ${await res.text()}`)
  return res.json()
}

/** A user's opaque access token, made by the provider. */
async function userToken(sub: string, scope = 'read', refresh = false): Promise<string> {
  return (await control('mint', { sub, scope, refresh })).token as string
}

/** The gateway with the provider as its one issuer; introspection_endpoint found by discovery. */
function gateway(stub: Stub, introspection: Record<string, unknown>, extra: GatewayEnv = {}) {
  return structuredEnv(
    stub,
    {
      issuers: [
        {
          issuer: OP,
          audiences: [OPAQUE_RESOURCE],
          introspection: {
            clientId: RS_BASIC.id,
            clientSecret: 'INTROSPECTION_SECRET',
            ...introspection,
          },
        },
      ],
      routes: [
        { path: '/', origin: stub.originUrl },
        { path: '/write', origin: stub.originUrl, scopes: ['write'] },
      ],
    },
    { INTROSPECTION_SECRET: RS_BASIC.secret, ...extra },
  )
}

describe('opaque tokens from a real authorization server (oidc-provider introspection)', () => {
  it('the provider issues opaque tokens: not JWS-shaped', async () => {
    const token = await userToken('alice')
    expect(token.split('.')).toHaveLength(1)
  })

  const methods: [string, Record<string, unknown>, GatewayEnv][] = [
    ['client_secret_basic', {}, {}],
    [
      'client_secret_post',
      { clientId: RS_POST.id, auth: 'client_secret_post' },
      { INTROSPECTION_SECRET: RS_POST.secret },
    ],
    [
      'private_key_jwt',
      { clientId: RS_JWT.id, auth: 'private_key_jwt' },
      { INTROSPECTION_SECRET: vars.OIDC_INTROSPECTION_CLIENT_KEY },
    ],
  ]
  for (const [method, introspection, extra] of methods) {
    it(`a user's token passes with ${method}, identity headers from the provider's answer`, async () => {
      const stub = new Stub()
      const gw = gateway(stub, introspection, extra)
      const token = await userToken('alice')
      const res = await send(gw, '/hello', bearer(token))
      expect(res.status).toBe(200)
      const seen = (await body(res)).headers as Record<string, string>
      expect(seen['x-auth-sub']).toBe('alice')
      expect(seen['x-auth-iss']).toBe(OP)
      const claims = JSON.parse(fromB64u(seen['x-auth-claims']!)) as Record<string, unknown>
      expect(claims).toMatchObject({
        active: true,
        sub: 'alice',
        iss: OP,
        aud: OPAQUE_RESOURCE,
        client_id: APP.id,
        scope: 'read',
        token_type: 'Bearer',
      })
      // Cached: the second request is answered without another introspection.
      expect((await send(gw, '/hello', bearer(token))).status).toBe(200)
      expect((await stub.calls()).origin).toHaveLength(2)
    })
  }

  it("route scopes apply to the provider's scope", async () => {
    const stub = new Stub()
    const gw = gateway(stub, {})
    const reader = await send(gw, '/write', bearer(await userToken('alice', 'read')))
    expect(reader.status).toBe(403)
    await reader.body?.cancel()
    expect((await send(gw, '/write', bearer(await userToken('alice', 'read write')))).status).toBe(
      200,
    )
  })

  it('a token the provider revoked is inactive: 401', async () => {
    const stub = new Stub()
    const gw = gateway(stub, {})
    const token = await userToken('alice')
    expect((await control('revoke', { token })).revoked).toBe(true)
    expect(await refusedFor(gw, token)).toBe('token_inactive')
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  it('an unknown token is inactive: 401', async () => {
    const stub = new Stub()
    await expectInvalidToken(await send(gateway(stub, {}), '/x', bearer('not-a-real-token-123')))
  })

  it('a refresh token is refused (the provider answers active, without aud)', async () => {
    const stub = new Stub()
    const token = await userToken('alice', 'read', true)
    expect(await refusedFor(gateway(stub, {}), token)).toBe('missing_audience')
  })

  it('a client credentials token (no sub) from a real grant is refused', async () => {
    const stub = new Stub()
    const config = await client.discovery(new URL(OP), APP.id, APP.secret, undefined, {
      execute: [client.allowInsecureRequests],
    })
    const grant = await client.clientCredentialsGrant(config, {
      resource: OPAQUE_RESOURCE,
      scope: 'read',
    })
    expect(grant.access_token.split('.')).toHaveLength(1)
    expect(await refusedFor(gateway(stub, {}), grant.access_token)).toBe('bad_claims')
  })

  it('a wrong client secret is the gateway’s fault, not the token’s: 503', async () => {
    const stub = new Stub()
    const gw = gateway(stub, {}, { INTROSPECTION_SECRET: 'wrong-secret-0123456789' })
    const res = await send(gw, '/x', bearer(await userToken('alice')))
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    await res.body?.cancel()
  })
})
