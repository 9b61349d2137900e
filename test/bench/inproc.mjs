/**
 * `node test/bench/inproc.mjs`: the workers' own JavaScript cost per request, in one Node process,
 * without HTTP. Each bundle's `fetch` handler is called directly with a Request; the global
 * `fetch` answers the JWKS and the origin from memory. What it measures is the CPU time the worker
 * spends in JS (token parsing, verification, caches, headers, logging), which is what a change to
 * src/ moves; it leaves out workerd's HTTP and socket work, which is the same for every worker.
 * CPU time (process.cpuUsage), not wall time, so it stays usable while other work shares the
 * machine; rounds are interleaved and medians shown. For the numbers that count, `npm run bench`.
 *
 *   node test/bench/inproc.mjs [--requests N] [--rounds N] [--only "d unique"]
 *   node --expose-gc test/bench/inproc.mjs --flood 1000000    heap under N distinct valid tokens
 *
 * Node 22+ (run through `npm exec -- node` or the pinned node in node_modules/.bin).
 */
import { mkdirSync } from 'node:fs'
import { join, dirname, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { readFileSync } from 'node:fs'
import {
  AUDIENCE,
  ISSUER,
  prepareTokens,
  signJwt,
  introspectionVars,
  OPAQUE_TOKEN,
} from './tokens.mjs'
import { esbuildOfWrangler, WORKER_BUILD_OPTIONS } from './esbuild.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../..')
const OUT = join(here, 'out')
const { values: opt } = parseArgs({
  options: {
    requests: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '5' },
    gateway: { type: 'string', default: 'src/index.ts' },
    only: { type: 'string', default: '' },
    flood: { type: 'string', default: '0' },
  },
})
const REQUESTS = Number(opt.requests)
const ROUNDS = Number(opt.rounds)
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef0123456789'

const esbuild = await esbuildOfWrangler(root)

async function bundle(name, entry) {
  const outfile = join(OUT, 'inproc', `${name}.mjs`)
  await esbuild.build({
    ...WORKER_BUILD_OPTIONS,
    entryPoints: [entry],
    outfile,
    keepNames: false,
    // Node has no cloudflare:workers; the Durable Object classes need only a base class to load.
    alias: { 'cloudflare:workers': join(here, 'workers/cloudflare-workers-shim.mjs') },
  })
  return (await import(pathToFileURL(outfile).href)).default
}

mkdirSync(join(OUT, 'inproc'), { recursive: true })
const say = (/** @type {string} */ m) => process.stderr.write(`[inproc] ${m}\n`)
const tokens = await prepareTokens(OUT, 50_000, say)
const pool = readFileSync(tokens.pools.ES256.file, 'utf8').split('\n').filter(Boolean)
const jwksText = JSON.stringify(tokens.jwks)

// The network, from memory: the JWKS for any URL ending in /jwks, an active RFC 7662 answer for
// /introspect, a tiny 200 for everything else.
const ORIGIN = 'https://origin.bench.test'
const introspectText = JSON.stringify({
  active: true,
  iss: ISSUER,
  sub: 'bench-user',
  aud: AUDIENCE,
  scope: 'read',
  exp: Math.floor(Date.now() / 1000) + 3600,
  token_type: 'Bearer',
})
/** The opaque scenario's token: introspected once, then answered from the cache. */
let introspections = 0
globalThis.fetch = async (input) => {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
  if (url.endsWith('/jwks')) {
    return new Response(jwksText, { headers: { 'content-type': 'application/json' } })
  }
  if (url.endsWith('/introspect')) {
    introspections++
    return new Response(introspectText, { headers: { 'content-type': 'application/json' } })
  }
  return new Response('ok', { headers: { 'content-type': 'text/plain' } })
}
// The log line is built by the gateway; only the write is dropped (workerd's differs from Node's).
let lastLine = ''
console.log = (line) => {
  lastLine = line
}

/** An in-memory stand-in for the KV namespace: empty list, every read a miss. */
const emptyKv = {
  get: async () => null,
  getWithMetadata: async () => ({ value: null, metadata: null }),
  list: async () => ({ keys: [], list_complete: true, cacheStatus: null }),
  put: async () => {},
  delete: async () => {},
}

const vars = {
  ORIGIN_URL: ORIGIN,
  JWT_ISSUER: ISSUER,
  JWT_AUDIENCE: AUDIENCE,
  JWKS_URL: `${ORIGIN}/jwks`,
}
const workers = {
  a: {
    label: '(a) pass-through',
    handler: await bundle('a', join(here, 'workers/passthrough.ts')),
    env: { ORIGIN_URL: ORIGIN },
  },
  b: {
    label: '(b) Hono + jose',
    handler: await bundle('b', join(here, 'workers/hono-jose.ts')),
    env: vars,
  },
  d: {
    label: '(d) this gateway',
    handler: await bundle('d', resolve(root, opt.gateway)),
    env: vars,
  },
  e: {
    label: '(e) floor',
    handler: await bundle('e', join(here, 'workers/floor.ts')),
    env: { ORIGIN_URL: ORIGIN },
  },
}
// The shipped shape: KV revocation bound. A second import of the same bundle, so its isolate
// state (caches, config) is its own.
workers.dr = {
  label: '(d) + revocation',
  handler: (await import(`${pathToFileURL(join(OUT, 'inproc', 'd.mjs')).href}?rev`)).default,
  env: { ...vars, REVOCATIONS: emptyKv, ADMIN_TOKEN },
}

// The same issuer in structured mode, introspecting opaque tokens: its own isolate state too.
workers.do = {
  label: '(d) + introspection',
  handler: (await import(`${pathToFileURL(join(OUT, 'inproc', 'd.mjs')).href}?opaque`)).default,
  env: introspectionVars(ORIGIN),
}

