import { env } from 'cloudflare:test'
import { describe, expect, it, vi } from 'vitest'
import { GatewayError } from '../../src/errors'
import { gatewayFor } from '../../src/gateway'
import { RevocationList, revocationId, type RevocationRecord } from '../../src/revocation/list'
import { KvStore } from '../../src/revocation/store'
import {
  AUDIENCE,
  bearer,
  body,
  captureLogs,
  freshKv,
  gatewayEnv,
  makeKey,
  mint,
  send,
  sleep,
  Stub,
  type GatewayEnv,
  type TestKey,
} from '../helpers'

const ADMIN_TOKEN = 'admin-secret-0123456789abcdef0123456789'
const KV = (env as unknown as { REVOCATIONS: KVNamespace }).REVOCATIONS

interface Setup {
  stub: Stub
  key: TestKey
  gw: GatewayEnv
  iss: string
  token: (claims?: Record<string, unknown>) => Promise<string>
}

/** Each test gets its own issuer, so cut-offs in the shared KV never touch another test. */
async function setup(vars: GatewayEnv = {}): Promise<Setup> {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  const iss = `https://issuer.test/${stub.id}`
  const gw = gatewayEnv(stub, { JWT_ISSUER: iss, ADMIN_TOKEN, ...vars })
  const token = (claims: Record<string, unknown> = {}) =>
    mint(key, { iss, jti: crypto.randomUUID(), ...claims })
  return { stub, key, gw, iss, token }
}

function admin(
  gw: GatewayEnv,
  method: string,
  path: string,
  payload?: unknown,
  auth = ADMIN_TOKEN,
) {
  return send(gw, `/_gateway${path}`, {
    method,
    headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
    body:
      payload === undefined
        ? undefined
        : typeof payload === 'string'
          ? payload
          : JSON.stringify(payload),
  })
}

async function sha256hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('')
}

const now = () => Math.floor(Date.now() / 1000)

describe('revoking one token by jti', () => {
  it('rejects the revoked token at once on this isolate and keeps others', async () => {
    const s = await setup()
    const revoked = await s.token({ jti: 'to-revoke' })
    const other = await s.token({ jti: 'keep' })
    expect((await send(s.gw, '/x', bearer(revoked))).status).toBe(200)

    const res = await admin(s.gw, 'POST', '/revocations', { jti: 'to-revoke' })
    expect(res.status).toBe(201)
    const record = await body(res)
    expect(record).toMatchObject({ kind: 'jti', iss: s.iss, jti: 'to-revoke' })
    expect(record.id).toBe(`jti:${await sha256hex(`${s.iss}\nto-revoke`)}`)

    const after = await send(s.gw, '/x', bearer(revoked))
    expect(after.status).toBe(401)
    expect(after.headers.get('www-authenticate')).toBe(
      'Bearer realm="gateway", error="invalid_token", error_description="The access token is invalid"',
    )
    expect(JSON.stringify(await body(after))).not.toContain('to-revoke')
    expect((await send(s.gw, '/x', bearer(other))).status).toBe(200)
    // Two forwarded requests only: the rejected one never reached the origin.
    expect((await s.stub.calls()).origin).toHaveLength(2)
  })

  it('stores the record with an expiry of exp - now (at least 60 s, KV refuses less)', async () => {
    const s = await setup()
    const far = now() + 3600
    await admin(s.gw, 'POST', '/revocations', { jti: 'ttl-far', exp: far })
    await admin(s.gw, 'POST', '/revocations', { jti: 'ttl-near', exp: now() + 5 })
    await admin(s.gw, 'POST', '/revocations', { jti: 'ttl-none' })
    const listed = await KV.list({ prefix: 'jti:' })
    const exp = (jti: string) =>
      listed.keys.find((k) => (k.metadata as { jti?: string } | undefined)?.jti === jti)
    expect(exp('ttl-far')?.expiration).toBe(far)
    const near = exp('ttl-near')?.expiration ?? 0
    expect(near).toBeGreaterThanOrEqual(now() + 59)
    expect(near).toBeLessThanOrEqual(now() + 61)
    // No exp given: kept until deleted, since we cannot know when the token dies.
    expect(exp('ttl-none')).toBeDefined()
    expect(exp('ttl-none')?.expiration).toBeUndefined()
  })

  it('scopes jti by issuer: the same jti of another issuer is untouched', async () => {
    const a = await setup()
    const b = await setup({ REVOCATIONS: a.gw.REVOCATIONS })
    await admin(a.gw, 'POST', '/revocations', { jti: 'shared-jti' })
    expect((await send(a.gw, '/x', bearer(await a.token({ jti: 'shared-jti' })))).status).toBe(401)
    expect((await send(b.gw, '/x', bearer(await b.token({ jti: 'shared-jti' })))).status).toBe(200)
  })

  it('lets a revocation written elsewhere (wrangler kv key put) take effect', async () => {
    const s = await setup({ REVOCATION_CACHE_SECONDS: '0' })
    const token = await s.token({ jti: 'by-hand' })
    expect((await send(s.gw, '/x', bearer(token))).status).toBe(200)
    await KV.put(`jti:${await sha256hex(`${s.iss}\nby-hand`)}`, '{}')
    expect((await send(s.gw, '/x', bearer(token))).status).toBe(401)
  })
})

