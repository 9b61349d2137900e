/**
 * OpenID Connect Back-Channel Logout 1.0 through the real worker: logout tokens made at test time
 * with jose, keys served by the loopback stub, revocations written to (a per-test view of) KV.
 * Each validation rule of §2.6 has a case that a token breaking only that rule is refused with
 * 400 and writes nothing.
 */
import { SignJWT, type JWTPayload } from 'jose'
import { describe, expect, it } from 'vitest'
import { BACKCHANNEL_LOGOUT_EVENT } from '../../src/revocation/backchannel-logout'
import {
  bearer,
  body,
  freshKv,
  listedRevocations,
  gatewayEnv,
  makeKey,
  mint,
  send,
  structuredEnv,
  Stub,
  type GatewayEnv,
  type TestKey,
} from '../helpers'

const ADMIN_TOKEN = 'admin-secret-0123456789abcdef0123456789'
const CLIENT = 'gateway-rp'
const now = () => Math.floor(Date.now() / 1000)

interface Setup {
  stub: Stub
  key: TestKey
  gw: GatewayEnv
  iss: string
  /** A logout token; `null` values leave the claim out. */
  logout: (claims?: Record<string, unknown>, header?: Record<string, unknown>) => Promise<string>
  access: (claims?: Record<string, unknown>) => Promise<string>
}

async function setup(vars: GatewayEnv = {}): Promise<Setup> {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  const iss = `https://idp.test/${stub.id}`
  const gw = gatewayEnv(stub, {
    JWT_ISSUER: iss,
    ADMIN_TOKEN,
    BACKCHANNEL_LOGOUT_CLIENT_IDS: `other-rp, ${CLIENT}`,
    REVOCATIONS: await freshKv(),
    ...vars,
  })
  return {
    stub,
    key,
    gw,
    iss,
    logout: (claims = {}, header = {}) => logoutToken(key, { iss, ...claims }, header),
    access: (claims = {}) => mint(key, { iss, jti: crypto.randomUUID(), ...claims }),
  }
}

function logoutToken(
  key: TestKey,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
): Promise<string> {
  const payload: Record<string, unknown> = {
    aud: CLIENT,
    iat: now(),
    jti: crypto.randomUUID(),
    sub: 'alice',
    sid: 'session-1',
    events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
    ...claims,
  }
  for (const [k, v] of Object.entries(payload)) if (v === null) delete payload[k]
  return new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'logout+jwt', ...header })
    .sign(key.privateKey)
}

function post(gw: GatewayEnv, form: string, contentType = 'application/x-www-form-urlencoded') {
  return send(gw, '/_gateway/backchannel-logout', {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: form,
  })
}

const deliver = (gw: GatewayEnv, token: string) => post(gw, `logout_token=${token}`)

const records = (s: Setup) => listedRevocations(s.gw, ADMIN_TOKEN)

async function expectRefused(s: Setup, res: Response, description?: string | RegExp) {
  expect(res.status).toBe(400)
  expect(res.headers.get('cache-control')).toBe('no-store')
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  const b = await body(res)
  expect(b.error).toBe('invalid_request')
  expect(typeof b.error_description).toBe('string')
  if (description !== undefined) expect(b.error_description).toMatch(description)
  // Nothing written, and the user's tokens still work.
  expect(await records(s)).toEqual([])
  const token = await s.access({ sid: 'session-1', iat: now() - 60 })
  expect((await send(s.gw, '/x', bearer(token))).status).toBe(200)
}

