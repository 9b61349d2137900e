/**
 * The client certificate's thumbprint for certificate-bound tokens (RFC 8705 §3.1): from
 * Cloudflare's `request.cf.tlsClientAuth`, or, only when a front proxy is trusted, from its
 * RFC 9440 `Client-Cert` header. Matching it against `cnf` is binding.ts's job.
 * No I/O. Returns null for anything that is not a verified certificate.
 */
import { base64url } from 'jose'
import type { MtlsConfig } from '../config'

/** The header a trusted proxy puts the client's certificate in (RFC 9440 §2.2). */
export const CLIENT_CERT_HEADER = 'client-cert'
/** RFC 9440 §2.3: its chain; stripped like the certificate when no proxy is trusted. */
export const CLIENT_CERT_CHAIN_HEADER = 'client-cert-chain'
/** Largest Client-Cert header read: a DER certificate with a long chain of names is ~4 KiB. */
export const MAX_CLIENT_CERT_BYTES = 16 * 1024

/** The `cf.tlsClientAuth` members this reads (Cloudflare's mTLS fields). */
interface TlsClientAuth {
  certPresented?: unknown
  certVerified?: unknown
  certRevoked?: unknown
  certFingerprintSHA256?: unknown
}

/**
 * base64url of the certificate's SHA-256 when Cloudflare saw one, verified it and does not list it
 * as revoked; null otherwise. Cloudflare gives the fingerprint in hex.
 */
export function cfThumbprint(tlsClientAuth: unknown): string | null {
  if (typeof tlsClientAuth !== 'object' || tlsClientAuth === null) return null
  const t = tlsClientAuth as TlsClientAuth
  if (t.certPresented !== '1' || t.certVerified !== 'SUCCESS' || t.certRevoked === '1') return null
  const hex = t.certFingerprintSHA256
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hex)) return null
  const bytes = new Uint8Array(32)
  for (let i = 0; i < 32; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return base64url.encode(bytes)
}

/** An RFC 8941 byte sequence `:base64:` holding one DER certificate; null when malformed. */
export async function clientCertThumbprint(header: string): Promise<string | null> {
  if (header.length > MAX_CLIENT_CERT_BYTES) return null
  const m = /^:([A-Za-z0-9+/]+={0,2}):$/.exec(header.trim())
  if (!m) return null
  let der: Uint8Array
  try {
    der = Uint8Array.from(atob(m[1]!), (c) => c.charCodeAt(0))
  } catch {
    return null
  }
  // A DER certificate is a SEQUENCE: anything else is not a certificate.
  if (der.length < 2 || der[0] !== 0x30) return null
  return base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', der)))
}

/** The thumbprint of the request's client certificate, from wherever this deployment trusts. */
export async function certificateThumbprint(
  request: Request,
  cfg: MtlsConfig,
): Promise<string | null> {
  if (cfg.trustClientCertHeader) {
    // Behind a TLS-terminating proxy, the cf object describes the proxy's connection, not the client's.
    const header = request.headers.get(CLIENT_CERT_HEADER)
    return header === null ? null : clientCertThumbprint(header)
  }
  return cfThumbprint((request as { cf?: { tlsClientAuth?: unknown } }).cf?.tlsClientAuth)
}
