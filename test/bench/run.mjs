/**
 * `npm run bench`: the gateway against a bare pass-through worker and two hand-written Hono
 * gateways, side by side in one workerd (Miniflare, the same one wrangler uses, with a direct
 * socket per worker: no proxy hop), driven by wrk or autocannon in interleaved rounds.
 * Offline and loopback only. Prints the tables and writes test/bench/RESULTS.md.
 *
 *   npm run bench                        full run: 3 rounds x 10 s per measurement (~25 min)
 *   npm run bench -- --algs ES256 --duration 5      a quicker look
 *   npm run bench -- --profile           CPU profiles of the gateway instead (see profile.mjs)
 *   npm run bench -- --help              every option
 *
 * Node only (22+: global WebSocket); the workers under test are in workers/ and src/.
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { cpus, freemem, loadavg, release, totalmem } from 'node:os'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { gzipSync } from 'node:zlib'
import { autocannonVersion, runLoad, wrkVersion } from './loadgen.mjs'
import { moduleMap, profileDuring, profileMarkdown, summarise } from './profile.mjs'
import {
  ALGORITHMS,
  AUDIENCE,
  ISSUER,
  prepareTokens,
  introspectionVars,
  OPAQUE_TOKEN,
} from './tokens.mjs'
import { esbuildOfWrangler, WORKER_BUILD_OPTIONS } from './esbuild.mjs'
import { DPOP_PUBLIC_BASE, dpopClient, dpopToken, writeProofs } from './dpop.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../..')
const OUT = join(here, 'out')

// ---------------------------------------------------------------------------------------------
// Options

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '16' },
    algs: { type: 'string', default: ALGORITHMS.join(',') },
    scenarios: { type: 'string', default: 'repeated,unique,invalid,revoked,opaque,dpop' },
    generator: { type: 'string', default: 'auto' },
    pool: { type: 'string', default: '50000' },
    gateway: { type: 'string', default: 'src/index.ts' },
    profile: { type: 'boolean', default: false },
    results: { type: 'string', default: join(here, 'RESULTS.md') },
    'no-write': { type: 'boolean', default: false },
    note: { type: 'string', default: '' },
    help: { type: 'boolean', default: false },
  },
})

if (opt.help) {
  console.log(`npm run bench -- [options]
  --duration S      seconds per measured run (default 10)
  --warmup S        seconds of the same load before each measured run (default 2)
  --rounds N        interleaved rounds; the tables show medians (default 3)
  --connections N   concurrent keep-alive connections (default 16)
  --algs LIST       RS256,ES256,EdDSA (default all)
  --scenarios LIST  repeated,unique,invalid,revoked,opaque,dpop (default all)
  --generator G     auto | wrk | autocannon (auto: wrk when installed)
  --pool N          distinct tokens per algorithm for the unique scenario (default 50000)
  --gateway PATH    the gateway's entry point (default src/index.ts)
  --profile         take CPU profiles of the gateway instead of benchmarking
  --results FILE    where to write the results (default test/bench/RESULTS.md)
  --no-write        print only
  --note TEXT       a line to put at the top of the results (e.g. why the run was made)`)
  process.exit(0)
}

const DURATION_S = Number(opt.duration)
const WARMUP_S = Number(opt.warmup)
const ROUNDS = Number(opt.rounds)
const CONNECTIONS = Number(opt.connections)
const POOL = Number(opt.pool)
const ALGS = /** @type {import('./tokens.mjs').Alg[]} */ (opt.algs.split(',').filter(Boolean))
const SCENARIOS = opt.scenarios.split(',').filter(Boolean)
for (const a of ALGS) if (!ALGORITHMS.includes(a)) throw new Error(`--algs: unknown ${a}`)
for (const s of SCENARIOS) {
  if (!['repeated', 'unique', 'invalid', 'revoked', 'opaque', 'dpop'].includes(s))
    throw new Error(`--scenarios: unknown ${s}`)
}

/** Targets, for the gateway as shipped (the `dr` row: KV revocation bound, logging on). */
const TARGET_REPEATED_VS_FLOOR = 0.85
const TARGET_UNIQUE_VS_HONO_JOSE = 1.0
const TARGET_INVALID_VS_PASSTHROUGH = 2
const TARGET_REVOCATION_COST = 0.05
const TARGET_BUNDLE_GZIP_KIB = 100
/** An opaque token answered from the introspection cache costs no more than a repeated JWT (± noise). */
const TARGET_OPAQUE_VS_REPEATED = 0.95
/** "No heavy work at module scope": evaluating the bundle should cost about what its libraries do. */
const TARGET_MODULE_EVAL_MS = 10

/** The DPoP scenario's cost over a repeated Bearer token: one proof signature check plus this (µs). */
const TARGET_DPOP_EXTRA_US = 20
/** Fresh proofs made per second of a DPoP run: above the gateway's rate here, so none repeats. */
const DPOP_PROOFS_PER_S = 6_000

/** A run whose status codes disagree with the scenario by more than this is marked. */
const STATUS_TOLERANCE = 0.001
const CLK_TCK = 100
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef0123456789'
const REQUEST_PATH = '/bench/orders?page=1'
/** The opaque scenario's token (RFC 6750 b64token, not JWS-shaped), introspected once, then cached. */

