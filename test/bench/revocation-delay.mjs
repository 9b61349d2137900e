/**
 * Write-to-enforcement delay of the REVOCATION_LOG Durable Object between gateway isolates, and
 * the object's request rate with N isolates. Not part of npm test (it runs for minutes):
 *
 *   node test/bench/revocation-delay.mjs                        100 writes, N = 2,8,16 isolates
 *   node test/bench/revocation-delay.mjs --writes 20 --isolates 2,4 --rate-seconds 5
 *
 * One workerd (Miniflare, resolved through wrangler as run.mjs does) runs the gateway bundle as
 * separate workers, each its own isolate: the object's host and N gateways bound to it, with the
 * production defaults (REVOCATION_SYNC_MS 1000, so the Cache API TTL is 1 s). All workers share
 * one Cache API, as the isolates of one Cloudflare location do.
 *
 * Delay: per write, a fresh token is accepted by isolate B, then revoked through isolate A's admin
 * API; B is polled every --poll-ms until it refuses. Delay = first refusal - write acknowledged.
 * Rate: every isolate sends requests in a loop for --rate-seconds while --rate-writes revocations
 * per second go through isolate 0; the object's `changes` calls per second are read from its
 * stats() (RPC from Node), with the location cache on and off.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'

const { values: opt } = parseArgs({
  options: {
    writes: { type: 'string', default: '100' },
    isolates: { type: 'string', default: '2,8,16' },
    'rate-seconds': { type: 'string', default: '10' },
    'poll-ms': { type: 'string', default: '10' },
    'sync-ms': { type: 'string', default: '1000' },
    'rate-writes': { type: 'string', default: '1' },
  },
})
const WRITES = Number(opt.writes)
const ISOLATE_COUNTS = opt.isolates.split(',').map(Number)
const RATE_S = Number(opt['rate-seconds'])
const POLL_MS = Number(opt['poll-ms'])
const SYNC_MS = opt['sync-ms']
/** Writes per second during the rate measurement (0: none), so versions move as in production. */
const RATE_WRITES = Number(opt['rate-writes'])
const ISSUER = 'https://issuer.delay.test'
const AUDIENCE = 'api://delay'
const ADMIN_TOKEN = 'delay-bench-admin-token-0123456789abcdef'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../..')
const say = (/** @type {string} */ m) => process.stderr.write(`[revocation-delay] ${m}\n`)
const requireFromRoot = createRequire(join(root, 'package.json'))
const requireFromWrangler = createRequire(requireFromRoot.resolve('wrangler/package.json'))
const { Miniflare, convertV4MiniflareOptions, Log, LogLevel } = await import(
  pathToFileURL(requireFromWrangler.resolve('miniflare')).href
)
const esbuild = await import(pathToFileURL(requireFromWrangler.resolve('esbuild')).href)

const dir = mkdtempSync(join(tmpdir(), 'revocation-delay-'))
const bundle = join(dir, 'gateway.mjs')
await esbuild.build({
  entryPoints: [join(root, 'src/index.ts')],
  outfile: bundle,
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  conditions: ['workerd', 'worker', 'browser'],
  mainFields: ['module', 'main'],
  external: ['cloudflare:*', 'node:*'],
  logLevel: 'silent',
})

// The issuer's keys and the origin, in this process (tiny next to the workers).
const { privateKey, publicKey } = await generateKeyPair('ES256')
const jwks = JSON.stringify({
  keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }],
})
const server = createServer((req, res) => {
  if (req.url === '/jwks') res.writeHead(200, { 'content-type': 'application/json' }).end(jwks)
  else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
})
await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)))
const port = /** @type {import('node:net').AddressInfo} */ (server.address()).port
const base = `http://127.0.0.1:${port}`

const now = () => Math.floor(Date.now() / 1000)
const token = (/** @type {string} */ jti) =>
  new SignJWT({ sub: 'alice', jti })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(now() - 5)
    .setExpirationTime(now() + 3600)
    .sign(privateKey)

