/** The identity a verified token yields. Types only: every stage may import this leaf module. */
import type { JWTPayload } from 'jose'
import type { JwsAlgorithm } from '../config'

export interface Identity {
  readonly issuer: string
  readonly sub: string
  readonly kid: string | undefined
  /** The JWS algorithm verified, or null for an opaque token judged by introspection. */
  readonly alg: JwsAlgorithm | null
  /** The verified payload, as jose parsed it. */
  readonly claims: JWTPayload
  /**
   * The token's payload segment: base64url of exactly the JSON that was verified. Unambiguous,
   * since tokens with duplicate member names are refused, so it is forwarded as X-Auth-Claims.
   */
  readonly encodedClaims: string
}
