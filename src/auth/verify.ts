/**
 * Verify a bearer JWT with jose: pinned algorithms, exact issuer, audience, time claims, `sub`.
 * The token's header only ever narrows what is accepted: `alg` must be on the issuer's allow-list
 * and the key's, `kid` is a lookup key, and `jku`, `x5u`, `x5c`, `jwk` are never read (RFC 8725 §3.1).
 * I/O only through the KeyStore; time comes from the caller.
 */
import {
  base64url,
  errors,
  jwtVerify,
  UnsecuredJWT,
  type JWTClaimVerificationOptions,
  type JWTPayload,
} from 'jose'
import {
  TENANT_ID,
  TENANT_PLACEHOLDER,
  type AudienceRule,
  type IssuerConfig,
  type JwsAlgorithm,
} from '../config'
import { GatewayError, type ReasonCode } from '../errors'
import type { KeyDeps, KeyProvider } from './keys'
import { checkAudience } from './claims'

/** Longest `kid` looked up; longer ones cannot be in any sane JWKS. */
export const MAX_KID_LENGTH = 256
/** Deepest nesting of objects and arrays read in a token's header or payload; real tokens use 3. */
export const MAX_JSON_DEPTH = 32

export interface Issuer {
  readonly config: IssuerConfig
  readonly keys: KeyProvider
}

import type { Identity } from './identity'

export type { Identity }

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })

// Character codes ambiguousJson looks at.
const QUOTE = 0x22 // "
const BACKSLASH = 0x5c
const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d
const OPEN_BRACKET = 0x5b
const CLOSE_BRACKET = 0x5d
const COMMA = 0x2c

/**
 * Why this JSON text is ambiguous, or null: an object with two members of one name (at any depth,
 * names compared after unescaping), or nesting past MAX_JSON_DEPTH. Linear: one pass, each member
 * name decoded once. Expects text that JSON.parse accepts.
 */
export function ambiguousJson(json: string): string | null {
  // One entry per open object (the names seen so far) or array (null).
  const open: (Set<string> | null)[] = []
  let nameNext = false
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (c === QUOTE) {
      let end = i + 1
      let escaped = false
      while (end < json.length && json.charCodeAt(end) !== QUOTE) {
        if (json.charCodeAt(end) === BACKSLASH) {
          escaped = true
          end += 2
        } else end += 1
      }
      const names = open.at(-1)
      if (nameNext && names) {
        // Only a name with escapes needs decoding to compare (`"a"` and `"\u0061"` are one name).
        const name = escaped
          ? (JSON.parse(json.slice(i, end + 1)) as string)
          : json.slice(i + 1, end)
        if (names.has(name)) return 'duplicate member name'
        names.add(name)
      }
      nameNext = false
      i = end
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (open.length === MAX_JSON_DEPTH) return `nested deeper than ${MAX_JSON_DEPTH}`
      open.push(c === OPEN_BRACE ? new Set() : null)
      nameNext = c === OPEN_BRACE
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      open.pop()
    } else if (c === COMMA) {
      nameNext = Boolean(open.at(-1))
    }
  }
  return null
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A token segment's UTF-8 JSON text and its value, or null when it is not a JSON object. */
function decodedSegment(segment: string): { text: string; value: Record<string, unknown> } | null {
  try {
    const text = strictUtf8.decode(base64url.decode(segment))
    const value: unknown = JSON.parse(text)
    return isJsonObject(value) ? { text, value } : null
  } catch {
    return null
  }
}

/** Header and payload, each decoded and parsed once. credentials.ts has checked the JWS syntax. */
function unverified(token: string): { header: Record<string, unknown>; payload: JWTPayload } {
  const first = token.indexOf('.')
  const second = token.indexOf('.', first + 1)
  const header = first === -1 ? null : decodedSegment(token.slice(0, first))
  const payload = second === -1 ? null : decodedSegment(token.slice(first + 1, second))
  if (header === null || payload === null) {
    throw new GatewayError('malformed_token', 'header or payload is not a UTF-8 JSON object')
  }
  // JSON.parse keeps the last of two same-named members, other parsers the first: the origin, a
  // log pipeline or another verifier could read a different token than the one checked here.
  const why = ambiguousJson(header.text) ?? ambiguousJson(payload.text)
  if (why !== null) throw new GatewayError('malformed_token', `header or payload: ${why}`)
  return { header: header.value, payload: payload.value }
}

function joseReason(err: unknown): ReasonCode {
  if (err instanceof errors.JWTExpired) return 'token_expired'
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'iss') return 'bad_issuer'
    if (err.claim === 'aud') return 'bad_audience'
    if (err.claim === 'nbf' && err.reason === 'check_failed') return 'token_not_yet_valid'
    if (err.claim === 'typ') return 'bad_typ'
    return 'bad_claims'
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature'
  if (err instanceof errors.JOSEAlgNotAllowed) return 'alg_not_allowed'
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'malformed_token'
  if (err instanceof errors.JOSENotSupported) return 'malformed_token'
  // jose throws plain TypeErrors too (an RSA key under 2048 bits): still the token's problem.
  return 'verify_error'
}

