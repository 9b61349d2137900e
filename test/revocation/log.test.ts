/**
 * The Durable Object revocation log (REVOCATION_LOG): two gateway isolates on one object, deletes,
 * restarts, an unreachable object, the staleness bound on a frozen clock, the Cache API fan-out.
 */
import { env, evictDurableObject } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import type { RevocationConfig } from '../../src/config'
import { GatewayError } from '../../src/errors'
import type { RevocationLog } from '../../src/revocation/log-object'
import { LogStore } from '../../src/revocation/log-store'
import { RevocationList, revocationId, type RevocationRecord } from '../../src/revocation/list'
import {
  TWO_ISOLATES_ADMIN_TOKEN,
  TWO_ISOLATES_ISSUER,
  TWO_ISOLATES_NS,
} from '../fixtures/revocation-log-workers'
import {
  AUDIENCE,
  bearer,
  body,
  captureLogs,
  gatewayEnv,
  makeKey,
  mint,
  send,
  sleep,
  Stub,
  STUB_URL,
  type TestKey,
} from '../helpers'

const bindings = env as unknown as {
  GATEWAY_A: Fetcher
  GATEWAY_B: Fetcher
  TEST_REVOCATION_LOG: DurableObjectNamespace<RevocationLog>
}
/** The bound the issue sets: every isolate refuses a revoked token within 3 s of the write. */
const ENFORCEMENT_BOUND_MS = 3_000

let twoIsolatesKey: TestKey | null = null
async function twoIsolates(): Promise<TestKey> {
  if (twoIsolatesKey === null) {
    const key = await makeKey('ES256')
    const res = await fetch(`${STUB_URL}/ns/${TWO_ISOLATES_NS}/_setup`, {
      method: 'POST',
      body: JSON.stringify({ jwks: { keys: [key.publicJwk] } }),
    })
    expect(res.ok).toBe(true)
    twoIsolatesKey = key
  }
  return twoIsolatesKey
}

function call(gw: Fetcher, token: string): Promise<Response> {
  return gw.fetch('https://gw.test/x', { headers: { authorization: `Bearer ${token}` } })
}

async function status(gw: Fetcher, token: string): Promise<number> {
  const res = await call(gw, token)
  await res.body?.cancel()
  return res.status
}

function adminCall(gw: Fetcher, method: string, path: string, payload?: unknown) {
  return gw.fetch(`https://gw.test/_gateway${path}`, {
    method,
    headers: {
      authorization: `Bearer ${TWO_ISOLATES_ADMIN_TOKEN}`,
      'content-type': 'application/json',
    },
    body: payload === undefined ? undefined : JSON.stringify(payload),
  })
}

/** Polls until `gw` answers `want` for the token; returns the ms it took, or fails past the bound. */
async function until(gw: Fetcher, token: string, want: number, since: number): Promise<number> {
  for (;;) {
    const got = await status(gw, token)
    const elapsed = Date.now() - since
    if (got === want) return elapsed
    if (elapsed > ENFORCEMENT_BOUND_MS) {
      throw new Error(`still ${got} (want ${want}) ${elapsed} ms after the write`)
    }
    await sleep(20)
  }
}

describe('two gateway isolates on one revocation log', () => {
  it('a revocation written through one is enforced by the other within the bound', async () => {
    const key = await twoIsolates()
    const jti = crypto.randomUUID()
    const token = await mint(key, { iss: TWO_ISOLATES_ISSUER, aud: AUDIENCE, jti })
    expect(await status(bindings.GATEWAY_A, token)).toBe(200)
    expect(await status(bindings.GATEWAY_B, token)).toBe(200)

    const written = Date.now()
    const res = await adminCall(bindings.GATEWAY_A, 'POST', '/revocations', { jti })
    expect(res.status).toBe(201)
    // The writer enforces at once; the other within the bound, by its own sync.
    expect(await status(bindings.GATEWAY_A, token)).toBe(401)
    const delay = await until(bindings.GATEWAY_B, token, 401, written)
    expect(delay).toBeLessThan(ENFORCEMENT_BOUND_MS)
  })
})

