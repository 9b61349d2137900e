/**
 * The autocannon fallback, in its own process so it never shares an event loop with the origin or
 * the orchestrator. argv[2] is JSON: { url, connections, durationS, headers?, tokensFile?, start? }.
 * With tokensFile, each request carries the next token of the pool (the unique-token scenario);
 * with proofsFile, one DPoP-bound token and the next proof of the file (the DPoP scenario).
 * Prints one JSON line: { requests, seconds, p50Ms, p99Ms, non2xx, errors }.
 */
import { readFileSync } from 'node:fs'
import autocannon from 'autocannon'

const o = JSON.parse(process.argv[2] ?? '{}')
/** @type {Record<string, unknown>} */
const opts = {
  url: o.url,
  connections: o.connections,
  duration: o.durationS,
  headers: o.headers ?? {},
}
if (o.tokensFile) {
  const tokens = readFileSync(o.tokensFile, 'utf8')
    .split('\n')
    .filter((t) => t !== '')
    .map((t) => `Bearer ${t}`)
  let i = (o.start ?? 0) % tokens.length
  opts.requests = [
    {
      setupRequest(/** @type {{ headers?: Record<string, string> }} */ req) {
        i = (i + 1) % tokens.length
        return { ...req, headers: { ...req.headers, authorization: tokens[i] } }
      },
    },
  ]
}
if (o.proofsFile) {
  // The DPoP scenario: the Authorization value, then one proof per line; a fresh proof per request.
  const [authorization, ...proofs] = readFileSync(o.proofsFile, 'utf8')
    .split('\n')
    .filter((t) => t !== '')
  let i = 0
  opts.requests = [
    {
      setupRequest(/** @type {{ headers?: Record<string, string> }} */ req) {
        const dpop = proofs[i++ % proofs.length]
        return { ...req, headers: { ...req.headers, authorization, dpop } }
      },
    },
  ]
}
const r = await autocannon(opts)
process.stdout.write(
  `${JSON.stringify({
    requests: r.requests.total,
    seconds: r.duration,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
  })}\n`,
)
