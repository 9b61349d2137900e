/**
 * A misconfigured gateway fails closed and says why: every request, with or without a token,
 * gets 500 and a JSON body naming the variable; nothing is fetched and nothing is forwarded.
 */
import { describe, expect, it } from 'vitest'
import { bearer, gatewayEnv, makeKey, mint, send, Stub, type GatewayEnv } from '../helpers'

/** [what is wrong, the vars that make it wrong, the variable the answer must name] */
const BAD: [string, GatewayEnv, string][] = [
  ['ORIGIN_URL missing', { ORIGIN_URL: undefined }, 'ORIGIN_URL'],
  ['ORIGIN_URL empty', { ORIGIN_URL: '  ' }, 'ORIGIN_URL'],
  ['ORIGIN_URL not a URL', { ORIGIN_URL: 'origin.internal' }, 'ORIGIN_URL'],
  ['ORIGIN_URL not http(s)', { ORIGIN_URL: 'ftp://origin.internal' }, 'ORIGIN_URL'],
  ['ORIGIN_URL with a query', { ORIGIN_URL: 'https://origin.internal/?a=1' }, 'ORIGIN_URL'],
  ['JWT_ISSUER missing', { JWT_ISSUER: undefined }, 'JWT_ISSUER'],
  ['JWT_AUDIENCE empty', { JWT_AUDIENCE: '' }, 'JWT_AUDIENCE'],
  ['JWT_AUDIENCE missing', { JWT_AUDIENCE: undefined }, 'JWT_AUDIENCE'],
  ['JWT_AUDIENCE only commas', { JWT_AUDIENCE: ' , ' }, 'JWT_AUDIENCE'],
  ['JWT_AUDIENCE with an empty item', { JWT_AUDIENCE: 'a,,b' }, 'JWT_AUDIENCE'],
  [
    'JWKS_URL over http to a remote host',
    { JWKS_URL: 'http://issuer.example.com/jwks' },
    'JWKS_URL',
  ],
  ['JWKS_URL with credentials', { JWKS_URL: 'https://u:p@issuer.example.com/jwks' }, 'JWKS_URL'],
  ['JWKS_URL not a URL', { JWKS_URL: 'jwks.json' }, 'JWKS_URL'],
  [
    'discovery over http to a remote host',
    { JWKS_URL: undefined, JWT_ISSUER: 'http://issuer.example.com' },
    'JWT_ISSUER',
  ],
  ['CLOCK_SKEW_SECONDS negative', { CLOCK_SKEW_SECONDS: '-1' }, 'CLOCK_SKEW_SECONDS'],
  ['CLOCK_SKEW_SECONDS over 300', { CLOCK_SKEW_SECONDS: '301' }, 'CLOCK_SKEW_SECONDS'],
  ['CLOCK_SKEW_SECONDS not a number', { CLOCK_SKEW_SECONDS: 'thirty' }, 'CLOCK_SKEW_SECONDS'],
  ['CLOCK_SKEW_SECONDS fractional', { CLOCK_SKEW_SECONDS: '1.5' }, 'CLOCK_SKEW_SECONDS'],
  ['CLOCK_SKEW_SECONDS in exponent form', { CLOCK_SKEW_SECONDS: '1e2' }, 'CLOCK_SKEW_SECONDS'],
  ['JWT_ALGORITHMS HS256', { JWT_ALGORITHMS: 'HS256' }, 'JWT_ALGORITHMS'],
  ['JWT_ALGORITHMS none', { JWT_ALGORITHMS: 'none' }, 'JWT_ALGORITHMS'],
  ['JWT_ALGORITHMS with one bad item', { JWT_ALGORITHMS: 'RS256,HS512' }, 'JWT_ALGORITHMS'],
  ['JWT_ALGORITHMS in the wrong case', { JWT_ALGORITHMS: 'rs256' }, 'JWT_ALGORITHMS'],
  [
    'JWKS_REFRESH_COOLDOWN_SECONDS zero',
    { JWKS_REFRESH_COOLDOWN_SECONDS: '0' },
    'JWKS_REFRESH_COOLDOWN_SECONDS',
  ],
  ['JWKS_FETCH_TIMEOUT_MS too small', { JWKS_FETCH_TIMEOUT_MS: '10' }, 'JWKS_FETCH_TIMEOUT_MS'],
  ['ORIGIN_TIMEOUT_MS not a number', { ORIGIN_TIMEOUT_MS: 'fast' }, 'ORIGIN_TIMEOUT_MS'],
  [
    'FORWARD_AUTHORIZATION not a boolean',
    { FORWARD_AUTHORIZATION: 'yes' },
    'FORWARD_AUTHORIZATION',
  ],
  ['GATEWAY_REALM with a quote', { GATEWAY_REALM: 'a"b' }, 'GATEWAY_REALM'],
]

describe('bad configuration', () => {
  it.each(BAD)('%s -> every request 500 naming the variable', async (_, vars, variable) => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = gatewayEnv(stub, vars)
    const token = await mint(key)
    const requests: [string, RequestInit][] = [
      ['/', {}],
      ['/anything?x=1', bearer(token)],
      ['/upload', { method: 'POST', body: 'x', ...bearer(token) }],
      ['/r', { headers: { authorization: 'Bearer not.a.token' } }],
    ]
    for (const [path, init] of requests) {
      const res = await send(gw, path, init)
      expect(res.status).toBe(500)
      expect(res.headers.get('www-authenticate')).toBe(null)
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
      const body = (await res.json()) as { error: string; error_description: string }
      expect(body.error).toBe('server_error')
      expect(body.error_description.startsWith(`Gateway configuration error: ${variable}`)).toBe(
        true,
      )
      expect(Object.keys(body).sort()).toEqual(['error', 'error_description'])
    }
    const calls = await stub.calls()
    expect({
      jwks: calls.jwksFetches,
      discovery: calls.discoveryFetches,
      origin: calls.origin.length,
    }).toEqual({
      jwks: 0,
      discovery: 0,
      origin: 0,
    })
  })

  it('the same variables, set correctly, serve requests (the bad value alone was the problem)', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = gatewayEnv(stub, {
      JWT_AUDIENCE: 'api://gateway-test, other',
      JWT_ALGORITHMS: 'ES256,RS256',
      CLOCK_SKEW_SECONDS: '0',
      JWKS_REFRESH_COOLDOWN_SECONDS: '1',
      JWKS_FETCH_TIMEOUT_MS: '100',
      ORIGIN_TIMEOUT_MS: '5000',
      FORWARD_AUTHORIZATION: 'false',
      GATEWAY_REALM: 'api',
    })
    expect((await send(gw, '/r', bearer(await mint(key)))).status).toBe(200)
    const anon = await send(gw, '/r')
    expect(anon.status).toBe(401)
    expect(anon.headers.get('www-authenticate')).toBe('Bearer realm="api"')
  })

  it('JWKS_URL and discovery over http are fine on loopback', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    expect(stub.jwksUrl.startsWith('http://127.0.0.1:')).toBe(true)
    expect((await send(gatewayEnv(stub), '/r', bearer(await mint(key)))).status).toBe(200)
    const localhost = gatewayEnv(stub, { JWKS_URL: stub.jwksUrl.replace('127.0.0.1', 'localhost') })
    // Accepted by config (the fetch itself may or may not resolve localhost here).
    expect((await send(localhost, '/r', bearer(await mint(key)))).status).not.toBe(500)
  })
})
