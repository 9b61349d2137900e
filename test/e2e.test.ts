import { describe, expect, it } from 'vitest'
import { bearer, body, gatewayEnv, makeKey, mint, send, Stub } from './helpers'

describe('gateway end to end', () => {
  it('forwards a valid token with identity headers and refuses a missing one', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = gatewayEnv(stub)

    const none = await send(gw, '/hello')
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="gateway"')

    const res = await send(gw, '/hello?x=1', bearer(await mint(key)))
    expect(res.status).toBe(200)
    const seen = await body(res)
    expect(seen.url).toBe(`/ns/${stub.id}/origin/hello?x=1`)
    expect((seen.headers as Record<string, string>)['x-auth-sub']).toBe('alice')
    const calls = await stub.calls()
    expect(calls.origin).toHaveLength(1)
    expect(calls.jwksFetches).toBe(1)
  })
})
