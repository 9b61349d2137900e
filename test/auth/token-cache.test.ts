import { describe, expect, it, vi } from 'vitest'
import { EVICT_FRACTION } from '../../src/lib/bounded'
import { bearerToken } from '../../src/auth/credentials'
import { GatewayError } from '../../src/errors'
import {
  REJECTED_CACHE_MAX_ENTRIES,
  REJECTED_CACHE_TTL_S,
  RejectedTokenCache,
  VERIFIED_CACHE_MAX_ENTRIES,
  VERIFIED_CACHE_TTL_S,
  VerifiedTokenCache,
} from '../../src/auth/token-cache'
import type { Identity } from '../../src/auth/verify'
import { bearer, gatewayEnv, makeKey, mint, send, Stub } from '../helpers'

const T0 = 1_800_000_000_000

function identity(claims: Record<string, unknown>): Identity {
  return { issuer: 'https://i', sub: 's', kid: 'k', alg: 'ES256', claims, encodedClaims: '' }
}

describe('verified-token cache', () => {
  const cache = () => new VerifiedTokenCache(() => 30)

  it('serves a hit until min(exp, now + TTL)', () => {
    const c = cache()
    const far = identity({ exp: T0 / 1000 + 3600 })
    c.set('a', far, T0)
    expect(c.get('a', T0 + (VERIFIED_CACHE_TTL_S * 1000 - 1))).toBe(far)
    expect(c.get('a', T0 + VERIFIED_CACHE_TTL_S * 1000)).toBeUndefined()

    const soon = identity({ exp: T0 / 1000 + 5 })
    c.set('b', soon, T0)
    expect(c.get('b', T0 + 4_999)).toBe(soon)
    expect(c.get('b', T0 + 5_000)).toBeUndefined()
  })

  it('re-checks nbf on every hit', () => {
    const c = cache()
    // Accepted within the 30 s leeway; 31 s before nbf it must not be served.
    c.set('a', identity({ exp: T0 / 1000 + 60, nbf: T0 / 1000 + 20 }), T0)
    expect(c.get('a', T0 - 11_000)).toBeUndefined()
  })

  it('stays bounded under a flood of unique tokens, evicting the least recently used', () => {
    const c = cache()
    const id = identity({ exp: T0 / 1000 + 3600 })
    c.set('keep', id, T0)
    // One insertion per millisecond; 'keep' is used every second, so it stays recently used.
    for (let i = 0; i < VERIFIED_CACHE_MAX_ENTRIES + 500; i++) {
      if (i % 1000 === 0) expect(c.get('keep', T0 + i)).toBe(id)
      c.set(`t${i}`, id, T0 + i)
    }
    const end = T0 + VERIFIED_CACHE_MAX_ENTRIES + 500
    // Full, it drops its oldest 1% at once.
    expect(c.size).toBeLessThanOrEqual(VERIFIED_CACHE_MAX_ENTRIES)
    expect(c.size).toBeGreaterThan(VERIFIED_CACHE_MAX_ENTRIES * (1 - EVICT_FRACTION))
    expect(c.get('t0', end)).toBeUndefined()
    expect(c.get('keep', end)).toBe(id)
    expect(c.get(`t${VERIFIED_CACHE_MAX_ENTRIES + 499}`, end)).toBe(id)
  })

  it('refreshes recency at most once a second: a token used only within its first second is evicted first', () => {
    const c = cache()
    const id = identity({ exp: T0 / 1000 + 3600 })
    c.set('a', id, T0)
    c.set('b', id, T0)
    for (let i = 0; i < 200; i++) c.set(`f${i}`, id, T0)
    expect(c.get('a', T0 + 999)).toBe(id) // too soon to move 'a' behind the others
    expect(c.get('b', T0 + 1000)).toBe(id) // moved behind f0..f199
    // Fill up: the first eviction drops the oldest 1% (100 entries): 'a' and f0..f98.
    for (let i = 0; i < VERIFIED_CACHE_MAX_ENTRIES - 202 + 1; i++) c.set(`t${i}`, id, T0 + 1000)
    expect(c.get('a', T0 + 1000)).toBeUndefined()
    expect(c.get('f98', T0 + 1000)).toBeUndefined()
    expect(c.get('f99', T0 + 1000)).toBe(id)
    expect(c.get('b', T0 + 1000)).toBe(id)
  })

  it('cannot be reached by another spelling of a cached token: non-canonical base64url is refused', async () => {
    const key = await makeKey('ES256')
    const token = await mint(key)
    const sig = token.split('.')[2]!
    // 64-byte signature -> 86 chars, last char carries 2 bits + 4 spare bits.
    const last = sig[sig.length - 1]!
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const twin = alphabet[alphabet.indexOf(last) + 1]!
    const altered = token.slice(0, -1) + twin
    expect(bearerToken(`Bearer ${token}`)).toBe(token)
    expect(() => bearerToken(`Bearer ${altered}`)).toThrow(GatewayError)
  })

  it('end to end: the second request with a token is served from the cache, the log says so', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = gatewayEnv(stub)
    const token = await mint(key)
    const lines: Record<string, unknown>[] = []
    const spy = vi.spyOn(console, 'log').mockImplementation((line: string) => {
      lines.push(JSON.parse(line) as Record<string, unknown>)
    })
    try {
      expect((await send(gw, '/a', bearer(token))).status).toBe(200)
      expect((await send(gw, '/b', bearer(token))).status).toBe(200)
      expect((await send(gw, '/c', bearer(await mint(key, { sub: 'bob' })))).status).toBe(200)
    } finally {
      spy.mockRestore()
    }
    const cached = lines.filter((l) => l.event === 'request').map((l) => [l.sub, l.cached])
    expect(cached).toEqual([
      ['alice', false],
      ['alice', true],
      ['bob', false],
    ])
  })
})

