/**
 * Token verification: algorithms come from config and the key, never the token; the claims
 * (exp, nbf, iss, aud, sub, typ) are checked exactly. Worker-level tests use the loopback stub;
 * clock boundaries call verifyToken directly with a frozen `now`.
 */
import {
  exportJWK,
  exportSPKI,
  importJWK,
  SignJWT,
  type CryptoKey as JoseKey,
  type JWK,
  type JWTPayload,
} from 'jose'
import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config'
import { GatewayError } from '../../src/errors'
import { KeyStore } from '../../src/auth/keys'
import { verifyToken, type Issuer } from '../../src/auth/verify'
import {
  AUDIENCE,
  b64u,
  bearer,
  claims,
  expectInvalidToken,
  expectRefusal,
  gatewayEnv,
  ISSUER,
  makeKey,
  mint,
  send,
  signRaw,
  Stub,
  type GatewayEnv,
  type TestKey,
} from '../helpers'

async function setup(vars: GatewayEnv = {}, ...keys: TestKey[]) {
  const stub = new Stub()
  if (keys.length === 0) keys = [await makeKey('ES256')]
  await stub.publish(...keys)
  return { stub, key: keys[0]!, gw: gatewayEnv(stub, vars) }
}

async function counts(stub: Stub): Promise<{ jwks: number; origin: number }> {
  const c = await stub.calls()
  return { jwks: c.jwksFetches, origin: c.origin.length }
}

async function publicKeyOf(key: TestKey): Promise<JoseKey> {
  return (await importJWK(key.publicJwk, key.alg)) as JoseKey
}

/** The same key material, usable for another algorithm of its family (RS256 key -> PS256). */
async function asAlg(key: TestKey, alg: string): Promise<TestKey> {
  const priv = await exportJWK(key.privateKey)
  return { ...key, alg, privateKey: (await importJWK({ ...priv, alg }, alg)) as JoseKey }
}

/** The key sources a KeyStore takes (JWKS URL or discovery). */
type KeySourceOf = ConstructorParameters<typeof KeyStore>[0]

