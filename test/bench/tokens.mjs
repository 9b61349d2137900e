/**
 * Keys and tokens for the bench: one key pair per algorithm (distinct kids), a JWKS with the public
 * halves, and per algorithm a pool of distinct signed tokens (one per line in a file, so wrk's Lua
 * script and the autocannon child read the same thing). Minting 50k RS256 tokens takes seconds, so
 * keys and pools are cached under test/bench/out/ and reused while they stay valid for a day.
 * Node only. Signs with node:crypto directly: faster than jose for tens of thousands of tokens.
 */
import { generateKeyPairSync, createPrivateKey, randomBytes, sign } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'

const signAsync = promisify(sign)

export const ALGORITHMS = /** @type {const} */ (['RS256', 'ES256', 'EdDSA'])
/** @typedef {(typeof ALGORITHMS)[number]} Alg */

export const ISSUER = 'https://issuer.bench.test'
export const AUDIENCE = 'api://bench'

/** The opaque scenario's token (RFC 6750 b64token, not JWS-shaped), introspected once, then cached. */
export const OPAQUE_TOKEN = 'bench_opaque_token_0123456789abcdefghijklmnopqrstuvwxyz'

/**
 * The gateway's vars for the opaque scenario: the bench issuer in structured mode, introspecting
 * at `${origin}/introspect` (origin.mjs answers it). @param {string} origin
 */
export function introspectionVars(origin) {
  return {
    GATEWAY: JSON.stringify({
      issuers: [
        {
          issuer: ISSUER,
          audiences: [AUDIENCE],
          jwksUrl: `${origin}/jwks`,
          introspection: {
            endpoint: `${origin}/introspect`,
            clientId: 'bench-gateway',
            clientSecret: 'INTROSPECTION_SECRET',
          },
        },
      ],
      routes: [{ path: '/', origin }],
    }),
    INTROSPECTION_SECRET: 'bench-introspection-secret-0123456789',
  }
}
/** Tokens live a week; a cache with less than a day left is re-minted. */
export const TOKEN_LIFETIME_S = 7 * 86_400
export const MIN_REMAINING_S = 86_400
/** Signatures in flight at once: enough to keep libuv's pool (and both cores) busy. */
const SIGN_BATCH = 256

/** @type {Record<Alg, { type: string, options: object, hash: string | null, dsa?: 'ieee-p1363' }>} */
const KEY_SPECS = {
  RS256: { type: 'rsa', options: { modulusLength: 2048 }, hash: 'sha256' },
  ES256: { type: 'ec', options: { namedCurve: 'P-256' }, hash: 'sha256', dsa: 'ieee-p1363' },
  EdDSA: { type: 'ed25519', options: {}, hash: null },
}

/** @param {string | Buffer} s */
const b64url = (s) => Buffer.from(s).toString('base64url')

/**
 * @typedef {{ alg: Alg, kid: string, privateJwk: import('node:crypto').JsonWebKey,
 *   publicJwk: Record<string, unknown> }} BenchKey
 */

/** @param {Alg} alg @param {string} kid @returns {BenchKey} */
function newKey(alg, kid) {
  const spec = KEY_SPECS[alg]
  /** @type {{ privateKey: import('node:crypto').KeyObject, publicKey: import('node:crypto').KeyObject }} */
  const { privateKey, publicKey } = /** @type {any} */ (
    generateKeyPairSync(/** @type {any} */ (spec.type), /** @type {any} */ (spec.options))
  )
  return {
    alg,
    kid,
    privateJwk: privateKey.export({ format: 'jwk' }),
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
  }
}

/**
 * Sign one JWT.
 * @param {BenchKey} key @param {Record<string, unknown>} payload @param {string} [kid]
 */
export async function signJwt(key, payload, kid = key.kid) {
  const spec = KEY_SPECS[key.alg]
  const input = `${b64url(JSON.stringify({ alg: key.alg, kid, typ: 'JWT' }))}.${b64url(JSON.stringify(payload))}`
  const pk = createPrivateKey({ key: /** @type {any} */ (key.privateJwk), format: 'jwk' })
  const sig = await signAsync(
    spec.hash,
    Buffer.from(input),
    spec.dsa ? { key: pk, dsaEncoding: spec.dsa } : pk,
  )
  return `${input}.${sig.toString('base64url')}`
}

