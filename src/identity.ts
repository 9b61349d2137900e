/**
 * Build the identity headers the origin receives, and the rule that keeps claim values from
 * splitting or forging headers. Pure. No I/O.
 */
import { IDENTITY_HEADER_PREFIX } from './config'
import type { Identity } from './verify'

/** Printable ASCII, no leading or trailing space: safe to send as a header value verbatim. */
const SAFE_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/
/** The RFC 8187 ext-value marker; a raw value starting with it is encoded too, so decoding is unambiguous. */
const ENCODED_MARKER = "utf-8''"

/**
 * A claim value as a header value. Safe values go verbatim; anything else (CR, LF, NUL, controls,
 * non-ASCII, edge spaces, or a value that itself starts with the marker) is sent as an RFC 8187
 * ext-value, `utf-8''` + percent-encoded UTF-8, so it can never split or forge a header.
 */
export function encodeHeaderValue(value: string): string {
  if (SAFE_VALUE.test(value) && !value.toLowerCase().startsWith(ENCODED_MARKER)) return value
  return ENCODED_MARKER + encodeURIComponent(value).replace(/['()*!]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** base64url without padding of a UTF-8 string. */
export function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text)
  let bin = ''
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  }
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/**
 * Re-serialised from the verified payload rather than copied from the token, so the origin reads
 * exactly what the gateway checked even if the token's JSON had duplicate member names.
 */
export function identityHeaders(identity: Identity): [string, string][] {
  return [
    [`${IDENTITY_HEADER_PREFIX}sub`, encodeHeaderValue(identity.sub)],
    [`${IDENTITY_HEADER_PREFIX}iss`, encodeHeaderValue(identity.issuer)],
    [`${IDENTITY_HEADER_PREFIX}claims`, base64url(JSON.stringify(identity.claims))],
  ]
}

/** Is this (lower-cased) header name one a client could use to impersonate an identity? */
export function isIdentityHeader(name: string): boolean {
  return name.startsWith('x-auth-') || name.startsWith('x_auth_')
}