// The same bundle with the REVOCATION_LOG Durable Object bound, to price the request path of log
// mode against the KV snapshot: an in-memory stand-in for the object (an empty, unchanging log).
// Without a Cache API in Node, every sync (at most one per REVOCATION_SYNC_MS) asks it directly.
const emptyLog = {
  idFromName: () => ({ toString: () => 'bench-log' }),
  get: () => ({
    changes: async (epoch) => ({
      epoch: 'bench',
      version: 0,
      since: epoch === null ? null : 0,
      upserts: [],
      deletes: [],
      changedAtMs: null,
      servedAtMs: Date.now(),
    }),
  }),
}
workers.dl = {
  label: '(d) + revocation log (DO)',
  handler: (await import(`${pathToFileURL(join(OUT, 'inproc', 'd.mjs')).href}?log`)).default,
  env: { ...vars, REVOCATION_LOG: emptyLog, ADMIN_TOKEN },
}

const pending = []
const ctx = {
  waitUntil: (/** @type {Promise<unknown>} */ p) => pending.push(p.catch(() => {})),
  passThroughOnContextException() {},
  props: {},
}

async function call(id, token) {
  const w = workers[id]
  const req = new Request('https://gw.bench.test/bench/orders?page=1', {
    headers: { authorization: `Bearer ${token}`, accept: '*/*', 'user-agent': 'inproc' },
  })
  const res = await w.handler.fetch(req, w.env, ctx)
  await res.arrayBuffer()
  return res.status
}

let cursor = 0
async function run(id, scenario) {
  const t0 = process.cpuUsage()
  for (let i = 0; i < REQUESTS; i++) {
    const token =
      scenario === 'unique'
        ? pool[cursor++ % pool.length]
        : scenario === 'opaque'
          ? OPAQUE_TOKEN
          : tokens.valid.ES256
    const status = await call(id, token)
    if (status !== 200) throw new Error(`${workers[id].label} ${scenario}: ${status} ${lastLine}`)
  }
  await Promise.all(pending.splice(0))
  const d = process.cpuUsage(t0)
  return (d.user + d.system) / REQUESTS
}

/**
 * --flood N: N distinct valid ES256 tokens (minted as it goes, each sent once) through the shipped
 * gateway, the heap after a full GC every N/10 requests. The caches must hold it flat.
 */
async function flood(n) {
  const gc = /** @type {(() => void) | undefined} */ (globalThis.gc)
  if (!gc) throw new Error('--flood needs node --expose-gc')
  const key = tokens.keys.find((k) => k.alg === 'ES256')
  const now = Math.floor(Date.now() / 1000)
  const heapMiB = () => (gc(), process.memoryUsage().heapUsed / 2 ** 20)
  const samples = [[0, heapMiB()]]
  const BATCH = 64
  for (let sent = 0; sent < n;) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(BATCH, n - sent) }, (_, j) =>
        signJwt(key, {
          iss: ISSUER,
          aud: AUDIENCE,
          sub: `flood-${(sent + j) % 5000}`,
          iat: now,
          exp: now + 3600,
          jti: `flood-${sent + j}`,
        }),
      ),
    )
    for (const token of batch) {
      const status = await call('dr', token)
      if (status !== 200) throw new Error(`flood: ${status} ${lastLine}`)
    }
    sent += batch.length
    if (sent % (n / 10) < BATCH && sent >= (n / 10) * samples.length) {
      samples.push([sent, heapMiB()])
      say(`${sent} tokens: heap ${samples.at(-1)[1].toFixed(1)} MiB`)
    }
  }
  await Promise.all(pending.splice(0))
  console.error(`(d) + revocation, ${n} distinct valid ES256 tokens, heap used after a full GC:`)
  console.error('| tokens sent | heap MiB |')
  console.error('| ---: | ---: |')
  for (const [sent, mib] of samples) console.error(`| ${sent} | ${mib.toFixed(1)} |`)
}
if (Number(opt.flood) > 0) {
  await flood(Number(opt.flood))
  process.exit(0)
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const plan = [
  ['a', 'repeated'],
  ['e', 'repeated'],
  ['b', 'repeated'],
  ['d', 'repeated'],
  ['dr', 'repeated'],
  ['do', 'repeated'],
  ['do', 'opaque'],
  ['dl', 'repeated'],
  ['b', 'unique'],
  ['d', 'unique'],
  ['dr', 'unique'],
  ['dl', 'unique'],
]
// --only "d unique": one cell, e.g. under `node --cpu-prof`.
if (opt.only) plan.splice(0, plan.length, /** @type {[string, string]} */ (opt.only.split(' ')))
for (const [id, s] of plan) await run(id, s) // warm-up: JIT, JWKS, caches
const results = new Map(plan.map((p) => [p.join(' '), []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const [id, s] of plan
    .slice(round % plan.length)
    .concat(plan.slice(0, round % plan.length))) {
    results.get(`${id} ${s}`).push(await run(id, s))
  }
}
const a = median(results.get('a repeated') ?? [0])
console.error(`ES256, ${REQUESTS} requests x ${ROUNDS} rounds, CPU µs per request (median):`)
console.error('| scenario | worker | µs/req | above (a) |')
console.error('| --- | --- | ---: | ---: |')
for (const [id, s] of plan) {
  const m = median(results.get(`${id} ${s}`))
  console.error(`| ${s} | ${workers[id].label} | ${m.toFixed(1)} | ${(m - a).toFixed(1)} |`)
}
console.error(`introspection calls in all: ${introspections}`)