describe('cut-offs by subject and for everyone', () => {
  it('revokes a subject at iat == before and allows iat == before + 1', async () => {
    const s = await setup()
    const T = now() - 100
    const res = await admin(s.gw, 'POST', '/revocations', { sub: 'alice', before: T })
    expect(res.status).toBe(201)
    expect(await body(res)).toMatchObject({ kind: 'sub', sub: 'alice', before: T })
    expect((await send(s.gw, '/x', bearer(await s.token({ iat: T })))).status).toBe(401)
    expect((await send(s.gw, '/x', bearer(await s.token({ iat: T - 50 })))).status).toBe(401)
    expect((await send(s.gw, '/x', bearer(await s.token({ iat: T + 1 })))).status).toBe(200)
    // Another subject of the same issuer is untouched.
    expect((await send(s.gw, '/x', bearer(await s.token({ sub: 'bob', iat: T })))).status).toBe(200)
  })

  it('revokes every token of the issuer issued at or before the cut-off', async () => {
    const s = await setup()
    const T = now() - 100
    expect((await admin(s.gw, 'POST', '/revocations', { all: true, before: T })).status).toBe(201)
    expect((await send(s.gw, '/x', bearer(await s.token({ sub: 'x', iat: T })))).status).toBe(401)
    expect((await send(s.gw, '/x', bearer(await s.token({ sub: 'y', iat: T + 1 })))).status).toBe(
      200,
    )
  })

  it('defaults before to now, so every token issued so far is revoked', async () => {
    const s = await setup()
    const token = await s.token()
    expect((await admin(s.gw, 'POST', '/revocations', { sub: 'alice' })).status).toBe(201)
    expect((await send(s.gw, '/x', bearer(token))).status).toBe(401)
  })

  it('revokes a token without iat whenever a cut-off applies to it', async () => {
    const s = await setup()
    const noIat = await s.token({ iat: undefined })
    expect((await send(s.gw, '/x', bearer(noIat))).status).toBe(200)
    await admin(s.gw, 'POST', '/revocations', { sub: 'alice', before: now() - 1000 })
    expect((await send(s.gw, '/x', bearer(noIat))).status).toBe(401)
  })

  it('never moves a cut-off earlier through POST', async () => {
    const s = await setup()
    const T = now() - 10
    await admin(s.gw, 'POST', '/revocations', { sub: 'alice', before: T })
    const res = await admin(s.gw, 'POST', '/revocations', { sub: 'alice', before: T - 1000 })
    expect(await body(res)).toMatchObject({ before: T })
    expect((await send(s.gw, '/x', bearer(await s.token({ iat: T - 5 })))).status).toBe(401)
  })
})