describe('a valid logout token', () => {
  it('answers 200 no-store, then the session and the subject are refused at the edge', async () => {
    const s = await setup()
    const inSession = await s.access({ sid: 'session-1' })
    const otherSession = await s.access({ sid: 'session-2', iat: now() - 10 })
    expect((await send(s.gw, '/x', bearer(inSession))).status).toBe(200)

    const res = await deliver(s.gw, await s.logout())
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.text()).toBe('')

    expect((await send(s.gw, '/x', bearer(inSession))).status).toBe(401)
    // sub and sid both present: both revocations (revokeSubject "always", the default).
    expect((await send(s.gw, '/x', bearer(otherSession))).status).toBe(401)
    // A token of the ended session minted later is still refused; a later new session is not.
    const lateSameSession = await s.access({ sid: 'session-1', iat: now() + 5 })
    expect((await send(s.gw, '/x', bearer(lateSameSession))).status).toBe(401)
    const newSession = await s.access({ sid: 'session-3', iat: now() + 5 })
    expect((await send(s.gw, '/x', bearer(newSession))).status).toBe(200)
    const bob = await s.access({ sub: 'bob', sid: 'session-9', iat: now() - 10 })
    expect((await send(s.gw, '/x', bearer(bob))).status).toBe(200)
  })

  it('is listed in GET /_gateway/revocations with its source and bounds', async () => {
    const s = await setup({ BACKCHANNEL_LOGOUT_SESSION_SECONDS: '7200' })
    const iat = now() - 3
    expect((await deliver(s.gw, await s.logout({ iat }))).status).toBe(200)
    const listed = await records(s)
    expect(listed).toHaveLength(2)
    const sid = listed.find((r) => r.kind === 'sid')!
    const sub = listed.find((r) => r.kind === 'sub')!
    expect(sid).toMatchObject({ iss: s.iss, sid: 'session-1', source: 'backchannel-logout' })
    expect(sid.exp).toBeGreaterThanOrEqual(now() + 7200 - 2)
    expect(sid.exp).toBeLessThanOrEqual(now() + 7200)
    expect(sub).toMatchObject({
      iss: s.iss,
      sub: 'alice',
      before: iat,
      source: 'backchannel-logout',
    })
  })

  it('with only sid revokes that session only', async () => {
    const s = await setup()
    expect((await deliver(s.gw, await s.logout({ sub: null }))).status).toBe(200)
    expect((await send(s.gw, '/x', bearer(await s.access({ sid: 'session-1' })))).status).toBe(401)
    const other = await s.access({ sid: 'session-2', iat: now() - 10 })
    expect((await send(s.gw, '/x', bearer(other))).status).toBe(200)
    expect((await records(s)).map((r) => r.kind)).toEqual(['sid'])
  })

  it('with only sub cuts off the subject at the logout token’s iat', async () => {
    const s = await setup()
    const iat = now() - 20
    expect((await deliver(s.gw, await s.logout({ sid: null, iat }))).status).toBe(200)
    expect((await send(s.gw, '/x', bearer(await s.access({ iat })))).status).toBe(401)
    expect((await send(s.gw, '/x', bearer(await s.access({ iat: iat + 1 })))).status).toBe(200)
    expect((await records(s)).map((r) => r.kind)).toEqual(['sub'])
  })

  it('with revokeSubject "without-sid" leaves the subject’s other sessions alone', async () => {
    const s = await setup({ BACKCHANNEL_LOGOUT_REVOKE_SUBJECT: 'without-sid' })
    expect((await deliver(s.gw, await s.logout())).status).toBe(200)
    expect((await send(s.gw, '/x', bearer(await s.access({ sid: 'session-1' })))).status).toBe(401)
    const other = await s.access({ sid: 'session-2', iat: now() - 10 })
    expect((await send(s.gw, '/x', bearer(other))).status).toBe(200)
  })

  it('accepts typ JWT or no typ, and an exp still in the future', async () => {
    const s = await setup()
    expect((await deliver(s.gw, await s.logout({}, { typ: 'JWT' }))).status).toBe(200)
    expect((await deliver(s.gw, await s.logout({}, { typ: undefined }))).status).toBe(200)
    expect((await deliver(s.gw, await s.logout({ exp: now() + 120 }))).status).toBe(200)
  })
})