describe('two gateway isolates on one revocation log: deletes and restarts', () => {
  it('a delete through one is enforced (the token accepted again) by the other within the bound', async () => {
    const key = await twoIsolates()
    const jti = crypto.randomUUID()
    const token = await mint(key, { iss: TWO_ISOLATES_ISSUER, aud: AUDIENCE, jti })
    const res = await adminCall(bindings.GATEWAY_B, 'POST', '/revocations', { jti })
    const { id } = (await res.json()) as { id: string }
    await until(bindings.GATEWAY_A, token, 401, Date.now())

    const deleted = Date.now()
    const del = await adminCall(bindings.GATEWAY_B, 'DELETE', `/revocations/${id}`)
    expect(del.status).toBe(204)
    expect(await status(bindings.GATEWAY_B, token)).toBe(200)
    expect(await until(bindings.GATEWAY_A, token, 200, deleted)).toBeLessThan(ENFORCEMENT_BOUND_MS)
  })

  it('loses nothing when the object restarts (storage kept), and both isolates keep syncing', async () => {
    const key = await twoIsolates()
    const before = await mint(key, { iss: TWO_ISOLATES_ISSUER, aud: AUDIENCE, jti: 'r1' })
    const after = await mint(key, { iss: TWO_ISOLATES_ISSUER, aud: AUDIENCE, jti: 'r2' })
    const res = await adminCall(bindings.GATEWAY_A, 'POST', '/revocations', { jti: 'r1' })
    expect(res.status).toBe(201)
    const object = bindings.TEST_REVOCATION_LOG.get(
      bindings.TEST_REVOCATION_LOG.idFromName('revocations'),
    )
    const stats = await object.stats()
    await evictDurableObject(object)
    // A new instance, built from storage alone.
    const restarted = await object.stats()
    expect(restarted).toMatchObject({
      epoch: stats.epoch,
      version: stats.version,
      changesServed: 0,
    })
    expect(
      await object.get(
        (
          (await (
            await adminCall(bindings.GATEWAY_A, 'GET', '/revocations?limit=1000')
          ).json()) as { records: RevocationRecord[] }
        ).records.find((r) => r.jti === 'r1')!.id,
      ),
    ).toMatchObject({ jti: 'r1' })
    await until(bindings.GATEWAY_B, before, 401, Date.now())
    // Writes after the restart replicate as before.
    await adminCall(bindings.GATEWAY_A, 'POST', '/revocations', { jti: 'r2' })
    expect(await until(bindings.GATEWAY_B, after, 401, Date.now())).toBeLessThan(
      ENFORCEMENT_BOUND_MS,
    )
  })
})

const CONFIG: RevocationConfig = {
  cacheTtlS: 10,
  failOpen: false,
  timeoutMs: 500,
  log: { syncMs: 1_000, maxStalenessS: 30 },
}
const ISS = 'https://issuer.test/log'

