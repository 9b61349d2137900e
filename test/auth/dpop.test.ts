/**
 * DPoP (RFC 9449) through the real worker: proofs from the `dpop` client library for the good
 * cases and by hand for each malformed one, each refusal with its exact status, challenge and
 * logged reason code; the binding rules (no downgrade, unbound tokens), server nonces, replay in
 * one isolate, and what reaches the origin.
 */
import { decodeJwt, exportJWK, generateKeyPair } from 'jose'
import * as fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { normalizedHtu } from '../../src/auth/dpop'
import { NonceSource, DPOP_NONCE_STEP_S } from '../../src/auth/dpop-nonce'
import { LOCAL_REPLAY_MAX_ENTRIES, LocalReplayCache } from '../../src/auth/dpop-replay'
import {
  bearer,
  expectRefusal,
  gatewayEnv,
  makeKey,
  mint,
  send,
  Stub,
  type GatewayEnv,
  type TestKey,
} from '../helpers'
import {
  clientKey,
  dpopInit,
  forwarded,
  GW,
  handProof,
  proof,
  sendLogged,
  type ClientKey,
} from './sender-helpers'

const ALGS = 'RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA Ed25519'
const PROOF_BODY = { error: 'invalid_dpop_proof', error_description: 'The DPoP proof is invalid' }
/** The answer to a bad proof on a default route: DPoP challenge with the error, then Bearer. */
const badProof = (algs = ALGS) =>
  `DPoP realm="gateway", error="invalid_dpop_proof", error_description="The DPoP proof is invalid", algs="${algs}", Bearer realm="gateway"`
const BAD_PROOF = badProof()

interface Setup {
  stub: Stub
  key: TestKey
  client: ClientKey
  gw: GatewayEnv
  /** A token bound to `client`'s key. */
  token: string
}

async function setup(vars: GatewayEnv = {}): Promise<Setup> {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  const client = await clientKey()
  const token = await mint(key, { jti: crypto.randomUUID(), cnf: { jkt: client.jkt } })
  return { stub, key, client, gw: gatewayEnv(stub, vars), token }
}

describe('a DPoP-bound token with a valid proof', () => {
  it('is forwarded with how it was bound, and without its Authorization and DPoP headers', async () => {
    const { client, gw, token } = await setup()
    const res = await send(
      gw,
      '/orders?page=2',
      dpopInit(token, await proof(client, `${GW}/orders`, 'GET', token)),
    )
    const call = await forwarded(res)
    expect(call.headers['x-auth-binding']).toBe('dpop')
    expect(call.headers['x-auth-dpop-jkt']).toBe(client.jkt)
    expect(call.headers['x-auth-sub']).toBe('alice')
    expect(call.headers.authorization).toBeUndefined()
    expect(call.headers.dpop).toBeUndefined()
  })

  it('keeps Authorization and DPoP together when the route keeps Authorization', async () => {
    const { client, gw, token } = await setup({ FORWARD_AUTHORIZATION: 'true' })
    const p = await proof(client, `${GW}/r`, 'GET', token)
    const call = await forwarded(await send(gw, '/r', dpopInit(token, p)))
    expect(call.headers.authorization).toBe(`DPoP ${token}`)
    expect(call.headers.dpop).toBe(p)
  })

  it('works for every method, with Ed25519 and RS256 client keys too', async () => {
    for (const alg of ['ES256', 'Ed25519', 'RS256', 'PS256'] as const) {
      const { key, gw } = await setup()
      const client = await clientKey(alg)
      const token = await mint(key, { cnf: { jkt: client.jkt } })
      for (const method of ['POST', 'DELETE']) {
        const p = await proof(client, `${GW}/m`, method, token)
        const res = await send(gw, '/m', dpopInit(token, p, { method }))
        expect(res.status, `${alg} ${method}`).toBe(200)
        await res.body?.cancel()
      }
    }
  })

  it('the htu is compared after RFC 3986 normalisation, without query and fragment', async () => {
    const { client, gw, token } = await setup()
    const spellings = [
      'HTTPS://GW.TEST/a/b',
      'https://gw.test:443/a/b',
      'https://gw.test/a/./x/../b',
      'https://gw.test/%61/b?q=1#frag',
    ]
    for (const htu of spellings) {
      const res = await send(
        gw,
        '/a/b?z=9',
        dpopInit(token, await proof(client, htu, 'GET', token)),
      )
      expect(res.status, htu).toBe(200)
      await res.body?.cancel()
    }
    expect(normalizedHtu('https://gw.test/a%7eb/%2f')).toBe('https://gw.test/a~b/%2F')
    expect(normalizedHtu('https://user@gw.test/')).toBeNull()
    expect(normalizedHtu('ftp://gw.test/')).toBeNull()
  })

  it('the public base URL replaces the Worker URL behind another proxy', async () => {
    const { client, gw, token } = await setup({ PUBLIC_BASE_URL: 'https://api.example.com/v1/' })
    const good = await proof(client, 'https://api.example.com/v1/orders', 'GET', token)
    expect((await send(gw, '/orders', dpopInit(token, good))).status).toBe(200)
    const worker = await proof(client, `${GW}/orders`, 'GET', token)
    const { res, reason } = await sendLogged(gw, '/orders', dpopInit(token, worker))
    await expectRefusal(res, 401, BAD_PROOF, PROOF_BODY)
    expect(reason).toBe('dpop_htu_mismatch')
  })
})

