/**
 * Bench worker (e): the floor for a repeated token. The least work any gateway with a
 * verified-token cache must do: read the bearer token, look it up in a Map, copy the request
 * headers without Authorization, set three identity headers, forward. It verifies NOTHING (a miss
 * stores a fixed identity): a limit to measure against, never a peer and never to be deployed.
 */
interface Env {
  readonly ORIGIN_URL: string
}

interface Seen {
  readonly sub: string
  readonly iss: string
  readonly claims: string
}

const seen = new Map<string, Seen>()

export default {
  async fetch(request, env) {
    const auth = request.headers.get('authorization') ?? ''
    if (!auth.startsWith('Bearer ')) return new Response(null, { status: 401 })
    const token = auth.slice(7)
    let identity = seen.get(token)
    if (identity === undefined) {
      identity = { sub: 'bench-user', iss: 'https://issuer.bench.invalid', claims: '{}' }
      seen.set(token, identity)
    }
    const url = new URL(request.url)
    const headers = new Headers(request.headers)
    headers.delete('authorization')
    headers.set('x-auth-sub', identity.sub)
    headers.set('x-auth-iss', identity.iss)
    headers.set('x-auth-claims', identity.claims)
    return fetch(env.ORIGIN_URL + url.pathname + url.search, {
      method: request.method,
      headers,
      body: request.body,
    })
  },
} satisfies ExportedHandler<Env>
