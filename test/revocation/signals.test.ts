/**
 * Shared Signals Framework 1.0 receiver through the real worker: SETs (RFC 8417) made at test time
 * with jose, pushed per RFC 8935 to POST /_gateway/signals, the transmitter's keys served by the
 * loopback stub, revocations written to a per-test view of KV. Event URIs as CAEP 1.0 §3,
 * RISC 1.0 §2 and SSF 1.0 §8.1.4 define them; subjects as RFC 9493 §3 and SSF 1.0 §3.
 */
import { SignJWT, type JWTPayload } from 'jose'
import { describe, expect, it } from 'vitest'
import { EVENTS } from '../../src/revocation/signals'
import {
  bearer,
  body,
  captureLogs,
  freshKv,
  listedRevocations,
  makeKey,
  mint,
  send,
  structuredEnv,
  Stub,
  type GatewayEnv,
  type TestKey,
} from '../helpers'

const ADMIN_TOKEN = 'admin-secret-0123456789abcdef0123456789'
const AUD = 'api://signals'
const RECEIVER = 'https://gw.test/_gateway/signals'
const now = () => Math.floor(Date.now() / 1000)

interface Setup {
  gw: GatewayEnv
  /** The gateway issuer whose tokens the signals revoke. */
  iss: string
  /** The transmitter's issuer. */
  tx: string
  idpKey: TestKey
  txKey: TestKey
  txStub: Stub
  set: (claims?: Record<string, unknown>, header?: Record<string, unknown>) => Promise<string>
  access: (claims?: Record<string, unknown>) => Promise<string>
}

async function setup(transmitter: Record<string, unknown> = {}, vars: GatewayEnv = {}) {
  const idp = new Stub()
  const txStub = new Stub()
  const [idpKey, txKey] = [await makeKey('ES256'), await makeKey('ES256')]
  await idp.publish(idpKey)
  await txStub.publish(txKey)
  const iss = `https://idp.test/${idp.id}`
  const tx = `https://tx.test/${txStub.id}`
  const gw = structuredEnv(
    idp,
    {
      issuers: [{ issuer: iss, jwksUrl: idp.jwksUrl, audiences: [AUD] }],
      transmitters: [
        {
          issuer: tx,
          jwksUrl: txStub.jwksUrl,
          audiences: [RECEIVER],
          issuers: [iss],
          ...transmitter,
        },
      ],
      routes: [{ path: '/', origin: idp.originUrl }],
    },
    { ADMIN_TOKEN, REVOCATIONS: await freshKv(), ...vars },
  )
  const s: Setup = {
    gw,
    iss,
    tx,
    idpKey,
    txKey,
    txStub,
    set: (claims = {}, header = {}) => signSet(txKey, { iss: tx, ...claims }, header),
    access: (claims = {}) => mint(idpKey, { iss, aud: AUD, ...claims }),
  }
  return s
}

/** A SET: claims with `null` left out. */
function signSet(
  key: TestKey,
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
) {
  const payload: Record<string, unknown> = {
    aud: RECEIVER,
    iat: now(),
    jti: crypto.randomUUID(),
    events: { [EVENTS.accountDisabled]: {} },
    ...claims,
  }
  for (const [k, v] of Object.entries(payload)) if (v === null) delete payload[k]
  return new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'secevent+jwt', ...header })
    .sign(key.privateKey)
}

const issSub = (s: Setup, sub = 'alice') => ({ format: 'iss_sub', iss: s.iss, sub })

function push(gw: GatewayEnv, set: string, headers: Record<string, string> = {}) {
  return send(gw, '/_gateway/signals', {
    method: 'POST',
    headers: { 'content-type': 'application/secevent+jwt', accept: 'application/json', ...headers },
    body: set,
  })
}

const records = (s: Setup) => listedRevocations(s.gw, ADMIN_TOKEN)

async function status(s: Setup, claims: Record<string, unknown> = {}): Promise<number> {
  return (await send(s.gw, '/x', bearer(await s.access(claims)))).status
}

async function expectAccepted(res: Response) {
  expect(res.status).toBe(202)
  expect(await res.text()).toBe('')
}

/** RFC 8935 §2.3: 400 with {err, description}; nothing written. */
async function expectError(s: Setup, res: Response, err: string) {
  expect(res.status).toBe(400)
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  const b = await body(res)
  expect(b).toEqual({ err, description: expect.any(String) })
  expect(await records(s)).toEqual([])
}