/** A namespace view that counts the object's calls and can be switched off (the object unreachable). */
function viewOf(ns: DurableObjectNamespace<RevocationLog>) {
  const calls: Record<string, number> = {}
  /** down: every call fails. gate: calls wait for it (after telling `arrived`) before going on. */
  const state: { down: boolean; gate: Promise<void> | null; arrived: () => void } = {
    down: false,
    gate: null,
    arrived: () => undefined,
  }
  // Its own objects (and so its own cache keys): no other test's log or cached change set.
  const prefix = crypto.randomUUID()
  const view = new Proxy(ns, {
    get(target, prop) {
      if (prop === 'idFromName') return (name: string) => target.idFromName(`${prefix}/${name}`)
      if (prop !== 'get') return Reflect.get(target, prop).bind(target)
      return (id: DurableObjectId) => {
        const stub = target.get(id)
        return new Proxy(stub, {
          get(s, method) {
            const fn = Reflect.get(s, method) as unknown
            if (typeof method !== 'string' || typeof fn !== 'function') return fn
            return async (...args: unknown[]) => {
              calls[method] = (calls[method] ?? 0) + 1
              if (state.down) throw new Error('Durable Object unreachable')
              if (state.gate !== null) {
                state.arrived()
                await state.gate
              }
              // Called as a method: an RPC stub's function has no usable `apply` of its own.
              return (s as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!(
                ...args,
              )
            }
          },
        })
      }
    },
  })
  return { view, calls, state }
}

/** An isolate's list over its own fresh object (one per test), optionally with a shared cache. */
function isolate(
  ns: DurableObjectNamespace<RevocationLog>,
  name: string,
  config: RevocationConfig = CONFIG,
  cache: Cache | null = null,
  wait?: (ms: number) => Promise<void>,
) {
  return new RevocationList(new LogStore<RevocationRecord>(ns, cache, 1, name, wait), config)
}

function identity(claims: Record<string, unknown>) {
  return {
    issuer: ISS,
    sub: 'alice',
    kid: undefined,
    alg: 'ES256' as const,
    claims: { iat: Math.floor(Date.now() / 1000) - 10, ...claims },
    encodedClaims: '',
  }
}

async function jtiRecord(jti: string): Promise<RevocationRecord> {
  const createdAt = Math.floor(Date.now() / 1000)
  return { id: await revocationId('jti', ISS, jti), kind: 'jti', iss: ISS, jti, createdAt }
}

/** Runs one check and the background work it started; returns how many it started. */
async function checked(list: RevocationList, claims: Record<string, unknown>, nowMs: number) {
  const work: Promise<unknown>[] = []
  const outcome = list.check(identity(claims), nowMs, (p) => work.push(p))
  await Promise.allSettled([outcome, ...work])
  await outcome
  return work.length
}

describe('the request path with the log bound', () => {
  it('reads memory only: synchronous checks, at most one background sync per interval', async () => {
    const name = crypto.randomUUID()
    const { view, calls } = viewOf(bindings.TEST_REVOCATION_LOG)
    const list = isolate(view, name)
    const t0 = Date.now()
    await checked(list, { jti: 'warm' }, t0) // cold isolate: its one awaited sync
    expect(calls.changes).toBe(1)
    const started: Promise<unknown>[] = []
    for (let i = 1; i < 50; i++) {
      expect(
        list.check(identity({ jti: `j${i}` }), t0 + i * 10, (p) => started.push(p)),
      ).toBeUndefined()
    }
    expect(started).toHaveLength(0)
    expect(calls.changes).toBe(1)
    // One interval later: one background sync, and the check still answers synchronously.
    expect(list.check(identity({ jti: 'x' }), t0 + 1_000, (p) => started.push(p))).toBeUndefined()
    expect(started).toHaveLength(1)
    await Promise.all(started)
    expect(calls.changes).toBe(2)
  })

  it('replicates every kind of record the list has (sid included) through the object', async () => {
    const name = crypto.randomUUID()
    const writer = isolate(bindings.TEST_REVOCATION_LOG, name)
    const reader = isolate(bindings.TEST_REVOCATION_LOG, name)
    const t0 = Date.now()
    await checked(reader, { jti: 'warm', sid: 's1' }, t0)
    const sid = 'session-1'
    const createdAt = Math.floor(t0 / 1000)
    await writer.put(
      {
        id: await revocationId('sid', ISS, sid),
        kind: 'sid',
        iss: ISS,
        sid,
        createdAt,
        source: 'backchannel-logout',
      },
      t0,
    )
    await writer.put(
      {
        id: await revocationId('sub', ISS, 'alice'),
        kind: 'sub',
        iss: ISS,
        sub: 'alice',
        before: createdAt - 100,
        createdAt,
      },
      t0,
    )
    await checked(reader, { jti: 'a' }, t0 + 1_000)
    await expect(checked(reader, { jti: 'b', sid }, t0 + 1_001)).rejects.toMatchObject({
      code: 'token_revoked',
      detail: 'sid',
    })
    // The sub cut-off came with it: a token of alice issued before it is refused.
    const old = { ...identity({ jti: 'c' }), claims: { jti: 'c', iat: createdAt - 200 } }
    expect(() => reader.check(old, t0 + 1_002)).toThrow(GatewayError)
  })

  it('shares one object read per version among the isolates of a location (Cache API)', async () => {
    const name = crypto.randomUUID()
    const { view, calls } = viewOf(bindings.TEST_REVOCATION_LOG)
    const cache = await caches.open(`fan-out-${name}`)
    const isolates = Array.from({ length: 5 }, () => isolate(view, name, CONFIG, cache))
    const t0 = Date.now()
    for (const list of isolates) await checked(list, { jti: 'warm' }, t0)
    expect(calls.changes).toBe(1)
    for (const list of isolates) await checked(list, { jti: 'warm' }, t0 + 1_000)
    // One delta (since the version they all hold) for five isolates.
    expect(calls.changes).toBe(2)
  })
})

describe('the location cache under concurrent syncs', () => {
  it('an isolate that finds another one asking the object waits for its answer (one read)', async () => {
    const name = crypto.randomUUID()
    const { view, calls, state } = viewOf(bindings.TEST_REVOCATION_LOG)
    const cache = await caches.open(`lease-${name}`)
    let release = () => undefined as void
    state.gate = new Promise<void>((r) => (release = r))
    const arrived = new Promise<void>((r) => (state.arrived = r))
    const first = isolate(view, name, CONFIG, cache)
    const t0 = Date.now()
    const one = checked(first, { jti: 'a' }, t0)
    await arrived // the first isolate holds the lease and is asking the object
    let waits = 0
    const second = isolate(view, name, CONFIG, cache, async () => {
      // While the second waits, the object answers the first, which fills the cache.
      if (waits++ === 0) release()
      await sleep(10)
    })
    await Promise.all([one, checked(second, { jti: 'b' }, t0)])
    expect(waits).toBeGreaterThan(0)
    expect(calls.changes).toBe(1)
    expect(second.status(t0)).toMatchObject({ lastSync: 'ok', stale: false })
  })
})

describe('staleness and an unreachable object', () => {
  it('fails closed past the bound (frozen clock), logged, and recovers when the object is back', async () => {
    const name = crypto.randomUUID()
    const { view, state } = viewOf(bindings.TEST_REVOCATION_LOG)
    const list = isolate(view, name)
    const t0 = Date.now()
    await checked(list, { jti: 'warm' }, t0)
    state.down = true
    // Inside the bound the snapshot serves; background syncs fail quietly.
    expect(await checked(list, { jti: 'a' }, t0 + 29_000)).toBe(1)
    expect(list.status(t0 + 29_000)).toMatchObject({
      store: 'log',
      stale: false,
      lastSync: 'failed',
    })
    const err = await checked(list, { jti: 'b' }, t0 + 31_000).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'revocation_unavailable' })
    expect((err as GatewayError).detail).toMatch(
      /revocation log unavailable \(snapshot \d+ ms old\): Durable Object unreachable/,
    )
    expect(list.status(t0 + 31_000)).toMatchObject({ stale: true })
    state.down = false
    // Past the failure's interval one sync is tried again, and the request passes.
    await checked(list, { jti: 'c' }, t0 + 32_500)
    expect(list.status(t0 + 32_500)).toMatchObject({ stale: false, lastSync: 'ok' })
  })

  it('lets verified tokens through past the bound with REVOCATION_FAIL_OPEN, and says so', async () => {
    const name = crypto.randomUUID()
    const { view, state } = viewOf(bindings.TEST_REVOCATION_LOG)
    const list = isolate(view, name, { ...CONFIG, failOpen: true })
    state.down = true
    const logs = captureLogs()
    try {
      await checked(list, { jti: 'a' }, Date.now())
    } finally {
      logs.restore()
    }
    expect(logs.lines.find((l) => l.event === 'revocation_check_failed')).toMatchObject({
      failOpen: true,
    })
  })

  it('through the worker: 503 with Retry-After, never the origin; writes answer 503 too', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const { view, state } = viewOf(bindings.TEST_REVOCATION_LOG)
    state.down = true
    const iss = `https://issuer.test/${stub.id}`
    const gw = gatewayEnv(stub, {
      JWT_ISSUER: iss,
      REVOCATIONS: undefined,
      REVOCATION_LOG: view,
      ADMIN_TOKEN: TWO_ISOLATES_ADMIN_TOKEN,
    })
    const res = await send(gw, '/x', bearer(await mint(key, { iss })))
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(await body(res)).toEqual({
      error: 'temporarily_unavailable',
      error_description: 'The revocation list could not be checked; retry shortly',
    })
    expect((await stub.calls()).origin).toHaveLength(0)
    const write = await send(gw, '/_gateway/revocations', {
      method: 'POST',
      headers: { authorization: `Bearer ${TWO_ISOLATES_ADMIN_TOKEN}` },
      body: JSON.stringify({ jti: 'x' }),
    })
    expect(write.status).toBe(503)
    const health = await body(await send(gw, '/_gateway/health'))
    expect(health).toMatchObject({
      status: 'degraded',
      revocationSnapshot: { store: 'log', version: null, stale: true, lastSync: 'failed' },
    })
  })

  it('health shows the snapshot version and age once synced', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const iss = `https://issuer.test/${stub.id}`
    const gw = gatewayEnv(stub, { JWT_ISSUER: iss, REVOCATION_LOG: bindings.TEST_REVOCATION_LOG })
    expect((await send(gw, '/x', bearer(await mint(key, { iss })))).status).toBe(200)
    const health = await body(await send(gw, '/_gateway/health'))
    expect(health).toMatchObject({
      status: 'ok',
      revocationSnapshot: { store: 'log', stale: false, lastSync: 'ok' },
    })
    const snapshot = health.revocationSnapshot as { version: number; ageSeconds: number }
    expect(snapshot.version).toBeGreaterThanOrEqual(0)
    // Synced by the request just before (a loaded machine may take a second between the two).
    expect(snapshot.ageSeconds).toBeLessThanOrEqual(2)
  })
})

