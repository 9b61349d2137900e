/**
 * The gateway's own signed statement of who called, for origins that want to verify that a request
 * came through the gateway (like Cloudflare Access's Cf-Access-Jwt-Assertion). Signs with the
 * newest configured key; publishes every configured key's public half.
 * No I/O. Time comes from the caller.
 */
import { importJWK, SignJWT, type JWK } from 'jose'
import type { AssertionConfig, AssertionKeys, RouteConfig } from '../config'
import { claimAt } from './policy'
import type { Identity } from '../auth/identity'
import type { Binding } from '../auth/binding'

function algOf(jwk: JWK): 'ES256' | 'EdDSA' {
  return jwk.kty === 'EC' ? 'ES256' : 'EdDSA'
}

/** The public JWKS an origin fetches from `<prefix>/jwks.json`. */
export function publicJwks(keys: AssertionKeys): { keys: JWK[] } {
  return {
    keys: keys.keys.map(({ kty, crv, x, y, kid }) => {
      const jwk: JWK = { kty, crv, x, kid, alg: algOf({ kty }), use: 'sig' }
      if (y !== undefined) jwk.y = y
      return jwk
    }),
  }
}

export class AssertionSigner {
  /** Imported once per isolate; a value, never a promise shared across requests. */
  private key: CryptoKey | null = null

  constructor(private readonly keys: AssertionKeys) {}

  async sign(
    identity: Identity,
    route: RouteConfig,
    cfg: AssertionConfig,
    nowMs: number,
    binding: Binding | null = null,
  ): Promise<string> {
    const signer = this.keys.keys[0]!
    const alg = algOf(signer)
    if (this.key === null) {
      const { d, kty, crv, x, y } = signer
      this.key = (await importJWK({ d, kty, crv, x, y }, alg)) as CryptoKey
    }
    const claims: Record<string, unknown> = {}
    for (const path of cfg.claims) {
      const value = claimAt(identity.claims as Record<string, unknown>, path)
      if (value !== undefined) claims[path] = value
    }
    // The binding the gateway verified (RFC 7800 cnf), so the origin can tell a bound caller.
    if (binding !== null && binding.kind !== 'none') {
      const cnf: Record<string, string> = {}
      if (binding.jkt !== null) cnf.jkt = binding.jkt
      if (binding.x5t !== null) cnf['x5t#S256'] = binding.x5t
      claims.cnf = cnf
    }
    const now = Math.floor(nowMs / 1000)
    return new SignJWT({ ...claims, orig_iss: identity.issuer })
      .setProtectedHeader({ alg, kid: signer.kid!, typ: 'JWT' })
      .setIssuer(this.keys.issuer)
      .setAudience(
        route.origin.kind === 'url' ? route.origin.url : `service:${route.origin.binding}`,
      )
      .setSubject(identity.sub)
      .setIssuedAt(now)
      .setExpirationTime(now + cfg.ttlS)
      .sign(this.key)
  }
}