describe('each proof check refuses, with its reason code and never a 5xx', () => {
  const url = `${GW}/r`

  async function refused(
    s: Setup,
    proofJwt: string,
    reason: string,
    { algs = ALGS, originCalls = 0 } = {},
  ): Promise<void> {
    const { res, reason: logged } = await sendLogged(s.gw, '/r', dpopInit(s.token, proofJwt))
    await expectRefusal(res, 401, badProof(algs), PROOF_BODY)
    expect(logged).toBe(reason)
    expect((await s.stub.calls()).origin).toHaveLength(originCalls)
  }

  it('typ other than dpop+jwt', async () => {
    const s = await setup()
    for (const typ of ['JWT', 'at+jwt', undefined]) {
      await refused(
        s,
        await handProof(s.client, { url, token: s.token, header: { typ } }),
        'dpop_bad_typ',
      )
    }
  })

  it('alg none, HS256 or off the configured list', async () => {
    const s = await setup({ DPOP_ALGORITHMS: 'EdDSA' })
    const hs = await handProof(s.client, { url, token: s.token, header: { alg: 'HS256' } })
    const only = { algs: 'EdDSA' }
    await refused(s, hs, 'dpop_alg_not_allowed', only)
    const [h, p] = (
      await handProof(s.client, { url, token: s.token, header: { alg: 'none' } })
    ).split('.')
    await refused(s, `${h}.${p}.AAAA`, 'dpop_alg_not_allowed', only)
    // ES256 is a fine algorithm, but not on this deployment's list.
    await refused(s, await proof(s.client, url, 'GET', s.token), 'dpop_alg_not_allowed', only)
  })

  it('a jwk with private members, none at all, or of the wrong type', async () => {
    const s = await setup()
    const priv = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey)
    await refused(
      s,
      await handProof(s.client, {
        url,
        token: s.token,
        header: { jwk: { ...s.client.jwk, d: priv.d } },
      }),
      'dpop_bad_jwk',
    )
    await refused(
      s,
      await handProof(s.client, { url, token: s.token, header: { jwk: undefined } }),
      'dpop_bad_jwk',
    )
    await refused(
      s,
      await handProof(s.client, {
        url,
        token: s.token,
        header: { jwk: { kty: 'oct', k: 'AAAA' } },
      }),
      'dpop_bad_jwk',
    )
    await refused(
      s,
      await handProof(s.client, {
        url,
        token: s.token,
        header: { jwk: { ...s.client.jwk, crv: 'P-384' } },
      }),
      'dpop_bad_jwk',
    )
  })

  it('a signature by another key than the jwk names', async () => {
    const s = await setup()
    const other = await clientKey()
    const p = await handProof(s.client, { url, token: s.token, signer: other.pair.privateKey })
    await refused(s, p, 'dpop_bad_signature')
  })

  it('htm other than the method, htu other than the URL', async () => {
    const s = await setup()
    await refused(s, await proof(s.client, url, 'POST', s.token), 'dpop_htm_mismatch')
    await refused(s, await proof(s.client, url, 'get', s.token), 'dpop_htm_mismatch')
    await refused(s, await proof(s.client, `${GW}/other`, 'GET', s.token), 'dpop_htu_mismatch')
    await refused(
      s,
      await proof(s.client, 'https://evil.test/r', 'GET', s.token),
      'dpop_htu_mismatch',
    )
    await refused(s, await proof(s.client, 'http://gw.test/r', 'GET', s.token), 'dpop_htu_mismatch')
  })

  it('iat outside the window (60 s by default, configurable)', async () => {
    const s = await setup()
    const now = Math.floor(Date.now() / 1000)
    for (const iat of [now - 61, now + 61]) {
      await refused(
        s,
        await handProof(s.client, { url, token: s.token, claims: { iat } }),
        'dpop_iat_out_of_window',
      )
    }
    const ok = await send(
      s.gw,
      '/r',
      dpopInit(
        s.token,
        await handProof(s.client, { url, token: s.token, claims: { iat: now - 50 } }),
      ),
    )
    expect(ok.status).toBe(200)
    const narrow = await setup({ DPOP_PROOF_WINDOW_SECONDS: '10' })
    await refused(
      narrow,
      await handProof(narrow.client, { url, token: narrow.token, claims: { iat: now - 30 } }),
      'dpop_iat_out_of_window',
    )
  })

  it('ath missing or not the hash of this token', async () => {
    const s = await setup()
    await refused(
      s,
      await handProof(s.client, { url, token: s.token, claims: { ath: undefined } }),
      'dpop_ath_mismatch',
    )
    const other = await mint(s.key, { cnf: { jkt: s.client.jkt } })
    await refused(s, await proof(s.client, url, 'GET', other), 'dpop_ath_mismatch')
  })

  it('a proof by another key than the token is bound to', async () => {
    const s = await setup()
    const other = await clientKey()
    await refused(s, await proof(other, url, 'GET', s.token), 'dpop_jkt_mismatch')
  })

  it('a proof used twice (replay within one isolate)', async () => {
    const s = await setup()
    const p = await proof(s.client, url, 'GET', s.token)
    expect((await send(s.gw, '/r', dpopInit(s.token, p))).status).toBe(200)
    // The first use reached the origin; the replay does not.
    await refused(s, p, 'dpop_replayed', { originCalls: 1 })
  })

  it('malformed proofs: not a JWS, bad JSON, missing or mistyped claims', async () => {
    const s = await setup()
    const cases = [
      'not-a-jws',
      'a.b.c',
      await handProof(s.client, { url, token: s.token, claims: { jti: undefined } }),
      await handProof(s.client, { url, token: s.token, claims: { jti: 7 } }),
      await handProof(s.client, { url, token: s.token, claims: { htm: undefined } }),
      await handProof(s.client, { url, token: s.token, claims: { htu: ['x'] } }),
      await handProof(s.client, { url, token: s.token, claims: { iat: '1' } }),
      await handProof(s.client, { url, token: s.token, claims: { jti: 'x'.repeat(300) } }),
      await handProof(s.client, { url, token: s.token, header: { crit: ['exp'] } }),
    ]
    for (const p of cases) await refused(s, p, 'dpop_malformed')
  })

  it('no proof with the DPoP scheme; two proofs, or a list, are 400 invalid_request', async () => {
    const s = await setup()
    const none = await sendLogged(s.gw, '/r', { headers: { authorization: `DPoP ${s.token}` } })
    await expectRefusal(
      none.res,
      401,
      `DPoP realm="gateway", error="invalid_dpop_proof", error_description="A DPoP proof is required", algs="${ALGS}", Bearer realm="gateway"`,
      { error: 'invalid_dpop_proof', error_description: 'A DPoP proof is required' },
    )
    expect(none.reason).toBe('dpop_proof_missing')
    const p = await proof(s.client, url, 'GET', s.token)
    const headers = new Headers({ authorization: `DPoP ${s.token}` })
    headers.append('dpop', p)
    headers.append('dpop', p)
    const two = await sendLogged(s.gw, '/r', { headers })
    const description = 'Exactly one DPoP header is required'
    await expectRefusal(
      two.res,
      400,
      `DPoP realm="gateway", error="invalid_request", error_description="${description}", algs="${ALGS}", Bearer realm="gateway"`,
      { error: 'invalid_request', error_description: description },
    )
    expect(two.reason).toBe('dpop_multiple_proofs')
  })

  it('arbitrary proof text and arbitrary header and claim values never cause a 5xx', async () => {
    const s = await setup()
    const json = fc.oneof(
      fc.string(),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.string(), { maxLength: 2 }),
      fc.dictionary(fc.string({ maxLength: 4 }), fc.string(), { maxKeys: 3 }),
    )
    const field = fc.constantFrom('typ', 'alg', 'jwk', 'crit', 'kid')
    const claim = fc.constantFrom('jti', 'htm', 'htu', 'iat', 'ath', 'nonce')
    await fc.assert(
      fc.asyncProperty(
        fc.option(fc.tuple(field, json)),
        fc.option(fc.tuple(claim, json)),
        fc.string({ maxLength: 40 }),
        async (h, c, junk) => {
          const p = await handProof(s.client, {
            url,
            token: s.token,
            header: h ? { [h[0]]: h[1] } : {},
            claims: c ? { [c[0]]: c[1] } : {},
          })
          for (const text of [p, junk, `${p}${junk}`]) {
            const res = await send(s.gw, '/r', {
              headers: { authorization: `DPoP ${s.token}`, dpop: text.replace(/[\r\n\0]/g, '') },
            })
            expect(res.status).toBeLessThan(500)
            await res.body?.cancel()
          }
        },
      ),
      { numRuns: 40 },
    )
  })
})

