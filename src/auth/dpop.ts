/**
 * Check one DPoP proof (RFC 9449 §4.3): syntax, header, signature under its own public `jwk`,
 * `htm`, `htu`, `iat`, `ath` and (when asked) the server nonce. Replay and the token's `cnf` are
 * not checked here (dpop-replay.ts, binding.ts).
 * No I/O. No clock: callers pass `nowMs`. Throws only GatewayError, whatever the proof contains.
 */
import { base64url, calculateJwkThumbprint, compactVerify, errors, importJWK, type JWK } from 'jose'
import { makeRoom } from '../lib/bounded'
import { GatewayError, type ReasonCode } from '../errors'
import { isCanonicalJws } from './credentials'
import { ambiguousJson } from './verify'

/** Largest proof read, in bytes: a proof with an RSA-4096 jwk is about 1.5 KiB. */
export const MAX_PROOF_BYTES = 8 * 1024
/** Longest `jti` remembered; RFC 9449 §4.2 asks for 96 bits of randomness, a few dozen characters. */
export const MAX_JTI_LENGTH = 256
/** Longest `nonce` read; ours are 22 characters. */
export const MAX_NONCE_LENGTH = 256
/** Distinct proof headers (one per client key) whose imported key is remembered. */
export const PROOF_KEY_CACHE_MAX_ENTRIES = 10_000

/** The request the proof must describe. */
export interface ProofTarget {
  /** The request method, as sent (methods are case-sensitive, RFC 9110 §9.1). */
  readonly method: string
  /** The URL the client addressed (the public one behind another proxy), query and all. */
  readonly url: string
  /** The access token presented with the proof; its hash must be the proof's `ath`. */
  readonly accessToken: string
}

export interface ProofPolicy {
  /** Accepted `alg` values; asymmetric only (config refuses anything else). */
  readonly algorithms: readonly string[]
  /** How far `iat` may be from now, either way, in seconds. */
  readonly windowS: number
  /** When set, the proof's `nonce` must be one it accepts (RFC 9449 §8). */
  readonly nonce: ((nonce: string) => boolean) | null
}

export interface CheckedProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's key, base64url. */
  readonly jkt: string
  readonly jti: string
  /** Until when (ms) this proof would be accepted: its `jti` must be remembered that long. */
  readonly untilMs: number
  readonly nonce: string | undefined
}

/** The DPoP header value, or null when there is none. Two headers, or a list, are refused. */
export function proofHeader(headers: Headers): string | null {
  const value = headers.get('dpop')
  // The runtime joins repeated headers with ", "; a compact JWS never contains a comma.
  if (value !== null && value.includes(',')) {
    throw new GatewayError('dpop_multiple_proofs', 'more than one DPoP proof')
  }
  return value
}

const fail = (code: ReasonCode, detail: string) => new GatewayError(code, detail)
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })

/** A segment as a JSON object without duplicate names, or null. */
function jsonSegment(segment: string): Record<string, unknown> | null {
  try {
    const text = strictUtf8.decode(base64url.decode(segment))
    const value: unknown = JSON.parse(text)
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return null
    return ambiguousJson(text) === null ? (value as Record<string, unknown>) : null
  } catch {
    return null
  }
}

/** Members that make a JWK private or symmetric (RFC 7518 §6.2.2, §6.3.2, §6.4). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

/** The key type and curve each accepted `alg` needs. */
function keyFits(alg: string, jwk: Record<string, unknown>): boolean {
  if (alg === 'ES256') return jwk.kty === 'EC' && jwk.crv === 'P-256'
  if (alg === 'ES384') return jwk.kty === 'EC' && jwk.crv === 'P-384'
  if (alg === 'EdDSA' || alg === 'Ed25519') return jwk.kty === 'OKP' && jwk.crv === 'Ed25519'
  return /^(RS|PS)(256|384|512)$/.test(alg) && jwk.kty === 'RSA'
}

/** The public members a thumbprint and an import need (RFC 7638 §3.2), all strings. */
function publicMembers(jwk: Record<string, unknown>): JWK | null {
  const names = jwk.kty === 'RSA' ? ['e', 'n'] : jwk.kty === 'EC' ? ['crv', 'x', 'y'] : ['crv', 'x']
  const out: Record<string, string> = { kty: jwk.kty as string }
  for (const name of names) {
    const v = jwk[name]
    if (typeof v !== 'string' || v === '') return null
    out[name] = v
  }
  return out as JWK
}

interface ProofKey {
  readonly alg: string
  readonly key: CryptoKey
  readonly jkt: string
}

/**
 * Imported keys by protected-header segment: a client's proofs all share one header (typ, alg,
 * jwk), so its key is parsed, checked and imported once. A pure memo: the same header text always
 * yields the same key. Refusals are not remembered (they are cheap to recompute).
 */
const proofKeys = new Map<string, ProofKey>()

