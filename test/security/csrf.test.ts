/**
 * CSRF for cookie-borne tokens: a state-changing method is refused 403 unless Fetch Metadata says
 * this site sent it or its Origin is allowed on the route. On by default for cookie sources;
 * `csrf = false` turns it off; header tokens are never affected.
 */
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config'
import { captureLogs, expectRefusal, makeKey, mint, send, structuredEnv, Stub } from '../helpers'

const ISS = 'https://csrf.issuer.test'
const AUD = 'api://csrf'
const APP = 'https://app.example.com'
const CROSS_SITE_BODY = {
  error: 'forbidden',
  error_description: 'A cross-site request with cookie credentials was refused',
}

async function setup(route: Record<string, unknown> = {}) {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  const gw = structuredEnv(stub, {
    issuers: [{ issuer: ISS, jwksUrl: stub.jwksUrl, audiences: [AUD] }],
    routes: [
      { path: '/', origin: stub.originUrl, tokenSources: ['header', 'cookie:at'], ...route },
    ],
  })
  const token = await mint(key, { iss: ISS, aud: AUD })
  const cookie = (method: string, headers: Record<string, string> = {}) =>
    send(gw, '/x', { method, headers: { cookie: `at=${token}`, ...headers } })
  return { stub, gw, token, cookie }
}

describe('CSRF check on cookie tokens', () => {
  it('state-changing methods from another site, or with no evidence, are 403 before any key work', async () => {
    const { stub, cookie } = await setup()
    const logs = captureLogs()
    try {
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'PROPFIND']) {
        for (const headers of <Record<string, string>[]>[
          {},
          { 'sec-fetch-site': 'cross-site' },
          { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' },
          { origin: 'https://evil.example' },
          { origin: 'null' },
          { 'sec-fetch-site': 'bogus' },
        ]) {
          await expectRefusal(await cookie(method, headers), 403, null, CROSS_SITE_BODY)
        }
      }
    } finally {
      logs.restore()
    }
    const reasons = new Set(logs.lines.filter((l) => l.event === 'request').map((l) => l.reason))
    expect(reasons).toEqual(new Set(['cross_site_request']))
    expect(await stub.calls()).toMatchObject({ jwksFetches: 0, origin: [] })
  })

  it('passes safe methods, Sec-Fetch-Site same-origin / same-site / none, and allowed Origins', async () => {
    const { stub, cookie } = await setup({
      csrf: { allowedOrigins: [APP, 'http://localhost:5173'] },
    })
    const ok: [string, Record<string, string>][] = [
      ['GET', { 'sec-fetch-site': 'cross-site' }],
      ['HEAD', {}],
      ['OPTIONS', { origin: 'https://evil.example' }],
      ['POST', { 'sec-fetch-site': 'same-origin' }],
      ['POST', { 'sec-fetch-site': 'Same-Site' }],
      ['DELETE', { 'sec-fetch-site': 'none' }],
      ['POST', { origin: APP }],
      ['PUT', { 'sec-fetch-site': 'cross-site', origin: 'HTTPS://APP.EXAMPLE.COM' }],
      ['POST', { origin: 'http://localhost:5173' }],
    ]
    for (const [method, headers] of ok) {
      const res = await cookie(method, headers)
      expect(res.status, `${method} ${JSON.stringify(headers)}`).toBe(200)
    }
    for (const origin of [
      `${APP}.evil.example`,
      'https://app.example.com:444',
      'http://app.example.com',
    ]) {
      expect((await cookie('POST', { 'sec-fetch-site': 'cross-site', origin })).status).toBe(403)
    }
    expect((await stub.calls()).origin).toHaveLength(ok.length)
  })

  it('header tokens are not affected; csrf = false turns the check off', async () => {
    const { gw, token } = await setup()
    const res = await send(gw, '/x', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'sec-fetch-site': 'cross-site' },
    })
    expect(res.status).toBe(200)
    const off = await setup({ csrf: false })
    expect((await off.cookie('POST', { 'sec-fetch-site': 'cross-site' })).status).toBe(200)
  })

  it('config: allowedOrigins must be exact origins; unknown csrf fields are errors', () => {
    const err = (csrf: unknown) => {
      const r = parseConfig({
        GATEWAY: {
          issuers: [{ issuer: ISS, jwksUrl: 'https://k.test/jwks', audiences: [AUD] }],
          routes: [{ path: '/', origin: 'https://o.test', tokenSources: ['cookie:at'], csrf }],
        },
      })
      return r.ok ? r.config.routes[0]!.csrf : r.error.message
    }
    expect(err(undefined)).toEqual({ allowedOrigins: [] })
    expect(err(false)).toBeNull()
    expect(err({ allowedOrigins: ['HTTPS://App.Example.com'] })).toEqual({ allowedOrigins: [APP] })
    expect(err({ allowedOrigins: [`${APP}/`] })).toBe(
      `GATEWAY.routes[0].csrf.allowedOrigins: "${APP}/" is not an origin like https://app.example.com (no path or trailing slash)`,
    )
    expect(err({ allowedOrigins: ['*'] })).toMatch(/is not an origin/)
    expect(err({ origins: [APP] })).toBe('GATEWAY.routes[0].csrf.origins: is not a known field')
  })
})
