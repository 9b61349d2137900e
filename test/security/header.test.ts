/**
 * Adversarial catalogue, the JOSE header and the JSON inside the token: embedded key pointers
 * (`jwk`, `jku`, `x5u`, `x5c`) that must never be fetched or trusted, hostile `kid` values, `crit`
 * and `b64`, and duplicate member names. Every case: exact status, exact WWW-Authenticate, the
 * reason logged, origin not called, and how many JWKS fetches it cost.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { MAX_JSON_DEPTH, MAX_KID_LENGTH } from '../../src/auth/verify'
import { b64u, claims, makeKey, mint, signRaw, Stub, type TestKey } from '../helpers'
import { fixture, forwarded, invalidToken, withToken } from './harness'

let key: TestKey
let attacker: TestKey

beforeAll(async () => {
  key = await makeKey('ES256')
  attacker = await makeKey('ES256')
})

describe('embedded key pointers are never fetched or trusted', () => {
  // Signed by the attacker; the header points at the attacker's key in every way JOSE allows.
  const x5c = [btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(300))))]
  const cases: [string, (far: Stub) => Record<string, unknown>, string][] = [
    ['jwk (the attacker key, its kid)', () => ({ jwk: attacker.publicJwk }), 'unknown_kid'],
    ['jwk under the real kid', () => ({ jwk: attacker.publicJwk, kid: key.kid }), 'bad_signature'],
    ['jwk without any kid', () => ({ jwk: attacker.publicJwk, kid: undefined }), 'bad_signature'],
    ['jku to the attacker JWKS', (far) => ({ jku: far.jwksUrl }), 'unknown_kid'],
    ['jku under the real kid', (far) => ({ jku: far.jwksUrl, kid: key.kid }), 'bad_signature'],
    ['x5u to the attacker host', (far) => ({ x5u: `${far.base}/cert.pem` }), 'unknown_kid'],
    ['x5c with a certificate chain', () => ({ x5c }), 'unknown_kid'],
    [
      'all four at once',
      (far) => ({ jwk: attacker.publicJwk, jku: far.jwksUrl, x5u: far.jwksUrl, x5c }),
      'unknown_kid',
    ],
  ]
  it.each(cases)('%s: refused, and the attacker host sees no request', async (_, header, why) => {
    const f = await fixture([key])
    const far = new Stub()
    await far.publish(attacker)
    const token = await mint(attacker, {}, { header: header(far) })
    expect(await withToken(f, token)).toEqual(invalidToken(why, 1))
    const calls = await far.calls()
    expect([calls.jwksFetches, calls.discoveryFetches, calls.origin.length]).toEqual([0, 0, 0])
  })

  it('control: signed by the real key, the pointers change nothing', async () => {
    const f = await fixture([key])
    const far = new Stub()
    const token = await mint(key, {}, { header: { jwk: attacker.publicJwk, jku: far.jwksUrl } })
    expect(await withToken(f, token)).toEqual(forwarded())
    expect((await far.calls()).jwksFetches).toBe(0)
  })
})

describe('kid payloads', () => {
  // A kid is only ever a Map key; none of these reaches a path, a query or an object property.
  const lookedUp: [string, string][] = [
    ['path traversal', '../../../../etc/passwd'],
    ['encoded path traversal', '..%2F..%2F..%2Fjwks'],
    ['a URL', 'https://attacker.example/jwks.json'],
    ['SQL', "' OR '1'='1' --"],
    ['SQL with a statement', 'k"; DROP TABLE keys; --'],
    ['__proto__', '__proto__'],
    ['constructor', 'constructor'],
    ['toString', 'toString'],
    ['hasOwnProperty', 'hasOwnProperty'],
    ['the empty string', ''],
    ['CR LF', 'k\r\nx-injected: 1'],
    ['NUL', '\u0000'],
    ['the real kid with a trailing space', 'REAL '],
    ['the real kid in upper case', 'REAL_UPPER'],
    [`${MAX_KID_LENGTH} characters (the longest looked up)`, 'k'.repeat(MAX_KID_LENGTH)],
  ]
  it.each(lookedUp)('%s: no such key (one JWKS fetch, no refetch)', async (_, raw) => {
    const f = await fixture([key])
    const kid = raw === 'REAL ' ? `${key.kid} ` : raw === 'REAL_UPPER' ? key.kid.toUpperCase() : raw
    const token = await signRaw({ alg: 'ES256', kid, typ: 'JWT' }, claims(), key.privateKey)
    expect(await withToken(f, token)).toEqual(invalidToken('unknown_kid', 1))
  })

  const refused: [string, unknown, string][] = [
    [`${MAX_KID_LENGTH + 1} characters`, 'k'.repeat(MAX_KID_LENGTH + 1), 'malformed_token'],
    // The token is then over DEFAULT_MAX_TOKEN_BYTES: refused before it is even decoded.
    ['20 KB', 'k'.repeat(20 * 1024), 'token_too_large'],
    ['a number', 7, 'malformed_token'],
    ['zero', 0, 'malformed_token'],
    ['true', true, 'malformed_token'],
    ['null', null, 'malformed_token'],
    ['an array', ['KID'], 'malformed_token'],
    ['an object', { kid: 'x' }, 'malformed_token'],
    [
      'an object under __proto__',
      JSON.parse('{"__proto__": {"polluted": true}}'),
      'malformed_token',
    ],
  ]
  it.each(refused)('%s: refused from the header, no key fetched', async (_, kid, why) => {
    const f = await fixture([key])
    const token = await signRaw({ alg: 'ES256', kid, typ: 'JWT' }, claims(), key.privateKey)
    expect(await withToken(f, token)).toEqual(invalidToken(why, 0))
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})

describe('crit and b64', () => {
  const base = () => ({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
  // jose refuses crit problems after the key lookup (one fetch); b64 is refused from the header.
  const cases: [string, Record<string, unknown>, number][] = [
    ['an unknown critical extension', { crit: ['urn:x:must'], 'urn:x:must': true }, 1],
    ['a critical extension that is absent', { crit: ['urn:x:must'] }, 1],
    ['a registered name in crit (exp)', { crit: ['exp'], exp: 1 }, 1],
    ['a registered name in crit (alg)', { crit: ['alg'] }, 1],
    ['crit empty', { crit: [] }, 1],
    ['crit as a string', { crit: 'urn:x:must', 'urn:x:must': true }, 1],
    ['crit with a non-string', { crit: [1] }, 1],
    ['crit null', { crit: null }, 1],
    ['b64 false, listed in crit (RFC 7797)', { crit: ['b64'], b64: false }, 0],
    ['b64 true, listed in crit', { crit: ['b64'], b64: true }, 0],
    ['b64 false without crit', { b64: false }, 0],
    ['b64 true without crit', { b64: true }, 0],
  ]
  it.each(cases)('%s: refused', async (_, extra, jwks) => {
    const f = await fixture([key])
    const token = await signRaw({ ...base(), ...extra }, claims(), key.privateKey)
    expect(await withToken(f, token)).toEqual(invalidToken('malformed_token', jwks))
  })

  it('b64 false with the payload really unencoded: refused', async () => {
    const f = await fixture([key])
    const header = b64u(JSON.stringify({ ...base(), crit: ['b64'], b64: false }))
    const payload = JSON.stringify(claims())
    const sig = await crypto.subtle.sign(
      { name: 'ECDSA', hash: 'SHA-256' },
      key.privateKey as CryptoKey,
      new TextEncoder().encode(`${header}.${payload}`),
    )
    // RFC 7797 detached form: the payload is not in the token at all.
    const token = `${header}..${b64u(new Uint8Array(sig))}`
    expect(await withToken(f, token)).toEqual(invalidToken('malformed_token', 0))
  })

  it('control: an unknown extension that is not critical is ignored', async () => {
    const f = await fixture([key])
    const token = await signRaw({ ...base(), 'urn:x:must': true }, claims(), key.privateKey)
    expect(await withToken(f, token)).toEqual(forwarded())
  })
})

describe('duplicate member names (refused at any depth: parsers disagree on which one wins)', () => {
  const header = JSON.stringify({ alg: 'ES256', kid: 'KID', typ: 'JWT' })
  const payload = () => JSON.stringify(claims({ org: { id: 'o1', role: 'user' } }))
  const dup = (json: string, name: string, repeat: string) =>
    json.replace(`"${name}":`, `${repeat},"${name}":`)
  const cases: [string, () => [string, string]][] = [
    ['header alg (none, then ES256)', () => [dup(header, 'alg', '"alg":"none"'), payload()]],
    ['header kid', () => [dup(header, 'kid', '"kid":"other"'), payload()]],
    ['header typ', () => [dup(header, 'typ', '"typ":"JOSE"'), payload()]],
    ['payload sub', () => [header, dup(payload(), 'sub', '"sub":"mallory"')]],
    ['payload iss', () => [header, dup(payload(), 'iss', '"iss":"https://evil.example"')]],
    ['payload aud', () => [header, dup(payload(), 'aud', '"aud":"api://other"')]],
    ['payload exp (expired, then valid)', () => [header, dup(payload(), 'exp', '"exp":1')]],
    ['payload scope', () => [header, dup(payload(), 'sub', '"scope":"a","scope":"admin"')]],
    ['nested, in a claim object', () => [header, dup(payload(), 'role', '"role":"admin"')]],
    [
      'nested, in an object inside an array',
      () => [header, payload().replace('{', '{"groups":[{"n":"a","n":"b"}],')],
    ],
    [
      'spelled with an escape ("sub" and "\\u0073ub")',
      () => [header, dup(payload(), 'sub', '"\\u0073ub":"mallory"')],
    ],
    ['the same value twice', () => [header, dup(payload(), 'sub', '"sub":"alice"')]],
  ]
  it.each(cases)('%s: refused before any key is fetched', async (_, parts) => {
    const f = await fixture([key])
    const [h, p] = parts()
    const token = await signRaw(h.replace('KID', key.kid), p, key.privateKey)
    expect(await withToken(f, token)).toEqual(invalidToken('malformed_token', 0))
  })

  it(`nesting deeper than MAX_JSON_DEPTH (${MAX_JSON_DEPTH}): refused`, async () => {
    const f = await fixture([key])
    // The payload object itself is level 1.
    const deep = `${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`
    const p = JSON.stringify(claims({ deep: 'X' })).replace('"X"', deep)
    const token = await signRaw({ alg: 'ES256', kid: key.kid, typ: 'JWT' }, p, key.privateKey)
    expect(await withToken(f, token)).toEqual(invalidToken('malformed_token', 0))
  })

  const accepted: [string, () => string][] = [
    [
      'one name in two different objects',
      () => JSON.stringify(claims({ a: { id: 1 }, b: { id: 2 }, c: [{ id: 3 }, { id: 4 }] })),
    ],
    ['a member name repeated as a string value', () => JSON.stringify(claims({ x: 'sub' }))],
    ['names that differ only by case', () => JSON.stringify(claims({ Sub: 'x', SUB: 'y' }))],
    [
      `nesting of exactly MAX_JSON_DEPTH`,
      () =>
        JSON.stringify(claims({ deep: 'X' })).replace(
          '"X"',
          `${'['.repeat(MAX_JSON_DEPTH - 1)}${']'.repeat(MAX_JSON_DEPTH - 1)}`,
        ),
    ],
  ]
  it.each(accepted)('control: %s is accepted', async (_, p) => {
    const f = await fixture([key])
    const token = await signRaw({ alg: 'ES256', kid: key.kid, typ: 'JWT' }, p(), key.privateKey)
    expect(await withToken(f, token)).toEqual(forwarded())
  })
})