describe('events that revoke', () => {
  it('RISC account-disabled (sub_id iss_sub): the subject’s tokens issued until the SET are refused', async () => {
    const s = await setup()
    const iat = now() - 30
    const res = await push(s.gw, await s.set({ iat, sub_id: issSub(s) }))
    await expectAccepted(res)
    expect(await status(s, { iat })).toBe(401)
    expect(await status(s, { iat: iat + 1 })).toBe(200)
    expect(await status(s, { sub: 'bob', iat })).toBe(200)
    expect(await records(s)).toEqual([
      expect.objectContaining({
        kind: 'sub',
        iss: s.iss,
        sub: 'alice',
        before: iat,
        source: `ssf:${EVENTS.accountDisabled}`,
      }),
    ])
  })

  it('RISC account-purged, sessions-revoked, credential-compromise, and CAEP credential-change cut off the subject', async () => {
    const s = await setup()
    const events = [
      EVENTS.accountPurged,
      EVENTS.sessionsRevoked,
      EVENTS.credentialCompromise,
      EVENTS.credentialChange,
    ]
    for (const [i, event] of events.entries()) {
      const sub = `user-${i}`
      const payload =
        event === EVENTS.credentialChange
          ? { credential_type: 'password', change_type: 'update' }
          : event === EVENTS.credentialCompromise
            ? { credential_type: 'password' }
            : {}
      const set = await s.set({ sub_id: issSub(s, sub), events: { [event]: payload } })
      await expectAccepted(await push(s.gw, set))
      expect(await status(s, { sub, iat: now() - 5 }), event).toBe(401)
    }
    expect((await records(s)).map((r) => r.source).sort()).toEqual(
      events.map((e) => `ssf:${e}`).sort(),
    )
  })

  it('CAEP session-revoked about one session (complex subject) ends only that session', async () => {
    const s = await setup()
    const sub_id = {
      format: 'complex',
      user: issSub(s),
      session: { format: 'opaque', id: 'session-42' },
    }
    const set = await s.set({
      sub_id,
      events: { [EVENTS.sessionRevoked]: { initiating_entity: 'policy', event_timestamp: now() } },
    })
    await expectAccepted(await push(s.gw, set))
    expect(await status(s, { sid: 'session-42' })).toBe(401)
    expect(await status(s, { sid: 'session-43', iat: now() - 10 })).toBe(200)
    const [record] = await records(s)
    expect(record).toMatchObject({ kind: 'sid', iss: s.iss, sid: 'session-42' })
    expect(record!.exp).toBeGreaterThanOrEqual(now() + 86_400 - 2)
  })

  it('CAEP session-revoked about a user cuts off all of the user’s sessions', async () => {
    const s = await setup()
    const set = await s.set({ sub_id: issSub(s), events: { [EVENTS.sessionRevoked]: {} } })
    await expectAccepted(await push(s.gw, set))
    expect(await status(s, { sid: 'any', iat: now() - 1 })).toBe(401)
  })

  it('reads the subject from the event’s own `subject` member (CAEP/RISC events before SSF 1.0)', async () => {
    const s = await setup()
    const set = await s.set({
      events: { [EVENTS.accountDisabled]: { subject: issSub(s, 'legacy'), reason: 'hijacking' } },
    })
    await expectAccepted(await push(s.gw, set))
    expect(await status(s, { sub: 'legacy', iat: now() - 1 })).toBe(401)
  })
})

describe('subject identifiers (RFC 9493)', () => {
  it('opaque: the sub at each issuer the transmitter may revoke for', async () => {
    const s = await setup()
    await expectAccepted(await push(s.gw, await s.set({ sub_id: { format: 'opaque', id: 'u-7' } })))
    expect(await status(s, { sub: 'u-7', iat: now() - 1 })).toBe(401)
  })

  it('email: acknowledged and not acted on, unless emailClaim maps it to sub', async () => {
    const off = await setup()
    const email = { format: 'email', email: 'alice@example.com' }
    await expectAccepted(await push(off.gw, await off.set({ sub_id: email })))
    expect(await records(off)).toEqual([])
    expect(await status(off, { sub: 'alice@example.com', iat: now() - 1 })).toBe(200)

    const on = await setup({ emailClaim: 'sub' })
    await expectAccepted(await push(on.gw, await on.set({ sub_id: email })))
    expect(await status(on, { sub: 'alice@example.com', iat: now() - 1 })).toBe(401)
  })

  it('iss_sub of an issuer the transmitter may not revoke for: acknowledged, nothing written', async () => {
    const s = await setup()
    const other = { format: 'iss_sub', iss: 'https://someone-else.test', sub: 'alice' }
    await expectAccepted(await push(s.gw, await s.set({ sub_id: other })))
    expect(await records(s)).toEqual([])
    expect(await status(s, { iat: now() - 1 })).toBe(200)
  })

  it('aliases: each identifier it holds', async () => {
    const s = await setup()
    const sub_id = {
      format: 'aliases',
      identifiers: [{ format: 'phone_number', phone_number: '+12065550100' }, issSub(s, 'al')],
    }
    await expectAccepted(await push(s.gw, await s.set({ sub_id })))
    expect(await status(s, { sub: 'al', iat: now() - 1 })).toBe(401)
  })

  it('a subject identifier that breaks its format is invalid_request', async () => {
    const s = await setup()
    const noSub = { format: 'iss_sub', iss: s.iss }
    await expectError(s, await push(s.gw, await s.set({ sub_id: noSub })), 'invalid_request')
    await expectError(s, await push(s.gw, await s.set({ sub_id: 'alice' })), 'invalid_request')
    await expectError(s, await push(s.gw, await s.set({ sub_id: null })), 'invalid_request')
  })
})