describe('configuration', () => {
  it('names a REVOCATION_LOG that is not a Durable Object namespace', async () => {
    const res = await send(gatewayEnv(new Stub(), { REVOCATION_LOG: 'nope' }), '/x')
    expect(res.status).toBe(500)
    expect((await body(res)).error_description).toBe(
      'Gateway configuration error: REVOCATION_LOG: must be a Durable Object namespace binding',
    )
  })

  it('refuses a staleness bound under two sync intervals', async () => {
    const gw = gatewayEnv(new Stub(), {
      REVOCATION_LOG: bindings.TEST_REVOCATION_LOG,
      REVOCATION_SYNC_MS: '1000',
      REVOCATION_MAX_STALENESS_SECONDS: '1',
    })
    expect((await body(await send(gw, '/x'))).error_description).toContain(
      'REVOCATION_MAX_STALENESS_SECONDS: must be at least twice REVOCATION_SYNC_MS',
    )
  })
})

describe('migration from KV', () => {
  it('a new object copies the KV records once: verified ones by claim, the rest by id', async () => {
    const kv = (env as unknown as { TEST_IMPORT_KV: KVNamespace }).TEST_IMPORT_KV
    const iss = `https://issuer.test/import-${crypto.randomUUID()}`
    const createdAt = Math.floor(Date.now() / 1000)
    const byAdmin: RevocationRecord = {
      id: await revocationId('jti', iss, 'admin-written'),
      kind: 'jti',
      iss,
      jti: 'admin-written',
      createdAt,
    }
    await kv.put(byAdmin.id, JSON.stringify(byAdmin), { metadata: byAdmin })
    // Written by hand: no metadata, a cut-off for bob.
    await kv.put(await revocationId('sub', iss, 'bob'), JSON.stringify({ before: createdAt }))
    // Metadata that does not hash to its key: never trusted by its claims.
    const forged = { ...byAdmin, jti: 'someone-else' }
    await kv.put(await revocationId('jti', iss, 'keyed-here'), '{}', { metadata: forged })

    const { view } = viewOf(bindings.TEST_REVOCATION_LOG)
    const list = new RevocationList(
      new LogStore<RevocationRecord>(view, null, 1, 'imported'),
      CONFIG,
    )
    const who = (sub: string, jti: string) => ({
      ...identity({ jti }),
      issuer: iss,
      sub,
      claims: { jti, iat: createdAt - 10 },
    })
    const t0 = Date.now()
    await expect(list.check(who('alice', 'admin-written'), t0)).rejects.toMatchObject({
      code: 'token_revoked',
    })
    await expect(list.check(who('bob', 'any'), t0)).rejects.toMatchObject({ code: 'token_revoked' })
    // The forged record revokes the token its key names, not the one its metadata claims.
    await list.check(who('alice', 'someone-else'), t0)
    await expect(list.check(who('alice', 'keyed-here'), t0)).rejects.toMatchObject({
      code: 'token_revoked',
    })
    const object = view.get(view.idFromName('imported'))
    const { records } = await object.list(100)
    expect(records.map((r) => r.id).sort()).toEqual(
      [
        byAdmin.id,
        await revocationId('sub', iss, 'bob'),
        await revocationId('jti', iss, 'keyed-here'),
      ].sort(),
    )
  })
})
