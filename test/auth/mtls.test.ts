/**
 * Certificate-bound tokens (RFC 8705 §3) through the real worker: the client certificate from
 * Cloudflare's `request.cf.tlsClientAuth` (fingerprints of certificates made at test time), or
 * from an RFC 9440 Client-Cert header only when a front proxy is trusted; the mtls and any
 * policies; what the origin learns.
 */
import { describe, expect, it } from 'vitest'
import { cfThumbprint } from '../../src/auth/mtls'
import { expectRefusal, gatewayEnv, makeKey, mint, send, Stub, type GatewayEnv } from '../helpers'
import {
  clientCert,
  clientCertHeader,
  clientKey,
  dpopInit,
  forwarded,
  GW,
  proof,
  sendLogged,
  tlsClientAuth,
} from './sender-helpers'

const NOT_PRESENTED = 'This access token is bound to a client certificate that was not presented'

async function setup(vars: GatewayEnv = {}) {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  const cert = await clientCert()
  const token = await mint(key, { cnf: { 'x5t#S256': cert.x5t } })
  return { stub, key, cert, token, gw: gatewayEnv(stub, vars) }
}

/** A request as Cloudflare hands it to the Worker after an mTLS handshake. */
function withCert(token: string, tls: unknown, headers: Record<string, string> = {}): Request {
  return new Request(`${GW}/r`, {
    headers: { authorization: `Bearer ${token}`, ...headers },
    cf: { tlsClientAuth: tls },
  } as RequestInit)
}

