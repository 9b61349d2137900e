/**
 * DPoP and mTLS test material made at test time: client key pairs, proofs made by the `dpop`
 * library (a maintained client implementation) and by hand for the malformed cases, and client
 * certificate fingerprints.
 */
import * as dpop from 'dpop'
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose'
import { expect } from 'vitest'
import { b64u, captureLogs, send, signRaw, type GatewayEnv, type OriginCall } from '../helpers'

export const GW = 'https://gw.test'

export interface ClientKey {
  readonly pair: dpop.KeyPair
  readonly jwk: JWK
  readonly jkt: string
}

export async function clientKey(alg: dpop.JWSAlgorithm = 'ES256'): Promise<ClientKey> {
  const pair = await dpop.generateKeyPair(alg)
  const jwk = await exportJWK(pair.publicKey)
  return { pair, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') }
}

/** A proof made by the `dpop` package for this request. */
export function proof(
  key: ClientKey,
  url: string,
  method = 'GET',
  token?: string,
  nonce?: string,
): Promise<string> {
  return dpop.generateProof(key.pair, url, method, nonce, token)
}

export async function ath(token: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token))
  return b64u(new Uint8Array(digest))
}

/**
 * A proof built by hand: every header and claim can be overridden (undefined removes it), and it
 * can be signed by another key than the one it names.
 */
export async function handProof(
  key: ClientKey,
  opts: {
    url: string
    method?: string
    token: string
    header?: Record<string, unknown>
    claims?: Record<string, unknown>
    signer?: CryptoKey
  },
): Promise<string> {
  const header: Record<string, unknown> = { typ: 'dpop+jwt', alg: 'ES256', jwk: key.jwk }
  for (const [k, v] of Object.entries(opts.header ?? {})) {
    if (v === undefined) delete header[k]
    else header[k] = v
  }
  const claims: Record<string, unknown> = {
    jti: crypto.randomUUID(),
    htm: opts.method ?? 'GET',
    htu: opts.url,
    iat: Math.floor(Date.now() / 1000),
    ath: await ath(opts.token),
  }
  for (const [k, v] of Object.entries(opts.claims ?? {})) {
    if (v === undefined) delete claims[k]
    else claims[k] = v
  }
  return signRaw(header, claims, opts.signer ?? key.pair.privateKey, 'ES256')
}

/** DPoP-scheme request headers for a token and a proof. */
export function dpopInit(token: string, proofJwt: string, extra: RequestInit = {}): RequestInit {
  return { ...extra, headers: { authorization: `DPoP ${token}`, dpop: proofJwt } }
}

/** A client certificate made now: DER-shaped random bytes, its SHA-256 in hex and base64url. */
export async function clientCert(): Promise<{ der: Uint8Array; hex: string; x5t: string }> {
  const body = crypto.getRandomValues(new Uint8Array(300))
  // SEQUENCE, long-form length (2 bytes): the shape of every DER certificate.
  const der = new Uint8Array([0x30, 0x82, 0x01, 0x2c, ...body])
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', der))
  const hex = [...digest].map((b) => b.toString(16).padStart(2, '0')).join('')
  return { der, hex, x5t: b64u(digest) }
}

/** Cloudflare's tlsClientAuth for a verified client certificate with this fingerprint. */
export function tlsClientAuth(hex: string, overrides: Record<string, string> = {}) {
  return {
    certPresented: '1',
    certVerified: 'SUCCESS',
    certRevoked: '0',
    certFingerprintSHA256: hex,
    certFingerprintSHA1: '',
    certIssuerDN: 'CN=Test CA',
    certSubjectDN: 'CN=client',
    ...overrides,
  }
}

/** An RFC 9440 Client-Cert header value. */
export function clientCertHeader(der: Uint8Array): string {
  let bin = ''
  for (const b of der) bin += String.fromCharCode(b)
  return `:${btoa(bin)}:`
}

/** The origin's record of the request; fails with the gateway's answer if it was not forwarded. */
export async function forwarded(res: Response): Promise<OriginCall> {
  const text = await res.text()
  expect(res.status, text).toBe(200)
  return JSON.parse(text) as OriginCall
}

/** Send through the worker; the response and the reason code its log line names. */
export async function sendLogged(
  gw: GatewayEnv,
  input: string | Request,
  init?: RequestInit,
): Promise<{ res: Response; reason: unknown }> {
  const logs = captureLogs()
  try {
    const res = await send(gw, input, init)
    return { res, reason: logs.lines.find((l) => l.event === 'request')?.reason }
  } finally {
    logs.restore()
  }
}