/** The command line as typed, for the reports. */
const COMMAND = ['npm run bench', ...(process.argv.length > 2 ? ['--'] : [])]
  .concat(process.argv.slice(2).map((a) => (/[\s"'`]/.test(a) ? JSON.stringify(a) : a)))
  .join(' ')

const say = (/** @type {string} */ msg) => process.stderr.write(`[bench] ${msg}\n`)

// ---------------------------------------------------------------------------------------------
// Tools: resolved through wrangler, so the bench runs the workerd and esbuild wrangler would.

const requireFromRoot = createRequire(join(root, 'package.json'))
const requireFromWrangler = createRequire(requireFromRoot.resolve('wrangler/package.json'))
const miniflarePath = requireFromWrangler.resolve('miniflare')
const requireFromMiniflare = createRequire(miniflarePath)
const { Miniflare, convertV4MiniflareOptions, Log, LogLevel } = await import(
  pathToFileURL(miniflarePath).href
)
const esbuild = await esbuildOfWrangler(root)

const pkgVersion = (/** @type {NodeJS.Require} */ req, /** @type {string} */ name) => {
  try {
    // Some packages do not export package.json: walk up from the entry point instead.
    let dir = dirname(req.resolve(name))
    while (
      !existsSync(join(dir, 'package.json')) ||
      JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name !== name
    ) {
      const up = dirname(dir)
      if (up === dir) return '?'
      dir = up
    }
    return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version
  } catch {
    return '?'
  }
}

function workerdVersion() {
  try {
    // workerd/bin/workerd is the native binary itself.
    const bin = requireFromMiniflare.resolve('workerd/bin/workerd')
    const v = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()
    return `${v} (npm workerd ${pkgVersion(requireFromMiniflare, 'workerd')})`
  } catch {
    return `workerd ${pkgVersion(requireFromMiniflare, 'workerd')}`
  }
}

/** Which gateway was measured: the commit, and whether src/ had uncommitted changes. */
function gatewayRevision() {
  try {
    const git = (/** @type {string[]} */ args) =>
      execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: 'pipe' }).trim()
    const dirty = git(['status', '--porcelain', '--', 'src']) !== ''
    return `${git(['rev-parse', '--short', 'HEAD'])}${dirty ? ' with uncommitted changes in src/' : ''}`
  } catch {
    return 'unknown (not a git checkout)'
  }
}

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const field = (/** @type {string} */ name) =>
    new RegExp(`^${name}\\s*:\\s*(.+)$`, 'm').exec(cpuinfo)?.[1]
  const model =
    `${field('model name') ?? cpus()[0]?.model ?? '?'} (family ${field('cpu family')} model ${field('model')}, ` +
    `${Number(field('cpu MHz')).toFixed(0)} MHz${/ hypervisor /.test(field('flags') ?? '') ? ', virtual machine' : ''})`
  return {
    nproc: execFileSync('nproc', { encoding: 'utf8' }).trim(),
    cpu: model,
    memGiB: (totalmem() / 2 ** 30).toFixed(1),
    kernel: release(),
    node: process.version,
    workerd: workerdVersion(),
    wrangler: pkgVersion(requireFromRoot, 'wrangler'),
    miniflare: pkgVersion(requireFromWrangler, 'miniflare'),
    hono: pkgVersion(requireFromRoot, 'hono'),
    jose: pkgVersion(requireFromRoot, 'jose'),
    gateway: gatewayRevision(),
    loadAtStart: loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
    freeMemGiB: (freemem() / 2 ** 30).toFixed(1),
  }
}

// ---------------------------------------------------------------------------------------------
// Workers

/** (a)..(d): name, entry, and whether it verifies tokens. `gateway-rev` is (d) with revocation on. */
const WORKERS = [
  {
    id: 'a',
    name: 'passthrough',
    label: '(a) pass-through',
    entry: join(here, 'workers/passthrough.ts'),
  },
  {
    id: 'b',
    name: 'hono-jose',
    label: '(b) Hono + jose',
    entry: join(here, 'workers/hono-jose.ts'),
  },
  { id: 'c', name: 'hono-jwk', label: '(c) Hono jwk', entry: join(here, 'workers/hono-jwk.ts') },
  { id: 'd', name: 'gateway', label: '(d) this gateway', entry: resolve(root, opt.gateway) },
  // Not a gateway: the least work a cached repeated token needs (no verification), as a limit.
  { id: 'e', name: 'floor', label: '(e) floor', entry: join(here, 'workers/floor.ts') },
  { id: 'dr', name: 'gateway-rev', label: '(d) + revocation', entry: resolve(root, opt.gateway) },
  // The same bundle with an issuer that introspects opaque tokens (RFC 7662), for the opaque scenario.
  {
    id: 'do',
    name: 'gateway-opaque',
    label: '(d) + introspection',
    entry: resolve(root, opt.gateway),
  },
  // The same bundle taking a DPoP-bound token with a new proof every request (the dpop scenario),
  // and again with the DPOP_REPLAY Durable Object bound, to price the replay store's round trip.
  { id: 'dp', name: 'gateway-dpop', label: '(d) DPoP', entry: resolve(root, opt.gateway) },
  {
    id: 'dpr',
    name: 'gateway-dpop-replay',
    label: '(d) DPoP + replay DO',
    entry: resolve(root, opt.gateway),
  },
  // The same bundle with LOG_REQUESTS=refused: no log line for forwarded requests.
  ...(opt.profile
    ? []
    : [
        {
          id: 'dl',
          name: 'gateway-log-refused',
          label: '(d) LOG_REQUESTS=refused',
          entry: resolve(root, opt.gateway),
        },
        // The same bundle with the REVOCATION_LOG Durable Object instead of KV (docs/revocation.md).
        {
          id: 'dg',
          name: 'gateway-revocation-log',
          label: '(d) + revocation log (DO)',
          entry: resolve(root, opt.gateway),
        },
      ]),
  // --profile only: the gateway with console.log silenced, to price its per-request log line.
  ...(opt.profile
    ? [
        {
          id: 'dn',
          name: 'gateway-nolog',
          label: '(d) without logging',
          entry: join(OUT, 'build', 'gateway-nolog.entry.mjs'),
        },
      ]
    : []),
]
const byId = Object.fromEntries(WORKERS.map((w) => [w.id, w]))

/** The gateway is bundled as its wrangler.toml says; the others with wrangler's defaults. */
const GATEWAY_KEEP_NAMES = !/^keep_names\s*=\s*false/m.test(
  readFileSync(join(root, 'wrangler.toml'), 'utf8'),
)

/** Same options for every worker, close to wrangler's (it keeps names and does not minify). */
async function bundle(w) {
  const outfile = join(OUT, 'build', `${w.name}.js`)
  await esbuild.build({
    ...WORKER_BUILD_OPTIONS,
    entryPoints: [w.entry],
    outfile,
    // Durable Object classes import cloudflare:workers, which workerd provides.
    external: ['cloudflare:*'],
    keepNames: w.name.startsWith('gateway') ? GATEWAY_KEEP_NAMES : true,
  })
  const bytes = readFileSync(outfile)
  return { file: outfile, bytes: bytes.length, gzipBytes: gzipSync(bytes, { level: 9 }).length }
}

/** What `wrangler deploy` would upload, in its own words; null when the dry run fails. */
function wranglerSize(entry) {
  try {
    const out = execFileSync(
      process.execPath,
      [
        join(dirname(requireFromRoot.resolve('wrangler/package.json')), 'bin/wrangler.js'),
        'deploy',
        relative(root, entry),
        '--dry-run',
        '--outdir',
        join(OUT, 'wrangler-dist'),
      ],
      {
        cwd: root,
        encoding: 'utf8',
        stdio: 'pipe',
        env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', FORCE_COLOR: '0' },
      },
    )
    const m = /Total Upload:\s*([\d.]+) KiB \/ gzip:\s*([\d.]+) KiB/.exec(out)
    return m ? { kib: Number(m[1]), gzipKib: Number(m[2]) } : null
  } catch (err) {
    say(
      `wrangler deploy --dry-run failed; bundle size from esbuild + gzip -9 instead:\n${String(/** @type {any} */ (err).stderr ?? err).slice(0, 800)}`,
    )
    return null
  }
}

/**
 * `cloudflare:workers` (Durable Object base classes) exists only in workerd: for evaluating the
 * bundle in Node, a loader hook answers it with empty classes.
 */
const CLOUDFLARE_SHIM = `data:text/javascript,${encodeURIComponent(
  `import { register } from 'node:module'
register('data:text/javascript,' + encodeURIComponent(
  'export async function resolve(s, c, next) {' +
  ' if (s.startsWith("cloudflare:")) return { shortCircuit: true, url: "data:text/javascript,export class DurableObject {}; export class WorkerEntrypoint {}" };' +
  ' return next(s, c) }'))`,
)}`

/** Module evaluation in V8 (Node 24, a fresh process each time): parse + compile + top level. */
function moduleEvalMs(file, times = 7) {
  // Node has no `cloudflare:workers` (workerd's built-in module): a stand-in for the Durable Object
  // base class the bundle extends, resolved before the clock starts.
  const code =
    "import { registerHooks } from 'node:module'; registerHooks({ resolve: (s, c, next) => " +
    "s === 'cloudflare:workers' ? { url: 'data:text/javascript,export class DurableObject {}', " +
    'shortCircuit: true } : next(s, c) }); ' +
    'const t = performance.now(); await import(process.argv[1]); console.log(performance.now() - t)'
  const runs = []
  for (let i = 0; i < times; i++) {
    runs.push(
      Number(
        execFileSync(
          process.execPath,
          [
            '--import',
            CLOUDFLARE_SHIM,
            '--input-type=module',
            '-e',
            code,
            pathToFileURL(file).href,
          ],
          { encoding: 'utf8' },
        ),
      ),
    )
  }
  return median(runs)
}

// ---------------------------------------------------------------------------------------------
// Processes

const freePort = () =>
  new Promise((resolvePort, reject) => {
    const s = createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => resolvePort(typeof a === 'object' && a ? a.port : 0))
    })
  })

