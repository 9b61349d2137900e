/**
 * DPoP end to end: the real OpenID Provider of test/node/oidc-setup.ts (`oidc-provider`, whose
 * DPoP support is on by default in v9, so the shared harness needs no option for it) issues a
 * DPoP-bound RFC 9068 access token to a real client (`openid-client`, in workerd), which then calls
 * through the real gateway worker with proofs it makes itself: its `customFetch` sends requests for
 * the gateway's host to the worker and everything else to the loopback provider.
 */
import { env } from 'cloudflare:test'
import { decodeJwt } from 'jose'
import * as client from 'openid-client'
import { describe, expect, it } from 'vitest'
import { captureLogs, gatewayEnv, send, Stub, type GatewayEnv, type OriginCall } from '../helpers'

const OIDC_URL = (env as unknown as { OIDC_URL: string }).OIDC_URL
// As in test/node/oidc-setup.ts.
const CLIENT = { id: 'gateway-e2e', secret: 'gateway-e2e-secret-0123456789abcdef' }
const RESOURCE = 'https://api.gateway.test/es256'
const GW = 'https://gw.test'

/** The gateway for the provider's issuer, keys found by discovery, DPoP required. */
function gateway(stub: Stub, vars: GatewayEnv = {}): GatewayEnv {
  return gatewayEnv(stub, {
    JWT_ISSUER: OIDC_URL,
    JWT_AUDIENCE: RESOURCE,
    JWKS_URL: undefined,
    JWT_TYPES: 'at+jwt',
    TOKEN_BINDING: 'dpop',
    ...vars,
  })
}

interface Session {
  config: client.Configuration
  dpop: client.DPoPHandle
  token: string
  /** Every request the client sent to the gateway, as sent. */
  sent: Request[]
}

/** openid-client obtains a DPoP-bound token and aims its fetch at the worker for `gw`. */
async function session(gw: GatewayEnv): Promise<Session> {
  const config = await client.discovery(new URL(OIDC_URL), CLIENT.id, CLIENT.secret, undefined, {
    execute: [client.allowInsecureRequests],
  })
  const dpop = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'))
  const res = await client.clientCredentialsGrant(
    config,
    { resource: RESOURCE, scope: 'read' },
    { DPoP: dpop },
  )
  expect(res.token_type.toLowerCase()).toBe('dpop')
  const sent: Request[] = []
  config[client.customFetch] = async (url, init) => {
    if (!url.startsWith(GW)) return fetch(url, init as RequestInit)
    const request = new Request(url, init as RequestInit)
    sent.push(request.clone())
    return send(gw, request)
  }
  return { config, dpop, token: res.access_token, sent }
}

function call(s: Session, path: string, dpop = s.dpop): Promise<Response> {
  return client.fetchProtectedResource(
    s.config,
    s.token,
    new URL(path, GW),
    'GET',
    undefined,
    undefined,
    {
      DPoP: dpop,
    },
  )
}

/** The response and logged reason of one request, or of the error openid-client throws. */
async function refusal(run: () => Promise<Response>): Promise<{ status: number; reason: unknown }> {
  const logs = captureLogs()
  try {
    const res = await run()
    return { status: res.status, reason: logs.lines.findLast((l) => l.event === 'request')?.reason }
  } catch (err) {
    const status = (err as { status?: number; response?: Response }).response?.status
    return {
      status: status ?? -1,
      reason: logs.lines.findLast((l) => l.event === 'request')?.reason,
    }
  } finally {
    logs.restore()
  }
}

describe('DPoP with a real OpenID Provider and a real client', () => {
  it('the provider binds the token to the client key; the client calls through the gateway', async () => {
    const stub = new Stub()
    const gw = gateway(stub)
    const s = await session(gw)
    const cnf = decodeJwt(s.token).cnf as { jkt?: string }
    expect(cnf.jkt).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const res = await call(s, '/orders?page=1')
    const text = await res.text()
    expect(res.status, text).toBe(200)
    const seen = JSON.parse(text) as OriginCall
    expect(seen.headers['x-auth-binding']).toBe('dpop')
    expect(seen.headers['x-auth-dpop-jkt']).toBe(cnf.jkt)
    expect(seen.headers['x-auth-sub']).toBe(CLIENT.id)
    expect(seen.headers.dpop).toBeUndefined()
    expect(seen.headers.authorization).toBeUndefined()
    // The client really used the DPoP scheme with a proof of its own.
    expect(s.sent[0]!.headers.get('authorization')).toBe(`DPoP ${s.token}`)
    expect(s.sent[0]!.headers.get('dpop')).toMatch(/^ey/)
  })

  it('a replayed proof and a proof from another key are refused', async () => {
    const stub = new Stub()
    const gw = gateway(stub)
    const s = await session(gw)
    const first = await call(s, '/orders')
    expect(first.status).toBe(200)
    await first.body?.cancel()
    // The very request the client sent, proof and all, sent again.
    const replay = await refusal(() => send(gw, s.sent[0]!.clone()))
    expect(replay).toEqual({ status: 401, reason: 'dpop_replayed' })
    // A stolen token with a proof from the thief's own key.
    const thief = client.getDPoPHandle(s.config, await client.randomDPoPKeyPair('ES256'))
    expect(await refusal(() => call(s, '/orders', thief))).toEqual({
      status: 401,
      reason: 'dpop_jkt_mismatch',
    })
    // And the stolen token as Bearer.
    const bearer = await refusal(() =>
      send(gw, `${GW}/orders`, { headers: { authorization: `Bearer ${s.token}` } }),
    )
    expect(bearer).toEqual({ status: 401, reason: 'dpop_downgrade' })
    expect((await stub.calls()).origin).toHaveLength(1)
  })

  it('server nonces: the client retries with the nonce the gateway hands it', async () => {
    const stub = new Stub()
    const gw = gateway(stub, {
      DPOP_NONCE: 'true',
      DPOP_NONCE_SECRET: 'an-e2e-dpop-nonce-secret-0123456789abcdef',
    })
    const s = await session(gw)
    const res = await call(s, '/orders').catch(async (err) => {
      // openid-client surfaces use_dpop_nonce once and stores the nonce; a second call uses it.
      expect((err as { error?: string }).error ?? String(err)).toMatch(/use_dpop_nonce/)
      return call(s, '/orders')
    })
    expect(res.status).toBe(200)
    await res.body?.cancel()
    const proofs = s.sent.map((r) => decodeJwt(r.headers.get('dpop')!))
    expect(proofs[0]!.nonce).toBeUndefined()
    expect(proofs.at(-1)!.nonce).toMatch(/^[A-Za-z0-9_-]{22}$/)
  })
})