describe('algorithms come from config and the key, never the token', () => {
  it('alg none (any case) is refused before any key is fetched', async () => {
    const { stub, key, gw } = await setup()
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      const unsigned = `${b64u(JSON.stringify({ alg, kid: key.kid, typ: 'JWT' }))}.${b64u(JSON.stringify(claims()))}`
      // With the empty signature RFC 7519 §6.1 prescribes, and with one to get past syntax.
      await expectInvalidToken(await send(gw, '/r', bearer(`${unsigned}.`)))
      await expectInvalidToken(await send(gw, '/r', bearer(`${unsigned}.${b64u('sig')}`)))
      await expectInvalidToken(
        await send(gw, '/r', bearer(`${unsigned}.${(await mint(key)).split('.')[2]}`)),
      )
    }
    expect(await counts(stub)).toEqual({ jwks: 0, origin: 0 })
    // Control: the same gateway accepts a properly signed token.
    expect((await send(gw, '/r', bearer(await mint(key)))).status).toBe(200)
  })

  it('HS256/384/512 signed with the public key, in any encoding, is refused', async () => {
    const rsa = await makeKey('RS256')
    const ec = await makeKey('ES256')
    const { stub, gw } = await setup({}, rsa, ec)
    const secrets: Uint8Array[] = []
    const utf8 = (s: string) => new TextEncoder().encode(s)
    for (const key of [rsa, ec]) {
      const pem = await exportSPKI(await publicKeyOf(key))
      const der = Uint8Array.from(atob(pem.replace(/-----[A-Z ]+-----|\s/g, '')), (c) =>
        c.charCodeAt(0),
      )
      const { kty, n, e, crv, x, y } = key.publicJwk
      const thumbprintInput =
        kty === 'RSA' ? JSON.stringify({ e, kty, n }) : JSON.stringify({ crv, kty, x, y })
      const raw = (s: string) =>
        Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0))
      secrets.push(
        utf8(pem),
        utf8(pem.trim()),
        der,
        utf8(JSON.stringify(key.publicJwk)),
        utf8(thumbprintInput),
        utf8(JSON.stringify({ keys: [rsa.publicJwk, ec.publicJwk] })),
        kty === 'RSA' ? raw(n!) : Uint8Array.from([4, ...raw(x!), ...raw(y!)]),
      )
    }
    for (const [i, secret] of secrets.entries()) {
      const kid = i < secrets.length / 2 ? rsa.kid : ec.kid
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        const token = await new SignJWT(claims())
          .setProtectedHeader({ alg, kid, typ: 'JWT' })
          .sign(secret)
        await expectInvalidToken(await send(gw, '/r', bearer(token)))
      }
    }
    expect(await counts(stub)).toEqual({ jwks: 0, origin: 0 })
    expect((await send(gw, '/r', bearer(await mint(rsa)))).status).toBe(200)
    expect((await send(gw, '/r', bearer(await mint(ec)))).status).toBe(200)
  })

  it('a symmetric key published in the JWKS is never used', async () => {
    const secret = crypto.getRandomValues(new Uint8Array(32))
    const oct: JWK = { kty: 'oct', k: b64u(secret), kid: 'shared', alg: 'HS256', use: 'sig' }
    const stub = new Stub()
    const ec = await makeKey('ES256')
    await stub.setup({ jwks: { keys: [oct, ec.publicJwk] } })
    const gw = gatewayEnv(stub)
    const token = await new SignJWT(claims())
      .setProtectedHeader({ alg: 'HS256', kid: 'shared', typ: 'JWT' })
      .sign(secret)
    await expectInvalidToken(await send(gw, '/r', bearer(token)))
    expect((await send(gw, '/r', bearer(await mint(ec)))).status).toBe(200)
    expect(await counts(stub)).toEqual({ jwks: 1, origin: 1 })
  })

  it('an all-zero ES256 signature (CVE-2022-21449 shape) is refused', async () => {
    const { stub, key, gw } = await setup()
    const [h, p] = (await mint(key)).split('.')
    await expectInvalidToken(await send(gw, '/r', bearer(`${h}.${p}.${'A'.repeat(86)}`)))
    // r = s = 0 in DER, and a signature of the wrong length.
    await expectInvalidToken(
      await send(gw, '/r', bearer(`${h}.${p}.${b64u(new Uint8Array([48, 6, 2, 1, 0, 2, 1, 0]))}`)),
    )
    await expectInvalidToken(await send(gw, '/r', bearer(`${h}.${p}.${'A'.repeat(128)}`)))
    expect(await counts(stub)).toEqual({ jwks: 1, origin: 0 })
  })

  it("a key whose alg differs from the token's is not used", async () => {
    const rsa = await makeKey('RS256')
    const ps = await asAlg(rsa, 'PS256')
    // The key says RS256; a PS256 signature by the very same key material is refused.
    const pinned = await setup({}, rsa)
    await expectInvalidToken(await send(pinned.gw, '/r', bearer(await mint(ps))))
    expect((await send(pinned.gw, '/r', bearer(await mint(rsa)))).status).toBe(200)
    // Control: published without alg, the key may verify any RSA algorithm config allows.
    const open = await setup({}, { ...rsa, publicJwk: { ...rsa.publicJwk, alg: undefined } })
    expect((await send(open.gw, '/r', bearer(await mint(ps)))).status).toBe(200)

    // A P-256 key that claims ES384 is inconsistent and never used; nor is an RSA kid for ES256.
    const ec = await makeKey('ES256')
    const lying = await setup({}, { ...ec, publicJwk: { ...ec.publicJwk, alg: 'ES384' } })
    await expectInvalidToken(await send(lying.gw, '/r', bearer(await mint(ec))))
    const other = await makeKey('ES256')
    const crossed = await setup({}, rsa)
    await expectInvalidToken(
      await send(crossed.gw, '/r', bearer(await mint(other, {}, { header: { kid: rsa.kid } }))),
    )
    expect(await counts(pinned.stub)).toEqual({ jwks: 1, origin: 1 })
    expect(await counts(lying.stub)).toEqual({ jwks: 1, origin: 0 })
  })

  it('keys with use "enc" or key_ops without "verify" are never used', async () => {
    const cases: [Partial<JWK>, number][] = [
      [{ use: 'enc' }, 401],
      [{ use: 'foo' }, 401],
      [{ use: undefined, key_ops: ['encrypt'] }, 401],
      [{ use: undefined, key_ops: ['sign'] }, 401],
      [{ use: undefined, key_ops: [] }, 401],
      [{ use: undefined, key_ops: 'verify' as unknown as string[] }, 401],
      // Controls: the same key with a verifying use or key_ops, or with neither.
      [{ use: 'sig' }, 200],
      [{ use: undefined, key_ops: ['verify'] }, 200],
      [{ use: 'sig', key_ops: ['sign', 'verify'] }, 200],
      [{ use: undefined }, 200],
    ]
    for (const [patch, status] of cases) {
      const key = await makeKey('ES256')
      const { stub, gw } = await setup({}, { ...key, publicJwk: { ...key.publicJwk, ...patch } })
      const res = await send(gw, '/r', bearer(await mint(key)))
      expect({ patch, status: res.status }).toEqual({ patch, status })
      if (status === 401) await expectInvalidToken(res)
      expect(await counts(stub)).toEqual({ jwks: 1, origin: status === 200 ? 1 : 0 })
    }
  })

  it('JWT_ALGORITHMS restricts what is accepted, whatever the key allows', async () => {
    const rsa = await makeKey('RS256')
    const ec = await makeKey('ES256')
    const only = await setup({ JWT_ALGORITHMS: 'ES256' }, rsa, ec)
    await expectInvalidToken(await send(only.gw, '/r', bearer(await mint(rsa))))
    // Refused from the header alone: no key work.
    expect(await counts(only.stub)).toEqual({ jwks: 0, origin: 0 })
    expect((await send(only.gw, '/r', bearer(await mint(ec)))).status).toBe(200)

    const both = await setup({ JWT_ALGORITHMS: 'RS256, ES256' }, rsa, ec)
    expect((await send(both.gw, '/r', bearer(await mint(rsa)))).status).toBe(200)
    expect((await send(both.gw, '/r', bearer(await mint(ec)))).status).toBe(200)

    // The key allows RS256 and PS256 (no alg); config allows only PS256.
    const unpinned = { ...rsa, publicJwk: { ...rsa.publicJwk, alg: undefined } }
    const ps = await setup({ JWT_ALGORITHMS: 'PS256' }, unpinned)
    await expectInvalidToken(await send(ps.gw, '/r', bearer(await mint(rsa))))
    expect((await send(ps.gw, '/r', bearer(await mint(await asAlg(rsa, 'PS256'))))).status).toBe(
      200,
    )
  })

  it('embedded jwk, jku, x5u and x5c headers are ignored and never fetched', async () => {
    const { stub, key, gw } = await setup()
    const attacker = await makeKey('ES256')
    const elsewhere = new Stub()
    await elsewhere.publish(attacker)
    const x5c = [b64u(crypto.getRandomValues(new Uint8Array(300))).replace(/-/g, '+')]
    const pointers = [
      { jwk: attacker.publicJwk },
      { jku: elsewhere.jwksUrl },
      { x5u: elsewhere.jwksUrl },
      { x5u: `${elsewhere.base}/cert.pem` },
      { x5c },
      { jku: elsewhere.jwksUrl, x5u: elsewhere.jwksUrl, jwk: attacker.publicJwk, x5c },
    ]
    for (const header of pointers) {
      // Signed by the attacker under its own kid, and under the real key's kid.
      await expectInvalidToken(await send(gw, '/r', bearer(await mint(attacker, {}, { header }))))
      const forged = await mint(attacker, {}, { header: { ...header, kid: key.kid } })
      await expectInvalidToken(await send(gw, '/r', bearer(forged)))
      // Signed by the real key, the pointers change nothing: the configured JWKS decides.
      expect((await send(gw, '/r', bearer(await mint(key, {}, { header })))).status).toBe(200)
    }
    const far = await elsewhere.calls()
    expect({
      jwks: far.jwksFetches,
      discovery: far.discoveryFetches,
      origin: far.origin.length,
    }).toEqual({ jwks: 0, discovery: 0, origin: 0 })
    expect(await counts(stub)).toEqual({ jwks: 1, origin: pointers.length })
  })

  it('an unknown crit extension is refused; so are malformed crit values', async () => {
    const { stub, key, gw } = await setup()
    const base = { alg: 'ES256', kid: key.kid, typ: 'JWT' }
    for (const extra of [
      { crit: ['urn:example:must-understand'], 'urn:example:must-understand': true },
      { crit: ['exp'], exp: 1 },
      { crit: [] },
      { crit: ['alg'] },
      { crit: 'urn:x', 'urn:x': 1 },
      { crit: ['b64'], b64: false },
    ]) {
      const token = await signRaw({ ...base, ...extra }, claims(), key.privateKey)
      await expectInvalidToken(await send(gw, '/r', bearer(token)))
    }
    // Control: the same hand-built token without crit passes.
    const plain = await signRaw(
      { ...base, 'urn:example:must-understand': true },
      claims(),
      key.privateKey,
    )
    expect((await send(gw, '/r', bearer(plain))).status).toBe(200)
    expect(await counts(stub)).toEqual({ jwks: 1, origin: 1 })
  })

  it('a kid that is not a short string is refused without a fetch', async () => {
    const { stub, key, gw } = await setup()
    for (const kid of [7, ['a'], { k: 1 }, 'k'.repeat(257)]) {
      const token = await signRaw({ alg: 'ES256', kid, typ: 'JWT' }, claims(), key.privateKey)
      await expectInvalidToken(await send(gw, '/r', bearer(token)))
    }
    expect(await counts(stub)).toEqual({ jwks: 0, origin: 0 })
  })
})