/**
 * Pick the issuer by the unverified `iss`: an unknown issuer is refused before any key work,
 * so made-up issuers cannot make the gateway fetch anything. Returns the entry and the exact
 * `iss` it matched, which jose then checks again on the verified claims.
 */
function issuerFor(
  payload: JWTPayload,
  issuers: readonly Issuer[],
): { issuer: Issuer; iss: string } {
  const iss = payload.iss
  if (typeof iss === 'string') {
    // An exact value first: a single-tenant entry beats a template that also fits.
    // (A template is never an `iss` itself: a token claiming the literal template is refused.)
    const exact = issuers.find(
      (i) =>
        (i.config.issuer === iss && !iss.includes(TENANT_PLACEHOLDER)) ||
        i.config.aliases.includes(iss),
    )
    if (exact) return { issuer: exact, iss }
    for (const issuer of issuers) {
      const cfg = issuer.config
      if (cfg.issuer.includes(TENANT_PLACEHOLDER)) {
        const tenant = tenantOf(cfg.issuer, iss)
        if (tenant === null) continue
        // The tenant in `iss` must be the token's own: with one common JWKS for every tenant, a
        // token of tenant A naming tenant B's issuer would otherwise pass as B's (the signature
        // covers both claims, so checking them unverified here is checking them).
        if (payload.tid !== tenant)
          throw new GatewayError('bad_issuer', 'tid is not the tenant in iss')
        if (cfg.tenants !== null && !cfg.tenants.includes(tenant)) {
          throw new GatewayError('bad_issuer', 'tenant is not allowed')
        }
        return { issuer, iss }
      }
    }
  }
  throw new GatewayError('bad_issuer', 'iss is not a configured issuer')
}

/** The tenant an `iss` fills a template's {tenantid} with, or null when it does not fit. */
function tenantOf(template: string, iss: string): string | null {
  const at = template.indexOf(TENANT_PLACEHOLDER)
  const before = template.slice(0, at)
  const after = template.slice(at + TENANT_PLACEHOLDER.length)
  if (iss.length <= before.length + after.length) return null
  if (!iss.startsWith(before) || !iss.endsWith(after)) return null
  const tenant = iss.slice(before.length, iss.length - after.length)
  return TENANT_ID.test(tenant) ? tenant : null
}

/**
 * What one kind of JWT must carry besides a good signature from its issuer's keys and that `iss`:
 * access tokens (the issuer's own settings), logout tokens and Security Event Tokens each have one.
 */
export interface JwtProfile {
  readonly audience: AudienceRule
  /** Accepted `typ` values, compared case-insensitively, and whether a token without one passes. */
  readonly types: readonly string[]
  readonly typeOptional: boolean
  readonly requiredClaims: readonly string[]
  /** Oldest `iat` accepted, in seconds before now (then `iat` is required); null: no limit. */
  readonly maxTokenAgeS: number | null
}

/** The access-token profile of an issuer: its audience rule, types and age limit; `exp`, `sub`. */
export function accessTokenProfile(cfg: IssuerConfig): JwtProfile {
  return {
    audience: cfg,
    types: cfg.types,
    typeOptional: cfg.typeOptional,
    requiredClaims: ['exp', 'sub'],
    maxTokenAgeS: cfg.maxTokenAgeS,
  }
}

export interface VerifiedJwt {
  readonly issuer: Issuer
  readonly kid: string | undefined
  readonly alg: JwsAlgorithm
  readonly claims: JWTPayload
}

export async function verifyToken(
  token: string,
  issuers: readonly Issuer[],
  deps: KeyDeps,
): Promise<Identity> {
  const { issuer, kid, alg, claims } = await verifyJwt(token, issuers, deps, accessTokenProfile)
  const encodedClaims = token.slice(token.indexOf('.') + 1, token.lastIndexOf('.'))
  return identityOf(claims, issuer.config, kid, alg, encodedClaims)
}

/**
 * The one JWS verification every kind of token goes through: issuer by `iss`, algorithm, `kid`,
 * `typ`, the signature with that issuer's keys, then the profile's claims and audience rule.
 * Throws GatewayError.
 */
