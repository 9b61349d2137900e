/**
 * `npm run -s token -- [--sub NAME] [--scope "a b"] [--ttl SECONDS] [--aud AUDIENCE]`
 * Asks the running demo issuer (started by `npm start`) for a token and prints only the token on
 * stdout, so `TOKEN=$(npm run -s token)` works. Everything else goes to stderr.
 */
import { parseArgs } from 'node:util'
import { DEMO_BASE_URL, DEMO_TOKEN_PATH, MAX_TOKEN_TTL_S } from './constants.ts'
import type { TokenRequest } from './server.ts'

const USAGE = `usage: npm run -s token -- [--sub NAME] [--scope "read write"] [--ttl SECONDS] [--aud AUDIENCE]
  --sub    the token's subject (default alice)
  --scope  the scope claim (default read)
  --ttl    lifetime in seconds, 1 to ${MAX_TOKEN_TTL_S} (default 900)
  --aud    the audience (default demo-api, the one the demo gateway accepts)`

function fail(message: string): never {
  console.error(message)
  process.exit(1)
}

let values: { sub?: string; scope?: string; ttl?: string; aud?: string; help?: boolean }
try {
  values = parseArgs({
    options: {
      sub: { type: 'string' },
      scope: { type: 'string' },
      ttl: { type: 'string' },
      aud: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values
} catch (err) {
  fail(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`)
}
if (values.help) {
  console.error(USAGE)
  process.exit(0)
}

const request: TokenRequest = {}
if (values.sub !== undefined) request.sub = values.sub
if (values.scope !== undefined) request.scope = values.scope
if (values.aud !== undefined) request.aud = values.aud
if (values.ttl !== undefined) {
  if (!/^\d+$/.test(values.ttl)) fail(`--ttl must be a whole number of seconds\n${USAGE}`)
  request.ttl_s = Number(values.ttl)
}

let res: Response
try {
  res = await fetch(DEMO_BASE_URL + DEMO_TOKEN_PATH, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(request),
  })
} catch {
  fail(`The demo issuer is not answering on ${DEMO_BASE_URL}: start the demo with \`npm start\`.`)
}
const body = (await res.json().catch(() => ({}))) as { access_token?: unknown; error?: unknown }
if (!res.ok || typeof body.access_token !== 'string') {
  fail(`The demo issuer refused: HTTP ${res.status} ${String(body.error ?? '')}`)
}
process.stdout.write(body.access_token + '\n')