describe('binding rules', () => {
  it('a DPoP-bound token sent as Bearer is refused: no downgrade', async () => {
    const s = await setup()
    const { res, reason } = await sendLogged(s.gw, '/r', bearer(s.token))
    const description = 'This access token must be used with DPoP'
    await expectRefusal(
      res,
      401,
      `Bearer realm="gateway", error="invalid_token", error_description="${description}"`,
      { error: 'invalid_token', error_description: description },
    )
    expect(reason).toBe('dpop_downgrade')
    // Even with a valid proof alongside.
    const withProof = await send(s.gw, '/r', {
      headers: {
        authorization: `Bearer ${s.token}`,
        dpop: await proof(s.client, `${GW}/r`, 'GET', s.token),
      },
    })
    expect(withProof.status).toBe(401)
  })

  it('a DPoP proof for a token without cnf.jkt is refused unless the route allows unbound tokens', async () => {
    const s = await setup()
    const unbound = await mint(s.key)
    const p = () => proof(s.client, `${GW}/r`, 'GET', unbound)
    const { res, reason } = await sendLogged(s.gw, '/r', dpopInit(unbound, await p()))
    const description = 'This access token is not bound to a DPoP key'
    await expectRefusal(
      res,
      401,
      `DPoP realm="gateway", error="invalid_token", error_description="${description}", algs="${ALGS}", Bearer realm="gateway"`,
      { error: 'invalid_token', error_description: description },
    )
    expect(reason).toBe('dpop_token_unbound')
    const allowing = gatewayEnv(s.stub, { DPOP_ALLOW_UNBOUND: 'true' })
    const call = await forwarded(await send(allowing, '/r', dpopInit(unbound, await p())))
    // The proof was checked, but the token is no more bound than before.
    expect(call.headers['x-auth-binding']).toBe('none')
    // And the proof is still checked in full.
    const other = await clientKey()
    const bad = await handProof(s.client, {
      url: `${GW}/r`,
      token: unbound,
      signer: other.pair.privateKey,
    })
    expect((await send(allowing, '/r', dpopInit(unbound, bad))).status).toBe(401)
  })

  it('binding = dpop: an unbound Bearer token gets the DPoP challenge only', async () => {
    const s = await setup({ TOKEN_BINDING: 'dpop' })
    const { res, reason } = await sendLogged(s.gw, '/r', bearer(await mint(s.key)))
    const description = 'A sender-constrained access token is required'
    await expectRefusal(
      res,
      401,
      `DPoP realm="gateway", error="invalid_token", error_description="${description}", algs="${ALGS}"`,
      { error: 'invalid_token', error_description: description },
    )
    expect(reason).toBe('binding_required')
    const missing = await send(s.gw, '/r')
    expect(missing.headers.get('www-authenticate')).toBe(`DPoP realm="gateway", algs="${ALGS}"`)
    await missing.body?.cancel()
    const ok = await send(
      s.gw,
      '/r',
      dpopInit(s.token, await proof(s.client, `${GW}/r`, 'GET', s.token)),
    )
    expect(ok.status).toBe(200)
  })

  it('binding = none (default): a Bearer refusal offers Bearer only, as before', async () => {
    const s = await setup()
    const res = await send(s.gw, '/r')
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="gateway"')
    await res.body?.cancel()
  })

  it('a cnf that is not an object, or a jkt that is not a string, makes the token invalid', async () => {
    const s = await setup()
    for (const cnf of ['x', { jkt: 5 }, { jkt: '' }, [1]]) {
      const token = await mint(s.key, { cnf })
      const { res, reason } = await sendLogged(s.gw, '/r', bearer(token))
      expect(res.status).toBe(401)
      await res.body?.cancel()
      expect(reason).toBe('bad_cnf')
    }
  })

  it('the signed assertion carries the cnf the gateway verified', async () => {
    const s = await setup()
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const gw = gatewayEnv(s.stub, {
      ORIGIN_URL: undefined,
      JWT_ISSUER: undefined,
      JWT_AUDIENCE: undefined,
      JWKS_URL: undefined,
      GATEWAY: {
        issuers: [
          {
            issuer: 'https://issuer.test',
            jwksUrl: s.stub.jwksUrl,
            audiences: ['api://gateway-test'],
          },
        ],
        routes: [{ path: '/', origin: s.stub.originUrl, assertion: true }],
      },
      ASSERTION_KEY: JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'a1' }),
    })
    const call = await forwarded(
      await send(gw, '/r', dpopInit(s.token, await proof(s.client, `${GW}/r`, 'GET', s.token))),
    )
    const assertion = decodeJwt(call.headers['x-gateway-assertion'] as string)
    expect(assertion.cnf).toEqual({ jkt: s.client.jkt })
  })
})

