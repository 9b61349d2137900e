/**
 * CPU profiles of one worker under load, taken through workerd's V8 inspector (Miniflare's
 * `inspectorPort`), and a summary of where the isolate's time goes: by source module of the bundle
 * (esbuild's `// path` markers), by pipeline stage, and by function. Node only (global WebSocket).
 *
 * Caveat: the profile sees only the worker's isolate. HTTP parsing, the socket work and Miniflare's
 * outbound hop run outside it and show up as "(idle)" or not at all; workerd's total CPU per request
 * (measured from /proc) is the number that includes them.
 */
import { readFileSync } from 'node:fs'

/** Connect to one worker's inspector target. @param {string} url ws://host:port/core:user:<name> */
export async function connectInspector(url) {
  const ws = new WebSocket(url)
  await new Promise((resolve, reject) => {
    ws.onopen = resolve
    ws.onerror = () => reject(new Error(`cannot open the inspector at ${url}`))
  })
  let next = 0
  /** @type {Map<number, (m: any) => void>} */
  const pending = new Map()
  ws.onmessage = (e) => {
    const m = JSON.parse(String(e.data))
    // workerd answers some methods it handles itself (Profiler.enable) by echoing the command back,
    // without a result: any message with our id settles the call.
    if (typeof m.id === 'number') {
      pending.get(m.id)?.(m)
      pending.delete(m.id)
    }
  }
  /** @param {string} method @param {object} [params] @returns {Promise<any>} */
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = ++next
      pending.set(id, (m) =>
        m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result ?? {}),
      )
      ws.send(JSON.stringify({ id, method, params }))
    })
  return { send, close: () => ws.close() }
}

/**
 * Profile while `load` runs.
 * @template T @param {string} url @param {() => Promise<T>} load
 * @returns {Promise<{ profile: any, result: T }>}
 */
export async function profileDuring(url, load) {
  const inspector = await connectInspector(url)
  try {
    await inspector.send('Profiler.enable')
    await inspector.send('Profiler.setSamplingInterval', { interval: 100 })
    await inspector.send('Profiler.start')
    const result = await load()
    const { profile } = await inspector.send('Profiler.stop')
    await inspector.send('Profiler.disable')
    return { profile, result }
  } finally {
    inspector.close()
  }
}

/** Line (0-based) -> source module, from the `// path` comments esbuild writes before each module. */
export function moduleMap(bundleFile) {
  const lines = readFileSync(bundleFile, 'utf8').split('\n')
  /** @type {string[]} */
  const byLine = []
  let current = '(bundle)'
  for (const [i, line] of lines.entries()) {
    const m = /^\/\/ ((?:src|node_modules|test)\/\S+)$/.exec(line)
    if (m) current = m[1]
    byLine[i] = current
  }
  return byLine
}

/** Pipeline stage of a source module: the gateway's own files by name, libraries by package. */
export function stageOf(module) {
  const src = /^src\/(.+)\.ts$/.exec(module)
  if (src) return `src/${src[1]}`
  if (module.includes('node_modules/jose/')) return 'jose'
  if (module.includes('node_modules/hono/')) return 'hono'
  return module
}

/**
 * @param {any} profile a V8 CPU profile @param {string[]} byLine from moduleMap
 * @param {string} bundleUrl the bundle's script URL in the profile (its file name in workerd)
 * @param {number} requests served while profiling
 */