describe('rejected-token cache', () => {
  const issuersA = {}
  const issuersB = {}

  it('reuses a permanent refusal for 30 s, only against the same issuers', () => {
    const c = new RejectedTokenCache()
    const err = new GatewayError('bad_signature')
    c.set('t', issuersA, err, T0)
    expect(c.get('t', issuersA, T0 + REJECTED_CACHE_TTL_S * 1000 - 1)).toMatchObject({
      code: 'bad_signature',
      detail: 'bad_signature (remembered)',
    })
    expect(c.get('t', issuersB, T0)).toBeUndefined()
    expect(c.get('t', issuersA, T0 + REJECTED_CACHE_TTL_S * 1000)).toBeUndefined()
  })

  it.each(['unknown_kid', 'jwks_unavailable', 'token_not_yet_valid'] as const)(
    'never remembers %s, which a key refresh or the clock can cure',
    (code) => {
      const c = new RejectedTokenCache()
      c.set('t', issuersA, new GatewayError(code), T0)
      expect(c.get('t', issuersA, T0)).toBeUndefined()
    },
  )

  it('stays bounded', () => {
    const c = new RejectedTokenCache()
    const err = new GatewayError('token_expired')
    for (let i = 0; i <= REJECTED_CACHE_MAX_ENTRIES; i++) c.set(`t${i}`, issuersA, err, T0)
    expect(c.get('t0', issuersA, T0)).toBeUndefined()
    expect(c.get(`t${REJECTED_CACHE_MAX_ENTRIES}`, issuersA, T0)?.code).toBe(err.code)
  })

  it('end to end: a token whose kid arrives with a rotation is accepted once the key is fetched', async () => {
    const stub = new Stub()
    const old = await makeKey('ES256')
    const rotated = await makeKey('ES256')
    await stub.publish(old)
    const gw = gatewayEnv(stub, { JWKS_REFRESH_COOLDOWN_SECONDS: '1' })
    expect((await send(gw, '/a', bearer(await mint(old)))).status).toBe(200)
    const early = await mint(rotated)
    expect((await send(gw, '/b', bearer(early))).status).toBe(401) // unknown kid, in cooldown
    await stub.publish(old, rotated)
    await new Promise((r) => setTimeout(r, 1100))
    expect((await send(gw, '/c', bearer(early))).status).toBe(200)
  })

  it('end to end: a forged token is refused again with the same reason, origin never called', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = gatewayEnv(stub)
    const forged = await mint({ ...(await makeKey('ES256')), kid: key.kid })
    const lines: Record<string, unknown>[] = []
    const spy = vi.spyOn(console, 'log').mockImplementation((line: string) => {
      lines.push(JSON.parse(line) as Record<string, unknown>)
    })
    try {
      for (let i = 0; i < 3; i++) expect((await send(gw, '/x', bearer(forged))).status).toBe(401)
    } finally {
      spy.mockRestore()
    }
    const refusals = lines.filter((l) => l.event === 'request')
    expect(refusals.map((l) => l.reason)).toEqual([
      'bad_signature',
      'bad_signature',
      'bad_signature',
    ])
    // The first was verified and failed; the next two were answered from the cache.
    expect(refusals.map((l) => String(l.detail).endsWith('(remembered)'))).toEqual([
      false,
      true,
      true,
    ])
    expect((await stub.calls()).origin).toHaveLength(0)
  })
})
