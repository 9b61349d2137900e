/**
 * The DPoP scenario's material: one client key, one DPoP-bound access token (cnf.jkt, signed by
 * the bench issuer's ES256 key), and per run a file of fresh proofs for that token, one per
 * request (a new jti each): the Authorization value on the first line, then one proof per line,
 * as dpop-pool.lua and the autocannon child read it. Proofs are made just before each run: their iat must be inside the gateway's window.
 * Node only. Signs with node:crypto directly (ES256, raw r||s as JWS wants).
 */
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { signJwt } from './tokens.mjs'

/** The URL the proofs name (the DPoP workers set PUBLIC_BASE_URL to its origin). */
export const DPOP_PUBLIC_BASE = 'https://api.bench.test'

const b64url = (/** @type {string | Buffer} */ s) => Buffer.from(s).toString('base64url')

/** A client key pair and its RFC 7638 thumbprint. */
export function dpopClient() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const { crv, x, y } = /** @type {{ crv: string, x: string, y: string }} */ (
    publicKey.export({ format: 'jwk' })
  )
  const jwk = { kty: 'EC', crv, x, y }
  const jkt = b64url(
    createHash('sha256')
      .update(JSON.stringify({ crv, kty: 'EC', x, y }))
      .digest(),
  )
  return { privateKey, jwk, jkt }
}

/**
 * A DPoP-bound token of the bench issuer for `client`.
 * @param {import('./tokens.mjs').BenchKey} issuerKey the ES256 issuer key
 * @param {ReturnType<typeof dpopClient>} client
 * @param {Record<string, unknown>} claims the bench's usual claims
 */
export function dpopToken(issuerKey, client, claims) {
  return signJwt(issuerKey, { ...claims, cnf: { jkt: client.jkt } })
}

/**
 * Writes `count` proofs for GET `path` with `token` to `file`.
 * @param {ReturnType<typeof dpopClient>} client @param {string} token
 * @param {string} path @param {number} count @param {string} file
 */
export function writeProofs(client, token, path, count, file) {
  const header = b64url(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: client.jwk }))
  const ath = b64url(createHash('sha256').update(token).digest())
  const htu = DPOP_PUBLIC_BASE + path.replace(/[?#].*$/, '')
  const iat = Math.floor(Date.now() / 1000)
  const lines = [`DPoP ${token}`]
  for (let i = 0; i < count; i++) {
    const payload = b64url(JSON.stringify({ jti: randomUUID(), htm: 'GET', htu, iat, ath }))
    const input = `${header}.${payload}`
    const sig = sign('sha256', Buffer.from(input), {
      key: client.privateKey,
      dsaEncoding: 'ieee-p1363',
    })
    lines.push(`${input}.${sig.toString('base64url')}`)
  }
  writeFileSync(file, `${lines.join('\n')}\n`)
}
