/**
 * Bench worker (c): Hono's built-in `jwk` middleware with `jwks_uri`, as its documentation shows it,
 * in front of a forward to the origin. Note that middleware fetches the JWKS and imports the key on
 * every request: that is its documented behaviour, and part of what is measured.
 */
import { Hono, type MiddlewareHandler } from 'hono'
import { jwk } from 'hono/jwk'

interface Env {
  readonly ORIGIN_URL: string
  readonly JWT_ISSUER: string
  readonly JWT_AUDIENCE: string
  readonly JWKS_URL: string
}

const app = new Hono<{ Bindings: Env; Variables: { jwtPayload: { sub?: unknown } } }>()

// The options need env, which only arrives with the first request.
let auth: MiddlewareHandler | undefined
app.use(async (c, next) => {
  auth ??= jwk({
    jwks_uri: c.env.JWKS_URL,
    alg: ['RS256', 'ES256', 'EdDSA'],
    verification: { iss: c.env.JWT_ISSUER, aud: c.env.JWT_AUDIENCE },
  })
  return auth(c, next)
})

app.all('*', (c) => {
  const url = new URL(c.req.url)
  const headers = new Headers(c.req.raw.headers)
  headers.delete('authorization')
  headers.set('x-auth-sub', String(c.var.jwtPayload.sub ?? ''))
  return fetch(c.env.ORIGIN_URL + url.pathname + url.search, {
    method: c.req.method,
    headers,
    body: c.req.raw.body,
  })
})

export default app