describe('events that do not revoke', () => {
  it('an unknown event and an SSF verification event: 202, logged, nothing written', async () => {
    const s = await setup()
    const logs = captureLogs()
    try {
      const unknown = await s.set({
        sub_id: issSub(s),
        events: { 'https://schemas.example.com/event-type/new-thing': { x: 1 } },
      })
      await expectAccepted(await push(s.gw, unknown))
      const verification = await s.set({
        sub_id: { format: 'opaque', id: 'stream-1' },
        events: { [EVENTS.verification]: { state: 'VGhpcyBpcyBhbiBleGFtcGxl' } },
      })
      await expectAccepted(await push(s.gw, verification))
    } finally {
      logs.restore()
    }
    expect(await records(s)).toEqual([])
    expect(await status(s, { iat: now() - 1 })).toBe(200)
    const acks = logs.lines.filter((l) => l.event === 'signal_acknowledged')
    expect(acks.map((l) => l.setEvent)).toEqual([
      'https://schemas.example.com/event-type/new-thing',
      EVENTS.verification,
    ])
    expect(acks.every((l) => l.source === s.tx)).toBe(true)
  })

  it('CAEP credential-change with credentialChange = "ignore"', async () => {
    const s = await setup({ credentialChange: 'ignore' })
    const set = await s.set({
      sub_id: issSub(s),
      events: { [EVENTS.credentialChange]: { credential_type: 'password', change_type: 'update' } },
    })
    await expectAccepted(await push(s.gw, set))
    expect(await records(s)).toEqual([])
  })

  it('logs every applied signal with its source, event and the records written, no subject in the clear', async () => {
    const s = await setup()
    const logs = captureLogs()
    try {
      await expectAccepted(await push(s.gw, await s.set({ sub_id: issSub(s, 'quiet-subject') })))
    } finally {
      logs.restore()
    }
    const applied = logs.lines.find((l) => l.event === 'signal_applied')
    const [record] = await records(s)
    expect(applied).toMatchObject({
      source: s.tx,
      setEvent: EVENTS.accountDisabled,
      revoked: record!.id,
    })
    expect(logs.text()).not.toContain('quiet-subject')
  })
})