describe('§2.6 validation: each rule refuses with 400 and writes nothing', () => {
  it('signature: a key the issuer does not publish (another issuer’s key)', async () => {
    const s = await setup()
    const stranger = await makeKey('ES256')
    const token = await logoutToken(stranger, { iss: s.iss })
    await expectRefused(s, await deliver(s.gw, token), /no key of the issuer/)
  })

  it('signature: the issuer’s kid with another private key', async () => {
    const s = await setup()
    const forger = { ...(await makeKey('ES256')), kid: s.key.kid }
    await expectRefused(
      s,
      await deliver(s.gw, await logoutToken(forger, { iss: s.iss })),
      /signature/,
    )
  })

  it('signature: an algorithm not allowed for the issuer (HS256 with the public key as secret)', async () => {
    const s = await setup()
    const secret = new TextEncoder().encode(JSON.stringify(s.key.publicJwk))
    const token = await new SignJWT({
      iss: s.iss,
      aud: CLIENT,
      iat: now(),
      jti: crypto.randomUUID(),
      sub: 'alice',
      events: { [BACKCHANNEL_LOGOUT_EVENT]: {} },
    })
      .setProtectedHeader({ alg: 'HS256', kid: s.key.kid, typ: 'logout+jwt' })
      .sign(secret)
    await expectRefused(s, await deliver(s.gw, token), /alg/)
  })

  it('iss: not a configured issuer', async () => {
    const s = await setup()
    await expectRefused(s, await deliver(s.gw, await s.logout({ iss: 'https://evil.test' })), /iss/)
  })

  it('iss: a configured issuer without back-channel logout (its own key)', async () => {
    const stub = new Stub()
    const [a, b] = [await makeKey('ES256'), await makeKey('ES256')]
    await stub.publish(a, b)
    const A = `https://a.idp.test/${stub.id}`
    const B = `https://b.idp.test/${stub.id}`
    const gw = structuredEnv(
      stub,
      {
        issuers: [
          {
            issuer: A,
            jwksUrl: stub.jwksUrl,
            audiences: ['api'],
            backchannelLogout: { clientIds: [CLIENT] },
          },
          { issuer: B, jwksUrl: stub.jwksUrl, audiences: ['api'] },
        ],
        routes: [{ path: '/', origin: stub.originUrl }],
      },
      { ADMIN_TOKEN, REVOCATIONS: await freshKv() },
    )
    const s: Setup = {
      stub,
      key: b,
      gw,
      iss: B,
      logout: (c = {}, h = {}) => logoutToken(b, { iss: B, ...c }, h),
      access: (c = {}) => mint(b, { iss: B, aud: 'api', ...c }),
    }
    await expectRefused(s, await deliver(gw, await s.logout()), /back-channel logout configured/)
    expect((await deliver(gw, await logoutToken(a, { iss: A }))).status).toBe(200)
  })

  it('aud: a logout token for another client', async () => {
    const s = await setup()
    await expectRefused(s, await deliver(s.gw, await s.logout({ aud: 'someone-else' })), /aud/)
    await expectRefused(s, await deliver(s.gw, await s.logout({ aud: null })), /aud/)
  })

  it('iat: missing, older than the window, or in the future', async () => {
    const s = await setup()
    await expectRefused(s, await deliver(s.gw, await s.logout({ iat: null })))
    await expectRefused(s, await deliver(s.gw, await s.logout({ iat: now() - 700 })), /iat/)
    await expectRefused(s, await deliver(s.gw, await s.logout({ iat: now() + 120 })))
  })

  it('exp: present and past', async () => {
    const s = await setup()
    await expectRefused(s, await deliver(s.gw, await s.logout({ exp: now() - 60 })), /expired/)
  })

  it('jti: missing, or not a string', async () => {
    const s = await setup()
    await expectRefused(s, await deliver(s.gw, await s.logout({ jti: null })))
    await expectRefused(s, await deliver(s.gw, await s.logout({ jti: 7 })), /jti/)
  })

  it('jti: the same logout token twice is a replay', async () => {
    const s = await setup()
    const token = await s.logout({ sid: null, sub: 'carol' })
    expect((await deliver(s.gw, token)).status).toBe(200)
    const again = await deliver(s.gw, token)
    expect(again.status).toBe(400)
    expect((await body(again)).error_description).toMatch(/replay/)
  })

  it('events: missing, an array, without the logout event, or its value not an object', async () => {
    const s = await setup()
    await expectRefused(s, await deliver(s.gw, await s.logout({ events: null })))
    await expectRefused(
      s,
      await deliver(s.gw, await s.logout({ events: [BACKCHANNEL_LOGOUT_EVENT] })),
      /events/,
    )
    await expectRefused(
      s,
      await deliver(s.gw, await s.logout({ events: { 'urn:other': {} } })),
      /events/,
    )
    const notObject = { [BACKCHANNEL_LOGOUT_EVENT]: 'yes' }
    await expectRefused(s, await deliver(s.gw, await s.logout({ events: notObject })), /events/)
  })

  it('sub and sid: neither present, or not short strings', async () => {
    const s = await setup()
    await expectRefused(s, await deliver(s.gw, await s.logout({ sub: null, sid: null })), /neither/)
    await expectRefused(s, await deliver(s.gw, await s.logout({ sid: 42 })), /sid/)
    await expectRefused(s, await deliver(s.gw, await s.logout({ sub: 'x'.repeat(300) })), /sub/)
  })

  it('nonce: present (an ID Token must never log anyone out)', async () => {
    const s = await setup()
    await expectRefused(s, await deliver(s.gw, await s.logout({ nonce: 'n-0S6_WzA2Mj' })), /nonce/)
  })

  it('typ: another explicit type (an access token)', async () => {
    const s = await setup()
    await expectRefused(s, await deliver(s.gw, await s.logout({}, { typ: 'at+jwt' })), /typ/)
  })

  it('typ: required when configured', async () => {
    const s = await setup({ BACKCHANNEL_LOGOUT_REQUIRE_TYP: 'true' })
    await expectRefused(s, await deliver(s.gw, await s.logout({}, { typ: undefined })), /typ/)
    await expectRefused(s, await deliver(s.gw, await s.logout({}, { typ: 'JWT' })), /typ/)
    expect(
      (await deliver(s.gw, await s.logout({}, { typ: 'application/logout+jwt' }))).status,
    ).toBe(200)
  })
})

