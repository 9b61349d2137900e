/**
 * Adversarial catalogue, claims: `exp` / `nbf` / `iat` of the wrong type, the leeway boundaries to
 * the second (the clock frozen with fake Date, so "now" is exact through the whole worker), and
 * `iss` / `aud` near misses. Every case: exact status, exact WWW-Authenticate, the reason logged,
 * origin not called, and how many JWKS fetches it cost.
 */
import type { JWTPayload } from 'jose'
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  AUDIENCE,
  claims,
  ISSUER,
  makeKey,
  signRaw,
  structuredEnv,
  Stub,
  type TestKey,
} from '../helpers'
import { expired, fixture, forwarded, invalidToken, withToken, type Fixture } from './harness'

let key: TestKey

beforeAll(async () => {
  key = await makeKey('ES256')
})

/** A token with exactly these claims over the defaults (undefined removes a claim). */
function token(extra: Record<string, unknown>): Promise<string> {
  const payload: Record<string, unknown> = { ...claims(), ...extra }
  for (const [k, v] of Object.entries(extra)) if (v === undefined) delete payload[k]
  return signRaw({ alg: 'ES256', kid: key.kid, typ: 'JWT' }, payload as JWTPayload, key.privateKey)
}

describe('exp, nbf and iat of the wrong type', () => {
  const now = () => Math.floor(Date.now() / 1000)
  const values: [string, (t: number) => unknown][] = [
    ['a numeric string', (t) => String(t)],
    ['null', () => null],
    ['true', () => true],
    ['false', () => false],
  ]
  const cases = (['exp', 'nbf', 'iat'] as const).flatMap((claim) =>
    values.map(([what, value]) => ({ claim, what, value })),
  )
  it.each(cases)('$claim as $what: refused', async ({ claim, value }) => {
    const f = await fixture([key])
    const t = claim === 'exp' ? now() + 300 : now() - 10
    expect(await withToken(f, await token({ [claim]: value(t) }))).toEqual(
      invalidToken('bad_claims', 1),
    )
  })
})

describe('leeway boundaries, to the second (CLOCK_SKEW_SECONDS = 30, clock frozen)', () => {
  const T = 1_900_000_000
  const SKEW = 30

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] })
    // Half a second into T: the gateway compares whole seconds, as jose does.
    vi.setSystemTime(T * 1000 + 500)
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  const simple = () => fixture([key], { CLOCK_SKEW_SECONDS: String(SKEW) })

  const refused: [string, Record<string, unknown>, 'expired' | 'not_yet_valid'][] = [
    ['exp = now - skew (expired at the boundary)', { exp: T - SKEW }, 'expired'],
    ['exp = now - skew - 1', { exp: T - SKEW - 1 }, 'expired'],
    ['nbf = now + skew + 1', { nbf: T + SKEW + 1, iat: T }, 'not_yet_valid'],
  ]
  it.each(refused)('%s: refused', async (_, extra, kind) => {
    const f = await simple()
    const want = kind === 'expired' ? expired() : invalidToken('token_not_yet_valid', 1)
    expect(await withToken(f, await token({ iat: T - 600, ...extra }))).toEqual(want)
  })

  const accepted: [string, Record<string, unknown>][] = [
    ['exp = now - skew + 1', { exp: T - SKEW + 1 }],
    ['nbf = now + skew', { nbf: T + SKEW, iat: T }],
  ]
  it.each(accepted)('control: %s is accepted', async (_, extra) => {
    const f = await simple()
    expect(await withToken(f, await token({ iat: T - 600, exp: T + 600, ...extra }))).toEqual(
      forwarded(),
    )
  })

  describe('iat with maxTokenAgeSeconds = 300 (structured mode)', () => {
    const MAX_AGE = 300
    function aged(): Fixture {
      const stub = new Stub()
      const gw = structuredEnv(stub, {
        issuers: [
          {
            issuer: ISSUER,
            jwksUrl: stub.jwksUrl,
            audiences: [AUDIENCE],
            clockSkewSeconds: SKEW,
            maxTokenAgeSeconds: MAX_AGE,
          },
        ],
        routes: [{ path: '/', origin: stub.originUrl }],
      })
      return { stub, gw }
    }
    const cases: [string, Record<string, unknown>, 'ok' | 'expired' | 'future' | 'missing'][] = [
      ['iat = now - max age - skew', { iat: T - MAX_AGE - SKEW }, 'ok'],
      ['iat = now - max age - skew - 1', { iat: T - MAX_AGE - SKEW - 1 }, 'expired'],
      ['iat = now + skew', { iat: T + SKEW }, 'ok'],
      ['iat = now + skew + 1', { iat: T + SKEW + 1 }, 'future'],
      ['iat missing', { iat: undefined }, 'missing'],
    ]
    it.each(cases)('%s', async (_, extra, outcome) => {
      const f = aged()
      await f.stub.publish(key)
      const want =
        outcome === 'ok'
          ? forwarded()
          : outcome === 'expired'
            ? expired()
            : invalidToken('bad_claims', 1)
      expect(await withToken(f, await token({ exp: T + 600, ...extra }))).toEqual(want)
    })
  })
})

