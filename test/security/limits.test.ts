/**
 * Limits: each named constant at its boundary (exactly at the limit passes, one over does not),
 * the origin timeout's bounds, and the request id: kept when well-formed, generated otherwise,
 * and the same id on the origin request, the client's answer and the log line, refusals included.
 * Boundaries tested elsewhere: DEFAULT_MAX_TOKEN_BYTES (test/credentials.test.ts), MAX_KID_LENGTH and
 * MAX_JSON_DEPTH (header.test.ts), MAX_JWKS_BYTES (test/keys.test.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_ORIGIN_TIMEOUT_MS, parseConfig } from '../../src/config'
import { authorizationLimit, DEFAULT_MAX_TOKEN_BYTES } from '../../src/auth/credentials'

const MAX_AUTHORIZATION_BYTES = authorizationLimit(DEFAULT_MAX_TOKEN_BYTES)
import { MAX_JWKS_KEYS } from '../../src/auth/keys'
import {
  captureLogs,
  gatewayEnv,
  makeKey,
  mint,
  send,
  Stub,
  type GatewayEnv,
  type OriginCall,
  type TestKey,
} from '../helpers'
import { attempt, fixture, forwarded, invalidToken, missingToken } from './harness'

let key: TestKey

beforeAll(async () => {
  key = await makeKey('ES256')
})

describe('named limits at their boundary', () => {
  it('MAX_AUTHORIZATION_BYTES is twice DEFAULT_MAX_TOKEN_BYTES: no valid bearer header comes near it', () => {
    expect(MAX_AUTHORIZATION_BYTES).toBe(2 * DEFAULT_MAX_TOKEN_BYTES)
  })

  it('an Authorization header of exactly MAX_AUTHORIZATION_BYTES is read', async () => {
    const f = await fixture([key])
    const authorization = `Basic ${'a'.repeat(MAX_AUTHORIZATION_BYTES - 'Basic '.length)}`
    expect(authorization).toHaveLength(MAX_AUTHORIZATION_BYTES)
    // Read, and found to be no bearer credentials at all.
    expect(await attempt(f.gw, f.stub, '/r', { headers: { authorization } })).toEqual(
      missingToken(),
    )
  })

  it('one character more is refused unread', async () => {
    const f = await fixture([key])
    const authorization = `Basic ${'a'.repeat(MAX_AUTHORIZATION_BYTES - 'Basic '.length + 1)}`
    expect(await attempt(f.gw, f.stub, '/r', { headers: { authorization } })).toEqual(
      invalidToken('token_too_large', 0),
    )
  })

  it('a JWKS of exactly MAX_JWKS_KEYS keys is used', async () => {
    const stub = new Stub()
    const junk = Array.from({ length: MAX_JWKS_KEYS - 1 }, (_, i) => ({ kty: 'EC', kid: `j${i}` }))
    await stub.setup({ jwks: { keys: [...junk, key.publicJwk] } })
    const f = { stub, gw: gatewayEnv(stub) }
    expect(
      await attempt(f.gw, f.stub, '/r', {
        headers: { authorization: `Bearer ${await mint(key)}` },
      }),
    ).toEqual(forwarded())
  })

  describe('ORIGIN_TIMEOUT_MS', () => {
    const base = {
      ORIGIN_URL: 'https://origin.test',
      JWT_ISSUER: 'https://issuer.test',
      JWT_AUDIENCE: 'api://a',
      JWKS_URL: 'https://issuer.test/jwks',
    }
    const timeout = (v?: string) => {
      const r = parseConfig(v === undefined ? base : { ...base, ORIGIN_TIMEOUT_MS: v })
      return r.ok ? r.config.routes[0]!.originTimeoutMs : r.error.variable
    }

    it(`defaults to DEFAULT_ORIGIN_TIMEOUT_MS (${DEFAULT_ORIGIN_TIMEOUT_MS} ms)`, () => {
      expect(timeout()).toBe(DEFAULT_ORIGIN_TIMEOUT_MS)
    })

    it.each([
      ['100', 100],
      ['600000', 600_000],
      ['99', 'ORIGIN_TIMEOUT_MS'],
      ['600001', 'ORIGIN_TIMEOUT_MS'],
    ])('%s -> %s', (value, want) => {
      expect(timeout(value)).toBe(want)
    })
  })
})

describe('X-Request-Id', () => {
  /** The id the client got back, the id the origin saw, and the id on the log line. */
  async function ids(
    gw: GatewayEnv,
    stub: Stub,
    headers: Record<string, string>,
  ): Promise<{ status: number; client: string | null; origin: unknown; log: unknown }> {
    const logs = captureLogs()
    let res: Response
    try {
      res = await send(gw, '/r', { headers })
    } finally {
      logs.restore()
    }
    await res.body?.cancel()
    const calls = (await stub.calls()).origin as OriginCall[]
    return {
      status: res.status,
      client: res.headers.get('x-request-id'),
      origin: calls.at(-1)?.headers['x-request-id'],
      log: logs.lines.find((l) => l.event === 'request')?.requestId,
    }
  }

  // The log module keeps a client's id of 1 to 128 characters of A-Z a-z 0-9 . _ : -
  const kept: [string, string][] = [
    ['a UUID', crypto.randomUUID()],
    ['every allowed character', 'AZaz09._:-'],
    ['one character', 'x'],
    ['exactly 128 characters', 'r'.repeat(128)],
  ]
  it.each(kept)('%s is kept: origin, answer and log carry it', async (_, id) => {
    const f = await fixture([key])
    const got = await ids(f.gw, f.stub, {
      authorization: `Bearer ${await mint(key)}`,
      'x-request-id': id,
    })
    expect(got).toEqual({ status: 200, client: id, origin: id, log: id })
  })

  const replaced: [string, Record<string, string>][] = [
    ['absent', {}],
    ['129 characters', { 'x-request-id': 'r'.repeat(129) }],
    ['empty', { 'x-request-id': '' }],
    ['with a space', { 'x-request-id': 'a b' }],
    ['with a slash', { 'x-request-id': 'a/b' }],
    ['with markup', { 'x-request-id': '<script>' }],
    ['with a percent escape', { 'x-request-id': 'a%0d%0ab' }],
    // Repeated headers reach the worker joined with ", ": neither copy is chosen.
    ['sent twice', { 'x-request-id': 'one, two' }],
  ]
  it.each(replaced)('%s: a fresh UUID, the same on origin, answer and log', async (_, extra) => {
    const f = await fixture([key])
    const got = await ids(f.gw, f.stub, { authorization: `Bearer ${await mint(key)}`, ...extra })
    expect(got.status).toBe(200)
    expect(got.client).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    )
    expect(got).toEqual({ status: 200, client: got.client, origin: got.client, log: got.client })
  })

  const refusals: [
    string,
    (stub: Stub) => GatewayEnv,
    () => Promise<Record<string, string>>,
    number,
  ][] = [
    ['401 without a token', (s) => gatewayEnv(s), async () => ({}), 401],
    [
      '401 with a forged token',
      (s) => gatewayEnv(s),
      async () => ({
        authorization: `Bearer ${await mint(await makeKey('ES256'), {}, { header: { kid: key.kid } })}`,
      }),
      401,
    ],
    [
      '502 from an unreachable origin',
      (s) => gatewayEnv(s, { ORIGIN_URL: 'http://127.0.0.1:9' }),
      async () => ({ authorization: `Bearer ${await mint(key)}` }),
      502,
    ],
    [
      '500 from a bad configuration',
      (s) => gatewayEnv(s, { ORIGIN_URL: undefined }),
      async () => ({}),
      500,
    ],
  ]
  it.each(refusals)(
    '%s: the answer and the log carry the client id',
    async (_, gw, headers, status) => {
      const stub = new Stub()
      await stub.publish(key)
      const got = await ids(gw(stub), stub, { ...(await headers()), 'x-request-id': 'req-7' })
      expect(got).toEqual({ status, client: 'req-7', origin: undefined, log: 'req-7' })
    },
  )
})
