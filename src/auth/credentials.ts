/**
 * Find the bearer token in a request and check its syntax before any crypto runs.
 * Pure. No I/O. Throws only GatewayError.
 */
import { DEFAULT_MAX_TOKEN_BYTES, type TokenSource } from '../config'
import { GatewayError } from '../errors'

export { DEFAULT_MAX_TOKEN_BYTES }

/** Largest Authorization header read, in characters, for a token limit: twice the token. */
export function authorizationLimit(maxTokenBytes: number): number {
  return 2 * maxTokenBytes
}

/** RFC 6750 §2.3's query parameter. */
const ACCESS_TOKEN_PARAM = 'access_token'

/** RFC 7235 token68-ish scheme name followed by the credentials. */
const SCHEME = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?: +(.*))?$/s
/** JWS compact serialization: three unpadded base64url segments, nothing else. */
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
/** RFC 6750 §2.1 b64token: the syntax of any bearer token, opaque ones included. */
const B64TOKEN = /^[A-Za-z0-9._~+/-]+=*$/

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

/** How the token was presented: `Authorization: Bearer` (RFC 6750) or `DPoP` (RFC 9449 §7.1). */
export type TokenScheme = 'bearer' | 'dpop'

/**
 * Returns the token, or null when the request carries no bearer credentials at all.
 * @param authorization the Authorization header as the runtime gives it (repeats joined by ", ")
 * @param opaque whether a token that is not JWS-shaped may pass (to be introspected)
 */
export function bearerToken(
  authorization: string | null,
  opaque = false,
  maxTokenBytes = DEFAULT_MAX_TOKEN_BYTES,
): string | null {
  const found = authorizationToken(authorization, opaque, maxTokenBytes)
  return found?.scheme === 'bearer' ? found.token : null
}

/**
 * The token of a Bearer or DPoP Authorization header, or null when it carries neither.
 * @param authorization the Authorization header as the runtime gives it (repeats joined by ", ")
 * @param opaque whether a token that is not JWS-shaped may pass (to be introspected)
 * @param maxTokenBytes the largest token accepted (MAX_TOKEN_BYTES)
 */
export function authorizationToken(
  authorization: string | null,
  opaque = false,
  maxTokenBytes = DEFAULT_MAX_TOKEN_BYTES,
): (Checked & { readonly scheme: TokenScheme }) | null {
  if (authorization === null) return null
  // Before any scanning, so a megabyte of header costs one length check, whatever its scheme.
  const limit = authorizationLimit(maxTokenBytes)
  if (authorization.length > limit) {
    throw new GatewayError('token_too_large', `Authorization over ${limit} bytes`)
  }
  // No valid bearer token contains a comma: a comma means repeated headers or several credentials.
  if (authorization.includes(',')) {
    throw new GatewayError('malformed_request', 'several credentials in Authorization')
  }
  const m = SCHEME.exec(authorization)
  if (!m)
    throw new GatewayError('malformed_request', 'Authorization is not "<scheme> <credentials>"')
  // Another scheme (Basic, ...) is not a token credential: answer as if none was sent.
  const scheme = m[1]!.toLowerCase()
  if (scheme !== 'bearer' && scheme !== 'dpop') return null
  const token = m[2]
  if (token === undefined || token === '') {
    throw new GatewayError('malformed_request', `${m[1]} without a token`)
  }
  if (/\s/.test(token)) {
    throw new GatewayError('malformed_request', 'text after the bearer token')
  }
  return { ...checkedToken(token, opaque, maxTokenBytes), scheme }
}

/** Strict JWS compact syntax with canonical base64url segments (no size check). */
export function isCanonicalJws(text: string): boolean {
  return JWS_COMPACT.test(text) && canonicalSegments(text)
}

interface Checked {
  readonly token: string
  /** Not JWS-shaped: a reference to be introspected, not a JWT to verify. */
  readonly opaque: boolean
}

/**
 * The size cap and strict JWS compact syntax, whatever the token came in. With `opaque`, a token
 * that is not JWS-shaped at all passes as opaque if it is a b64token; one that looks like a JWS
 * but is not canonical stays malformed, so no JWT is ever sent to an introspection endpoint.
 */
function checkedToken(token: string, opaque: boolean, maxTokenBytes: number): Checked {
  // Size first, so a huge header costs no more than a length check.
  if (token.length > maxTokenBytes) {
    throw new GatewayError('token_too_large', `token over ${maxTokenBytes} bytes`)
  }
  if (JWS_COMPACT.test(token)) {
    if (!canonicalSegments(token)) {
      throw new GatewayError('malformed_token', 'not JWS compact serialization')
    }
    return { token, opaque: false }
  }
  if (opaque && B64TOKEN.test(token)) return { token, opaque: true }
  throw new GatewayError(
    'malformed_token',
    opaque ? 'not a b64token' : 'not JWS compact serialization',
  )
}

/** A JWS compact token from anywhere but a request's credentials (a logout token, a SET). */
export function jwsToken(token: string, maxTokenBytes = DEFAULT_MAX_TOKEN_BYTES): string {
  return checkedToken(token, false, maxTokenBytes).token
}

/** The values of cookie `name` in a Cookie header (RFC 6265 §5.4 syntax, no decoding). */
function cookieValues(header: string | null, name: string): string[] {
  if (header === null) return []
  const values: string[] = []
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=')
    if (eq !== -1 && pair.slice(0, eq).trim() === name) values.push(pair.slice(eq + 1).trim())
  }
  return values
}

export interface FoundToken extends Checked {
  readonly source: TokenSource
  /** Cookies and query parameters are bearer tokens; only Authorization can say DPoP. */
  readonly scheme: TokenScheme
}

/**
 * The one token this request carries in the route's sources, or null when it carries none.
 * A token in two places (or twice in one) is refused: which one is meant would be a guess, and
 * a gateway and an origin that guess differently disagree about who is calling.
 * @param opaque whether the route introspects tokens that are not JWS-shaped
 * @param maxTokenBytes the largest token accepted (MAX_TOKEN_BYTES)
 */
export function findToken(
  request: Request,
  url: URL,
  sources: readonly TokenSource[],
  opaque = false,
  maxTokenBytes = DEFAULT_MAX_TOKEN_BYTES,
): FoundToken | null {
  let found: FoundToken | null = null
  const take = (checked: Checked, source: TokenSource, scheme: TokenScheme = 'bearer') => {
    if (found !== null) throw new GatewayError('malformed_request', 'token in more than one place')
    found = { ...checked, source, scheme }
  }
  for (const source of sources) {
    if (source.kind === 'header') {
      const checked = authorizationToken(
        request.headers.get('authorization'),
        opaque,
        maxTokenBytes,
      )
      if (checked !== null) take(checked, source, checked.scheme)
    } else {
      const values =
        source.kind === 'cookie'
          ? cookieValues(request.headers.get('cookie'), source.name)
          : url.searchParams.getAll(source.name)
      for (const v of values) take(checkedToken(v, opaque, maxTokenBytes), source)
    }
  }
  // RFC 6750 §2: one method per request. A route that does not read the query still refuses an
  // `access_token` there next to a header or cookie token: that second token would otherwise
  // travel on to the origin, in a URL.
  if (
    found !== null &&
    !sources.some((s) => s.kind === 'query' && s.name === ACCESS_TOKEN_PARAM) &&
    url.searchParams.has(ACCESS_TOKEN_PARAM)
  ) {
    throw new GatewayError('malformed_request', 'access_token in the query as well')
  }
  return found
}
