/**
 * Bench worker (b): the gateway a user would write by hand with Hono and jose's
 * `createRemoteJWKSet` (which caches the JWKS in the isolate): verify, strip Authorization, add the
 * subject, forward. Deliberately the straightforward version, not a tuned one.
 */
import { Hono } from 'hono'
import { createRemoteJWKSet, jwtVerify } from 'jose'

interface Env {
  readonly ORIGIN_URL: string
  readonly JWT_ISSUER: string
  readonly JWT_AUDIENCE: string
  readonly JWKS_URL: string
}

let jwks: ReturnType<typeof createRemoteJWKSet> | undefined

const app = new Hono<{ Bindings: Env }>()

app.all('*', async (c) => {
  const m = /^Bearer (.+)$/i.exec(c.req.header('authorization') ?? '')
  if (!m) return c.json({ error: 'unauthorized' }, 401)
  jwks ??= createRemoteJWKSet(new URL(c.env.JWKS_URL))
  let sub: string | undefined
  try {
    const { payload } = await jwtVerify(m[1]!, jwks, {
      issuer: c.env.JWT_ISSUER,
      audience: c.env.JWT_AUDIENCE,
      algorithms: ['RS256', 'ES256', 'EdDSA'],
    })
    sub = payload.sub
  } catch {
    return c.json({ error: 'invalid_token' }, 401)
  }
  const url = new URL(c.req.url)
  const headers = new Headers(c.req.raw.headers)
  headers.delete('authorization')
  headers.set('x-auth-sub', sub ?? '')
  return fetch(c.env.ORIGIN_URL + url.pathname + url.search, {
    method: c.req.method,
    headers,
    body: c.req.raw.body,
  })
})

export default app