/** @returns {Promise<{ port: number, pid: number, stop: () => void }>} */
function startOrigin(jwksFile, introspectionFile) {
  return new Promise((resolveOrigin, reject) => {
    const child = spawn(process.execPath, [join(here, 'origin.mjs'), jwksFile, introspectionFile], {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    child.on('error', reject)
    child.stdout.once('data', (d) => {
      const { port } = JSON.parse(String(d))
      resolveOrigin({ port, pid: /** @type {number} */ (child.pid), stop: () => child.stdin.end() })
    })
  })
}

/** CPU seconds of one process, from /proc. */
function procCpuS(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  } catch {
    return NaN
  }
}

/** Busy CPU seconds of the whole machine, all cores. */
function machineBusyS() {
  const f = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number)
  // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / CLK_TCK
}

/** The workerd process Miniflare started: our child whose command is workerd. */
function findWorkerd() {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (comm === 'workerd' && ppid === process.pid) return Number(pid)
    } catch {
      // The process went away while we looked.
    }
  }
  throw new Error('cannot find the workerd process Miniflare started')
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** The repo's Prettier style (npm test checks it), so a fresh RESULTS.md never fails the format check. */
async function prettierFormat(text, file) {
  try {
    const prettier = await import('prettier')
    const config = (await prettier.resolveConfig(file)) ?? {}
    return await prettier.format(text, { ...config, filepath: file })
  } catch {
    return text
  }
}

function median(/** @type {number[]} */ xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const m = Math.floor(v.length / 2)
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}

async function get(url, token) {
  const t0 = performance.now()
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} })
  const body = await res.text()
  return { status: res.status, body, ms: performance.now() - t0 }
}

function rotate(xs, n) {
  const k = n % xs.length
  return [...xs.slice(k), ...xs.slice(0, k)]
}

// ---------------------------------------------------------------------------------------------
// Main

const generator =
  opt.generator === 'auto'
    ? wrkVersion()
      ? 'wrk'
      : 'autocannon'
    : /** @type {'wrk' | 'autocannon'} */ (opt.generator)
if (generator === 'wrk' && !wrkVersion()) {
  throw new Error(
    'wrk is not installed: apt-get update && apt-get install -y wrk (or --generator autocannon)',
  )
}
if (opt.generator === 'auto' && generator === 'autocannon') {
  say('wrk not found; using autocannon. It tops out near 17k req/s on this kind of machine, which')
  say('understates the fast rejection paths: apt-get update && apt-get install -y wrk, then rerun.')
}
if (typeof WebSocket === 'undefined' && opt.profile)
  throw new Error('--profile needs Node 22+ (global WebSocket)')

mkdirSync(join(OUT, 'build'), { recursive: true })
const mach = machine()
const genVersion = generator === 'wrk' ? wrkVersion() : autocannonVersion()
say(`${mach.nproc} cores, ${mach.cpu}; node ${mach.node}; ${mach.workerd}; ${genVersion}`)

say('bundling the workers (esbuild, as wrangler does)')
/** @type {Record<string, { file: string, bytes: number, gzipBytes: number }>} */
const bundles = {}
if (opt.profile) {
  // ES modules evaluate in import order, so the console is silenced before the gateway loads.
  writeFileSync(join(OUT, 'build', 'silence-console.mjs'), 'console.log = () => {}\n')
  writeFileSync(
    byId.dn.entry,
    `import './silence-console.mjs'\nexport { default } from ${JSON.stringify(byId.d.entry)}\n`,
  )
}
for (const w of WORKERS.filter(
  (w) => w.id !== 'dr' && w.id !== 'dl' && w.id !== 'do' && w.id !== 'dg',
))
  bundles[w.id] = await bundle(w)
bundles.dr = bundles.d
bundles.dl = bundles.d
bundles.do = bundles.d
bundles.dg = bundles.d

