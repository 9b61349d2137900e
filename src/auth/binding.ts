/**
 * Sender binding: does the token's `cnf` (RFC 7800) match what this request proved, and does the
 * binding meet the policy? One pure function of (cnf claim, the request's proof and certificate
 * facts, policy), so a `cnf` from a JWT and one from an introspection response are judged alike.
 * Pure. No I/O. Throws only GatewayError.
 */
import type { BindingMode } from '../config'
import { GatewayError } from '../errors'
import type { TokenScheme } from './credentials'

/** What the request itself showed, established before this check. */
export interface BindingFacts {
  /** The Authorization scheme the token came with (cookies and queries are bearer). */
  readonly scheme: TokenScheme
  /** Thumbprint of the key of a DPoP proof that passed every proof check; null: no proof. */
  readonly proofJkt: string | null
  /** base64url SHA-256 of a verified client certificate (RFC 8705 §3.1); null: none. */
  readonly certThumbprint: string | null
}

export interface BindingPolicy {
  /** Every mode here must hold (the issuer's and the route's); `none` entries ask for nothing. */
  readonly required: readonly BindingMode[]
  /** A valid DPoP proof with a token without `cnf.jkt` passes (and the token stays unbound). */
  readonly allowUnboundDpop: boolean
}

/** How the request was bound, for the origin (X-Auth-Binding) and the signed assertion (`cnf`). */
export interface Binding {
  readonly kind: 'dpop' | 'mtls' | 'none'
  /** The DPoP key thumbprint the token is bound to, when that binding was proved. */
  readonly jkt: string | null
  /** The certificate thumbprint the token is bound to, when that binding was proved. */
  readonly x5t: string | null
}

export const UNBOUND: Binding = { kind: 'none', jkt: null, x5t: null }

/** The confirmation members this gateway checks; anything else in `cnf` is left alone. */
export interface Confirmation {
  readonly jkt: string | null
  readonly x5t: string | null
}

const NO_CNF: Confirmation = { jkt: null, x5t: null }

/**
 * `cnf` as this gateway reads it. A `cnf` that is not an object, or a `jkt` / `x5t#S256` that is
 * not a non-empty string, makes the token invalid: a binding we cannot read must not be ignored.
 */
export function confirmation(cnf: unknown): Confirmation {
  if (cnf === undefined) return NO_CNF
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) {
    throw new GatewayError('bad_cnf', 'cnf is not an object')
  }
  const c = cnf as Record<string, unknown>
  const member = (name: string): string | null => {
    const v = c[name]
    if (v === undefined) return null
    if (typeof v !== 'string' || v === '') {
      throw new GatewayError('bad_cnf', `cnf.${name} is not a non-empty string`)
    }
    return v
  }
  return { jkt: member('jkt'), x5t: member('x5t#S256') }
}

/** Does this policy ask for anything beyond what the token itself demands? */
export function needsCertificate(cnf: Confirmation, policy: BindingPolicy): boolean {
  return cnf.x5t !== null || policy.required.some((m) => m === 'mtls' || m === 'any')
}

/** Refuses what the binding rules refuse; returns how the request was bound. */
export function checkBinding(
  cnfClaim: unknown,
  facts: BindingFacts,
  policy: BindingPolicy,
): Binding {
  const cnf = confirmation(cnfClaim)
  let jkt: string | null = null
  let x5t: string | null = null
  if (cnf.jkt !== null) {
    // A DPoP-bound token sent as Bearer would let whoever stole it skip the proof (RFC 9449 §7.2).
    if (facts.scheme !== 'dpop') throw new GatewayError('dpop_downgrade', 'DPoP token as Bearer')
    if (facts.proofJkt !== cnf.jkt) {
      throw new GatewayError('dpop_jkt_mismatch', 'proof key is not the key the token is bound to')
    }
    jkt = cnf.jkt
  } else if (facts.scheme === 'dpop' && !policy.allowUnboundDpop) {
    // The DPoP scheme claims a binding this token does not have (RFC 9449 §7.1).
    throw new GatewayError('dpop_token_unbound', 'DPoP scheme with a token without cnf.jkt')
  }
  if (cnf.x5t !== null) {
    if (facts.certThumbprint === null) {
      throw new GatewayError('mtls_cert_missing', 'certificate-bound token without a certificate')
    }
    // RFC 8705 §3: the certificate presented must be the one the token was issued to.
    if (facts.certThumbprint !== cnf.x5t) {
      throw new GatewayError('mtls_cert_mismatch', 'client certificate is not the bound one')
    }
    x5t = cnf.x5t
  }
  for (const mode of policy.required) {
    const held =
      mode === 'none' ||
      (mode === 'dpop' && jkt !== null) ||
      (mode === 'mtls' && x5t !== null) ||
      (mode === 'any' && (jkt !== null || x5t !== null))
    if (!held) throw new GatewayError('binding_required', `binding ${mode} required`)
  }
  if (jkt === null && x5t === null) return UNBOUND
  return { kind: jkt !== null ? 'dpop' : 'mtls', jkt, x5t }
}
