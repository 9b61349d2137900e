/**
 * Properties of the pure pieces, over generated input: the credential parser only ever throws
 * GatewayError, and the header-value encoder always yields a safe header value that decodes back.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { bearerToken, DEFAULT_MAX_TOKEN_BYTES } from '../src/auth/credentials'
import { GatewayError } from '../src/errors'
import { encodeHeaderValue } from '../src/proxy/identity-headers'
import { b64u, fromB64u } from './helpers'

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
/** Printable ASCII without edge spaces: what a header value can carry verbatim. */
const SAFE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/

/** A canonical base64url segment: the encoding of some bytes (no 4k+1 length, zero spare bits). */
const segment = fc.uint8Array({ minLength: 1, maxLength: 45 }).map((bytes) => b64u(bytes))
const token = fc.tuple(segment, segment, segment).map((parts) => parts.join('.'))
const scheme = fc
  .array(fc.boolean(), { minLength: 6, maxLength: 6 })
  .map((upper) => [...'bearer'].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(''))

/** Strings that look like Authorization headers, nearly-valid ones included. */
const authorization = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({
    unit: fc.constantFrom(...B64URL, '.', ' ', '\t', ',', '=', '+', '/', '\0', 'é'),
    maxLength: 80,
  }),
  fc
    .tuple(
      scheme,
      fc.constantFrom(' ', '  ', '\t', ''),
      token,
      fc.constantFrom('', ' ', ',', ' x', '=', '.', '\n'),
    )
    .map((p) => p.join('')),
  fc
    .tuple(
      fc.constantFrom('Bearer ', 'Basic ', 'DPoP ', 'bearer'),
      fc.string({ unit: 'binary', maxLength: 40 }),
    )
    .map((p) => p.join('')),
  fc
    .integer({ min: DEFAULT_MAX_TOKEN_BYTES - 4, max: DEFAULT_MAX_TOKEN_BYTES + 4 })
    .map((n) => `Bearer ${'a'.repeat(4)}.${'b'.repeat(n - 14)}.${'c'.repeat(8)}`),
)

/** Strings rich in what breaks headers: controls, edge spaces, the marker, non-ASCII, emoji. */
const awkward = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({
    unit: fc.constantFrom('a', ' ', '\r', '\n', '\0', '\t', '\x7f', '%', "'", 'é', '😀', ':', ','),
    maxLength: 30,
  }),
  fc.string({ maxLength: 20 }).map((s) => `utf-8''${s}`),
  fc.string({ maxLength: 20 }).map((s) => `UTF-8''${s}`),
)

function decodeHeaderValue(value: string): string {
  return value.startsWith("utf-8''") ? decodeURIComponent(value.slice(7)) : value
}

describe('bearerToken', () => {
  it('returns null, a strict JWS compact token, or throws GatewayError: nothing else', () => {
    fc.assert(
      fc.property(authorization, (header) => {
        let result: string | null
        try {
          result = bearerToken(header)
        } catch (err) {
          expect(err).toBeInstanceOf(GatewayError)
          return
        }
        if (result === null) return
        expect(result).toMatch(JWS)
        expect(result.length).toBeLessThanOrEqual(DEFAULT_MAX_TOKEN_BYTES)
        expect(header.endsWith(` ${result}`)).toBe(true)
        expect(header.slice(0, 6).toLowerCase()).toBe('bearer')
      }),
      { numRuns: 2000 },
    )
  })

  it('returns exactly the token for "<Bearer in any case> <token>"', () => {
    fc.assert(
      fc.property(scheme, token, (s, t) => {
        expect(bearerToken(`${s} ${t}`)).toBe(t)
      }),
      { numRuns: 1000 },
    )
  })

  it('refuses a non-canonical spelling of a token (non-zero spare bits)', () => {
    const partial = fc
      .uint8Array({ minLength: 1, maxLength: 45 })
      .filter((b) => b.length % 3 !== 0)
      .map((bytes) => b64u(bytes))
    fc.assert(
      fc.property(segment, segment, partial, fc.integer({ min: 1, max: 15 }), (h, p, sig, bump) => {
        // The last character's spare low bits (4 after 2 characters, 2 after 3) made non-zero.
        const spare = sig.length % 4 === 2 ? 16 : 4
        const last = B64URL.indexOf(sig.at(-1)!)
        const altered = sig.slice(0, -1) + B64URL[last + (bump % spare || 1)]
        expect(bearerToken(`Bearer ${h}.${p}.${sig}`)).toBe(`${h}.${p}.${sig}`)
        let code = 'accepted'
        try {
          bearerToken(`Bearer ${h}.${p}.${altered}`)
        } catch (err) {
          code = (err as GatewayError).code
        }
        expect(code).toBe('malformed_token')
      }),
      { numRuns: 500 },
    )
  })
})

describe('encodeHeaderValue', () => {
  it('always yields a safe header value that decodes back to the input', () => {
    fc.assert(
      fc.property(awkward, (value) => {
        const encoded = encodeHeaderValue(value)
        expect(encoded).toMatch(SAFE)
        // Safe means a Headers object stores it unchanged: nothing trimmed, nothing rejected.
        expect(new Headers([['x-auth-sub', encoded]]).get('x-auth-sub')).toBe(encoded)
        expect(decodeHeaderValue(encoded)).toBe(value)
      }),
      { numRuns: 3000 },
    )
  })

  it('leaves already-safe values alone, unless they start with the marker', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }), (value) => {
        const verbatim = SAFE.test(value) && !value.toLowerCase().startsWith("utf-8''")
        expect(encodeHeaderValue(value) === value).toBe(verbatim)
      }),
      { numRuns: 2000 },
    )
  })
})
