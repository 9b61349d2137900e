/**
 * Drive one worker for a fixed time with wrk (Debian's, when installed) or autocannon (npm), and
 * return the same numbers from either. Each run is a child process; this module only spawns and
 * parses. Node only.
 */
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

/**
 * @typedef {{ requests: number, seconds: number, rps: number, p50Ms: number, p99Ms: number,
 *   non2xx: number, errors: number, cpuS: number }} LoadResult
 * @typedef {{ url: string, connections: number, durationS: number, token?: string,
 *   tokensFile?: string, start?: number, proofsFile?: string }} LoadSpec
 */

/** @returns {string | null} wrk's version line, or null when wrk is not installed. */
export function wrkVersion() {
  try {
    // wrk prints its usage (with the version) and exits 1 for -v.
    execFileSync('wrk', ['-v'], { stdio: 'pipe' })
  } catch (err) {
    const out =
      String(/** @type {any} */ (err).stdout ?? '') + String(/** @type {any} */ (err).stderr ?? '')
    const m = /^wrk (\S+)/m.exec(out)
    if (m) return `wrk ${m[1]}`
    return null
  }
  return 'wrk'
}

export function autocannonVersion() {
  const pkg = JSON.parse(
    readFileSync(join(here, '../../node_modules/autocannon/package.json'), 'utf8'),
  )
  return `autocannon ${pkg.version}`
}

/** CPU seconds used by this process's reaped children (fields 16, 17 of /proc/self/stat). */
function childrenCpuS() {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[13]) + Number(f[14])) / 100
}

/** @param {string} cmd @param {string[]} args @returns {Promise<string>} */
function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('error', reject)
    child.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err || out}`)),
    )
  })
}

/** "2.08ms" -> 2.08; wrk prints us, ms, s and m. */
function ms(text) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim())
  if (!m) return NaN
  const v = Number(m[1])
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000
}

/** @param {string} out */
export function parseWrk(out) {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(out)
  if (!total) throw new Error(`cannot read wrk output:\n${out}`)
  const seconds = ms(`${total[2]}${total[3]}`) / 1000
  const pct = (p) => ms(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out)?.[1] ?? '')
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  return {
    requests: Number(total[1]),
    seconds,
    p50Ms: pct(50),
    p99Ms: pct(99),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
    errors: sock ? sock.slice(1).reduce((s, n) => s + Number(n), 0) : 0,
  }
}

/**
 * @param {'wrk' | 'autocannon'} generator @param {LoadSpec} spec
 * @returns {Promise<LoadResult>}
 */
export async function runLoad(generator, spec) {
  const cpu0 = childrenCpuS()
  let r
  if (generator === 'wrk') {
    // One thread: on two cores wrk's second thread would only take CPU from workerd.
    const args = ['-t1', `-c${spec.connections}`, `-d${spec.durationS}s`, '--latency']
    if (spec.token) args.push('-H', `Authorization: Bearer ${spec.token}`)
    if (spec.tokensFile) args.push('-s', join(here, 'pool.lua'))
    if (spec.proofsFile) args.push('-s', join(here, 'dpop-pool.lua'))
    args.push(spec.url)
    if (spec.tokensFile) args.push('--', spec.tokensFile, String(spec.start ?? 0))
    if (spec.proofsFile) args.push('--', spec.proofsFile)
    r = parseWrk(await run('wrk', args))
  } else {
    const opts = {
      url: spec.url,
      connections: spec.connections,
      durationS: spec.durationS,
      headers: spec.token ? { authorization: `Bearer ${spec.token}` } : {},
      tokensFile: spec.tokensFile,
      start: spec.start,
      proofsFile: spec.proofsFile,
    }
    const out = await run(process.execPath, [
      join(here, 'autocannon-child.mjs'),
      JSON.stringify(opts),
    ])
    r = JSON.parse(out.trim().split('\n').pop() ?? '{}')
  }
  return { ...r, rps: r.requests / r.seconds, cpuS: childrenCpuS() - cpu0 }
}