describe('claims', () => {
  const EXPIRED_CHALLENGE =
    'Bearer realm="gateway", error="invalid_token", error_description="The access token expired"'
  const EXPIRED_BODY = { error: 'invalid_token', error_description: 'The access token expired' }
  const now = () => Math.floor(Date.now() / 1000)

  it('exp is required and must be a number', async () => {
    const { stub, key, gw } = await setup()
    await expectInvalidToken(await send(gw, '/r', bearer(await mint(key, {}, { exp: null }))))
    await expectInvalidToken(
      await send(
        gw,
        '/r',
        bearer(
          await signRaw(
            { alg: 'ES256', kid: key.kid },
            claims({ exp: String(now() + 300) as unknown as number }),
            key.privateKey,
          ),
        ),
      ),
    )
    expect((await send(gw, '/r', bearer(await mint(key)))).status).toBe(200)
    expect(await counts(stub)).toEqual({ jwks: 1, origin: 1 })
  })

  it('iss must match exactly, and a wrong iss costs no key fetch', async () => {
    const { stub, key, gw } = await setup()
    for (const iss of [
      `${ISSUER}/`,
      ISSUER.toUpperCase(),
      'https://ISSUER.test',
      ` ${ISSUER}`,
      `${ISSUER} `,
      'https://issuer.test.evil.example',
      'http://issuer.test',
      [ISSUER],
      null,
      undefined,
    ]) {
      const payload = claims({ iss: iss as string })
      await expectInvalidToken(
        await send(
          gw,
          '/r',
          bearer(
            await signRaw({ alg: 'ES256', kid: key.kid, typ: 'JWT' }, payload, key.privateKey),
          ),
        ),
      )
    }
    expect(await counts(stub)).toEqual({ jwks: 0, origin: 0 })
    expect((await send(gw, '/r', bearer(await mint(key, { iss: ISSUER })))).status).toBe(200)
  })

  it('aud must contain one of the configured audiences (string or array)', async () => {
    const { stub, key, gw } = await setup({ JWT_AUDIENCE: 'api://a, api://b' })
    const cases: [unknown, number][] = [
      ['api://a', 200],
      ['api://b', 200],
      [['api://other', 'api://b'], 200],
      [['api://a', 'api://b'], 200],
      [AUDIENCE, 401],
      ['api://A', 401],
      ['api://a, api://b', 401],
      ['api://a,api://b', 401],
      [['api://other'], 401],
      [[], 401],
      ['', 401],
      [undefined, 401],
      [null, 401],
      [{ 'api://a': true }, 401],
    ]
    let accepted = 0
    for (const [aud, status] of cases) {
      const token = await signRaw(
        { alg: 'ES256', kid: key.kid, typ: 'JWT' },
        claims({ aud: aud as string }),
        key.privateKey,
      )
      const res = await send(gw, '/r', bearer(token))
      expect({ aud, status: res.status }).toEqual({ aud, status })
      if (status === 200) accepted++
      else await expectInvalidToken(res)
    }
    expect(await counts(stub)).toEqual({ jwks: 1, origin: accepted })
  })

  it('exp and nbf allow CLOCK_SKEW_SECONDS of leeway (through the worker, with margins)', async () => {
    const { stub, key, gw } = await setup({ CLOCK_SKEW_SECONDS: '60' })
    const ok = async (c: JWTPayload) => (await send(gw, '/r', bearer(await mint(key, c)))).status
    expect(await ok({ exp: now() - 20 })).toBe(200)
    expect(await ok({ nbf: now() + 20 })).toBe(200)
    await expectRefusal(
      await send(gw, '/r', bearer(await mint(key, { exp: now() - 120 }))),
      401,
      EXPIRED_CHALLENGE,
      EXPIRED_BODY,
    )
    await expectInvalidToken(await send(gw, '/r', bearer(await mint(key, { nbf: now() + 120 }))))
    expect(await counts(stub)).toEqual({ jwks: 1, origin: 2 })

    // With no leeway, the same 20 seconds are too much.
    const strict = await setup({ CLOCK_SKEW_SECONDS: '0' }, key)
    await expectRefusal(
      await send(strict.gw, '/r', bearer(await mint(key, { exp: now() - 20 }))),
      401,
      EXPIRED_CHALLENGE,
      EXPIRED_BODY,
    )
    await expectInvalidToken(
      await send(strict.gw, '/r', bearer(await mint(key, { nbf: now() + 20 }))),
    )
  })

  describe('exact clock boundaries (verifyToken with a frozen clock)', () => {
    const T = 1_900_000_000

    async function verifier(skew: number) {
      const key = await makeKey('ES256')
      const parsed = parseConfig({
        ORIGIN_URL: 'https://origin.test',
        JWT_ISSUER: ISSUER,
        JWT_AUDIENCE: AUDIENCE,
        JWKS_URL: 'https://issuer.test/jwks',
        CLOCK_SKEW_SECONDS: String(skew),
      })
      if (!parsed.ok) throw parsed.error
      const cfg = parsed.config.issuers[0]!
      const issuers: Issuer[] = [
        { config: cfg, keys: new KeyStore(cfg.keySource as KeySourceOf, cfg.algorithms, cfg.jwks) },
      ]
      const jwks = JSON.stringify({ keys: [key.publicJwk] })
      const fetch = (async () => new Response(jwks)) as unknown as typeof globalThis.fetch
      /** 'ok' or the reason code, at `nowS` seconds plus `ms` milliseconds. */
      return async (c: JWTPayload, nowS = T, ms = 999): Promise<string> => {
        const token = await signRaw(
          { alg: 'ES256', kid: key.kid, typ: 'JWT' },
          { iss: ISSUER, aud: AUDIENCE, sub: 'alice', exp: T + 600, ...c },
          key.privateKey,
        )
        try {
          await verifyToken(token, issuers, { fetch, now: () => nowS * 1000 + ms })
          return 'ok'
        } catch (err) {
          if (err instanceof GatewayError) return err.code
          throw err
        }
      }
    }

    it('exp: expired once now - skew reaches it', async () => {
      const v = await verifier(30)
      expect(await v({ exp: T - 29 })).toBe('ok')
      expect(await v({ exp: T - 30 })).toBe('token_expired')
      expect(await v({ exp: T - 31 })).toBe('token_expired')
      const strict = await verifier(0)
      expect(await strict({ exp: T + 1 })).toBe('ok')
      expect(await strict({ exp: T })).toBe('token_expired')
      // Milliseconds do not count: at T.999 a token expiring at T + 1 is still good.
      expect(await strict({ exp: T + 1 }, T, 999)).toBe('ok')
    })

    it('nbf: valid from nbf - skew', async () => {
      const v = await verifier(30)
      expect(await v({ nbf: T + 30 })).toBe('ok')
      expect(await v({ nbf: T + 31 })).toBe('token_not_yet_valid')
      const strict = await verifier(0)
      expect(await strict({ nbf: T })).toBe('ok')
      expect(await strict({ nbf: T + 1 })).toBe('token_not_yet_valid')
    })

    it('the maximum skew is honoured too', async () => {
      const v = await verifier(300)
      expect(await v({ exp: T - 299 })).toBe('ok')
      expect(await v({ exp: T - 300 })).toBe('token_expired')
      expect(await v({ nbf: T + 300 })).toBe('ok')
      expect(await v({ nbf: T + 301 })).toBe('token_not_yet_valid')
    })

    it('non-numeric time claims are refused', async () => {
      const v = await verifier(30)
      expect(await v({ nbf: String(T) as unknown as number })).not.toBe('ok')
      expect(await v({ iat: 'yesterday' as unknown as number })).not.toBe('ok')
      expect(await v({ exp: null as unknown as number })).not.toBe('ok')
    })
  })

  it('sub is required and must be a non-empty string', async () => {
    const { stub, key, gw } = await setup()
    for (const sub of [undefined, null, '', 42, ['alice'], { id: 'alice' }, true]) {
      const token = await signRaw(
        { alg: 'ES256', kid: key.kid, typ: 'JWT' },
        claims({ sub: sub as string }),
        key.privateKey,
      )
      await expectInvalidToken(await send(gw, '/r', bearer(token)))
    }
    expect((await send(gw, '/r', bearer(await mint(key, { sub: '0' })))).status).toBe(200)
    expect(await counts(stub)).toEqual({ jwks: 1, origin: 1 })
  })

  it('typ: JWT, at+jwt and application/at+jwt (any case) or none; anything else refused', async () => {
    const { stub, key, gw } = await setup()
    const token = (typ: unknown) =>
      signRaw(
        { alg: 'ES256', kid: key.kid, ...(typ === undefined ? {} : { typ }) },
        claims(),
        key.privateKey,
      )
    for (const typ of [
      'JOSE',
      'JWS',
      'dpop+jwt',
      'secevent+jwt',
      'application/jwt+x',
      'JWT ',
      '',
      7,
      ['JWT'],
      null,
    ]) {
      await expectInvalidToken(await send(gw, '/r', bearer(await token(typ))))
    }
    // Refused from the header: no key work.
    expect(await counts(stub)).toEqual({ jwks: 0, origin: 0 })
    const accepted = [
      'JWT',
      'jwt',
      'at+jwt',
      'AT+JWT',
      'application/at+jwt',
      'Application/AT+JWT',
      'application/jwt',
      undefined,
    ]
    for (const typ of accepted) {
      const res = await send(gw, '/r', bearer(await token(typ)))
      expect({ typ, status: res.status }).toEqual({ typ, status: 200 })
    }
    expect(await counts(stub)).toEqual({ jwks: 1, origin: accepted.length })
  })

  it('JWT_TYPES narrows typ and then requires it', async () => {
    const { key, gw } = await setup({ JWT_TYPES: 'at+jwt' })
    const token = (typ?: string) =>
      signRaw(
        { alg: 'ES256', kid: key.kid, ...(typ === undefined ? {} : { typ }) },
        claims(),
        key.privateKey,
      )
    expect((await send(gw, '/r', bearer(await token('at+jwt')))).status).toBe(200)
    expect((await send(gw, '/r', bearer(await token('application/at+jwt')))).status).toBe(200)
    await expectInvalidToken(await send(gw, '/r', bearer(await token('JWT'))))
    await expectInvalidToken(await send(gw, '/r', bearer(await token())))
  })
})