describe('iss near misses (refused before any key is fetched)', () => {
  const cases: [string, unknown][] = [
    ['a trailing slash', `${ISSUER}/`],
    ['upper case', ISSUER.toUpperCase()],
    ['upper-case host', 'https://Issuer.test'],
    ['a prefix of it', ISSUER.slice(0, -1)],
    ['it as a prefix', `${ISSUER}.evil.example`],
    ['it as a path', `https://evil.example/${ISSUER}`],
    ['an empty query', `${ISSUER}?`],
    ['an empty fragment', `${ISSUER}#`],
    ['a default port', 'https://issuer.test:443'],
    ['http instead of https', 'http://issuer.test'],
    ['a leading space', ` ${ISSUER}`],
    ['a trailing NUL', `${ISSUER}\u0000`],
    ['a Cyrillic look-alike (і)', 'https://\u0456ssuer.test'],
    ['an array holding it', [ISSUER]],
    ['an array holding it and another', [ISSUER, 'https://other.test']],
    ['an object', { iss: ISSUER }],
    ['null', null],
    ['missing', undefined],
  ]
  it.each(cases)('%s: refused', async (_, iss) => {
    const f = await fixture([key])
    expect(await withToken(f, await token({ iss }))).toEqual(invalidToken('bad_issuer', 0))
  })
})

describe('aud near misses', () => {
  const cases: [string, unknown][] = [
    ['upper case', AUDIENCE.toUpperCase()],
    ['a trailing slash', `${AUDIENCE}/`],
    ['a prefix of it', AUDIENCE.slice(0, -1)],
    ['it as a prefix', `${AUDIENCE}-2`],
    ['a leading space', ` ${AUDIENCE}`],
    ['it and another, comma-joined', `${AUDIENCE},api://other`],
    ['an empty array', []],
    ['an array without it', ['api://other', 'api://third']],
    ['it in a nested array', [[AUDIENCE]]],
    ['an object keyed by it', { [AUDIENCE]: true }],
    ['the empty string', ''],
    ['null', null],
    ['missing', undefined],
  ]
  it.each(cases)('%s: refused', async (_, aud) => {
    const f = await fixture([key])
    // The log tells a missing aud from a wrong one.
    const reason = aud === undefined ? 'missing_audience' : 'bad_audience'
    expect(await withToken(f, await token({ aud }))).toEqual(invalidToken(reason, 1))
  })

  it('control: an array holding it among others is accepted', async () => {
    const f = await fixture([key])
    expect(await withToken(f, await token({ aud: ['api://other', AUDIENCE] }))).toEqual(forwarded())
  })
})
