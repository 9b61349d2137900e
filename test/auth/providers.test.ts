/**
 * Each major provider's documented token and key-document shapes, reproduced with keys made at
 * test time, through the real worker configured as docs/providers.md says. What each shape is
 * comes from the provider's documentation (cited per case); the keys and signatures are ours.
 */
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config'
import {
  bearer,
  body,
  captureLogs,
  expectInvalidToken,
  gatewayEnv,
  makeKey,
  send,
  signRaw,
  Stub,
  type GatewayEnv,
  type TestKey,
} from '../helpers'

const now = () => Math.floor(Date.now() / 1000)

/** A token with exactly this header and payload, signed with `key`. */
function sign(key: TestKey, header: Record<string, unknown>, payload: Record<string, unknown>) {
  return signRaw({ alg: key.alg, kid: key.kid, ...header }, payload, key.privateKey as CryptoKey)
}

async function reasonsOf(run: () => Promise<void>): Promise<(string | undefined)[]> {
  const logs = captureLogs()
  try {
    await run()
  } finally {
    logs.restore()
  }
  return logs.lines.filter((l) => l.event === 'request').map((l) => l.reason)
}

function guid(): string {
  return crypto.randomUUID()
}

// Microsoft Entra ID: https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference
const ENTRA_TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad'
const ENTRA_API_CLIENT_ID = '6e74172b-be56-4843-9ff4-e66a39bb12e3'

function entraV2Claims(extra: Record<string, unknown> = {}) {
  const t = now()
  return {
    aud: ENTRA_API_CLIENT_ID,
    iss: `https://login.microsoftonline.com/${ENTRA_TENANT}/v2.0`,
    iat: t,
    nbf: t,
    exp: t + 3600,
    aio: 'AXQAi/8TAAAA' + 'x'.repeat(40),
    azp: guid(),
    azpacr: '0',
    name: 'Abe Lincoln',
    oid: guid(),
    preferred_username: 'abeli@microsoft.com',
    rh: '0.ARoAv4j5cvGGr0GRqy180BHbR1gP2N8.',
    scp: 'access_as_user User.Read',
    sub: 'AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ',
    tid: ENTRA_TENANT,
    uti: 'fqiBqXLPj0eQa82S-IYFAA',
    ver: '2.0',
    ...extra,
  }
}

function entraEnv(stub: Stub, vars: GatewayEnv = {}): GatewayEnv {
  return gatewayEnv(stub, {
    JWT_ISSUER: `https://login.microsoftonline.com/${ENTRA_TENANT}/v2.0`,
    JWT_AUDIENCE: ENTRA_API_CLIENT_ID,
    ...vars,
  })
}

describe('Microsoft Entra ID: large tokens', () => {
  it('a v2 access token with 200 group ids (~11.8 KB) passes by default', async () => {
    const stub = new Stub()
    const key = await makeKey('RS256')
    await stub.publish(key)
    const groups = Array.from({ length: 200 }, guid)
    const token = await sign(key, { typ: 'JWT' }, entraV2Claims({ groups }))
    expect(token.length).toBeGreaterThan(11_000)
    expect(token.length).toBeLessThan(16_384)
    const res = await send(entraEnv(stub), '/x', bearer(token))
    expect(res.status).toBe(200)
    const seen = (await body(res)).headers as Record<string, string>
    expect(seen['x-auth-sub']).toBe('AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ')
  })

  it('MAX_TOKEN_BYTES lowers or raises the limit; over it: 401 before any key work', async () => {
    const stub = new Stub()
    const key = await makeKey('RS256')
    await stub.publish(key)
    const big = await sign(key, {}, entraV2Claims({ groups: Array.from({ length: 200 }, guid) }))
    const got = await reasonsOf(async () => {
      await expectInvalidToken(
        await send(entraEnv(stub, { MAX_TOKEN_BYTES: '8192' }), '/x', bearer(big)),
      )
    })
    expect(got).toEqual(['token_too_large'])
    expect((await stub.calls()).jwksFetches).toBe(0)

    // 600 groups (~35 KB): over the default, under a raised limit; the Authorization cap follows.
    const huge = await sign(key, {}, entraV2Claims({ groups: Array.from({ length: 600 }, guid) }))
    expect(huge.length).toBeGreaterThan(30_000)
    await expectInvalidToken(await send(entraEnv(stub), '/x', bearer(huge)))
    expect((await stub.calls()).jwksFetches).toBe(0)
    const raised = entraEnv(stub, { MAX_TOKEN_BYTES: '40960' })
    expect((await send(raised, '/x', bearer(huge))).status).toBe(200)
  })

  it('MAX_TOKEN_BYTES is bounded: 1024 to 65536', () => {
    const base = { ORIGIN_URL: 'https://o.test', JWT_ISSUER: 'https://i.test', JWT_AUDIENCE: 'a' }
    const message = (v: string) => {
      const r = parseConfig({ ...base, MAX_TOKEN_BYTES: v })
      return r.ok ? r.config.maxTokenBytes : r.error.message
    }
    expect(message('65536')).toBe(65536)
    expect(message('1024')).toBe(1024)
    for (const bad of ['65537', '1023', '16k']) {
      expect(message(bad)).toBe(
        `MAX_TOKEN_BYTES: must be a whole number from 1024 to 65536 (got "${bad}")`,
      )
    }
    expect(
      parseConfig(base).ok &&
        (parseConfig(base) as { config: { maxTokenBytes: number } }).config.maxTokenBytes,
    ).toBe(16384)
  })
})