describe('the request', () => {
  it('refuses a body that is not a form, has no or two logout_token, or is junk', async () => {
    const s = await setup()
    const token = await s.logout()
    await expectRefused(s, await post(s.gw, `logout_token=${token}`, 'application/json'), /form/)
    await expectRefused(s, await post(s.gw, 'token=abc'), /exactly one/)
    await expectRefused(
      s,
      await post(s.gw, `logout_token=${token}&logout_token=${token}`),
      /exactly one/,
    )
    await expectRefused(s, await post(s.gw, 'logout_token=not.a.jwt'), /signed JWT/)
    await expectRefused(s, await post(s.gw, 'logout_token=%FF%FE'), /signed JWT/)
  })

  it('refuses a body over 16 KiB before reading it', async () => {
    const s = await setup()
    const big = `logout_token=${'a'.repeat(17 * 1024)}`
    await expectRefused(s, await post(s.gw, big), /bytes/)
  })

  it('is a 404 for other methods, and when back-channel logout is not configured', async () => {
    const s = await setup()
    expect((await send(s.gw, '/_gateway/backchannel-logout')).status).toBe(404)
    const off = await setup({ BACKCHANNEL_LOGOUT_CLIENT_IDS: undefined })
    expect((await deliver(off.gw, await off.logout())).status).toBe(404)
    const calls = await off.stub.calls()
    expect(calls.origin).toHaveLength(0)
  })

  it('answers 503 when the revocation store fails, and accepts the same token once it is back', async () => {
    let failing = true
    const flaky = new Proxy(await freshKv(), {
      get(target, prop) {
        if (prop === 'put' && failing) return () => Promise.reject(new Error('KV is down'))
        return Reflect.get(target, prop)
      },
    })
    const s = await setup({ REVOCATIONS: flaky })
    const token = await s.logout()
    const res = await deliver(s.gw, token)
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect((await body(res)).error).toBe('temporarily_unavailable')
    // The same isolate (key store, replay memory), the store back: the retry is not a replay.
    failing = false
    expect((await deliver(s.gw, token)).status).toBe(200)
    expect((await send(s.gw, '/x', bearer(await s.access({ sid: 'session-1' })))).status).toBe(401)
  })
})