describe('revoking an IdP session by sid', () => {
  /** A sid record written through the list, as the back-channel logout receiver writes it. */
  async function revokeSid(s: Setup, sid: string, exp = now() + 3600) {
    const built = gatewayFor(s.gw)
    if (!built.ok || !built.gateway.revocations) throw new Error('no revocation list')
    const record: RevocationRecord = {
      id: await revocationId('sid', s.iss, sid),
      kind: 'sid',
      iss: s.iss,
      sid,
      exp,
      createdAt: now(),
      source: 'backchannel-logout',
    }
    await built.gateway.revocations.put(record, Date.now())
    return record
  }

  it('revokes every token carrying the sid, whatever its iat, and only those', async () => {
    const s = await setup()
    const before = await s.token({ sid: 'session-1' })
    expect((await send(s.gw, '/x', bearer(before))).status).toBe(200)
    const record = await revokeSid(s, 'session-1')
    expect(record.id).toBe(`sid:${await sha256hex(`${s.iss}\nsession-1`)}`)
    const refused = await send(s.gw, '/x', bearer(before))
    expect(refused.status).toBe(401)
    expect(refused.headers.get('www-authenticate')).toContain('error="invalid_token"')
    // A token of that session minted after the logout is still of the ended session.
    const later = await s.token({ sid: 'session-1', iat: now() + 5 })
    expect((await send(s.gw, '/x', bearer(later))).status).toBe(401)
    expect((await send(s.gw, '/x', bearer(await s.token({ sid: 'session-2' })))).status).toBe(200)
    expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(200)
    // A sid that is not a string names no session.
    expect((await send(s.gw, '/x', bearer(await s.token({ sid: ['session-1'] })))).status).toBe(200)
  })

  it('scopes sid by issuer and expires the record at its exp', async () => {
    const a = await setup()
    const b = await setup({ REVOCATIONS: a.gw.REVOCATIONS })
    const exp = now() + 7200
    await revokeSid(a, 'shared-sid', exp)
    expect((await send(b.gw, '/x', bearer(await b.token({ sid: 'shared-sid' })))).status).toBe(200)
    const listed = await KV.list({ prefix: 'sid:' })
    const id = await revocationId('sid', a.iss, 'shared-sid')
    const key = listed.keys.find((k) => k.name === id)
    expect(key?.expiration).toBe(exp)
  })

  it('enforces a sid record written by hand, through the snapshot and through a KV get', async () => {
    const s = await setup()
    await KV.put(`sid:${await sha256hex(`${s.iss}\nby-hand`)}`, '{}')
    // The first request reads KV by id and loads the snapshot; the second is judged by it.
    expect((await send(s.gw, '/x', bearer(await s.token({ sid: 'by-hand' })))).status).toBe(401)
    expect((await send(s.gw, '/x', bearer(await s.token({ sid: 'by-hand' })))).status).toBe(401)
    expect((await send(s.gw, '/x', bearer(await s.token({ sid: 'other' })))).status).toBe(200)
  })

  it('is listed with its source and can be deleted through the admin API', async () => {
    const s = await setup()
    const token = await s.token({ sid: 'listed' })
    const record = await revokeSid(s, 'listed')
    const listed = await body(await admin(s.gw, 'GET', '/revocations?limit=1000'))
    expect(listed.records).toContainEqual(record)
    expect((await admin(s.gw, 'DELETE', `/revocations/${record.id}`)).status).toBe(204)
    expect((await send(s.gw, '/x', bearer(token))).status).toBe(200)
  })
})

describe('the source of a record', () => {
  it('names the admin API and self-service logout', async () => {
    const s = await setup()
    const posted = await body(await admin(s.gw, 'POST', '/revocations', { sub: 'src' }))
    expect(posted.source).toBe('admin')
    const token = await s.token({ jti: 'self' })
    expect(
      (await send(s.gw, '/_gateway/logout', { method: 'POST', ...bearer(token) })).status,
    ).toBe(204)
    const stored = await KV.get<RevocationRecord>(await revocationId('jti', s.iss, 'self'), 'json')
    expect(stored?.source).toBe('logout')
  })
})