/** One workerd: the object's host and `n` gateway isolates; `cache` false turns the cache off. */
function start(n, cache) {
  const common = {
    modules: true,
    scriptPath: bundle,
    modulesRoot: dir,
    compatibilityDate: '2026-11-01',
  }
  const gateways = Array.from({ length: n }, (_, i) => ({
    ...common,
    name: `gw-${i}`,
    cacheAPI: cache,
    bindings: {
      ORIGIN_URL: `${base}/origin`,
      JWT_ISSUER: ISSUER,
      JWT_AUDIENCE: AUDIENCE,
      JWKS_URL: `${base}/jwks`,
      ADMIN_TOKEN,
      REVOCATION_SYNC_MS: SYNC_MS,
      LOG_REQUESTS: 'refused',
    },
    durableObjects: { REVOCATION_LOG: { className: 'RevocationLog', scriptName: 'log-host' } },
  }))
  return new Miniflare(
    convertV4MiniflareOptions({
      cf: false,
      log: new Log(LogLevel.WARN),
      handleStructuredLogs: () => {},
      workers: [
        // First worker: the one dispatchFetch reaches by default; never used as a gateway here.
        {
          ...common,
          name: 'log-host',
          durableObjects: { REVOCATION_LOG: { className: 'RevocationLog', useSQLite: true } },
        },
        ...gateways,
      ],
    }),
  )
}

async function gatewayFetchers(mf, n) {
  const out = []
  for (let i = 0; i < n; i++) out.push(await mf.getWorker(`gw-${i}`))
  return out
}

const statusOf = async (gw, t) => {
  const res = await gw.fetch('https://gw.test/x', { headers: { authorization: `Bearer ${t}` } })
  await res.arrayBuffer()
  return res.status
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}

async function measureDelay() {
  say(
    `delay: ${WRITES} writes through isolate A, enforced by isolate B (REVOCATION_SYNC_MS=${SYNC_MS})`,
  )
  const mf = start(2, true)
  await mf.ready
  const [a, b] = await gatewayFetchers(mf, 2)
  const delays = []
  for (let i = 0; i < WRITES; i++) {
    const jti = `w${i}-${crypto.randomUUID()}`
    const t = await token(jti)
    if ((await statusOf(b, t)) !== 200) throw new Error('B refused a fresh token')
    // Spread the writes over the sync interval, so the phase of B's sync is not always the same.
    await sleep(Math.floor(Math.random() * Number(SYNC_MS)))
    const res = await a.fetch('https://gw.test/_gateway/revocations', {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jti }),
    })
    await res.arrayBuffer()
    if (res.status !== 201) throw new Error(`write answered ${res.status}`)
    const acked = performance.now()
    for (;;) {
      if ((await statusOf(b, t)) === 401) break
      if (performance.now() - acked > 10_000) throw new Error(`write ${i} not enforced in 10 s`)
      await sleep(POLL_MS)
    }
    delays.push(performance.now() - acked)
  }
  await mf.dispose()
  return {
    writes: delays.length,
    medianMs: Math.round(quantile(delays, 0.5)),
    p90Ms: Math.round(quantile(delays, 0.9)),
    maxMs: Math.round(Math.max(...delays)),
  }
}

async function measureRate(n, cache) {
  const mf = start(n, cache)
  await mf.ready
  const gws = await gatewayFetchers(mf, n)
  const ns = await mf.getDurableObjectNamespace('REVOCATION_LOG', 'log-host')
  const log = ns.get(ns.idFromName('revocations'))
  const t = await token('rate')
  for (const gw of gws) await statusOf(gw, t) // every isolate's cold sync, before counting
  const servedBefore = (await log.stats()).changesServed
  const started = performance.now()
  let requests = 0
  let writing = true
  // Writes through isolate 0 at --rate-writes per second, so versions move.
  const writer = (async () => {
    for (let i = 0; writing && RATE_WRITES > 0; i++) {
      const res = await gws[0].fetch('https://gw.test/_gateway/revocations', {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        body: JSON.stringify({ jti: `rate-${i}` }),
      })
      await res.arrayBuffer()
      await sleep(1000 / RATE_WRITES)
    }
  })()
  await Promise.all(
    gws.map(async (gw) => {
      while (performance.now() - started < RATE_S * 1000) {
        await statusOf(gw, t)
        requests++
      }
    }),
  )
  writing = false
  await writer
  const served = (await log.stats()).changesServed - servedBefore
  const seconds = (performance.now() - started) / 1000
  await mf.dispose()
  return {
    isolates: n,
    cacheAPI: cache,
    writesPerS: RATE_WRITES,
    requestsPerS: Math.round(requests / seconds),
    objectReadsPerS: Number((served / seconds).toFixed(2)),
  }
}

try {
  const delay = await measureDelay()
  console.log(JSON.stringify({ delay }))
  for (const n of ISOLATE_COUNTS) {
    for (const cache of [true, false]) {
      say(`rate: ${n} isolates, cache ${cache ? 'on' : 'off'}, ${RATE_S} s`)
      console.log(JSON.stringify({ rate: await measureRate(n, cache) }))
    }
  }
} finally {
  server.close()
  rmSync(dir, { recursive: true, force: true })
}