/** Claims shaped like a real access token (a few hundred bytes of payload). */
function claims(alg, i, now, exp) {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: `user-${i % 5000}`,
    client_id: 'bench-client',
    scope: 'openid profile orders:read orders:write',
    iat: now - 60,
    nbf: now - 60,
    exp,
    jti: `${alg}-${i}-${randomBytes(6).toString('hex')}`,
  }
}

/**
 * @typedef {{ keys: BenchKey[], strangers: BenchKey[], jwks: { keys: object[] }, exp: number,
 *   valid: Record<Alg, string>, invalid: Record<Alg, string>, revoked: Record<Alg, { token: string, jti: string }>,
 *   pools: Record<Alg, { file: string, size: number }> }} TokenSet
 */

/**
 * Keys, JWKS and tokens in `dir`, minting only what the cache lacks.
 * @param {string} dir @param {number} poolSize @param {(msg: string) => void} say
 * @returns {Promise<TokenSet>}
 */
export async function prepareTokens(dir, poolSize, say) {
  mkdirSync(dir, { recursive: true })
  const now = Math.floor(Date.now() / 1000)
  const metaFile = join(dir, 'tokens.json')
  /** @type {any} */
  let meta = existsSync(metaFile) ? JSON.parse(readFileSync(metaFile, 'utf8')) : null
  if (!meta || meta.iss !== ISSUER || meta.aud !== AUDIENCE || meta.exp - now < MIN_REMAINING_S) {
    const exp = now + TOKEN_LIFETIME_S
    const keys = ALGORITHMS.map((alg) => newKey(alg, `bench-${alg.toLowerCase()}-1`))
    // Same kid, different key: a token that parses, names a known key, and fails the signature.
    const strangers = ALGORITHMS.map((alg) => newKey(alg, `bench-${alg.toLowerCase()}-1`))
    meta = {
      iss: ISSUER,
      aud: AUDIENCE,
      exp,
      now,
      keys,
      strangers,
      valid: {},
      invalid: {},
      revoked: {},
      pools: {},
    }
    for (const [i, key] of keys.entries()) {
      meta.valid[key.alg] = await signJwt(key, claims(key.alg, 0, now, exp))
      meta.invalid[key.alg] = await signJwt(strangers[i], claims(key.alg, 1, now, exp))
      const revokedClaims = {
        ...claims(key.alg, 2, now, exp),
        jti: `revoked-${key.alg}-${randomBytes(6).toString('hex')}`,
      }
      meta.revoked[key.alg] = { token: await signJwt(key, revokedClaims), jti: revokedClaims.jti }
    }
  }
  for (const key of meta.keys) {
    const name = `pool-${key.alg}.txt`
    const have = meta.pools[key.alg]
    if (have && have.size >= poolSize && existsSync(join(dir, name))) continue
    say(`minting ${poolSize} unique ${key.alg} tokens (cached in ${dir} for next time)`)
    const lines = []
    for (let i = 0; i < poolSize; i += SIGN_BATCH) {
      const batch = []
      for (let j = i; j < Math.min(poolSize, i + SIGN_BATCH); j++) {
        batch.push(signJwt(key, claims(key.alg, 1000 + j, meta.now, meta.exp)))
      }
      lines.push(...(await Promise.all(batch)))
    }
    writeFileSync(join(dir, name), `${lines.join('\n')}\n`)
    meta.pools[key.alg] = { name, size: poolSize }
  }
  writeFileSync(metaFile, JSON.stringify(meta))
  return {
    keys: meta.keys,
    strangers: meta.strangers,
    jwks: { keys: meta.keys.map((/** @type {BenchKey} */ k) => k.publicJwk) },
    exp: meta.exp,
    valid: meta.valid,
    invalid: meta.invalid,
    revoked: meta.revoked,
    pools: /** @type {TokenSet['pools']} */ (
      Object.fromEntries(
        Object.entries(meta.pools).map(([alg, p]) => [
          alg,
          { file: join(dir, p.name), size: p.size },
        ]),
      )
    ),
  }
}