describe('server nonces (RFC 9449 §8)', () => {
  const SECRET = 'a-dpop-nonce-secret-of-at-least-32-bytes'

  it('a route asking for nonces answers use_dpop_nonce with one, then accepts it', async () => {
    const s = await setup({ DPOP_NONCE: 'true', DPOP_NONCE_SECRET: SECRET })
    const first = await sendLogged(
      s.gw,
      '/r',
      dpopInit(s.token, await proof(s.client, `${GW}/r`, 'GET', s.token)),
    )
    const description = 'Resource server requires nonce in DPoP proof'
    const nonce = first.res.headers.get('dpop-nonce')
    await expectRefusal(
      first.res,
      401,
      `DPoP realm="gateway", error="use_dpop_nonce", error_description="${description}", algs="${ALGS}", Bearer realm="gateway"`,
      { error: 'use_dpop_nonce', error_description: description },
    )
    expect(first.reason).toBe('dpop_nonce_required')
    expect(nonce).toMatch(/^[A-Za-z0-9_-]{22}$/)
    const ok = await send(
      s.gw,
      '/r',
      dpopInit(s.token, await proof(s.client, `${GW}/r`, 'GET', s.token, nonce!)),
    )
    expect(ok.status).toBe(200)
    // The current nonce needs no replacement.
    expect(ok.headers.get('dpop-nonce')).toBeNull()
    await ok.body?.cancel()
    const wrong = await sendLogged(
      s.gw,
      '/r',
      dpopInit(s.token, await proof(s.client, `${GW}/r`, 'GET', s.token, 'made-up')),
    )
    expect(wrong.res.status).toBe(401)
    expect(wrong.reason).toBe('dpop_nonce_required')
    expect(wrong.res.headers.get('dpop-nonce')).toBe(nonce)
  })

  it('nonces are the same in every isolate, rotate every step, and the previous one still passes', async () => {
    const a = new NonceSource(SECRET)
    const b = new NonceSource(SECRET)
    const t = Date.UTC(2026, 0, 1)
    const step = DPOP_NONCE_STEP_S * 1000
    const now = await a.nonces(t)
    expect(await b.nonces(t)).toEqual(now)
    const next = await a.nonces(t + step)
    expect(next.previous).toBe(now.current)
    expect(next.current).not.toBe(now.current)
    expect((await new NonceSource(`${SECRET}-other`).nonces(t)).current).not.toBe(now.current)
  })

  it('a nonce route needs the secret; a short secret is a config error', async () => {
    const s = await setup({ DPOP_NONCE: 'true' })
    const res = await send(s.gw, '/r')
    expect(res.status).toBe(500)
    expect(await res.text()).toContain('DPOP_NONCE: needs DPOP_NONCE_SECRET')
    const short = await send(gatewayEnv(s.stub, { DPOP_NONCE_SECRET: 'short' }), '/r')
    expect(await short.text()).toContain('DPOP_NONCE_SECRET: must be at least 32 bytes')
  })
})