say('measuring bundle size (wrangler deploy --dry-run) and module evaluation time')
const wrangler = opt.profile ? null : wranglerSize(byId.d.entry)
/** @type {Record<string, number>} */
const evalMs = {}
if (!opt.profile) for (const id of ['a', 'b', 'c', 'd']) evalMs[id] = moduleEvalMs(bundles[id].file)

const tokens = await prepareTokens(OUT, POOL, say)
writeFileSync(join(OUT, 'jwks.json'), JSON.stringify(tokens.jwks))
// Active for an hour past the run's start: every opaque request after the first is a cache hit.
writeFileSync(
  join(OUT, 'introspection.json'),
  JSON.stringify({
    active: true,
    iss: ISSUER,
    sub: 'bench-user',
    aud: AUDIENCE,
    scope: 'read',
    exp: Math.floor(Date.now() / 1000) + 3600,
    token_type: 'Bearer',
  }),
)
const origin = await startOrigin(join(OUT, 'jwks.json'), join(OUT, 'introspection.json'))
const ORIGIN = `http://127.0.0.1:${origin.port}`
const originStats = async () => JSON.parse((await get(`${ORIGIN}/_stats`)).body)

const gatewayVars = {
  ORIGIN_URL: ORIGIN,
  JWT_ISSUER: ISSUER,
  JWT_AUDIENCE: AUDIENCE,
  JWKS_URL: `${ORIGIN}/jwks`,
}
/** (d) + introspection: the same issuer and origin in structured mode, opaque tokens introspected. */
const opaqueVars = introspectionVars(ORIGIN)
/** The DPoP workers: proofs name the public URL, and may be minted up to 5 minutes before use. */
const dpopVars = {
  ...gatewayVars,
  PUBLIC_BASE_URL: DPOP_PUBLIC_BASE,
  DPOP_PROOF_WINDOW_SECONDS: '300',
}
const inspectorPort = opt.profile ? await freePort() : undefined
// Fixed ports rather than unsafeGetDirectURL(), which never settles while the inspector is on.
/** @type {Record<string, number>} */
const ports = {}
for (const w of WORKERS) ports[w.id] = await freePort()
let logLines = 0
/** @type {string[]} */
const logErrors = []
const mf = new Miniflare(
  convertV4MiniflareOptions({
    cf: false,
    logRequests: false,
    log: new Log(LogLevel.WARN),
    inspectorPort,
    // The gateway logs a line per request; Miniflare parses them in this process. Count, keep errors.
    handleStructuredLogs: (/** @type {{ level: string, message: string }} */ l) => {
      logLines++
      if (l.level === 'error' && logErrors.length < 20) logErrors.push(l.message)
    },
    workers: WORKERS.map((w) => ({
      name: w.name,
      modules: true,
      scriptPath: bundles[w.id].file,
      modulesRoot: dirname(bundles[w.id].file),
      compatibilityDate: '2026-11-01',
      bindings:
        w.id === 'a'
          ? { ORIGIN_URL: ORIGIN }
          : w.id === 'dr' || w.id === 'dg'
            ? { ...gatewayVars, ADMIN_TOKEN }
            : w.id === 'dl'
              ? { ...gatewayVars, LOG_REQUESTS: 'refused' }
              : w.id === 'do'
                ? opaqueVars
                : w.id === 'dp' || w.id === 'dpr'
                  ? dpopVars
                  : gatewayVars,
      kvNamespaces: w.id === 'dr' ? { REVOCATIONS: 'bench-revocations' } : undefined,
      durableObjects:
        w.id === 'dpr'
          ? { DPOP_REPLAY: 'DpopReplayStore' }
          : w.id === 'dg'
            ? { REVOCATION_LOG: { className: 'RevocationLog', useSQLite: true } }
            : undefined,
      unsafeDirectSockets: [{ host: '127.0.0.1', port: ports[w.id] }],
    })),
  }),
)

let stopped = false
async function stop() {
  if (stopped) return
  stopped = true
  origin.stop()
  await mf.dispose().catch(() => {})
}
process.on('SIGINT', () => void stop().then(() => process.exit(130)))

