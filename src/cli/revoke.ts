/**
 * `npm run revoke -- --jti X | --sub Y | --all [--before UNIX] [--exp UNIX] [--iss ISS] [--url URL]`
 * Also `--list` and `--delete ID`. Talks to a running gateway's admin API with ADMIN_TOKEN from the
 * environment. Node only; not part of the worker.
 */
import { parseArgs } from 'node:util'

const USAGE = `usage: ADMIN_TOKEN=... npm run revoke -- (--jti ID [--exp UNIX] | --sub SUBJECT [--before UNIX] | --all [--before UNIX] | --list | --delete RECORD_ID) [--iss ISSUER] [--url GATEWAY_URL]
  --url defaults to $GATEWAY_URL or http://127.0.0.1:8787; --prefix defaults to /_gateway`

function fail(message: string): never {
  console.error(message)
  process.exit(2)
}

const { values } = parseArgs({
  options: {
    jti: { type: 'string' },
    sub: { type: 'string' },
    all: { type: 'boolean' },
    list: { type: 'boolean' },
    delete: { type: 'string' },
    before: { type: 'string' },
    exp: { type: 'string' },
    iss: { type: 'string' },
    url: { type: 'string' },
    prefix: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
})

if (values.help) {
  console.log(USAGE)
  process.exit(0)
}
const token = process.env.ADMIN_TOKEN
if (!token) fail(`ADMIN_TOKEN is not set\n${USAGE}`)
const base = (values.url ?? process.env.GATEWAY_URL ?? 'http://127.0.0.1:8787').replace(/\/+$/, '')
const api = `${base}${values.prefix ?? '/_gateway'}/revocations`

const actions = [values.jti, values.sub, values.all, values.list, values.delete].filter(
  (v) => v !== undefined,
)
if (actions.length !== 1) fail(USAGE)

function unix(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v)) fail(`--${name} must be a unix time in seconds`)
  return Number(v)
}

let method = 'POST'
let url = api
let body: Record<string, unknown> | undefined
if (values.list) {
  method = 'GET'
} else if (values.delete !== undefined) {
  method = 'DELETE'
  url = `${api}/${encodeURIComponent(values.delete)}`
} else {
  body = values.jti
    ? { jti: values.jti, exp: unix('exp', values.exp) }
    : values.sub
      ? { sub: values.sub, before: unix('before', values.before) }
      : { all: true, before: unix('before', values.before) }
  if (values.iss) body.iss = values.iss
}

const res = await fetch(url, {
  method,
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
  body: body === undefined ? undefined : JSON.stringify(body),
})
const text = await res.text()
console.log(`${res.status} ${res.statusText}${text ? `\n${text}` : ''}`)
process.exit(res.ok ? 0 : 1)