describe('admin API', () => {
  it('lists, un-revokes and accepts the token again', async () => {
    const s = await setup()
    const token = await s.token({ jti: 'undo-me' })
    const created = await body(await admin(s.gw, 'POST', '/revocations', { jti: 'undo-me' }))
    expect((await send(s.gw, '/x', bearer(token))).status).toBe(401)

    const listed = await body(await admin(s.gw, 'GET', '/revocations?limit=1000'))
    expect(listed.records).toContainEqual(created)

    const del = await admin(s.gw, 'DELETE', `/revocations/${created.id}`)
    expect(del.status).toBe(204)
    expect((await send(s.gw, '/x', bearer(token))).status).toBe(200)
    expect((await admin(s.gw, 'DELETE', `/revocations/${created.id}`)).status).toBe(404)
  })

  it('paginates the list with a cursor', async () => {
    const s = await setup({ REVOCATIONS: await freshKv() })
    for (const jti of ['p1', 'p2', 'p3']) await admin(s.gw, 'POST', '/revocations', { jti })
    const first = await body(await admin(s.gw, 'GET', '/revocations?limit=2'))
    expect(first.records).toHaveLength(2)
    expect(typeof first.cursor).toBe('string')
    const second = await body(
      await admin(s.gw, 'GET', `/revocations?limit=2&cursor=${first.cursor}`),
    )
    expect(second.records).toHaveLength(1)
    expect(second.cursor).toBeNull()
  })

  it.each([
    ['missing', undefined],
    ['wrong', 'admin-secret-0123456789abcdef012345678X'],
    ['another scheme', null],
  ])('refuses a %s admin token with 401 and writes nothing', async (_, auth) => {
    const s = await setup()
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (auth) headers.authorization = `Bearer ${auth}`
    if (auth === null) headers.authorization = `Basic ${btoa(`admin:${ADMIN_TOKEN}`)}`
    const res = await send(s.gw, '/_gateway/revocations', {
      method: 'POST',
      headers,
      body: JSON.stringify({ jti: 'never-written' }),
    })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"')
    expect((await send(s.gw, '/x', bearer(await s.token({ jti: 'never-written' })))).status).toBe(
      200,
    )
    expect((await s.stub.calls()).origin.every((c) => !c.url.includes('_gateway'))).toBe(true)
  })

  it.each([
    ['not JSON', '{"jti": '],
    ['an array', '[]'],
    ['unknown field', { jti: 'a', reason: 'x' }],
    ['no kind', { iss: 'x' }],
    ['two kinds', { jti: 'a', sub: 'b' }],
    ['jti of wrong type', { jti: 42 }],
    ['empty jti', { jti: '' }],
    ['600-byte jti', { jti: 'j'.repeat(600) }],
    ['exp as string', { jti: 'a', exp: '123' }],
    ['fractional before', { sub: 'a', before: 1.5 }],
    ['before far in the future', { sub: 'a', before: Math.floor(Date.now() / 1000) + 86_400 }],
    ['all false', { all: false }],
    ['unknown issuer', { sub: 'a', iss: 'https://elsewhere.test' }],
    ['before with jti', { jti: 'a', before: 1 }],
  ])('answers 400 for %s and writes nothing', async (_, payload) => {
    const s = await setup({ REVOCATIONS: await freshKv() })
    const res = await admin(s.gw, 'POST', '/revocations', payload)
    expect(res.status).toBe(400)
    const b = await body(res)
    expect(b.error).toBe('invalid_request')
    expect(typeof b.error_description).toBe('string')
    expect((await (s.gw.REVOCATIONS as KVNamespace).list()).keys).toHaveLength(0)
  })

  it('answers 404 for the admin API when no ADMIN_TOKEN is set, and never calls the origin', async () => {
    const s = await setup({ ADMIN_TOKEN: undefined })
    const res = await admin(s.gw, 'POST', '/revocations', { jti: 'a' })
    expect(res.status).toBe(404)
    expect((await send(s.gw, '/_gateway/anything')).status).toBe(404)
    expect((await send(s.gw, '/%5Fgateway/revocations')).status).toBe(404)
    expect((await s.stub.calls()).origin).toHaveLength(0)
  })

  it('refuses to start with a weak ADMIN_TOKEN, naming it', async () => {
    const s = await setup({ ADMIN_TOKEN: 'short' })
    const res = await send(s.gw, '/x')
    expect(res.status).toBe(500)
    expect((await body(res)).error_description).toContain('ADMIN_TOKEN')
  })
})

