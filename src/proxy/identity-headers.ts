/**
 * Build the identity headers the origin receives, and the rule that keeps claim values from
 * splitting or forging headers. Pure. No I/O.
 */
import { IDENTITY_HEADER_PREFIX, type IdentityConfig } from '../config'
import { claimAt } from './policy'
import type { Identity } from '../auth/identity'
import type { Binding } from '../auth/binding'

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
  return (
    ENCODED_MARKER +
    // A lone surrogate is not text and would make encodeURIComponent throw: it becomes U+FFFD
    // (X-Auth-Claims still carries the exact claims; `sub` itself is refused in verify.ts).
    encodeURIComponent(value.toWellFormed()).replace(
      /['()*!]/g,
      (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
    )
  )
}

/**
 * A claim as a header value: strings as they are, numbers and booleans as JSON text, arrays of
 * those joined with "," when no element contains a comma, anything else as JSON. Then the safe
 * encoding above. A missing claim gives no header.
 */
export function claimHeaderValue(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined
  let text: string
  if (typeof value === 'string') text = value
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value)
  else if (
    Array.isArray(value) &&
    value.every(
      (v) => ['string', 'number', 'boolean'].includes(typeof v) && !String(v).includes(','),
    )
  ) {
    text = value.join(',')
  } else text = JSON.stringify(value)
  return encodeHeaderValue(text)
}

/**
 * The identity headers for one route. X-Auth-Claims is the token's own payload segment: the exact
 * JSON the gateway verified (a token whose JSON could be read two ways never gets this far).
 */
export function identityHeaders(
  identity: Identity,
  cfg: IdentityConfig,
): readonly (readonly [string, string])[] {
  // Identities are shared by the verified-token cache, so a repeated token reuses its headers
  // instead of re-encoding its claims on every request. Per identity a plain Map (routes are
  // few and live as long as the config); only the outer map is weak.
  let perConfig = built.get(identity)
  if (!perConfig) built.set(identity, (perConfig = new Map()))
  let out = perConfig.get(cfg)
  if (!out) perConfig.set(cfg, (out = buildIdentityHeaders(identity, cfg)))
  return out
}

const built = new WeakMap<Identity, Map<IdentityConfig, readonly (readonly [string, string])[]>>()

function buildIdentityHeaders(identity: Identity, cfg: IdentityConfig): [string, string][] {
  const claims = identity.claims as Record<string, unknown>
  const out: [string, string][] = [
    [`${cfg.prefix}sub`, encodeHeaderValue(identity.sub)],
    [`${cfg.prefix}iss`, encodeHeaderValue(identity.issuer)],
  ]
  if (cfg.sendClaims) out.push([`${cfg.prefix}claims`, identity.encodedClaims])
  for (const [header, path] of cfg.claimHeaders) {
    const value = claimHeaderValue(claimAt(claims, path))
    if (value !== undefined) out.push([header, value])
  }
  return out
}

/**
 * Could a client use this (lower-cased) header name to impersonate an identity? The default
 * prefixes in both spellings (some servers treat `_` as `-`), and the route's own prefix likewise
 * (pass it with `_` already read as `-`).
 */
export function isIdentityHeader(name: string, prefix: string = IDENTITY_HEADER_PREFIX): boolean {
  const dashed = name.includes('_') ? name.replaceAll('_', '-') : name
  return dashed.startsWith(IDENTITY_HEADER_PREFIX) || dashed.startsWith(prefix)
}

/**
 * How the request was bound, for the origin: `<prefix>binding` (dpop, mtls or none) and the
 * thumbprint each proved binding is bound to. Thumbprints are base64url: safe header values.
 */
export function bindingHeaders(binding: Binding, cfg: IdentityConfig): [string, string][] {
  const out: [string, string][] = [[`${cfg.prefix}binding`, binding.kind]]
  if (binding.jkt !== null) out.push([`${cfg.prefix}dpop-jkt`, binding.jkt])
  if (binding.x5t !== null) out.push([`${cfg.prefix}x5t-s256`, binding.x5t])
  return out
}
