/**
 * globalSetup: a real OpenID Provider (the shared harness, test/node/oidc-provider.ts) with
 * back-channel logout, for test/e2e/backchannel-logout-oidc.test.ts, handed to workerd as
 * OIDC_LOGOUT_URL.
 *
 * The gateway under test runs inside workerd and has no port of its own, so the provider's
 * back-channel logout URI is a loopback relay here in Node: each logout token the provider POSTs
 * is held (the provider's request stays open) until the workerd test drains it, delivers it to
 * the worker and reports the worker's answer, which the relay then gives the provider. So the
 * provider sees exactly the gateway's status, as it would with the gateway on the network.
 *
 * Controls (POST {OIDC_LOGOUT_URL}/_harness/<name>, JSON):
 *   login  {account}        an authorization-code login in a fresh browser session (cookie jar
 *                           kept here): {session, accessToken, idToken}
 *   logout {session}        RP-initiated logout of that session at the provider, confirmed; answers
 *                           when the provider has delivered its logout tokens: {backchannel}
 *   drain  {}               logout tokens waiting at the relay: [{id, contentType, body}]
 *   answer {id, status}     the gateway's status for one of them, handed back to the provider
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestProject } from 'vitest/node'
import { jwtAccessTokens, startOidcProvider } from './oidc-provider'

declare module 'vitest' {
  export interface ProvidedContext {
    oidcLogoutUrl: string
  }
}

/** What test/e2e/backchannel-logout-oidc.test.ts configures the gateway with (it restates them). */
export const LOGOUT_CLIENT = {
  id: 'gateway-rp',
  secret: 'gateway-rp-secret-0123456789abcdef0123',
  redirectUri: 'https://app.gateway.test/callback',
}
export const LOGOUT_RESOURCE = 'https://api.gateway.test/logout'
/** How long the relay holds the provider's request for the test to answer, in milliseconds. */
const RELAY_HOLD_MS = 10_000

interface Held {
  readonly id: string
  readonly contentType: string
  readonly body: string
  readonly respond: (status: number) => void
}

type Jar = Map<string, string>

function cookieHeader(jar: Jar): string {
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
}

function keepCookies(jar: Jar, res: Response): void {
  for (const line of res.headers.getSetCookie()) {
    const [pair] = line.split(';')
    const eq = pair!.indexOf('=')
    const name = pair!.slice(0, eq).trim()
    const value = pair!.slice(eq + 1).trim()
    if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) jar.delete(name)
    else jar.set(name, value)
  }
}

function b64u(buf: Buffer): string {
  return buf.toString('base64url')
}