describe('replay memory of one isolate', () => {
  it('stays bounded under a flood of unique proofs and still refuses recent repeats', () => {
    const cache = new LocalReplayCache()
    const now = 1_000_000
    let accepted = 0
    for (let i = 0; i < LOCAL_REPLAY_MAX_ENTRIES * 2; i++) {
      if (cache.firstUse(`k ${i}`, now + 60_000, now)) accepted++
    }
    expect(accepted).toBe(LOCAL_REPLAY_MAX_ENTRIES * 2)
    expect(cache.size).toBeLessThanOrEqual(LOCAL_REPLAY_MAX_ENTRIES)
    const last = `k ${LOCAL_REPLAY_MAX_ENTRIES * 2 - 1}`
    expect(cache.firstUse(last, now + 60_000, now)).toBe(false)
    // Once its window has closed the proof is refused by iat anyway, and its entry may go.
    expect(cache.firstUse(last, now + 200_000, now + 60_000)).toBe(true)
  })
})

describe('logout and revocation of DPoP-bound tokens', () => {
  const ADMIN = 'an-admin-token-for-tests-0123456789abcdef'

  it('self-service logout takes the DPoP scheme with its proof, and the token stops working', async () => {
    const s = await setup({ ADMIN_TOKEN: ADMIN, REVOCATION_CACHE_SECONDS: '0' })
    const logoutUrl = `${GW}/_gateway/logout`
    // As Bearer, the bound token cannot even log out: no downgrade anywhere.
    const asBearer = await send(s.gw, '/_gateway/logout', { method: 'POST', ...bearer(s.token) })
    expect(asBearer.status).toBe(401)
    await asBearer.body?.cancel()
    // A proof for another URL does not do either.
    const wrong = await proof(s.client, `${GW}/r`, 'POST', s.token)
    const refused = await sendLogged(
      s.gw,
      '/_gateway/logout',
      dpopInit(s.token, wrong, { method: 'POST' }),
    )
    await expectRefusal(refused.res, 401, BAD_PROOF, PROOF_BODY)
    expect(refused.reason).toBe('dpop_htu_mismatch')

    const p = await proof(s.client, logoutUrl, 'POST', s.token)
    const out = await send(s.gw, '/_gateway/logout', dpopInit(s.token, p, { method: 'POST' }))
    expect(out.status).toBe(204)
    const after = await sendLogged(
      s.gw,
      '/r',
      dpopInit(s.token, await proof(s.client, `${GW}/r`, 'GET', s.token)),
    )
    expect(after.res.status).toBe(401)
    expect(after.reason).toBe('token_revoked')
  })

  it('an admin revocation by jti applies to a DPoP-bound token', async () => {
    const s = await setup({ ADMIN_TOKEN: ADMIN, REVOCATION_CACHE_SECONDS: '0' })
    const jti = (decodeJwt(s.token) as { jti: string }).jti
    const revoked = await send(s.gw, '/_gateway/revocations', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jti }),
    })
    expect(revoked.status).toBe(201)
    await revoked.body?.cancel()
    const after = await sendLogged(
      s.gw,
      '/r',
      dpopInit(s.token, await proof(s.client, `${GW}/r`, 'GET', s.token)),
    )
    expect(after.res.status).toBe(401)
    expect(after.reason).toBe('token_revoked')
  })
})
