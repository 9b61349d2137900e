/**
 * DPoP replay across isolates: the DpopReplayStore Durable Object (a real one, bound through
 * vitest.config.ts as TEST_DPOP_REPLAY and handed to the gateway as DPOP_REPLAY), two gateway
 * states standing for two isolates, the store's expiry sweep, and its failure mode.
 */
import { env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { DpopReplayStore } from '../../src/auth/dpop-replay'
import {
  captureLogs,
  expectRefusal,
  gatewayEnv,
  makeKey,
  mint,
  send,
  Stub,
  type GatewayEnv,
} from '../helpers'
import { clientKey, dpopInit, GW, proof, sendLogged } from './sender-helpers'

const STORE = (env as unknown as { TEST_DPOP_REPLAY: DurableObjectNamespace<DpopReplayStore> })
  .TEST_DPOP_REPLAY

async function setup() {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  const client = await clientKey()
  const token = await mint(key, { cnf: { jkt: client.jkt } })
  return { stub, client, token }
}

async function reasonOf(gw: GatewayEnv, init: RequestInit): Promise<[number, unknown]> {
  const { res, reason } = await sendLogged(gw, '/r', init)
  await res.body?.cancel()
  return [res.status, reason]
}

describe('the DPOP_REPLAY Durable Object', () => {
  it('refuses a proof replayed to another isolate; without it, the other isolate cannot know', async () => {
    const { stub, client, token } = await setup()
    // Two env objects: two gateway states, each with its own per-isolate replay memory.
    const a = gatewayEnv(stub, { DPOP_REPLAY: STORE })
    const b = gatewayEnv(stub, { DPOP_REPLAY: STORE })
    const p = await proof(client, `${GW}/r`, 'GET', token)
    expect(await reasonOf(a, dpopInit(token, p))).toEqual([200, undefined])
    expect(await reasonOf(b, dpopInit(token, p))).toEqual([401, 'dpop_replayed'])

    const c = gatewayEnv(stub)
    const d = gatewayEnv(stub)
    const q = await proof(client, `${GW}/r`, 'GET', token)
    expect(await reasonOf(c, dpopInit(token, q))).toEqual([200, undefined])
    // The documented limit of per-isolate memory alone.
    expect(await reasonOf(d, dpopInit(token, q))).toEqual([200, undefined])
    // Each isolate still refuses what it saw itself.
    expect(await reasonOf(d, dpopInit(token, q))).toEqual([401, 'dpop_replayed'])
  })

  it('answers "first time" once per key, forgets a key once its window closed, sweeps by alarm', async () => {
    const id = STORE.idFromName(`test-${crypto.randomUUID()}`)
    const store = STORE.get(id)
    const later = Date.now() + 60_000
    expect(await store.firstUse('jkt jti-1', later)).toBe(true)
    expect(await store.firstUse('jkt jti-1', later)).toBe(false)
    // An entry whose window has closed no longer counts (the proof's iat refuses it anyway).
    expect(await store.firstUse('jkt jti-2', Date.now() - 1)).toBe(true)
    expect(await store.firstUse('jkt jti-2', later)).toBe(true)
    await runInDurableObject(store, async (_, state) => {
      await state.storage.put('jkt old', Date.now() - 1)
      expect(await state.storage.getAlarm()).not.toBeNull()
    })
    expect(await runDurableObjectAlarm(store)).toBe(true)
    await runInDurableObject(store, async (_, state) => {
      const left = [...(await state.storage.list<number>()).keys()]
      expect(left.sort()).toEqual(['jkt jti-1', 'jkt jti-2'])
      // Re-armed for the entries still inside their window.
      expect(await state.storage.getAlarm()).not.toBeNull()
    })
  })

  it('unreachable: 503 by default (fail closed), the isolate alone with DPOP_REPLAY_FAIL_OPEN', async () => {
    const { stub, client, token } = await setup()
    // A namespace whose objects never answer in time, as when the store is unreachable.
    const hanging = {
      idFromName: (name: string) => name,
      get: () => ({ firstUse: () => new Promise<boolean>(() => {}) }),
    }
    const closed = gatewayEnv(stub, { DPOP_REPLAY: hanging, DPOP_REPLAY_TIMEOUT_MS: '50' })
    const p = await proof(client, `${GW}/r`, 'GET', token)
    const logs = captureLogs()
    const res = await send(closed, '/r', dpopInit(token, p))
    logs.restore()
    await expectRefusal(res, 503, null, {
      error: 'temporarily_unavailable',
      error_description: 'The DPoP replay store could not be checked; retry shortly',
    })
    expect(logs.lines.find((l) => l.event === 'request')?.reason).toBe('dpop_replay_unavailable')
    expect((await stub.calls()).origin).toHaveLength(0)
    // Fail open: this isolate's memory alone decides.
    const open = gatewayEnv(stub, {
      DPOP_REPLAY: hanging,
      DPOP_REPLAY_TIMEOUT_MS: '50',
      DPOP_REPLAY_FAIL_OPEN: 'true',
    })
    expect(await reasonOf(open, dpopInit(token, p))).toEqual([200, undefined])
    expect(await reasonOf(open, dpopInit(token, p))).toEqual([401, 'dpop_replayed'])
  })

  it('a DPOP_REPLAY that is not a Durable Object namespace is a config error', async () => {
    const { stub } = await setup()
    const res = await send(gatewayEnv(stub, { DPOP_REPLAY: 'x' }), '/r')
    expect(res.status).toBe(500)
    expect(await res.text()).toContain('DPOP_REPLAY: must be a Durable Object namespace binding')
  })
})