export async function verifyJwt(
  token: string,
  issuers: readonly Issuer[],
  deps: KeyDeps,
  profileOf: (cfg: IssuerConfig) => JwtProfile,
): Promise<VerifiedJwt> {
  const { header, payload } = unverified(token)
  const { issuer, iss } = issuerFor(payload, issuers)
  const cfg = issuer.config
  const profile = profileOf(cfg)

  const alg = header.alg
  if (typeof alg !== 'string' || !(cfg.algorithms as readonly string[]).includes(alg)) {
    throw new GatewayError('alg_not_allowed', 'alg is not on the allow-list')
  }
  const kid = header.kid
  if (kid !== undefined && (typeof kid !== 'string' || kid.length > MAX_KID_LENGTH)) {
    throw new GatewayError('malformed_token', 'kid is not a short string')
  }
  const typ = header.typ
  if (typ === undefined ? !profile.typeOptional : !acceptedType(typ, profile.types)) {
    throw new GatewayError('bad_typ', 'typ is not accepted')
  }
  // A JWT payload is always base64url (RFC 7519 §7.2); `b64` in any form asks for another format.
  if (Object.hasOwn(header, 'b64')) throw new GatewayError('malformed_token', 'b64 in header')

  const key = await issuer.keys.keyFor(kid, alg as JwsAlgorithm, deps)
  let claims: JWTPayload
  try {
    const options = claimOptions(cfg, deps.now(), profile.requiredClaims, profile.maxTokenAgeS)
    // The spelling or tenant issuerFor matched, not the entry's name.
    options.issuer = iss
    const result = await jwtVerify(token, key, { algorithms: [alg], ...options })
    claims = result.payload
  } catch (err) {
    throw new GatewayError(joseReason(err), err instanceof Error ? err.name : 'non-error thrown')
  }
  // Checked here rather than by jose: a token without `aud` may pass on its client id (claims.ts).
  checkAudience(claims, profile.audience)
  if (claims.iat !== undefined && typeof claims.iat !== 'number') {
    throw new GatewayError('bad_claims', 'iat is not a number')
  }
  return { issuer, kid, alg: alg as JwsAlgorithm, claims }
}

/**
 * The claim checks jose runs for every token, JWT or introspected: exact issuer, time claims with
 * the issuer's leeway, the required claims, the oldest `iat` accepted. One definition, run by jose's
 * own claim-set validation on both paths; the audience rule follows in identityOf.
 */
function claimOptions(
  cfg: IssuerConfig,
  nowMs: number,
  required: readonly string[],
  maxTokenAgeS: number | null,
): JWTClaimVerificationOptions {
  return {
    issuer: cfg.issuer,
    clockTolerance: cfg.clockSkewS,
    currentDate: new Date(nowMs),
    requiredClaims: maxTokenAgeS === null ? [...required] : [...required, 'iat'],
    // jose checks iat against it (with the same leeway); a token older than this is refused.
    ...(maxTokenAgeS === null ? {} : { maxTokenAge: maxTokenAgeS }),
  }
}

/** The identity from checked claims (audience included): what jose does not check of `sub`, `iat`. */
function identityOf(
  claims: JWTPayload,
  cfg: IssuerConfig,
  kid: string | undefined,
  alg: JwsAlgorithm | null,
  encodedClaims: string,
): Identity {
  // A lone surrogate is not text: it cannot become a header value (encodeURIComponent throws).
  if (typeof claims.sub !== 'string' || claims.sub === '' || !claims.sub.isWellFormed()) {
    throw new GatewayError('bad_claims', 'sub is not a non-empty string')
  }
  if (claims.iat !== undefined && typeof claims.iat !== 'number') {
    throw new GatewayError('bad_claims', 'iat is not a number')
  }
  return { issuer: cfg.issuer, sub: claims.sub, kid, alg, claims, encodedClaims }
}

/** The protected header of the unsecured JWT that carries introspected claims through jose. */
const UNSECURED_HEADER = base64url.encode('{"alg":"none"}')

/**
 * An active RFC 7662 introspection response (its exact JSON text) as an identity, through the
 * same claim checks as a JWT. RFC 7662 §2.2 makes every member but `active` optional, so `exp`
 * is not required here, and `iss`, when absent, is the issuer whose endpoint answered.
 * `sub` stays required, as for JWTs. The caller has checked `active` and the JSON's shape.
 */
export function introspectedIdentity(
  response: string,
  claims: Record<string, unknown>,
  cfg: IssuerConfig,
  nowMs: number,
): Identity {
  const options = claimOptions(cfg, nowMs, ['sub'], cfg.maxTokenAgeS)
  if (claims.iss === undefined) delete options.issuer
  // The origin's X-Auth-Claims is the exact JSON the endpoint sent, as for a JWT its payload.
  const encodedClaims = base64url.encode(response)
  let checked: JWTPayload
  try {
    checked = UnsecuredJWT.decode(`${UNSECURED_HEADER}.${encodedClaims}.`, options).payload
  } catch (err) {
    throw new GatewayError(joseReason(err), err instanceof Error ? err.name : 'non-error thrown')
  }
  checkAudience(checked, cfg)
  return identityOf(checked, cfg, undefined, null, encodedClaims)
}

/** Media types compare case-insensitively, and `application/` may be omitted (RFC 7515 §4.1.9). */
function acceptedType(typ: unknown, accepted: readonly string[]): boolean {
  if (typeof typ !== 'string') return false
  const norm = (t: string) => t.toLowerCase().replace(/^application\//, '')
  return accepted.some((a) => norm(a) === norm(typ))
}