try {
  say(
    `starting workerd with ${WORKERS.length} workers${inspectorPort ? ` (inspector on port ${inspectorPort})` : ''}`,
  )
  await mf.ready
  say('checking every worker answers as expected')
  const workerdPid = findWorkerd()
  /** @type {Record<string, string>} */
  const url = {}
  for (const w of WORKERS) url[w.id] = `http://127.0.0.1:${ports[w.id]}${REQUEST_PATH}`

  // First request of a fresh isolate: JIT cold, config parsed, JWKS fetched, key imported.
  /** @type {Record<string, number>} */
  const firstMs = {}
  for (const w of WORKERS) {
    const r = await get(url[w.id], tokens.valid.ES256)
    firstMs[w.id] = r.ms
    if (r.status !== 200)
      throw new Error(`${w.label} answered ${r.status} to a valid token: ${r.body.slice(0, 300)}`)
  }
  // (a) and (e) verify nothing, by design.
  for (const w of WORKERS.filter((w) => w.id !== 'a' && w.id !== 'e')) {
    for (const alg of ALGS) {
      const ok = await get(url[w.id], tokens.valid[alg])
      const bad = await get(url[w.id], tokens.invalid[alg])
      if (ok.status !== 200 || bad.status !== 401) {
        throw new Error(
          `${w.label} ${alg}: valid -> ${ok.status}, invalid -> ${bad.status} (want 200, 401): ${ok.body.slice(0, 200)} ${bad.body.slice(0, 200)}`,
        )
      }
    }
  }

  // The opaque scenario's token must pass through introspection before it is measured.
  const opaque = await get(url.do, OPAQUE_TOKEN)
  if (opaque.status !== 200)
    throw new Error(
      `(d) + introspection answered ${opaque.status} to the opaque token: ${opaque.body.slice(0, 300)}`,
    )

  // Revocation: on once the gateway has the admin API; until then the scenario is n/a.
  /** @type {Record<string, string | null>} */
  const revocation = {}
  // (Skipped under --profile: with the inspector on, Miniflare's KV put never settles.)
  for (const alg of opt.profile ? [] : ALGS) {
    const res = await fetch(new URL('/_gateway/revocations', url.dr), {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jti: tokens.revoked[alg].jti }),
    })
    await res.arrayBuffer()
    // The revocation log worker gets the same record through its own admin API.
    if (url.dg) {
      const logged = await fetch(new URL('/_gateway/revocations', url.dg), {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ jti: tokens.revoked[alg].jti }),
      })
      await logged.arrayBuffer()
      if (logged.status >= 300) throw new Error(`revocation log admin API: ${logged.status}`)
    }
    const after = await get(url.dr, tokens.revoked[alg].token)
    revocation[alg] =
      res.status >= 300
        ? `admin API answered ${res.status}`
        : after.status !== 401
          ? `revoked token still answered ${after.status}`
          : null
  }
  const revocationOn = opt.profile || ALGS.every((a) => revocation[a] === null)
  if (!revocationOn)
    say(
      `revocation not available yet (${Object.values(revocation).find(Boolean)}): revoked scenario is n/a`,
    )

  // The DPoP scenario: one client key, one DPoP-bound ES256 token, fresh proofs per run.
  const dpop = dpopClient()
  const benchClaims = JSON.parse(
    Buffer.from(tokens.valid.ES256.split('.')[1], 'base64url').toString(),
  )
  const es256 = tokens.keys.find((/** @type {{ alg: string }} */ k) => k.alg === 'ES256')
  const dpopBound = await dpopToken(es256, dpop, benchClaims)
  const proofsFile = join(OUT, 'dpop-proofs.txt')
  for (const id of ['dp', 'dpr']) {
    writeProofs(dpop, dpopBound, REQUEST_PATH, 1, proofsFile)
    const [authorization, proof] = readFileSync(proofsFile, 'utf8').split('\n')
    const res = await fetch(url[id], { headers: { authorization, dpop: proof } })
    const text = await res.text()
    if (res.status !== 200)
      throw new Error(
        `${byId[id].label} answered ${res.status} to a DPoP request: ${text.slice(0, 300)}`,
      )
  }

  /** Which workers run which scenario. `a` runs once per alg block, as the baseline. */
  const plan = {
    repeated: ['b', 'c', 'd', 'dr', 'dl', 'e', ...(byId.dg ? ['dg'] : [])],
    unique: ['b', 'c', 'd', 'dr', 'dl', ...(byId.dg ? ['dg'] : [])],
    invalid: ['b', 'c', 'd'],
    revoked: revocationOn ? ['dr', ...(byId.dg ? ['dg'] : [])] : [],
    opaque: ['do'],
    // ES256 block only: the token is ES256 whatever the block, and so is the proof.
    dpop: ['dp', 'dpr'],
  }
  /** Next pool index per worker and alg: tokens are never reused until the pool wraps. */
  const cursor = new Map()
  const poolSize = (alg) => tokens.pools[alg].size

  /** One load of `seconds` on worker `id`, with the scenario's tokens. */
  async function load(id, alg, scenario, seconds) {
    const spec = { url: url[id], connections: CONNECTIONS, durationS: seconds }
    if (id === 'a') return runLoad(generator, spec)
    if (scenario === 'dpop') {
      // Made now: every proof's iat must be inside the window when it is sent.
      writeProofs(dpop, dpopBound, REQUEST_PATH, Math.ceil(seconds * DPOP_PROOFS_PER_S), proofsFile)
      return runLoad(generator, { ...spec, proofsFile })
    }
    if (scenario === 'unique') {
      const key = `${id}:${alg}`
      const start = cursor.get(key) ?? 0
      const r = await runLoad(generator, { ...spec, tokensFile: tokens.pools[alg].file, start })
      cursor.set(key, start + r.requests)
      return r
    }
    const token =
      scenario === 'invalid'
        ? tokens.invalid[alg]
        : scenario === 'revoked'
          ? tokens.revoked[alg].token
          : scenario === 'opaque'
            ? OPAQUE_TOKEN
            : tokens.valid[alg]
    return runLoad(generator, { ...spec, token })
  }

  /** A measured run: warm-up, then the load with CPU accounting around it. */
  async function measure(id, alg, scenario, round) {
    if (WARMUP_S > 0) await load(id, alg, scenario, WARMUP_S)
    await originStats()
    const w0 = procCpuS(workerdPid)
    const o0 = procCpuS(origin.pid)
    const m0 = machineBusyS()
    const s0 = process.cpuUsage()
    const r = await load(id, alg, scenario, DURATION_S)
    const self = process.cpuUsage(s0)
    const workerdS = procCpuS(workerdPid) - w0
    const originS = procCpuS(origin.pid) - o0
    const otherS =
      machineBusyS() - m0 - workerdS - originS - r.cpuS - (self.user + self.system) / 1e6
    const calls = await originStats()
    const rejects = scenario === 'invalid' || scenario === 'revoked'
    const wrongStatus = rejects ? r.requests - r.non2xx : r.non2xx
    const run = {
      round,
      alg,
      scenario: id === 'a' ? 'pass-through' : scenario,
      worker: id,
      rps: r.rps,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      requests: r.requests,
      errors: r.errors,
      statusOk: wrongStatus <= STATUS_TOLERANCE * r.requests && r.errors === 0,
      wrongStatus,
      originCallsPerReq: calls.origin / Math.max(1, r.requests),
      jwksCalls: calls.jwks,
      introspectionCalls: calls.introspect ?? 0,
      workerdUsPerReq: (workerdS * 1e6) / Math.max(1, r.requests),
      workerdCpuPct: (100 * workerdS) / r.seconds,
      generatorCpuPct: (100 * r.cpuS) / r.seconds,
      otherCpuPct: Math.max(0, (100 * otherS) / r.seconds),
    }
    say(
      `round ${round + 1} ${alg} ${run.scenario.padEnd(12)} ${byId[id].label.padEnd(20)} ` +
        `${run.rps.toFixed(0).padStart(6)} req/s  p50 ${run.p50Ms.toFixed(2)} ms  p99 ${run.p99Ms.toFixed(2)} ms  ` +
        `workerd ${run.workerdCpuPct.toFixed(0)}% ${run.workerdUsPerReq.toFixed(0)} µs/req  ` +
        `gen ${run.generatorCpuPct.toFixed(0)}%  other ${run.otherCpuPct.toFixed(0)}%${run.statusOk ? '' : `  WRONG STATUS x${wrongStatus}`}`,
    )
    return run
  }

  if (opt.profile) {
    await runProfiles({ load, measure, workerdPid, revocationOn })
  } else {
    const runsPerRound = ALGS.length * (1 + SCENARIOS.reduce((n, s) => n + plan[s].length, 0))
    const minutes =
      (runsPerRound * ROUNDS * (DURATION_S + WARMUP_S + 0.5) + ALGS.length * 4 * 3) / 60
    say(`${runsPerRound} runs per round, ${ROUNDS} rounds: about ${minutes.toFixed(0)} minutes`)

    say('warming up every worker and algorithm')
    for (const alg of ALGS) for (const w of WORKERS) await load(w.id, alg, 'repeated', 3)

    const runs = []
    const t0 = Date.now()
    for (let round = 0; round < ROUNDS; round++) {
      for (const alg of rotate(ALGS, round)) {
        runs.push(await measure('a', alg, 'repeated', round))
        for (const scenario of SCENARIOS) {
          if (scenario === 'dpop' && alg !== 'ES256') continue
          for (const id of rotate(plan[scenario], round))
            runs.push(await measure(id, alg, scenario, round))
        }
      }
    }
    const elapsedS = (Date.now() - t0) / 1000
    mach.loadAtEnd = loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')
    const report = buildReport({
      runs,
      plan,
      revocation,
      revocationOn,
      firstMs,
      poolSize,
      cursor,
      elapsedS,
    })
    console.log(report.markdown)
    writeFileSync(
      join(OUT, 'results.json'),
      JSON.stringify(
        { machine: mach, options: opt, runs, wrangler, bundles, evalMs, firstMs },
        null,
        2,
      ),
    )
    if (!opt['no-write']) {
      writeFileSync(opt.results, await prettierFormat(report.markdown, opt.results))
      say(`wrote ${relative(root, opt.results)} and ${relative(root, join(OUT, 'results.json'))}`)
    }
    if (logErrors.length)
      say(`worker error logs (first ${logErrors.length}):\n${logErrors.join('\n')}`)
  }
} finally {
  await stop()
}

