/**
 * Adversarial catalogue, algorithms: `alg: none`, HMAC keyed with the RSA public key, ECDSA
 * psychic and DER signatures, `alg` spelled otherwise, a weak RSA key in the JWKS, and an RSA key
 * re-used with another algorithm. Every case: exact status, exact WWW-Authenticate, the reason
 * logged, origin not called, and how many JWKS fetches it cost (0 when refused from the header).
 */
import { exportJWK, exportSPKI, importJWK, type CryptoKey as JoseKey, type JWK } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  b64u,
  claims,
  ISSUER,
  makeKey,
  mint,
  signRaw,
  structuredEnv,
  Stub,
  type TestKey,
} from '../helpers'
import { fixture, forwarded, invalidToken, withToken } from './harness'

let ec: TestKey
let rsa: TestKey

beforeAll(async () => {
  ec = await makeKey('ES256')
  rsa = await makeKey('RS256')
})

function bytes(b64url: string): Uint8Array {
  return Uint8Array.from(atob(b64url.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0))
}

async function hmacKey(secret: Uint8Array | string, hash = 'SHA-256'): Promise<CryptoKey> {
  const raw = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret
  return crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash }, false, ['sign'])
}

/** The same RSA key material as a signer for another algorithm of its family. */
async function asAlg(key: TestKey, alg: string): Promise<TestKey> {
  const priv = await exportJWK(key.privateKey)
  return { ...key, alg, privateKey: (await importJWK({ ...priv, alg }, alg)) as JoseKey }
}

describe('alg none, in any case', () => {
  const cases = ['none', 'None', 'NONE'].flatMap((alg) => [
    { alg, signature: '', what: 'empty signature (RFC 7519 §6.1)' },
    { alg, signature: b64u('not a signature'), what: 'a made-up signature' },
  ])
  it.each(cases)('$alg with $what: refused from the header, no key fetched', async (c) => {
    const f = await fixture([ec])
    const unsigned = `${b64u(JSON.stringify({ alg: c.alg, kid: ec.kid, typ: 'JWT' }))}.${b64u(JSON.stringify(claims()))}`
    // Without a signature the token is not JWS compact syntax at all.
    const reason = c.signature === '' ? 'malformed_token' : 'alg_not_allowed'
    expect(await withToken(f, `${unsigned}.${c.signature}`)).toEqual(invalidToken(reason, 0))
  })
})

describe('HS256 signed with the RSA public key', () => {
  const secrets: [string, (pem: string) => Uint8Array | string][] = [
    ['the PEM with a trailing newline', (pem) => `${pem.trimEnd()}\n`],
    ['the PEM without a trailing newline', (pem) => pem.trimEnd()],
    ['the JWK as JSON', () => JSON.stringify(rsa.publicJwk)],
    ['the raw modulus', () => bytes(rsa.publicJwk.n!)],
  ]
  it.each(secrets)('keyed with %s: refused from the header, no key fetched', async (_, secret) => {
    const f = await fixture([rsa])
    const pem = await exportSPKI((await importJWK(rsa.publicJwk, 'RS256')) as JoseKey)
    const token = await signRaw(
      { alg: 'HS256', kid: rsa.kid, typ: 'JWT' },
      claims(),
      await hmacKey(secret(pem)),
    )
    expect(await withToken(f, token)).toEqual(invalidToken('alg_not_allowed', 0))
  })

  describe('beside an HMAC issuer in the same gateway', () => {
    const HMAC_ISS = 'https://hmac.issuer.test'
    async function mixed() {
      const stub = new Stub()
      await stub.publish(rsa)
      const gw = structuredEnv(
        stub,
        {
          issuers: [
            { issuer: ISSUER, jwksUrl: stub.jwksUrl, audiences: ['api://mixed'] },
            { issuer: HMAC_ISS, hmacSecret: 'HMAC_SECRET', audiences: ['api://mixed'] },
          ],
          routes: [{ path: '/', origin: stub.originUrl }],
        },
        { HMAC_SECRET: 'a-shared-secret-of-at-least-32-bytes!' },
      )
      const pem = await exportSPKI((await importJWK(rsa.publicJwk, 'RS256')) as JoseKey)
      const secret = await hmacKey(pem)
      const sign = (iss: string) =>
        signRaw(
          { alg: 'HS256', kid: rsa.kid, typ: 'JWT' },
          claims({ iss, aud: 'api://mixed' }),
          secret,
        )
      return { f: { stub, gw }, sign }
    }

    it("claiming the RSA issuer: HS256 is not on that issuer's list", async () => {
      const { f, sign } = await mixed()
      expect(await withToken(f, await sign(ISSUER))).toEqual(invalidToken('alg_not_allowed', 0))
    })

    it("claiming the HMAC issuer: the RSA key's bytes are not its secret", async () => {
      const { f, sign } = await mixed()
      expect(await withToken(f, await sign(HMAC_ISS))).toEqual(invalidToken('bad_signature', 0))
    })
  })
})

