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

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/**
 * Canonical base64url only: no segment of length 4k+1 (no byte string encodes to it), and the
 * unused low bits of a final partial group are zero. Otherwise one token has many spellings,
 * which would defeat exact-match caching and replay bookkeeping (RFC 4648 §3.5).
 */
function canonicalSegments(token: string): boolean {
  for (const segment of token.split('.')) {
    const rest = segment.length % 4
    if (rest === 1) return false
    if (rest === 0) continue
    const last = B64URL.indexOf(segment[segment.length - 1]!)
    if (last % (rest === 2 ? 16 : 4) !== 0) return false
  }
  return true
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
  if (!JWS_COMPACT.test(token) || !canonicalSegments(token)) {
    throw new GatewayError('malformed_token', 'not JWS compact serialization')
  }
  return token
}