async function read(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export default async function ({ provide }: TestProject) {
  const held: Held[] = []
  let nextId = 0
  const relay = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const body = await read(req)
      const id = String(++nextId)
      const timer = setTimeout(() => respond(504), RELAY_HOLD_MS)
      function respond(status: number) {
        clearTimeout(timer)
        const i = held.findIndex((h) => h.id === id)
        if (i !== -1) held.splice(i, 1)
        if (!res.headersSent) res.writeHead(status).end()
      }
      held.push({ id, contentType: req.headers['content-type'] ?? '', body, respond })
    })()
  })
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()))
  const relayUrl = `http://127.0.0.1:${(relay.address() as AddressInfo).port}/backchannel-logout`

  const sessions = new Map<string, Jar>()
  const backchannel: string[] = []

  const op = await startOidcProvider({
    algorithms: ['ES256', 'RS256'],
    configuration: {
      clients: [
        {
          client_id: LOGOUT_CLIENT.id,
          client_secret: LOGOUT_CLIENT.secret,
          grant_types: ['authorization_code'],
          response_types: ['code'],
          redirect_uris: [LOGOUT_CLIENT.redirectUri],
          backchannel_logout_uri: relayUrl,
          backchannel_logout_session_required: true,
        },
      ],
      features: {
        devInteractions: { enabled: true },
        backchannelLogout: { enabled: true },
        rpInitiatedLogout: { enabled: true },
        resourceIndicators: jwtAccessTokens({ [LOGOUT_RESOURCE]: { scope: 'read', alg: 'ES256' } }),
      },
      // The session id rides in the access token too, as IdPs that put sid in tokens do.
      extraTokenClaims: (_ctx, token) =>
        'sid' in token && typeof token.sid === 'string' ? { sid: token.sid } : undefined,
      findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
      // oidc-provider refuses to POST to special-use addresses (SSRF protection); the relay is on
      // loopback, so this test provider sends without that dispatcher. Its 2.5 s timeout stays.
      fetch: (url, options) => {
        const { dispatcher: _ssrf, ...rest } = options as RequestInit & { dispatcher?: unknown }
        return globalThis.fetch(url, rest)
      },
    },
    setup: (provider) => {
      provider.on('backchannel.success', () => backchannel.push('success'))
      provider.on('backchannel.error', (_ctx, err) => backchannel.push(`error: ${String(err)}`))
    },
    controls: {
      login: async (body) => {
        const account = (body as { account: string }).account
        const jar: Jar = new Map()
        const go = async (url: string | URL, init: RequestInit = {}) => {
          const res = await fetch(new URL(url, op.url), {
            ...init,
            redirect: 'manual',
            headers: { ...(init.headers as Record<string, string>), cookie: cookieHeader(jar) },
          })
          keepCookies(jar, res)
          return res
        }
        const form = (fields: Record<string, string>): RequestInit => ({
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams(fields).toString(),
        })
        const verifier = b64u(randomBytes(32))
        const auth = new URL('/auth', op.url)
        auth.search = new URLSearchParams({
          client_id: LOGOUT_CLIENT.id,
          response_type: 'code',
          scope: 'openid read',
          redirect_uri: LOGOUT_CLIENT.redirectUri,
          resource: LOGOUT_RESOURCE,
          state: b64u(randomBytes(8)),
          code_challenge: b64u(createHash('sha256').update(verifier).digest()),
          code_challenge_method: 'S256',
        }).toString()
        let res = await go(auth)
        // Two interactions (login, then consent), each a redirect away; then the code.
        const prompts = ['login', 'consent']
        for (let hops = 0; hops < 12; hops++) {
          const location = res.headers.get('location')
          await res.body?.cancel()
          if (location === null) throw new Error(`login stopped at HTTP ${res.status}`)
          if (location.startsWith(LOGOUT_CLIENT.redirectUri)) {
            const code = new URL(location).searchParams.get('code')
            if (!code) throw new Error(`no code in ${location}`)
            const token = await fetch(new URL('/token', op.url), {
              method: 'POST',
              headers: {
                'content-type': 'application/x-www-form-urlencoded',
                authorization: `Basic ${Buffer.from(`${LOGOUT_CLIENT.id}:${LOGOUT_CLIENT.secret}`).toString('base64')}`,
              },
              body: new URLSearchParams({
                grant_type: 'authorization_code',
                code,
                redirect_uri: LOGOUT_CLIENT.redirectUri,
                code_verifier: verifier,
                resource: LOGOUT_RESOURCE,
              }).toString(),
            })
            const tokens = (await token.json()) as Record<string, string>
            if (!tokens.access_token) throw new Error(`token endpoint: ${JSON.stringify(tokens)}`)
            const session = b64u(randomBytes(9))
            sessions.set(session, jar)
            return { session, accessToken: tokens.access_token, idToken: tokens.id_token }
          }
          const interaction = /^\/interaction\/([^/?]+)$/.exec(new URL(location, op.url).pathname)
          if (interaction) {
            const prompt = prompts.shift()
            if (!prompt) throw new Error('more interactions than login and consent')
            res = await go(
              `/interaction/${interaction[1]}`,
              form(prompt === 'login' ? { prompt, login: account, password: 'x' } : { prompt }),
            )
          } else {
            res = await go(location)
          }
        }
        throw new Error('login did not finish')
      },
      logout: async (body) => {
        const jar = sessions.get((body as { session: string }).session)
        if (!jar) throw new Error('unknown session')
        const headers = { cookie: cookieHeader(jar) }
        const page = await fetch(new URL(`/session/end?client_id=${LOGOUT_CLIENT.id}`, op.url), {
          headers,
        })
        keepCookies(jar, page)
        const xsrf = /name="xsrf" value="([^"]+)"/.exec(await page.text())?.[1]
        if (!xsrf) throw new Error('no logout form')
        const before = backchannel.length
        const confirm = await fetch(new URL('/session/end/confirm', op.url), {
          method: 'POST',
          redirect: 'manual',
          headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ xsrf, logout: 'yes' }).toString(),
        })
        await confirm.body?.cancel()
        return { status: confirm.status, backchannel: backchannel.slice(before) }
      },
      drain: () => held.map(({ id, contentType, body }) => ({ id, contentType, body })),
      answer: (body) => {
        const { id, status } = body as { id: string; status: number }
        held.find((h) => h.id === id)?.respond(status)
        return { ok: true }
      },
    },
  })
  provide('oidcLogoutUrl', op.url)
  return async () => {
    for (const h of [...held]) h.respond(503)
    await op.close()
    await new Promise<void>((r) => relay.close(() => r()))
  }
}