// ---------------------------------------------------------------------------------------------
// Profiles

async function runProfiles({ load, measure, workerdPid, revocationOn }) {
  const target = (name) => `ws://127.0.0.1:${inspectorPort}/core:user:${name}`
  const sections = []
  const seconds = opt.duration === '10' ? 5 : DURATION_S

  // Ablation, no profiler attached: the same gateway with and without its log line, alternated.
  const ablation = [
    '| alg | token | with logging: req/s, CPU µs/req | without: req/s, CPU µs/req | logging costs |',
  ]
  ablation.push('| --- | --- | ---: | ---: | ---: |')
  for (const alg of ALGS) {
    for (const scenario of ['repeated', 'unique']) {
      const runs = { d: [], dn: [] }
      for (let round = 0; round < ROUNDS; round++) {
        for (const id of rotate(['d', 'dn'], round))
          runs[id].push(await measure(id, alg, scenario, round))
      }
      const m = (id, key) => median(runs[id].map((r) => r[key]))
      ablation.push(
        `| ${alg} | ${scenario} | ${m('d', 'rps').toFixed(0)}, ${m('d', 'workerdUsPerReq').toFixed(0)} | ` +
          `${m('dn', 'rps').toFixed(0)}, ${m('dn', 'workerdUsPerReq').toFixed(0)} | ` +
          `${(m('d', 'workerdUsPerReq') - m('dn', 'workerdUsPerReq')).toFixed(0)} µs/req of workerd CPU |`,
      )
    }
  }
  sections.push(
    `### Ablation: the per-request log line\n\n${ROUNDS} alternated runs of ${DURATION_S} s each, medians. ` +
      'Locally workerd writes each console.log line to stdout as JSON and Miniflare parses it in Node; ' +
      'in production the line goes to Workers Logs instead, so this is an upper bound.\n\n' +
      `${ablation.join('\n')}\n`,
  )
  // (a) and (b) are profiled too, as the yardsticks the gateway's numbers are read against.
  const plan = [
    ['a', 'repeated'],
    ['d', 'repeated'],
    ['dr', 'repeated'],
    ['b', 'unique'],
    ['d', 'unique'],
    ['dr', 'unique'],
    ['b', 'invalid'],
    ['d', 'invalid'],
  ].filter(([id]) => id !== 'dr' || revocationOn)
  const overview = [
    '| worker | token | req/s (profiled) | workerd CPU µs/req | isolate busy µs/req | biggest stages (µs/req) |',
    '| --- | --- | ---: | ---: | ---: | --- |',
  ]
  const details = []
  for (const alg of ALGS) {
    for (const [id, scenario] of plan) {
      await load(id, alg, scenario, 2)
      const w0 = procCpuS(workerdPid)
      const { profile, result } = await profileDuring(target(byId[id].name), () =>
        load(id, alg, scenario, seconds),
      )
      const workerdUs = ((procCpuS(workerdPid) - w0) * 1e6) / result.requests
      const token = id === 'a' ? 'any' : scenario
      const title = `${byId[id].label}, ${alg}, ${token} token`
      say(`profiled ${title}: ${result.rps.toFixed(0)} req/s under the profiler`)
      const file = join(OUT, `profile-${byId[id].name}-${alg}-${scenario}.cpuprofile`)
      writeFileSync(file, JSON.stringify(profile))
      const summary = summarise(
        profile,
        moduleMap(bundles[id].file),
        basename(bundles[id].file),
        result.requests,
      )
      const top = summary.byStage
        .slice(0, 4)
        .map((r) => `${r.name} ${r.usPerReq.toFixed(0)}`)
        .join(', ')
      overview.push(
        `| ${byId[id].label} | ${alg} ${token} | ${result.rps.toFixed(0)} | ${workerdUs.toFixed(0)} | ` +
          `${summary.busyUsPerReq.toFixed(0)} | ${top} |`,
      )
      details.push(
        profileMarkdown(summary, title) +
          `\nworkerd's whole process used ${workerdUs.toFixed(0)} µs of CPU per request in this run ` +
          `(${result.rps.toFixed(0)} req/s under the profiler). Raw profile: \`${relative(root, file)}\` ` +
          '(open in Chrome DevTools > Performance).\n',
      )
    }
  }
  sections.unshift(
    '### Overview\n\nUnder the profiler (about 20% slower than without). "isolate busy" is the time the ' +
      "worker's V8 isolate was not idle; the rest of workerd's CPU is HTTP, sockets and Miniflare's " +
      `outbound hop.\n\n${overview.join('\n')}\n`,
  )
  sections.push(...details)
  const md = `# Gateway CPU profiles\n\n\`${COMMAND}\`\n\n${sections.join('\n')}`
  writeFileSync(join(OUT, 'profile.md'), md)
  console.log(md)
  say(`wrote ${relative(root, join(OUT, 'profile.md'))}`)
}

