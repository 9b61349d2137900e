/**
 * Bench worker (a): a bare pass-through to the origin, no auth. The floor every gateway is
 * measured against: one inbound request, one outbound fetch.
 */
interface Env {
  readonly ORIGIN_URL: string
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url)
    return fetch(env.ORIGIN_URL + url.pathname + url.search, request)
  },
} satisfies ExportedHandler<Env>