async function proofKey(segment: string, algorithms: readonly string[]): Promise<ProofKey> {
  const known = proofKeys.get(segment)
  if (known !== undefined && algorithms.includes(known.alg)) return known
  const header = jsonSegment(segment)
  if (header === null) throw fail('dpop_malformed', 'header is not a JSON object')
  const typ = header.typ
  // Media types compare case-insensitively (RFC 7515 §4.1.9); only the DPoP type is a proof.
  if (typeof typ !== 'string' || typ.toLowerCase().replace(/^application\//, '') !== 'dpop+jwt') {
    throw fail('dpop_bad_typ', 'typ is not dpop+jwt')
  }
  const alg = header.alg
  // The allow-list holds asymmetric algorithms only: `none` and HS* can never get past this.
  if (typeof alg !== 'string' || !algorithms.includes(alg)) {
    throw fail('dpop_alg_not_allowed', 'alg is not on the DPoP allow-list')
  }
  // Extensions we do not implement must be refused (RFC 7515 §4.1.11); b64 changes the payload.
  if (Object.hasOwn(header, 'crit') || Object.hasOwn(header, 'b64')) {
    throw fail('dpop_malformed', 'crit or b64 in header')
  }
  const jwk = header.jwk
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) {
    throw fail('dpop_bad_jwk', 'no jwk header')
  }
  const raw = jwk as Record<string, unknown>
  // A proof carrying a private key proves nothing: anyone who saw it could sign (RFC 9449 §4.3).
  if (PRIVATE_MEMBERS.some((m) => Object.hasOwn(raw, m))) {
    throw fail('dpop_bad_jwk', 'jwk has private or symmetric members')
  }
  if (!keyFits(alg, raw)) throw fail('dpop_bad_jwk', 'jwk does not fit alg')
  const members = publicMembers(raw)
  if (members === null) throw fail('dpop_bad_jwk', 'jwk is missing public members')
  let key: CryptoKey
  let jkt: string
  try {
    key = (await importJWK(members, alg)) as CryptoKey
    jkt = await calculateJwkThumbprint(members, 'sha256')
  } catch {
    throw fail('dpop_bad_jwk', 'jwk does not import')
  }
  const entry = { alg, key, jkt }
  makeRoom(proofKeys, PROOF_KEY_CACHE_MAX_ENTRIES)
  proofKeys.set(segment, entry)
  return entry
}

const UNRESERVED = /[A-Za-z0-9._~-]/

/**
 * An http(s) URI in a form two spellings of one URI share (RFC 3986 §6.2.2, §6.2.3): scheme and
 * host lower-cased, default port dropped, dot segments removed (the WHATWG parser does these),
 * percent-encoded unreserved characters decoded and other escapes upper-cased; no query or
 * fragment. Null for anything else (another scheme, userinfo, not a URI).
 */
export function normalizedHtu(text: string): string | null {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return null
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null
  if (url.username !== '' || url.password !== '') return null
  const path = url.pathname.replace(/%[0-9A-Fa-f]{2}/g, (escape) => {
    const c = String.fromCharCode(parseInt(escape.slice(1), 16))
    return UNRESERVED.test(c) ? c : escape.toUpperCase()
  })
  return `${url.protocol}//${url.host}${path}`
}

async function sha256b64u(text: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))
  return base64url.encode(new Uint8Array(digest))
}

function joseFailure(err: unknown): GatewayError {
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return fail('dpop_bad_signature', 'signature does not verify under the jwk')
  }
  return fail('dpop_malformed', err instanceof Error ? err.name : 'not a JWS')
}

/** Everything RFC 9449 §4.3 asks of one proof, except replay (steps 1-11 and the `ath` of 12). */
export async function checkProof(
  proof: string,
  target: ProofTarget,
  policy: ProofPolicy,
  nowMs: number,
): Promise<CheckedProof> {
  // Size first: a megabyte of header costs one length check.
  if (proof.length > MAX_PROOF_BYTES) throw fail('dpop_malformed', 'proof too large')
  if (!isCanonicalJws(proof)) throw fail('dpop_malformed', 'not JWS compact serialization')
  const dot = proof.indexOf('.')
  const { alg, key, jkt } = await proofKey(proof.slice(0, dot), policy.algorithms)
  let payloadBytes: Uint8Array
  try {
    payloadBytes = (await compactVerify(proof, key, { algorithms: [alg] })).payload
  } catch (err) {
    throw joseFailure(err)
  }
  let claims: Record<string, unknown> | null = null
  try {
    const text = strictUtf8.decode(payloadBytes)
    const value: unknown = JSON.parse(text)
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      claims = ambiguousJson(text) === null ? (value as Record<string, unknown>) : null
    }
  } catch {
    claims = null
  }
  if (claims === null) throw fail('dpop_malformed', 'payload is not a JSON object')

  const { jti, htm, htu, iat, ath, nonce } = claims
  if (typeof jti !== 'string' || jti === '' || jti.length > MAX_JTI_LENGTH) {
    throw fail('dpop_malformed', 'jti is not a short string')
  }
  if (typeof htm !== 'string') throw fail('dpop_malformed', 'htm is not a string')
  if (typeof htu !== 'string') throw fail('dpop_malformed', 'htu is not a string')
  if (typeof iat !== 'number' || !Number.isFinite(iat)) {
    throw fail('dpop_malformed', 'iat is not a number')
  }
  if (htm !== target.method) throw fail('dpop_htm_mismatch', 'htm is not the request method')
  const wanted = normalizedHtu(target.url)
  if (wanted === null || normalizedHtu(htu) !== wanted) {
    throw fail('dpop_htu_mismatch', 'htu is not the request URL')
  }
  const windowMs = policy.windowS * 1000
  if (Math.abs(nowMs - iat * 1000) > windowMs) {
    throw fail('dpop_iat_out_of_window', 'iat is outside the proof window')
  }
  if (typeof ath !== 'string' || ath !== (await sha256b64u(target.accessToken))) {
    throw fail('dpop_ath_mismatch', 'ath is not the hash of the access token')
  }
  if (nonce !== undefined && (typeof nonce !== 'string' || nonce.length > MAX_NONCE_LENGTH)) {
    throw fail('dpop_malformed', 'nonce is not a short string')
  }
  // Checked last of the proof's own claims: a client told to use a nonce retries with a new proof.
  if (policy.nonce !== null && (nonce === undefined || !policy.nonce(nonce))) {
    throw fail('dpop_nonce_required', nonce === undefined ? 'no nonce' : 'stale or unknown nonce')
  }
  return { jkt, jti, untilMs: iat * 1000 + windowMs, nonce }
}
