/**
 * Configuration of the logout and signal receivers, parsed once and loudly: each mistake names
 * its field. Pure: parseConfig on plain objects.
 */
import { describe, expect, it } from 'vitest'
import { parseConfig, type GatewayConfig } from '../../src/config'

const KV = { get() {}, put() {}, list() {}, delete() {} }
const ISS = 'https://idp.test'
const TX = 'https://tx.test/ssf'

function simple(vars: Record<string, unknown>) {
  return parseConfig({
    ORIGIN_URL: 'https://origin.test',
    JWT_ISSUER: ISS,
    JWT_AUDIENCE: 'api',
    JWKS_URL: 'https://idp.test/jwks',
    REVOCATIONS: KV,
    ...vars,
  })
}

function structured(gateway: Record<string, unknown>, vars: Record<string, unknown> = {}) {
  return parseConfig({
    GATEWAY: {
      issuers: [{ issuer: ISS, jwksUrl: 'https://idp.test/jwks', audiences: ['api'] }],
      routes: [{ path: '/', origin: 'https://origin.test' }],
      ...gateway,
    },
    REVOCATIONS: KV,
    ...vars,
  })
}

function ok(result: ReturnType<typeof parseConfig>): GatewayConfig {
  if (!result.ok) throw new Error(result.error.message)
  return result.config
}

function error(result: ReturnType<typeof parseConfig>): string {
  if (result.ok) throw new Error('parsed')
  return result.error.message
}

const transmitter = (extra: Record<string, unknown> = {}) => ({
  transmitters: [
    { issuer: TX, audiences: ['https://gw.test/_gateway/signals'], issuers: [ISS], ...extra },
  ],
})

describe('back-channel logout settings', () => {
  it('defaults: off; with client ids, typ optional, a day for sessions, subject always', () => {
    expect(ok(simple({})).issuers[0]!.backchannelLogout).toBeNull()
    expect(
      ok(simple({ BACKCHANNEL_LOGOUT_CLIENT_IDS: 'a, b' })).issuers[0]!.backchannelLogout,
    ).toEqual({
      clientIds: ['a', 'b'],
      requireTyp: false,
      sessionRevocationS: 86_400,
      revokeSubject: 'always',
    })
  })

  it('in structured mode the session bound defaults to the issuer’s token age limit plus leeway', () => {
    const config = ok(
      structured({
        issuers: [
          {
            issuer: ISS,
            jwksUrl: 'https://idp.test/jwks',
            audiences: ['api'],
            maxTokenAgeSeconds: 3600,
            backchannelLogout: { clientIds: ['rp'] },
          },
        ],
      }),
    )
    expect(config.issuers[0]!.backchannelLogout?.sessionRevocationS).toBe(3630)
  })

  it('names each bad setting', () => {
    expect(error(simple({ BACKCHANNEL_LOGOUT_REQUIRE_TYP: 'true' }))).toBe(
      'BACKCHANNEL_LOGOUT_REQUIRE_TYP: needs BACKCHANNEL_LOGOUT_CLIENT_IDS',
    )
    expect(
      error(
        simple({ BACKCHANNEL_LOGOUT_CLIENT_IDS: 'rp', BACKCHANNEL_LOGOUT_REVOKE_SUBJECT: 'never' }),
      ),
    ).toBe('BACKCHANNEL_LOGOUT_REVOKE_SUBJECT: must be always or without-sid (got "never")')
    expect(
      error(
        simple({ BACKCHANNEL_LOGOUT_CLIENT_IDS: 'rp', BACKCHANNEL_LOGOUT_SESSION_SECONDS: '10' }),
      ),
    ).toBe(
      'BACKCHANNEL_LOGOUT_SESSION_SECONDS: must be a whole number from 60 to 2592000 (got "10")',
    )
    const issuer = { issuer: ISS, jwksUrl: 'https://idp.test/jwks', audiences: ['api'] }
    expect(error(structured({ issuers: [{ ...issuer, backchannelLogout: {} }] }))).toBe(
      'GATEWAY.issuers[0].backchannelLogout.clientIds: is required',
    )
    expect(
      error(
        structured({ issuers: [{ ...issuer, backchannelLogout: { clientIds: ['rp'], typ: 1 } }] }),
      ),
    ).toBe('GATEWAY.issuers[0].backchannelLogout.typ: is not a known field')
  })

  it('needs a revocation store to write to', () => {
    expect(error(simple({ BACKCHANNEL_LOGOUT_CLIENT_IDS: 'rp', REVOCATIONS: undefined }))).toBe(
      'REVOCATIONS: a revocation store (KV or REVOCATION_LOG) is required by BACKCHANNEL_LOGOUT_CLIENT_IDS',
    )
  })
})

describe('Shared Signals transmitters', () => {
  it('defaults: SSF discovery, secevent+jwt, credential-change revokes, email not acted on', () => {
    const [t] = ok(structured(transmitter())).transmitters
    expect(t!.signer.keySource).toEqual({
      kind: 'discovery',
      url: 'https://tx.test/.well-known/ssf-configuration/ssf',
      issuer: TX,
    })
    expect(t!.signer.types).toEqual(['secevent+jwt'])
    expect(t).toMatchObject({
      issuers: [ISS],
      credentialChange: 'revoke',
      emailClaim: null,
      authorization: null,
      sessionRevocationS: 86_400,
    })
  })

  it('revokes for its own issuer by default when that is a gateway issuer', () => {
    const config = ok(structured({ transmitters: [{ issuer: ISS, audiences: ['rx'] }] }))
    expect(config.transmitters[0]!.issuers).toEqual([ISS])
  })

  it('names each bad setting', () => {
    const at = 'GATEWAY.transmitters[0]'
    expect(error(structured({ transmitters: [{ issuer: TX, audiences: ['rx'] }] }))).toBe(
      `${at}.issuers: is required: the GATEWAY.issuers whose tokens this transmitter may revoke`,
    )
    expect(error(structured(transmitter({ issuers: ['https://nobody.test'] })))).toBe(
      `${at}.issuers: "https://nobody.test" is not in GATEWAY.issuers`,
    )
    expect(error(structured(transmitter({ credentialChange: 'maybe' })))).toBe(
      `${at}.credentialChange: must be revoke or ignore (got "maybe")`,
    )
    expect(error(structured(transmitter({ emailClaim: 'email' })))).toBe(
      `${at}.emailClaim: must be "sub" (the only claim revocations key on)`,
    )
    expect(error(structured(transmitter({ hmacSecret: 'S' })))).toBe(
      `${at}.hmacSecret: is not a transmitter field`,
    )
    expect(error(structured(transmitter({ event: 'x' })))).toBe(`${at}.event: is not a known field`)
    expect(error(structured(transmitter({ authorizationSecret: 'SSF_PUSH' })))).toMatch(
      /^GATEWAY\.transmitters\[0\]\.authorizationSecret: .*SSF_PUSH/,
    )
    const twice = { transmitters: [...transmitter().transmitters, ...transmitter().transmitters] }
    expect(error(structured(twice))).toBe('GATEWAY.transmitters[1].issuer: appears twice')
    expect(error(structured(transmitter(), { REVOCATIONS: undefined }))).toBe(
      'REVOCATIONS: a revocation store (KV or REVOCATION_LOG) is required by GATEWAY.transmitters',
    )
  })
})