describe('validation: each failure is an RFC 8935 error and writes nothing', () => {
  it('invalid_key: a key the transmitter does not publish, or its kid with another key', async () => {
    const s = await setup()
    const stranger = await makeKey('ES256')
    const set = await signSet(stranger, { iss: s.tx, sub_id: issSub(s) })
    await expectError(s, await push(s.gw, set), 'invalid_key')
    const forger = { ...(await makeKey('ES256')), kid: s.txKey.kid }
    await expectError(
      s,
      await push(s.gw, await signSet(forger, { iss: s.tx, sub_id: issSub(s) })),
      'invalid_key',
    )
  })

  it('invalid_key: a SET signed with the gateway issuer’s key (another issuer’s key)', async () => {
    const s = await setup()
    const set = await signSet(s.idpKey, { iss: s.tx, sub_id: issSub(s) })
    await expectError(s, await push(s.gw, set), 'invalid_key')
  })

  it('invalid_issuer: not a configured transmitter, even a gateway issuer', async () => {
    const s = await setup()
    const set = await signSet(s.idpKey, { iss: s.iss, sub_id: issSub(s) })
    await expectError(s, await push(s.gw, set), 'invalid_issuer')
    await expectError(
      s,
      await push(s.gw, await s.set({ iss: 'https://evil.test', sub_id: issSub(s) })),
      'invalid_issuer',
    )
  })

  it('invalid_audience: another receiver, or none', async () => {
    const s = await setup()
    await expectError(
      s,
      await push(s.gw, await s.set({ aud: 'https://other.test', sub_id: issSub(s) })),
      'invalid_audience',
    )
    await expectError(
      s,
      await push(s.gw, await s.set({ aud: null, sub_id: issSub(s) })),
      'invalid_audience',
    )
  })

  it('invalid_request: iat missing or older than an hour, exp past, jti missing', async () => {
    const s = await setup()
    const sub_id = issSub(s)
    await expectError(s, await push(s.gw, await s.set({ sub_id, iat: null })), 'invalid_request')
    await expectError(
      s,
      await push(s.gw, await s.set({ sub_id, iat: now() - 3700 })),
      'invalid_request',
    )
    await expectError(
      s,
      await push(s.gw, await s.set({ sub_id, exp: now() - 60 })),
      'invalid_request',
    )
    await expectError(s, await push(s.gw, await s.set({ sub_id, jti: null })), 'invalid_request')
  })

  it('invalid_request: the same SET twice (jti replay)', async () => {
    const s = await setup()
    const set = await s.set({ sub_id: issSub(s) })
    await expectAccepted(await push(s.gw, set))
    const again = await push(s.gw, set)
    expect(again.status).toBe(400)
    expect(await body(again)).toEqual({
      err: 'invalid_request',
      description: 'jti was seen before',
    })
  })

  it('invalid_request: another explicit type (an access token is not a SET)', async () => {
    const s = await setup()
    await expectError(
      s,
      await push(s.gw, await s.set({ sub_id: issSub(s) }, { typ: 'at+jwt' })),
      'invalid_request',
    )
  })

  it('invalid_request: events missing, empty, not an object, or an event payload not an object', async () => {
    const s = await setup()
    const sub_id = issSub(s)
    for (const events of [
      null,
      {},
      [EVENTS.accountDisabled],
      { [EVENTS.accountDisabled]: 'yes' },
    ]) {
      await expectError(s, await push(s.gw, await s.set({ sub_id, events })), 'invalid_request')
    }
  })

  it('invalid_request: not application/secevent+jwt, too large, or not a JWT', async () => {
    const s = await setup()
    const set = await s.set({ sub_id: issSub(s) })
    await expectError(
      s,
      await push(s.gw, set, { 'content-type': 'application/jwt' }),
      'invalid_request',
    )
    await expectError(s, await push(s.gw, 'a'.repeat(17 * 1024)), 'invalid_request')
    await expectError(s, await push(s.gw, 'not a token'), 'invalid_request')
  })

  it('authentication_failed: the configured Authorization header missing or wrong', async () => {
    const secret = 'Bearer push-secret-0123456789abcdef'
    const s = await setup({ authorizationSecret: 'SSF_PUSH' }, { SSF_PUSH: secret })
    const set = () => s.set({ sub_id: issSub(s) })
    await expectError(s, await push(s.gw, await set()), 'authentication_failed')
    await expectError(
      s,
      await push(s.gw, await set(), { authorization: 'Bearer wrong' }),
      'authentication_failed',
    )
    await expectAccepted(await push(s.gw, await set(), { authorization: secret }))
  })

  it('is a 404 when no transmitter is configured, and for other methods', async () => {
    const s = await setup()
    expect((await send(s.gw, '/_gateway/signals')).status).toBe(404)
    const gw = { ...s.gw, GATEWAY: { ...(s.gw.GATEWAY as object), transmitters: [] } }
    expect((await push(gw, await s.set({ sub_id: issSub(s) }))).status).toBe(404)
  })
})

describe('transmitter keys', () => {
  it('found by SSF discovery (/.well-known/ssf-configuration inserted after the host)', async () => {
    const s = await setup()
    // The stub's namespace is its own issuer: the transmitter's iss is the stub's URL.
    const tx = s.txStub.base
    const gw = structuredEnv(
      s.txStub,
      {
        issuers: [{ issuer: s.iss, jwksUrl: 'http://127.0.0.1:1/unused', audiences: [AUD] }],
        transmitters: [{ issuer: tx, audiences: [RECEIVER], issuers: [s.iss] }],
        routes: [{ path: '/', origin: s.txStub.originUrl }],
      },
      { REVOCATIONS: await freshKv() },
    )
    const set = await signSet(s.txKey, { iss: tx, sub_id: issSub(s) })
    await expectAccepted(await push(gw, set))
    expect((await s.txStub.calls()).discoveryFetches).toBe(1)
  })
})
