/**
 * End to end with a real OpenID Provider (oidc-provider, back-channel logout enabled, started in
 * Node by test/node/oidc-logout-setup.ts): a user logs in (authorization code + PKCE), their JWT
 * access token passes the gateway; the session is ended at the provider, the provider sends its
 * logout token, which reaches the real gateway worker through the Node relay, and the same access
 * token is refused at the edge on the next request.
 */
import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { bearer, body, freshKv, gatewayEnv, send, sleep, Stub } from '../helpers'

const OP = (env as unknown as { OIDC_LOGOUT_URL: string }).OIDC_LOGOUT_URL
// As in test/node/oidc-logout-setup.ts.
const CLIENT_ID = 'gateway-rp'
const RESOURCE = 'https://api.gateway.test/logout'
const ADMIN_TOKEN = 'admin-secret-0123456789abcdef0123456789'

async function control<T>(name: string, payload: unknown = {}): Promise<T> {
  const res = await fetch(`${OP}/_harness/${name}`, {
    method: 'POST',
    body: JSON.stringify(payload),
  })
  const out = (await res.json()) as T & { error?: string }
  if (res.status !== 200) throw new Error(`${name}: ${out.error}`)
  return out
}

interface Held {
  id: string
  contentType: string
  body: string
}

function claimsOf(jwt: string): Record<string, unknown> {
  return JSON.parse(atob(jwt.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/')))
}

/** Relays each logout token the provider sends into the worker, and the worker's status back. */
async function relay(gw: Record<string, unknown>, until: Promise<unknown>): Promise<Response[]> {
  const answers: Response[] = []
  let done = false
  void until.finally(() => (done = true))
  while (!done) {
    for (const h of await control<Held[]>('drain')) {
      const res = await send(gw, '/_gateway/backchannel-logout', {
        method: 'POST',
        headers: { 'content-type': h.contentType },
        body: h.body,
      })
      answers.push(res.clone())
      await control('answer', { id: h.id, status: res.status })
    }
    await sleep(20)
  }
  return answers
}

function gateway(stub: Stub, kv: KVNamespace, revokeSubject: string) {
  return gatewayEnv(stub, {
    JWT_ISSUER: OP,
    JWT_AUDIENCE: RESOURCE,
    JWKS_URL: undefined,
    JWT_TYPES: 'at+jwt',
    BACKCHANNEL_LOGOUT_CLIENT_IDS: CLIENT_ID,
    BACKCHANNEL_LOGOUT_REQUIRE_TYP: 'true',
    BACKCHANNEL_LOGOUT_REVOKE_SUBJECT: revokeSubject,
    ADMIN_TOKEN,
    REVOCATIONS: kv,
  })
}

describe('back-channel logout from a real OpenID Provider (oidc-provider)', () => {
  it('ends the session at the provider; its logout token revokes the user’s token at the edge', async () => {
    const stub = new Stub()
    // Only the sid revocation may refuse the token here: the session is what was ended.
    const gw = gateway(stub, await freshKv(), 'without-sid')
    const alice = await control<{ session: string; accessToken: string }>('login', {
      account: `alice-${stub.id}`,
    })
    const other = await control<{ session: string; accessToken: string }>('login', {
      account: `alice-${stub.id}`,
    })
    expect(claimsOf(alice.accessToken)).toMatchObject({ iss: OP, aud: RESOURCE })
    expect(typeof claimsOf(alice.accessToken).sid).toBe('string')
    expect((await send(gw, '/x', bearer(alice.accessToken))).status).toBe(200)
    expect((await send(gw, '/x', bearer(other.accessToken))).status).toBe(200)

    const ending = control<{ backchannel: string[] }>('logout', { session: alice.session })
    const answers = await relay(gw, ending)
    const ended = await ending

    expect(answers).toHaveLength(1)
    expect(answers[0]!.status).toBe(200)
    // The provider saw the gateway's 200 as a successful back-channel logout.
    expect(ended.backchannel).toEqual(['success'])
    const refused = await send(gw, '/x', bearer(alice.accessToken))
    expect(refused.status).toBe(401)
    expect(refused.headers.get('www-authenticate')).toContain('error="invalid_token"')
    // The user's other session (another browser) was not ended.
    expect((await send(gw, '/x', bearer(other.accessToken))).status).toBe(200)

    const listed = await send(gw, '/_gateway/revocations', {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    })
    const records = (await body(listed)).records as Record<string, unknown>[]
    expect(records).toEqual([
      expect.objectContaining({
        kind: 'sid',
        iss: OP,
        sid: claimsOf(alice.accessToken).sid,
        source: 'backchannel-logout',
      }),
    ])
  })

  it('with the default (revokeSubject always) every token of the subject issued so far goes', async () => {
    const stub = new Stub()
    const gw = gateway(stub, await freshKv(), 'always')
    const account = `bob-${stub.id}`
    const first = await control<{ session: string; accessToken: string }>('login', { account })
    const second = await control<{ session: string; accessToken: string }>('login', { account })
    const ending = control('logout', { session: first.session })
    const answers = await relay(gw, ending)
    await ending
    expect(answers.map((a) => a.status)).toEqual([200])
    expect((await send(gw, '/x', bearer(first.accessToken))).status).toBe(401)
    expect((await send(gw, '/x', bearer(second.accessToken))).status).toBe(401)
  })
})