export function summarise(profile, byLine, bundleUrl, requests) {
  /** @type {Map<number, any>} */
  const nodes = new Map(profile.nodes.map((/** @type {any} */ n) => [n.id, n]))
  /** @type {Map<number, number>} */
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const counts = new Map()
  for (const s of profile.samples) counts.set(s, (counts.get(s) ?? 0) + 1)
  const total = profile.samples.length
  const usPerSample = (profile.endTime - profile.startTime) / Math.max(1, total)

  const inBundle = (/** @type {any} */ f) => f.url === bundleUrl && f.lineNumber >= 0
  /** Function and where it lives: a bundle module, workerd's built-in JS (node-internal:*), or native. */
  const label = (/** @type {any} */ n) => {
    const f = n.callFrame
    const name = f.functionName || '(anonymous)'
    if (inBundle(f)) return `${name} ${stageOf(byLine[f.lineNumber] ?? '?')}`
    return f.url === '' ? `${name} [native]` : `${name} [${f.url}]`
  }
  /** Stage of a node: its own bundle module, or for native and built-in frames the nearest caller's. */
  const stage = (/** @type {number} */ id) => {
    let n = nodes.get(id)
    const name = n.callFrame.functionName
    if (['(idle)', '(program)', '(garbage collector)', '(root)'].includes(name)) return name
    for (;;) {
      if (inBundle(n.callFrame)) return stageOf(byLine[n.callFrame.lineNumber] ?? '?')
      const p = parent.get(n.id)
      if (p === undefined) return '(runtime, no bundle caller)'
      n = nodes.get(p)
    }
  }

  const selfByFn = new Map()
  const selfByStage = new Map()
  /** Inclusive samples per function label, counting each sample once per label on its stack. */
  const inclusive = new Map()
  let idle = 0
  for (const [id, c] of counts) {
    const n = nodes.get(id)
    if (n.callFrame.functionName === '(idle)') idle += c
    selfByFn.set(label(n), (selfByFn.get(label(n)) ?? 0) + c)
    const st = stage(id)
    selfByStage.set(st, (selfByStage.get(st) ?? 0) + c)
    const seen = new Set()
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(nodes.get(cur))
      if (!seen.has(l)) {
        seen.add(l)
        inclusive.set(l, (inclusive.get(l) ?? 0) + c)
      }
    }
  }
  const busy = total - idle
  const usPerReq = (/** @type {number} */ samples) =>
    (samples * usPerSample) / Math.max(1, requests)
  const rows = (/** @type {Map<string, number>} */ m, limit) =>
    [...m]
      .filter(([k]) => k !== '(idle)' && k !== '(idle) [native]' && k !== '(root) [native]')
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([name, s]) => ({ name, pctBusy: (100 * s) / Math.max(1, busy), usPerReq: usPerReq(s) }))
  return {
    samples: total,
    usPerSample,
    requests,
    busyPct: (100 * busy) / Math.max(1, total),
    busyUsPerReq: usPerReq(busy),
    byStage: rows(selfByStage, 30),
    selfTop: rows(selfByFn, 25),
    inclusiveTop: rows(inclusive, 40).filter((r) => !r.name.startsWith('(root)')),
  }
}

/** @param {ReturnType<typeof summarise>} s @param {string} title */
export function profileMarkdown(s, title) {
  const f = (/** @type {number} */ n) => n.toFixed(1)
  const table = (/** @type {{ name: string, pctBusy: number, usPerReq: number }[]} */ rows) =>
    [
      '| where | % of busy | µs/req |',
      '| --- | ---: | ---: |',
      ...rows.map(
        (r) => `| \`${r.name.replace(/\|/g, '\\|')}\` | ${f(r.pctBusy)} | ${f(r.usPerReq)} |`,
      ),
    ].join('\n')
  return [
    `### ${title}`,
    '',
    `${s.requests} requests, ${s.samples} samples (${f(s.usPerSample)} µs apart); the isolate was busy ` +
      `${f(s.busyPct)}% of the time, ${f(s.busyUsPerReq)} µs per request.`,
    '',
    'Self time by stage (native and workerd built-in calls count toward the bundle module that called them):',
    '',
    table(s.byStage),
    '',
    'Self time by function:',
    '',
    table(s.selfTop),
    '',
    'Inclusive time by function (callees included):',
    '',
    table(s.inclusiveTop.slice(0, 25)),
    '',
  ].join('\n')
}
