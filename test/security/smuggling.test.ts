/**
 * What a client sends next to its token must not reach the origin as something the gateway vouches
 * for: headers that read as the gateway's own once `_` is read as `-` (CGI/WSGI-style mapping),
 * and a second token in the query (RFC 6750 §2: one method per request).
 */
import { describe, expect, it } from 'vitest'
import {
  bearer,
  body,
  captureLogs,
  expectRefusal,
  makeKey,
  mint,
  send,
  structuredEnv,
  Stub,
} from '../helpers'

const ISS = 'https://smuggling.issuer.test'
const AUD = 'api://smuggling'
const MALFORMED = {
  challenge:
    'Bearer realm="gateway", error="invalid_request", error_description="The Authorization header is malformed"',
  body: { error: 'invalid_request', error_description: 'The Authorization header is malformed' },
}

async function setup(route: Record<string, unknown> = {}) {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  const gw = structuredEnv(
    stub,
    {
      issuers: [{ issuer: ISS, jwksUrl: stub.jwksUrl, audiences: [AUD] }],
      routes: [{ path: '/', origin: stub.originUrl, ...route }],
    },
    { ASSERTION_KEY: JSON.stringify(await assertionKey()) },
  )
  const token = (claims: Record<string, unknown> = {}) =>
    mint(key, { iss: ISS, aud: AUD, org: 'acme', ...claims })
  return { stub, gw, token }
}

async function assertionKey() {
  const k = await makeKey('ES256', 'assert-1')
  const { exportJWK } = await import('jose')
  return { ...(await exportJWK(k.privateKey)), kid: 'assert-1' }
}

describe('client headers that read as the gateway’s with _ as -', () => {
  it('x_org, x_request_id, x_gateway_assertion (any case) are removed; the gateway’s own remain', async () => {
    const { gw, token } = await setup({
      identity: { headers: { 'x-org': 'org', x_tier_level: 'tier' } },
      assertion: true,
    })
    const res = await send(gw, '/x', {
      headers: {
        authorization: `Bearer ${await token({ tier: 'gold' })}`,
        x_org: 'evil',
        X_Org: 'evil2',
        'x-tier-level': 'evil3',
        x_request_id: 'evil-id',
        x_gateway_assertion: 'forged',
        x_auth_sub: 'mallory',
        'x-unrelated_name': 'kept',
      },
    })
    expect(res.status).toBe(200)
    const seen = (await body(res)).headers as Record<string, string>
    const names = Object.keys(seen)
    expect(names.filter((n) => n.replaceAll('_', '-') === 'x-org')).toEqual(['x-org'])
    expect(seen['x-org']).toBe('acme')
    expect(names.filter((n) => n.replaceAll('_', '-') === 'x-tier-level')).toEqual(['x_tier_level'])
    expect(seen.x_tier_level).toBe('gold')
    expect(names.filter((n) => n.replaceAll('_', '-') === 'x-request-id')).toEqual(['x-request-id'])
    expect(seen['x-request-id']).toBe(res.headers.get('x-request-id'))
    expect(names.filter((n) => n.replaceAll('_', '-') === 'x-gateway-assertion')).toEqual([
      'x-gateway-assertion',
    ])
    expect(seen['x-gateway-assertion']).not.toBe('forged')
    expect(names.filter((n) => n.startsWith('x_auth') || n === 'x-auth-sub')).toEqual([
      'x-auth-sub',
    ])
    expect(seen['x-unrelated_name']).toBe('kept')
  })
})

describe('a second token in the query', () => {
  it('access_token in the query next to a header token: 400 invalid_request, origin not called', async () => {
    const { stub, gw, token } = await setup()
    const t = await token()
    const logs = captureLogs()
    try {
      for (const path of [`/x?access_token=${t}`, '/x?a=1&access_token=', '/x?access_token']) {
        const res = await send(gw, path, bearer(t))
        await expectRefusal(res, 400, MALFORMED.challenge, MALFORMED.body)
      }
    } finally {
      logs.restore()
    }
    expect(logs.lines.filter((l) => l.event === 'request').map((l) => l.reason)).toEqual([
      'malformed_request',
      'malformed_request',
      'malformed_request',
    ])
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  it('next to a cookie token likewise; alone it is no credentials (401); other parameters pass', async () => {
    const { stub, gw, token } = await setup({ tokenSources: ['cookie:session'] })
    const t = await token()
    const res = await send(gw, `/x?access_token=${t}`, { headers: { cookie: `session=${t}` } })
    await expectRefusal(res, 400, MALFORMED.challenge, MALFORMED.body)
    const alone = await send(gw, `/x?access_token=${t}`)
    expect(alone.status).toBe(401)
    expect(alone.headers.get('www-authenticate')).toBe('Bearer realm="gateway"')
    const other = await send(gw, `/x?token=${t}&Access_Token=1`, {
      headers: { cookie: `session=${t}` },
    })
    expect(other.status).toBe(200)
    expect((await stub.calls()).origin).toHaveLength(1)
  })

  it('a route that reads query:access_token treats it as one of its sources (two places: 400)', async () => {
    const { stub, gw, token } = await setup({ tokenSources: ['header', 'query:access_token'] })
    const t = await token()
    expect((await send(gw, `/x?access_token=${t}`)).status).toBe(200)
    await expectRefusal(
      await send(gw, `/x?access_token=${t}`, bearer(t)),
      400,
      MALFORMED.challenge,
      MALFORMED.body,
    )
    expect((await stub.calls()).origin).toHaveLength(1)
  })
})