describe('a certificate-bound token', () => {
  it('passes with the verified certificate it is bound to; the origin learns the binding', async () => {
    const { cert, token, gw } = await setup()
    const call = await forwarded(await send(gw, withCert(token, tlsClientAuth(cert.hex))))
    expect(call.headers['x-auth-binding']).toBe('mtls')
    expect(call.headers['x-auth-x5t-s256']).toBe(cert.x5t)
    // Cloudflare's hex, in either case, is the same thumbprint.
    expect(cfThumbprint(tlsClientAuth(cert.hex.toUpperCase()))).toBe(cert.x5t)
  })

  it('is refused without a certificate, with another one, or one not verified or revoked', async () => {
    const { cert, token, gw, stub } = await setup()
    const other = await clientCert()
    const cases: [unknown, string][] = [
      [undefined, 'mtls_cert_missing'],
      [tlsClientAuth(cert.hex, { certPresented: '0' }), 'mtls_cert_missing'],
      [
        tlsClientAuth(cert.hex, { certVerified: 'FAILED:self signed certificate' }),
        'mtls_cert_missing',
      ],
      [tlsClientAuth(cert.hex, { certVerified: 'NONE' }), 'mtls_cert_missing'],
      [tlsClientAuth(cert.hex, { certRevoked: '1' }), 'mtls_cert_missing'],
      [tlsClientAuth(other.hex), 'mtls_cert_mismatch'],
    ]
    for (const [tls, reason] of cases) {
      const { res, reason: logged } = await sendLogged(gw, withCert(token, tls))
      await expectRefusal(
        res,
        401,
        `Bearer realm="gateway", error="invalid_token", error_description="${NOT_PRESENTED}"`,
        { error: 'invalid_token', error_description: NOT_PRESENTED },
      )
      expect(logged).toBe(reason)
    }
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  it('a Client-Cert header is ignored and stripped unless a front proxy is trusted', async () => {
    const { key, cert, token, gw } = await setup()
    const header = clientCertHeader(cert.der)
    const forged = { 'client-cert': header, 'client-cert-chain': header }
    const { res, reason } = await sendLogged(gw, withCert(token, undefined, forged))
    expect(res.status).toBe(401)
    await res.body?.cancel()
    expect(reason).toBe('mtls_cert_missing')
    // An unbound token passes, and the origin never sees the client's certificate headers.
    const unbound = await mint(key)
    const call = await forwarded(await send(gw, withCert(unbound, undefined, forged)))
    expect(call.headers['client-cert']).toBeUndefined()
    expect(call.headers['client-cert-chain']).toBeUndefined()
    expect(call.headers['x-auth-binding']).toBe('none')
  })

  it('with TRUST_CLIENT_CERT_HEADER, the Client-Cert of the proxy is the certificate, not cf', async () => {
    const { cert, token, stub } = await setup()
    const trusted = gatewayEnv(stub, { TRUST_CLIENT_CERT_HEADER: 'true' })
    const header = clientCertHeader(cert.der)
    const call = await forwarded(
      await send(trusted, withCert(token, undefined, { 'client-cert': header })),
    )
    expect(call.headers['x-auth-binding']).toBe('mtls')
    // The proxy's header is for the origin too.
    expect(call.headers['client-cert']).toBe(header)
    const other = await clientCert()
    const cases: [Request, string][] = [
      [
        withCert(token, undefined, { 'client-cert': clientCertHeader(other.der) }),
        'mtls_cert_mismatch',
      ],
      [withCert(token, undefined, { 'client-cert': 'not a byte sequence' }), 'mtls_cert_missing'],
      // Behind a proxy, cf describes the proxy's own connection: never the client's certificate.
      [withCert(token, tlsClientAuth(cert.hex)), 'mtls_cert_missing'],
    ]
    for (const [request, want] of cases) {
      const { res, reason } = await sendLogged(trusted, request)
      expect(res.status).toBe(401)
      await res.body?.cancel()
      expect(reason).toBe(want)
    }
  })
})

describe('binding policy', () => {
  it('binding = mtls: only certificate-bound tokens, answered with the Bearer challenge', async () => {
    const { key, cert, token, stub } = await setup()
    const gw = gatewayEnv(stub, { TOKEN_BINDING: 'mtls' })
    const description = 'A sender-constrained access token is required'
    const { res, reason } = await sendLogged(gw, withCert(await mint(key), tlsClientAuth(cert.hex)))
    await expectRefusal(
      res,
      401,
      `Bearer realm="gateway", error="invalid_token", error_description="${description}"`,
      { error: 'invalid_token', error_description: description },
    )
    expect(reason).toBe('binding_required')
    expect((await send(gw, withCert(token, tlsClientAuth(cert.hex)))).status).toBe(200)
  })

  it('binding = any: a DPoP-bound or a certificate-bound token, not an unbound one', async () => {
    const { key, cert, token, stub } = await setup()
    const gw = gatewayEnv(stub, { TOKEN_BINDING: 'any' })
    expect((await send(gw, withCert(token, tlsClientAuth(cert.hex)))).status).toBe(200)
    const client = await clientKey()
    const dpopToken = await mint(key, { cnf: { jkt: client.jkt } })
    const p = await proof(client, `${GW}/r`, 'GET', dpopToken)
    expect((await send(gw, '/r', dpopInit(dpopToken, p))).status).toBe(200)
    const { res, reason } = await sendLogged(gw, withCert(await mint(key), undefined))
    expect(res.status).toBe(401)
    // Both schemes are offered; the client used Bearer, so the error goes there.
    expect(res.headers.get('www-authenticate')).toMatch(
      /^Bearer realm="gateway", error="invalid_token", .*, DPoP realm="gateway", algs="/,
    )
    await res.body?.cancel()
    expect(reason).toBe('binding_required')
  })

  it('an issuer requiring mtls applies on every route, on top of the route', async () => {
    const { key, cert, token, stub } = await setup()
    const gw = gatewayEnv(stub, {
      ORIGIN_URL: undefined,
      JWT_ISSUER: undefined,
      JWT_AUDIENCE: undefined,
      JWKS_URL: undefined,
      GATEWAY: {
        issuers: [
          {
            issuer: 'https://issuer.test',
            jwksUrl: stub.jwksUrl,
            audiences: ['api://gateway-test'],
            binding: 'mtls',
          },
        ],
        routes: [{ path: '/', origin: stub.originUrl }],
      },
    })
    const { reason } = await sendLogged(gw, withCert(await mint(key), tlsClientAuth(cert.hex)))
    expect(reason).toBe('binding_required')
    expect((await send(gw, withCert(token, tlsClientAuth(cert.hex)))).status).toBe(200)
  })
})
