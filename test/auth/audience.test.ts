/**
 * The audience rule: `aud` must be accepted, and a token without `aud` (Cognito access tokens)
 * passes only on a configured client id. Through the real worker, both config modes; the log
 * line's reason tells a missing `aud` from a wrong one.
 */
import { describe, expect, it } from 'vitest'
import { checkAudience } from '../../src/auth/claims'
import { parseConfig } from '../../src/config'
import {
  AUDIENCE,
  bearer,
  logReasons,
  expectInvalidToken,
  gatewayEnv,
  ISSUER,
  makeKey,
  mint,
  send,
  structuredEnv,
  Stub,
} from '../helpers'

const CLIENT = '1example23456789'
const OTHER_CLIENT = '9other87654321'

/** A Cognito access token's claims (no `aud`; `client_id`, `token_use`, `scope`). */
function cognitoAccess(extra: Record<string, unknown> = {}) {
  return {
    aud: undefined,
    client_id: CLIENT,
    token_use: 'access',
    scope: 'aws.cognito.signin.user.admin',
    ...extra,
  }
}

describe('tokens without aud', () => {
  it('simple mode: JWT_CLIENT_IDS accepts a token without aud whose client_id is listed, nothing else', async () => {
    const stub = new Stub()
    const key = await makeKey('RS256')
    await stub.publish(key)
    const gw = gatewayEnv(stub, {
      JWT_AUDIENCE: undefined,
      JWT_CLIENT_IDS: `${OTHER_CLIENT}, ${CLIENT}`,
    })
    expect((await send(gw, '/x', bearer(await mint(key, cognitoAccess())))).status).toBe(200)
    // An id token of the same pool carries aud = the client id: with no audiences configured it
    // is refused, since aud (present) is checked against audiences alone.
    const refused = await logReasons(async () => {
      for (const claims of [
        cognitoAccess({ client_id: 'not-listed' }),
        cognitoAccess({ client_id: undefined }),
        cognitoAccess({ client_id: [CLIENT] }),
        cognitoAccess({ aud: CLIENT }),
      ]) {
        await expectInvalidToken(await send(gw, '/x', bearer(await mint(key, claims))))
      }
    })
    expect(refused).toEqual([
      'missing_audience',
      'missing_audience',
      'missing_audience',
      'bad_audience',
    ])
    expect((await stub.calls()).origin).toHaveLength(1)
  })

  it('without a client list, a token without aud is refused and the log says aud is missing', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = gatewayEnv(stub)
    const got = await logReasons(async () => {
      await expectInvalidToken(await send(gw, '/x', bearer(await mint(key, cognitoAccess()))))
      await expectInvalidToken(
        await send(gw, '/x', bearer(await mint(key, { aud: 'api://other' }))),
      )
    })
    expect(got).toEqual(['missing_audience', 'bad_audience'])
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  it('structured mode: clientIds with a custom clientIdClaim, next to audiences', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = structuredEnv(stub, {
      issuers: [
        {
          issuer: ISSUER,
          jwksUrl: stub.jwksUrl,
          audiences: [AUDIENCE],
          clientIds: [CLIENT],
          clientIdClaim: 'cid',
        },
      ],
      routes: [{ path: '/', origin: stub.originUrl }],
    })
    const ok = [{ aud: AUDIENCE }, { aud: undefined, cid: CLIENT }, { aud: [AUDIENCE, 'x'] }]
    for (const claims of ok) {
      expect((await send(gw, '/x', bearer(await mint(key, claims)))).status).toBe(200)
    }
    const bad = [
      { aud: undefined, client_id: CLIENT },
      { aud: undefined, cid: OTHER_CLIENT },
      // aud present and wrong: the client id is not a second chance.
      { aud: 'api://other', cid: CLIENT },
      { aud: [], cid: CLIENT },
    ]
    for (const claims of bad) {
      await expectInvalidToken(await send(gw, '/x', bearer(await mint(key, claims))))
    }
    expect((await stub.calls()).origin).toHaveLength(ok.length)
  })

  it('config: one of audiences or clientIds is required; a claim name needs a list', () => {
    const base = { ORIGIN_URL: 'https://o.test', JWT_ISSUER: ISSUER }
    const err = (env: Record<string, unknown>) => {
      const r = parseConfig(env)
      return r.ok ? null : r.error.message
    }
    expect(err(base)).toBe(
      'JWT_AUDIENCE: must be a non-empty list (or set JWT_CLIENT_IDS for tokens without aud)',
    )
    expect(err({ ...base, JWT_AUDIENCE: 'a', JWT_CLIENT_ID_CLAIM: 'cid' })).toBe(
      'JWT_CLIENT_ID_CLAIM: is set but JWT_CLIENT_IDS is not',
    )
    expect(err({ ...base, JWT_CLIENT_IDS: 'a,,b' })).toMatch(/^JWT_CLIENT_IDS: must be a comma/)
    const ok = parseConfig({ ...base, JWT_CLIENT_IDS: CLIENT })
    expect(ok.ok && ok.config.issuers[0]!.clientIds).toEqual({
      claim: 'client_id',
      values: [CLIENT],
    })
  })
})

describe('checkAudience (pure)', () => {
  const rule = { audiences: ['a'], clientIds: { claim: 'client_id', values: ['c'] } }
  it('passes an accepted aud or, without aud, an accepted client id; never neither', () => {
    expect(() => checkAudience({ aud: 'a' }, rule)).not.toThrow()
    expect(() => checkAudience({ aud: ['x', 'a'] }, rule)).not.toThrow()
    expect(() => checkAudience({ client_id: 'c' }, rule)).not.toThrow()
    for (const claims of [{}, { client_id: 'x' }, { aud: null, client_id: 'c' }, { aud: 'c' }]) {
      expect(() => checkAudience(claims, rule), JSON.stringify(claims)).toThrow()
    }
    expect(() => checkAudience({ client_id: 'c' }, { audiences: ['a'], clientIds: null })).toThrow(
      'missing_audience',
    )
  })
})