describe('ES256 psychic and DER-encoded signatures', () => {
  /** The order of the P-256 group. */
  const N = Uint8Array.from(
    'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551'.match(/../g)!,
    (h) => parseInt(h, 16),
  )
  function derInt(x: Uint8Array): number[] {
    let i = 0
    while (i < x.length - 1 && x[i] === 0) i++
    const v = [...x.subarray(i)]
    if (v[0]! & 0x80) v.unshift(0)
    return [0x02, v.length, ...v]
  }
  function der(r: Uint8Array, s: Uint8Array): Uint8Array {
    const body = [...derInt(r), ...derInt(s)]
    return Uint8Array.from([0x30, body.length, ...body])
  }
  const zero = new Uint8Array(32)
  const cases: [string, (sig: Uint8Array) => Uint8Array][] = [
    ['r = s = 0 (all zeros, CVE-2022-21449)', () => new Uint8Array(64)],
    ['r = s = n', () => Uint8Array.from([...N, ...N])],
    ['r = s = 0, DER-encoded', () => der(zero, zero)],
    ['r = s = n, DER-encoded', () => der(N, N)],
    ['the valid signature, DER-encoded', (sig) => der(sig.subarray(0, 32), sig.subarray(32))],
    ['r valid, s = 0', (sig) => Uint8Array.from([...sig.subarray(0, 32), ...zero])],
  ]
  it.each(cases)('%s: refused by signature verification', async (_, forge) => {
    const f = await fixture([ec])
    const [h, p, s] = (await mint(ec)).split('.') as [string, string, string]
    const token = `${h}.${p}.${b64u(forge(bytes(s)))}`
    expect(await withToken(f, token)).toEqual(invalidToken('bad_signature', 1))
  })
})

describe('alg spelled otherwise', () => {
  const cases: [string, unknown][] = [
    ['lower case', 'es256'],
    ['mixed case', 'Es256'],
    ['a trailing space', 'ES256 '],
    ['a leading space', ' ES256'],
    ['an inner space', 'ES 256'],
    ['a trailing NUL', 'ES256\u0000'],
    ['an array', ['ES256']],
    ['null', null],
    ['missing', undefined],
    ['a number', 256],
    ['an object', { alg: 'ES256' }],
  ]
  it.each(cases)('%s: refused from the header, no key fetched', async (_, alg) => {
    const f = await fixture([ec])
    const header = { kid: ec.kid, typ: 'JWT', ...(alg === undefined ? {} : { alg }) }
    const token = await signRaw(header, claims(), ec.privateKey, 'ES256')
    expect(await withToken(f, token)).toEqual(invalidToken('alg_not_allowed', 0))
  })
})

describe('an RSA-1024 key in the JWKS', () => {
  let weak: TestKey

  beforeAll(async () => {
    const priv = await new Stub().rsaPrivateJwk(1024)
    const kid = 'rsa-1024'
    const privateKey = await crypto.subtle.importKey(
      'jwk',
      priv as JsonWebKey,
      { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      false,
      ['sign'],
    )
    const publicJwk: JWK = { kty: 'RSA', n: priv.n, e: priv.e, kid, alg: 'RS256', use: 'sig' }
    weak = { kid, alg: 'RS256', privateKey: privateKey as JoseKey, publicJwk }
  })

  const cases: [string, (k: TestKey) => Record<string, unknown>][] = [
    ['signed by it, naming its kid', (k) => ({ alg: 'RS256', kid: k.kid, typ: 'JWT' })],
    ['signed by it, without a kid (it is the only key)', () => ({ alg: 'RS256', typ: 'JWT' })],
  ]
  it.each(cases)('%s: the key is never used', async (_, header) => {
    const f = await fixture([weak])
    const token = await signRaw(header(weak), claims(), weak.privateKey as CryptoKey)
    expect(await withToken(f, token)).toEqual(invalidToken('unknown_kid', 1))
  })

  it('control: a 2048-bit key beside it in the same JWKS works', async () => {
    const f = await fixture([weak, rsa])
    expect(await withToken(f, await mint(rsa))).toEqual(forwarded())
  })
})

describe('the same RSA key re-signed with another algorithm', () => {
  // The published JWK says alg RS256: the key verifies RS256 and nothing else.
  const cases: [string, string, string, number][] = [
    ['PS256', 'PS256', 'unknown_kid', 1],
    ['RS512', 'RS512', 'unknown_kid', 1],
    ['RS384', 'RS384', 'unknown_kid', 1],
    ['PS512', 'PS512', 'unknown_kid', 1],
  ]
  it.each(cases)('%s: no key of the JWKS verifies it', async (_, alg, reason, jwks) => {
    const f = await fixture([rsa])
    expect(await withToken(f, await mint(await asAlg(rsa, alg)))).toEqual(
      invalidToken(reason, jwks),
    )
  })

  it('a PS256 signature under an RS256 header: refused by signature verification', async () => {
    const f = await fixture([rsa])
    const ps = await asAlg(rsa, 'PS256')
    const token = await signRaw(
      { alg: 'RS256', kid: rsa.kid, typ: 'JWT' },
      claims(),
      ps.privateKey as CryptoKey,
      'PS256',
    )
    expect(await withToken(f, token)).toEqual(invalidToken('bad_signature', 1))
  })

  it('PS256 where JWT_ALGORITHMS is RS256: refused from the header, no key fetched', async () => {
    const f = await fixture([{ ...rsa, publicJwk: { ...rsa.publicJwk, alg: undefined } }], {
      JWT_ALGORITHMS: 'RS256',
    })
    expect(await withToken(f, await mint(await asAlg(rsa, 'PS256')))).toEqual(
      invalidToken('alg_not_allowed', 0),
    )
  })

  it('control: the RS256 token itself is accepted', async () => {
    const f = await fixture([rsa])
    expect(await withToken(f, await mint(rsa))).toEqual(forwarded())
  })
})