describe('self-service logout', () => {
  it('revokes the caller’s own token: 204, then the same token is refused', async () => {
    const s = await setup({ ADMIN_TOKEN: undefined })
    const token = await s.token()
    const out = await send(s.gw, '/_gateway/logout', { method: 'POST', ...bearer(token) })
    expect(out.status).toBe(204)
    const again = await send(s.gw, '/x', bearer(token))
    expect(again.status).toBe(401)
    expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(200)
  })

  it('needs a valid token', async () => {
    const s = await setup()
    expect((await send(s.gw, '/_gateway/logout', { method: 'POST' })).status).toBe(401)
    const other = await makeKey('ES256')
    const forged = await mint(other, { iss: s.iss, aud: AUDIENCE, jti: 'x' })
    expect(
      (await send(s.gw, '/_gateway/logout', { method: 'POST', ...bearer(forged) })).status,
    ).toBe(401)
  })
})

describe('when KV fails', () => {
  function broken(kv: KVNamespace): KVNamespace {
    return new Proxy(kv, {
      get(target, prop) {
        if (prop === 'get') return () => Promise.reject(new Error('KV is down'))
        return Reflect.get(target, prop)
      },
    })
  }

  it('fails closed with 503 and Retry-After by default; the origin is not called', async () => {
    const s = await setup({ REVOCATIONS: broken(KV) })
    const res = await send(s.gw, '/x', bearer(await s.token()))
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(await body(res)).toEqual({
      error: 'temporarily_unavailable',
      error_description: 'The revocation list could not be checked; retry shortly',
    })
    expect((await s.stub.calls()).origin).toHaveLength(0)
  })

  it('fails closed when KV is slower than REVOCATION_TIMEOUT_MS', async () => {
    const slow = new Proxy(KV, {
      get(target, prop) {
        if (prop === 'get') return () => new Promise((r) => setTimeout(() => r(null), 500))
        return Reflect.get(target, prop)
      },
    })
    const s = await setup({ REVOCATIONS: slow, REVOCATION_TIMEOUT_MS: '50' })
    expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(503)
  })

  it('lets verified tokens through with REVOCATION_FAIL_OPEN=true', async () => {
    const s = await setup({ REVOCATIONS: broken(KV), REVOCATION_FAIL_OPEN: 'true' })
    expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(200)
    // Fail-open never lets an unverified token through.
    const forged = await mint(await makeKey('ES256'), { iss: s.iss })
    expect((await send(s.gw, '/x', bearer(forged))).status).toBe(401)
  })
})

