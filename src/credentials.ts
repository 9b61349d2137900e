/**
 * Find the bearer token in a request and check its syntax before any crypto runs.
 * Pure. No I/O. Throws only GatewayError.
 */
import { GatewayError } from './errors'

/** Largest token accepted, in bytes. Real access tokens are 1-2 KiB; this bounds parsing work. */
export const MAX_TOKEN_BYTES = 8 * 1024

/** RFC 7235 token68-ish scheme name followed by the credentials. */
const SCHEME = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?: +(.*))?$/s
/** JWS compact serialization: three unpadded base64url segments, nothing else. */
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

/** A base64url segment of length 4k+1 cannot be produced by any byte string. */
function validSegments(token: string): boolean {
  return token.split('.').every((s) => s.length % 4 !== 1)
}

/**
 * Returns the token, or null when the request carries no bearer credentials at all.
 * @param authorization the Authorization header as the runtime gives it (repeats joined by ", ")
 */
export function bearerToken(authorization: string | null): string | null {
  if (authorization === null) return null
  // No valid bearer token contains a comma: a comma means repeated headers or several credentials.
  if (authorization.includes(',')) {
    throw new GatewayError('malformed_request', 'several credentials in Authorization')
  }
  const m = SCHEME.exec(authorization)
  if (!m) throw new GatewayError('malformed_request', 'Authorization is not "<scheme> <credentials>"')
  // Another scheme (Basic, DPoP, ...) is not a bearer credential: answer as if none was sent.
  if (m[1]!.toLowerCase() !== 'bearer') return null
  const token = m[2]
  if (token === undefined || token === '') {
    throw new GatewayError('malformed_request', 'Bearer without a token')
  }
  if (/\s/.test(token)) {
    throw new GatewayError('malformed_request', 'text after the bearer token')
  }
  // Size first, so a huge header costs no more than a length check.
  if (token.length > MAX_TOKEN_BYTES) {
    throw new GatewayError('token_too_large', `token over ${MAX_TOKEN_BYTES} bytes`)
  }
  if (!JWS_COMPACT.test(token) || !validSegments(token)) {
    throw new GatewayError('malformed_token', 'not JWS compact serialization')
  }
  return token
}
