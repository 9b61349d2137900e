/**
 * `npm start`: the offline demo. Starts the demo issuer and origin (server.ts) in this process,
 * then `wrangler dev --env demo` (the gateway on 127.0.0.1:8787, configured by [env.demo] in
 * wrangler.toml). Stopping either stops both: signals are passed on to wrangler, and the demo
 * server closes when wrangler exits.
 */
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { DEMO_HOST, GATEWAY_PORT } from './constants.ts'
import { startDemoServer, type DemoServer } from './server.ts'

/** How long wrangler gets to stop workerd after a signal before it is killed. */
const CHILD_STOP_GRACE_MS = 5_000
/** How often to check that whoever started this process (npm, a shell) is still there. */
const PARENT_CHECK_MS = 1_000

let demo: DemoServer
try {
  demo = await startDemoServer()
} catch (err) {
  const inUse = (err as { code?: unknown }).code === 'EADDRINUSE'
  console.error(
    inUse
      ? 'The demo issuer port is in use: is another `npm start` running?'
      : `Could not start the demo issuer: ${String(err)}`,
  )
  process.exit(1)
}

const gateway = `http://${DEMO_HOST}:${GATEWAY_PORT}`
console.log(`Demo issuer and origin: ${demo.url} (signing key ${demo.kid})`)
console.log(`Gateway (wrangler dev --env demo): ${gateway}`)
console.log(`In another terminal:
  curl -i ${gateway}/hello
  TOKEN=$(npm run -s token)
  curl -i -H "Authorization: Bearer $TOKEN" ${gateway}/hello
`)

// Run wrangler's own entry point with this Node (the pinned one under `npm start`).
const wranglerPkg = createRequire(import.meta.url).resolve('wrangler/package.json')
const child = spawn(
  process.execPath,
  [
    join(dirname(wranglerPkg), 'bin', 'wrangler.js'),
    'dev',
    '--env',
    'demo',
    '--ip',
    DEMO_HOST,
    '--port',
    String(GATEWAY_PORT),
  ],
  // Offline: wrangler's usage metrics could not be sent anyway.
  { stdio: 'inherit', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } },
)

let stopping = false
function stop(signal: NodeJS.Signals): void {
  if (stopping) return
  stopping = true
  child.kill(signal)
  setTimeout(() => child.kill('SIGKILL'), CHILD_STOP_GRACE_MS).unref()
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, stop)

// npm does not pass SIGTERM on to the script, so `kill <npm pid>` would leave this process and
// wrangler running: when the parent goes away (this process is re-parented), stop as if signalled.
const parentPid = process.ppid
setInterval(() => {
  if (process.ppid !== parentPid) stop('SIGTERM')
}, PARENT_CHECK_MS).unref()

// If this process dies some other way, do not leave wrangler running.
process.on('exit', () => {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
})

child.on('error', (err) => {
  console.error(`Could not run wrangler: ${err.message}`)
  void demo.close().then(() => process.exit(1))
})

child.on('exit', (code, signal) => {
  void demo.close().then(() => {
    if (stopping) process.exit(0)
    process.exit(code ?? (signal ? 1 : 0))
  })
})