// ---------------------------------------------------------------------------------------------
// Report

function buildReport({
  runs,
  plan,
  revocation,
  revocationOn,
  firstMs,
  poolSize,
  cursor,
  elapsedS,
}) {
  const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '–')
  const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–')
  const x2 = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–')
  const pick = (alg, scenario, worker, round) =>
    runs.find(
      (r) => r.alg === alg && r.scenario === scenario && r.worker === worker && r.round === round,
    )
  const rounds = [...new Set(runs.map((r) => r.round))]
  /** Median over rounds of a per-round ratio: both sides come from the same round. */
  const ratio = (alg, [s1, w1], [s2, w2]) =>
    median(
      rounds.map((round) => {
        const x = pick(alg, s1, w1, round)
        const y = pick(alg, s2, w2, round)
        return x && y ? x.rps / y.rps : NaN
      }),
    )
  const med = (alg, scenario, worker, key) =>
    median(
      runs
        .filter((r) => r.alg === alg && r.scenario === scenario && r.worker === worker)
        .map((r) => r[key]),
    )
  const allOk = (alg, scenario, worker) =>
    runs
      .filter((r) => r.alg === alg && r.scenario === scenario && r.worker === worker)
      .every((r) => r.statusOk)

  const lines = []
  lines.push('# Benchmark results', '')
  if (opt.note) lines.push(`> ${opt.note}`, '')
  lines.push(
    `Command: \`${COMMAND}\` ` +
      `(${ROUNDS} interleaved round${ROUNDS === 1 ? '' : 's'} × ${DURATION_S} s per run after ${WARMUP_S} s of warm-up, ${CONNECTIONS} ` +
      `keep-alive connections, ${genVersion}; ${(elapsedS / 60).toFixed(1)} min).`,
    '',
  )
  lines.push(`Gateway: \`${opt.gateway}\` at ${mach.gateway}.`, '')
  lines.push(
    `Machine: ${mach.nproc} cores, ${mach.cpu}, ${mach.memGiB} GiB, Linux ${mach.kernel}; Node ${mach.node}; ` +
      `${mach.workerd} (Miniflare ${mach.miniflare}, wrangler ${mach.wrangler}); hono ${mach.hono}, jose ${mach.jose}. ` +
      `Load average at start ${mach.loadAtStart}, at end ${mach.loadAtEnd}.`,
    '',
  )
  lines.push(
    'All workers run in one workerd, each on its own direct socket; the load generator, the origin + JWKS stub ' +
      '(test/bench/origin.mjs) and workerd share the machine. Numbers are medians over rounds; ratios are taken ' +
      'within a round (same alg block) and then the median is shown. "CPU µs/req" is the workerd process\'s own CPU ' +
      'time per request, from /proc: steadier than req/s on a busy machine. "other" is CPU used by processes ' +
      'outside the bench during the run (100% = one core): high values mean the numbers are noisy.',
    '',
  )

  const targets = []
  for (const alg of ALGS) {
    lines.push(`## ${alg}`, '')
    lines.push(
      '| scenario | worker | req/s | p50 ms | p99 ms | × (a) | × (b) | CPU µs/req | origin calls/req | other % |',
    )
    lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    const row = (scenario, id) => {
      const s = id === 'a' ? 'pass-through' : scenario
      const vsA = id === 'a' ? 1 : ratio(alg, [s, id], ['pass-through', 'a'])
      const vsB =
        id === 'a' || id === 'b' || scenario === 'revoked' ? NaN : ratio(alg, [s, id], [s, 'b'])
      const mark = allOk(alg, s, id) ? '' : ' ⚠ wrong status'
      lines.push(
        `| ${scenario} | ${byId[id].label}${mark} | ${f0(med(alg, s, id, 'rps'))} | ${f2(med(alg, s, id, 'p50Ms'))} | ` +
          `${f2(med(alg, s, id, 'p99Ms'))} | ${x2(vsA)} | ${x2(vsB)} | ${f0(med(alg, s, id, 'workerdUsPerReq'))} | ` +
          `${f2(med(alg, s, id, 'originCallsPerReq'))} | ${f0(med(alg, s, id, 'otherCpuPct'))} |`,
      )
    }
    row('pass-through', 'a')
    for (const scenario of SCENARIOS) {
      if (scenario === 'revoked' && !revocationOn) {
        lines.push(`| revoked | (d) + revocation | n/a: ${revocation[alg]} | | | | | | | |`)
        continue
      }
      if (scenario === 'dpop' && alg !== 'ES256') continue
      for (const id of plan[scenario]) row(scenario, id)
    }
    lines.push('')

    // The gateway as shipped: the KV revocation binding on when the bench could enable it.
    const shipped = revocationOn ? 'dr' : 'd'
    const shippedLabel = byId[shipped].label
    if (SCENARIOS.includes('repeated')) {
      const v = ratio(alg, ['repeated', shipped], ['repeated', 'e'])
      targets.push([
        `${alg} repeated valid token: ${shippedLabel} ≥ ${TARGET_REPEATED_VS_FLOOR}× (e) floor req/s`,
        x2(v),
        v >= TARGET_REPEATED_VS_FLOOR,
      ])
    }
    if (SCENARIOS.includes('unique') && alg === 'ES256') {
      const v = ratio(alg, ['unique', shipped], ['unique', 'b'])
      targets.push([
        `ES256 unique tokens: ${shippedLabel} ≥ ${TARGET_UNIQUE_VS_HONO_JOSE}× (b) req/s`,
        x2(v),
        v >= TARGET_UNIQUE_VS_HONO_JOSE,
      ])
    }
    if (SCENARIOS.includes('invalid')) {
      const v = ratio(alg, ['invalid', 'd'], ['pass-through', 'a'])
      const calls = med(alg, 'invalid', 'd', 'originCallsPerReq')
      targets.push([
        `${alg} invalid token: (d) rejections ≥ ${TARGET_INVALID_VS_PASSTHROUGH}× (a) req/s, no origin call`,
        `${x2(v)}, ${f2(calls)} origin calls/req`,
        v >= TARGET_INVALID_VS_PASSTHROUGH && calls === 0,
      ])
    }
    if (SCENARIOS.includes('dpop') && alg === 'ES256' && SCENARIOS.includes('repeated')) {
      // A new proof every request costs one signature check (priced by the unique-token
      // scenario: one token signature per request) plus the proof's own work.
      const us = (scenario, id) => med(alg, scenario, id, 'workerdUsPerReq')
      const extra = us('dpop', 'dp') - us('repeated', 'd')
      const signature = SCENARIOS.includes('unique') ? us('unique', 'd') - us('repeated', 'd') : NaN
      targets.push([
        `ES256 DPoP, new proof every request: (d) DPoP CPU ≤ (d) repeated + one signature check (unique − repeated) + ${TARGET_DPOP_EXTRA_US} µs`,
        `+${f0(extra)} µs/req vs +${f0(signature)} µs/req for one signature; replay DO: p50 ${f2(med(alg, 'dpop', 'dpr', 'p50Ms'))} vs ${f2(med(alg, 'dpop', 'dp', 'p50Ms'))} ms, ${f0(med(alg, 'dpop', 'dpr', 'rps'))} vs ${f0(med(alg, 'dpop', 'dp', 'rps'))} req/s`,
        Number.isNaN(signature) ? null : extra <= signature + TARGET_DPOP_EXTRA_US,
      ])
    }
    if (SCENARIOS.includes('opaque') && SCENARIOS.includes('repeated')) {
      // Same round, same alg block: the opaque token's cache hit against the repeated JWT's.
      const v = ratio(alg, ['opaque', 'do'], ['repeated', 'd'])
      const calls = med(alg, 'opaque', 'do', 'introspectionCalls')
      targets.push([
        `${alg} block, opaque token (introspection cache hits): (d) + introspection ≥ ${TARGET_OPAQUE_VS_REPEATED}× (d) repeated JWT req/s`,
        `${x2(v)}; CPU ${f0(med(alg, 'opaque', 'do', 'workerdUsPerReq'))} vs ${f0(med(alg, 'repeated', 'd', 'workerdUsPerReq'))} µs/req; ${f0(calls)} introspection calls per run`,
        v >= TARGET_OPAQUE_VS_REPEATED,
      ])
    }
    for (const scenario of ['repeated', 'unique'].filter((s) => SCENARIOS.includes(s))) {
      if (!revocationOn) {
        targets.push([
          `${alg} revocation on vs off (${scenario}): cost ≤ ${TARGET_REVOCATION_COST * 100}%`,
          `n/a: ${revocation[alg]}`,
          null,
        ])
        continue
      }
      const cost = 1 - ratio(alg, [scenario, 'dr'], [scenario, 'd'])
      targets.push([
        `${alg} revocation on vs off (${scenario}): cost ≤ ${TARGET_REVOCATION_COST * 100}%`,
        `${(cost * 100).toFixed(1)}%`,
        cost <= TARGET_REVOCATION_COST,
      ])
    }
  }

  const gz = wrangler ? wrangler.gzipKib : bundles.d.gzipBytes / 1024
  targets.push([
    `bundle ≤ ${TARGET_BUNDLE_GZIP_KIB} KiB gzipped`,
    wrangler
      ? `${gz.toFixed(2)} KiB (wrangler deploy --dry-run: ${wrangler.kib.toFixed(2)} KiB / gzip ${wrangler.gzipKib.toFixed(2)} KiB)`
      : `${gz.toFixed(2)} KiB (esbuild + gzip -9)`,
    gz <= TARGET_BUNDLE_GZIP_KIB,
  ])
  targets.push([
    `module scope: evaluating the bundle ≤ ${TARGET_MODULE_EVAL_MS} ms`,
    `${evalMs.d.toFixed(2)} ms (Hono + jose by hand: ${evalMs.b.toFixed(2)} ms)`,
    evalMs.d <= TARGET_MODULE_EVAL_MS,
  ])

  lines.push('## Targets', '')
  lines.push('| target | measured | |', '| --- | --- | --- |')
  for (const [what, got, ok] of targets)
    lines.push(`| ${what} | ${got} | ${ok === null ? 'n/a' : ok ? 'pass' : '**FAIL**'} |`)
  lines.push('')

  lines.push('## Bundle and startup', '')
  lines.push(
    '| worker | bundle KiB | gzip KiB | module evaluation ms | first request ms (cold isolate) |',
  )
  lines.push('| --- | ---: | ---: | ---: | ---: |')
  for (const id of ['a', 'b', 'c', 'd']) {
    lines.push(
      `| ${byId[id].label} | ${(bundles[id].bytes / 1024).toFixed(1)} | ${(bundles[id].gzipBytes / 1024).toFixed(1)} | ` +
        `${evalMs[id].toFixed(2)} | ${firstMs[id].toFixed(1)} |`,
    )
  }
  lines.push(
    '',
    'Bundles: esbuild with the options wrangler uses (ESM, not minified, names kept), gzip -9. Module evaluation: ' +
      'parse, compile and top-level code of the bundle in V8 (Node 24, a fresh process per sample, median of 7): ' +
      'workerd freezes its clocks while JS runs, so it cannot be timed from inside. First request: the first ' +
      'request each worker served after workerd started, through a fresh isolate (includes the JWKS fetch and ' +
      'key import for (b) and (d)).',
    '',
  )

  lines.push('## Notes', '')
  if (SCENARIOS.includes('unique')) {
    const used = Math.max(...[...cursor.values()])
    const pools = ALGS.map((a) => `${a} ${poolSize(a)}`).join(', ')
    lines.push(
      `- Unique tokens: each worker walks a pool of distinct pre-signed tokens (${pools}); the most any worker ` +
        `used was ${used}${used > Math.min(...ALGS.map(poolSize)) ? ', so the pool wrapped; tokens come back in the same order, so a token cache smaller than the pool still never sees a repeat' : ', so no token was sent twice to the same worker'}.`,
    )
  }
  lines.push(
    '- Invalid token: well-formed, known `kid`, signed by a different key, so every gateway must run the signature check.',
    "- (c) Hono's `jwk` middleware with `jwks_uri` fetches the JWKS and imports the key on every request (its documented behaviour).",
    "- Every worker's fetch to the origin goes through Miniflare's outbound interceptor (an extra in-process hop), the same for all.",
    `- The gateway writes one log line per request; Miniflare parses workerd's stdout in the bench's own process (${logLines} lines this run).`,
    '',
  )
  return { markdown: lines.join('\n') }
}