describe('the snapshot of the list', () => {
  /** A fresh KV view that counts the reads the gateway makes. */
  async function counted(fail: { list?: boolean } = {}) {
    const kv = await freshKv()
    const calls = { get: 0, list: 0 }
    const view = {
      get: (k: string, o?: unknown) => (calls.get++, kv.get(k, o as 'text')),
      put: kv.put.bind(kv),
      delete: kv.delete.bind(kv),
      list: (o?: KVNamespaceListOptions) => {
        calls.list++
        return fail.list ? Promise.reject(new Error('list is down')) : kv.list(o)
      },
    } as unknown as KVNamespace
    return { kv, view, calls }
  }

  it('checks new tokens with no KV read once the first request has loaded it', async () => {
    const { view, calls } = await counted()
    const s = await setup({ REVOCATIONS: view })
    await admin(s.gw, 'POST', '/revocations', { jti: 'listed' })
    expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(200)
    expect(calls.list).toBe(1)
    const gets = calls.get
    for (let i = 0; i < 5; i++) {
      expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(200)
    }
    expect(calls.get).toBe(gets)
    expect(calls.list).toBe(1)
  })

  it('picks up another isolate’s revocation in the background, then refuses with no KV read', async () => {
    const { view, calls } = await counted()
    const a = await setup({ REVOCATIONS: view, REVOCATION_CACHE_SECONDS: '1' })
    // b is another isolate: same KV, same issuer, its own caches.
    const b = { ...a, gw: { ...a.gw } }
    const token = await a.token({ jti: 'elsewhere' })
    expect((await send(a.gw, '/x', bearer(token))).status).toBe(200)
    await admin(b.gw, 'POST', '/revocations', { jti: 'elsewhere' })
    // Past half the cache time a request starts a refresh after its response.
    await sleep(600)
    await send(a.gw, '/x', bearer(await a.token()))
    const gets = calls.get
    expect((await send(a.gw, '/x', bearer(token))).status).toBe(401)
    expect(calls.get).toBe(gets)
  })

  it('enforces records written by hand (no metadata) by their hashed id', async () => {
    const { kv, view, calls } = await counted()
    const s = await setup({ REVOCATIONS: view })
    await kv.put(`jti:${await sha256hex(`${s.iss}\nhand-jti`)}`, '{}')
    const T = now() - 100
    await kv.put(`sub:${await sha256hex(`${s.iss}\nmallory`)}`, JSON.stringify({ before: T }))
    expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(200)
    expect(calls.list).toBe(1)
    const gets = calls.get
    expect((await send(s.gw, '/x', bearer(await s.token({ jti: 'hand-jti' })))).status).toBe(401)
    const cut = await s.token({ sub: 'mallory', iat: T })
    expect((await send(s.gw, '/x', bearer(cut))).status).toBe(401)
    const later = await s.token({ sub: 'mallory', iat: T + 1 })
    expect((await send(s.gw, '/x', bearer(later))).status).toBe(200)
    expect(calls.get).toBe(gets)
    // The same token again: its ids were hashed once, so no hashing and no KV read.
    const digest = vi.spyOn(crypto.subtle, 'digest')
    try {
      expect((await send(s.gw, '/x', bearer(later))).status).toBe(200)
      expect(digest).not.toHaveBeenCalled()
    } finally {
      digest.mockRestore()
    }
    expect(calls.get).toBe(gets)
  })

  it('does not trust metadata that does not hash to its key', async () => {
    const { kv, view } = await counted()
    const s = await setup({ REVOCATIONS: view })
    // Key for jti "real", metadata claiming jti "decoy": the key is what the per-key path reads.
    const id = `jti:${await sha256hex(`${s.iss}\nreal`)}`
    await kv.put(id, '{}', {
      metadata: { id, kind: 'jti', iss: s.iss, jti: 'decoy', createdAt: 1 },
    })
    expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(200)
    expect((await send(s.gw, '/x', bearer(await s.token({ jti: 'real' })))).status).toBe(401)
    expect((await send(s.gw, '/x', bearer(await s.token({ jti: 'decoy' })))).status).toBe(200)
  })

  it('keeps failing closed on a malformed hand-written cut-off', async () => {
    const { kv, view } = await counted()
    const s = await setup({ REVOCATIONS: view })
    await kv.put(`all:${await sha256hex(s.iss)}`, '{"before":"yesterday"}')
    expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(503)
    expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(503)
  })

  it('falls back to KV reads, logged, while listing fails', async () => {
    const { view, calls } = await counted({ list: true })
    const s = await setup({ REVOCATIONS: view })
    const logs = captureLogs()
    try {
      expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(200)
      const gets = calls.get
      expect((await send(s.gw, '/x', bearer(await s.token()))).status).toBe(200)
      expect(calls.get).toBeGreaterThan(gets)
    } finally {
      logs.restore()
    }
    expect(logs.lines.find((l) => l.event === 'revocation_snapshot_failed')).toMatchObject({
      detail: 'list is down',
    })
  })

  it('hashes a record’s metadata once, not on every refresh', async () => {
    const { view, calls } = await counted()
    const config = { cacheTtlS: 10, failOpen: false, timeoutMs: 2000 }
    const list = new RevocationList(new KvStore(view), config)
    const iss = 'https://issuer.test/hashing'
    for (const jti of ['h1', 'h2', 'h3']) {
      const id = await revocationId('jti', iss, jti)
      await list.put({ id, kind: 'jti', iss, jti, createdAt: now() }, Date.now())
    }
    const identity = {
      issuer: iss,
      sub: 'alice',
      kid: undefined,
      alg: 'ES256' as const,
      claims: { jti: 'other', iat: now() },
      encodedClaims: '',
    }
    const refreshAt = async (t: number) => {
      const work: Promise<unknown>[] = []
      await list.check(identity, t, (p) => work.push(p))
      await Promise.all(work)
      return work.length
    }
    const digest = vi.spyOn(crypto.subtle, 'digest')
    try {
      const t0 = Date.now()
      expect(await refreshAt(t0)).toBe(1)
      const first = digest.mock.calls.length
      expect(first).toBeGreaterThanOrEqual(3)
      // Past half the cache time: a second list, same records, no hashing at all.
      expect(await refreshAt(t0 + 6_000)).toBe(1)
      expect(calls.list).toBe(2)
      expect(digest.mock.calls.length).toBe(first)
    } finally {
      digest.mockRestore()
    }
  })

  it('with records written by hand listed, checks a repeated token synchronously', async () => {
    const { kv, view } = await counted()
    const config = { cacheTtlS: 10, failOpen: false, timeoutMs: 2000 }
    const list = new RevocationList(new KvStore(view), config)
    const iss = 'https://issuer.test/by-hand-sync'
    await kv.put(await revocationId('jti', iss, 'hand'), '{}')
    const identity = (jti: string) => ({
      issuer: iss,
      sub: 'alice',
      kid: undefined,
      alg: 'ES256' as const,
      claims: { jti, iat: now() },
      encodedClaims: '',
    })
    const work: Promise<unknown>[] = []
    const t0 = Date.now()
    await list.check(identity('warm'), t0, (p) => work.push(p))
    await Promise.all(work)
    // First sight of a token with the snapshot: its jti's id is hashed (async).
    const first = list.check(identity('other'), t0 + 1)
    expect(first).toBeInstanceOf(Promise)
    await first
    // Then it is a map lookup: no promise.
    expect(list.check(identity('other'), t0 + 2)).toBeUndefined()
    await expect(list.check(identity('hand'), t0 + 3)).rejects.toMatchObject({
      code: 'token_revoked',
    })
    expect(() => list.check(identity('hand'), t0 + 4)).toThrow(GatewayError)
  })

  it('is not built from a list longer than its bound; per-key reads take over', async () => {
    const { view, calls } = await counted()
    const config = { cacheTtlS: 10, failOpen: false, timeoutMs: 2000 }
    const list = new RevocationList(new KvStore(view), config, 2)
    const iss = 'https://issuer.test/bound'
    for (const jti of ['r1', 'r2', 'r3']) {
      const id = await revocationId('jti', iss, jti)
      await list.put({ id, kind: 'jti', iss, jti, createdAt: now() }, Date.now())
    }
    const identity = (jti: string) => ({
      issuer: iss,
      sub: 'alice',
      kid: undefined,
      alg: 'ES256' as const,
      claims: { jti, iat: now() },
      encodedClaims: '',
    })
    const work: Promise<unknown>[] = []
    await list.check(identity('n1'), Date.now(), (p) => work.push(p))
    await Promise.all(work)
    expect(calls.list).toBe(1)
    const gets = calls.get
    // Not known without I/O: a promise, and KV is read.
    const pending = list.check(identity('n2'), Date.now(), (p) => work.push(p))
    expect(pending).toBeInstanceOf(Promise)
    await pending
    expect(calls.get).toBeGreaterThan(gets)
    // Not listed again before SNAPSHOT_RETRY_MS.
    expect(calls.list).toBe(1)
  })
})
