/**
 * Folder admin/: the /_gateway/* endpoints. May import any stage; nothing but src/index.ts
 * imports it.
 *
 * The gateway's own endpoints under the admin prefix (default /_gateway): the revocation admin
 * API and self-service logout. The origin never sees these paths. Does no token verification of
 * its own: logout is handed the pipeline's `authenticate`.
 */
import { publicJwks } from '../proxy/assertion'
import type { AssertionKeys, GatewayConfig } from '../config'
import { GatewayError } from '../errors'
import { revocationId, type RevocationList, type RevocationRecord } from '../revocation/list'
import type { Identity, Issuer } from '../auth/verify'
import type { Introspector } from '../auth/introspection'
import { backchannelLogout, signals, type ReceiverDeps } from './receivers'
import { sameSecret } from '../lib/secret'

/** Largest admin request body read, in bytes. */
export const MAX_ADMIN_BODY_BYTES = 4 * 1024
/** Longest jti or sub accepted, in UTF-8 bytes: the record must fit KV's 1024-byte metadata. */
export const MAX_REVOKED_VALUE_BYTES = 256
/** How far in the future a cut-off may be set: clock skew between the caller and us, no more. */
export const MAX_BEFORE_AHEAD_S = 300
export const DEFAULT_LIST_LIMIT = 100
export const MAX_LIST_LIMIT = 1000

export interface AdminDeps {
  readonly config: GatewayConfig
  readonly issuers: readonly Issuer[]
  /** Per issuer with introspection, its client (for health). */
  readonly introspectors: ReadonlyMap<string, Introspector>
  readonly assertion: AssertionKeys | null
  readonly revocations: RevocationList | null
  readonly authenticate: (request: Request) => Promise<Identity>
  readonly nowMs: number
  /** The back-channel logout and Shared Signals receivers (all but the revocation list). */
  readonly receivers: Omit<ReceiverDeps, 'revocations'>
}

/** Does this path belong to the gateway? Compared after decoding, so %5F cannot dodge it. */
export function isAdminPath(pathname: string, prefix: string): boolean {
  let path = pathname
  try {
    if (pathname.includes('%')) path = decodeURIComponent(pathname)
  } catch {
    // Undecodable paths are compared as sent.
  }
  return path === prefix || path.startsWith(`${prefix}/`)
}

function bad(message: string): GatewayError {
  return new GatewayError('admin_bad_request', message, message)
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
  })
}

export async function handleAdmin(request: Request, deps: AdminDeps): Promise<Response> {
  const { config, revocations } = deps
  const path = new URL(request.url).pathname.slice(config.admin.prefix.length)
  if (path === '/health' && request.method === 'GET') return health(deps)
  if (path === '/jwks.json' && request.method === 'GET' && deps.assertion !== null) {
    const res = json(publicJwks(deps.assertion))
    // Origins cache it; a rotated-in key is published before it signs (configure it second first).
    res.headers.set('cache-control', 'public, max-age=300')
    return res
  }
  // Without a revocation list there is nothing else here to serve.
  if (revocations === null) throw new GatewayError('not_found')

  if (path === '/logout') {
    if (request.method !== 'POST') throw new GatewayError('not_found')
    return logout(request, revocations, deps)
  }
  // Each receiver exists only when configured; the IdP authenticates by signing its tokens.
  if (path === '/backchannel-logout' && deps.receivers.logoutIssuers.length > 0) {
    if (request.method !== 'POST') throw new GatewayError('not_found')
    return backchannelLogout(request, { ...deps.receivers, revocations })
  }
  if (path === '/signals' && deps.receivers.transmitters.length > 0) {
    if (request.method !== 'POST') throw new GatewayError('not_found')
    return signals(request, { ...deps.receivers, revocations })
  }
  // Without an admin token the admin API does not exist, rather than existing unprotected.
  if (config.admin.token === null) throw new GatewayError('not_found')
  if (path !== '/revocations' && !path.startsWith('/revocations/')) {
    throw new GatewayError('not_found')
  }
  await requireAdmin(request, config.admin.token)

  if (path === '/revocations' && request.method === 'POST') {
    const record = await parseRevocation(request, config, deps.nowMs)
    // A cut-off only ever moves later here; an earlier one would silently un-revoke tokens. An
    // admin may rewrite a jti record's expiry: it names one token the admin has in hand.
    if (record.kind !== 'jti')
      return json(await revocations.putUnlessCovered(record, deps.nowMs), 201)
    await revocations.put(record, deps.nowMs)
    return json(record, 201)
  }
  if (path === '/revocations' && request.method === 'GET') {
    const url = new URL(request.url)
    const limit = listLimit(url.searchParams.get('limit'))
    const cursor = url.searchParams.get('cursor') ?? undefined
    return json(await revocations.list(limit, cursor))
  }
  const id = decodeURIComponent(path.slice('/revocations/'.length))
  if (request.method === 'DELETE' && /^(jti|sub|all|sid):[0-9a-f]{64}$/.test(id)) {
    const record = await revocations.get(id)
    if (record === null) throw new GatewayError('not_found')
    await revocations.delete(record, deps.nowMs)
    return new Response(null, { status: 204 })
  }
  throw new GatewayError('not_found')
}

/**
 * Unauthenticated, so it says nothing secret: no URLs, no error text, no key ids. Passive: it
 * reports this isolate's key stores and never triggers a fetch.
 */
function health(deps: AdminDeps): Response {
  const issuers = deps.issuers.map(({ config, keys }) => {
    const st = keys.status()
    return {
      issuer: config.issuer,
      keys: st.keys,
      jwksAgeSeconds:
        st.fetchedAtMs === null
          ? null
          : Math.max(0, Math.round((deps.nowMs - st.fetchedAtMs) / 1000)),
      lastFetch: st.lastAttemptMs === null ? 'none yet' : st.lastError === null ? 'ok' : 'failed',
      ...introspectionHealth(deps.introspectors.get(config.issuer)),
    }
  })
  const list = deps.revocations?.status(deps.nowMs) ?? null
  const degraded =
    issuers.some((i) => i.lastFetch === 'failed' || i.lastIntrospection === 'failed') ||
    list?.stale === true
  return json(
    {
      status: degraded ? 'degraded' : 'ok',
      revocation: deps.revocations === null ? 'off' : 'on',
      // The snapshot's store, version and age: how far behind this isolate may be.
      ...(list === null ? {} : { revocationSnapshot: list }),
      issuers,
    },
    200,
  )
}

/** An introspecting issuer's last call, as health shows it: no endpoint URL, no error text. */
function introspectionHealth(introspector: Introspector | undefined) {
  if (!introspector) return {}
  const st = introspector.status()
  return {
    introspectionCalls: st.calls,
    lastIntrospection: st.calls === 0 ? 'none yet' : st.failed ? 'failed' : 'ok',
  }
}

async function logout(request: Request, revocations: RevocationList, deps: AdminDeps) {
  const identity = await deps.authenticate(request)
  const jti = identity.claims.jti
  if (typeof jti !== 'string') {
    throw bad(
      'This token has no jti and cannot be revoked on its own; ask an admin to revoke its subject',
    )
  }
  const record: RevocationRecord = {
    id: await revocationId('jti', identity.issuer, jti),
    kind: 'jti',
    iss: identity.issuer,
    jti,
    exp: identity.claims.exp,
    createdAt: Math.floor(deps.nowMs / 1000),
    source: 'logout',
  }
  await revocations.put(record, deps.nowMs)
  return new Response(null, { status: 204 })
}

async function requireAdmin(request: Request, expected: string): Promise<void> {
  const header = request.headers.get('authorization') ?? ''
  const m = /^bearer (.+)$/i.exec(header)
  // Compared even without a token, so the time taken never says which check failed.
  const same = await sameSecret(m?.[1] ?? '', expected)
  if (!m || !same) {
    throw new GatewayError('admin_unauthorized', m ? 'wrong admin token' : 'no admin token')
  }
}

function listLimit(raw: string | null): number {
  if (raw === null) return DEFAULT_LIST_LIMIT
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_LIST_LIMIT) {
    throw bad(`limit must be a whole number from 1 to ${MAX_LIST_LIMIT}`)
  }
  return Number(raw)
}

async function readJson(request: Request): Promise<Record<string, unknown>> {
  const declared = Number(request.headers.get('content-length') ?? '0')
  if (declared > MAX_ADMIN_BODY_BYTES) throw bad(`body over ${MAX_ADMIN_BODY_BYTES} bytes`)
  const text = await request.text()
  if (text.length > MAX_ADMIN_BODY_BYTES) throw bad(`body over ${MAX_ADMIN_BODY_BYTES} bytes`)
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw bad('body is not JSON')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw bad('body must be a JSON object')
  }
  return body as Record<string, unknown>
}

const ALLOWED_FIELDS = new Set(['jti', 'exp', 'sub', 'before', 'all', 'iss'])

function shortString(body: Record<string, unknown>, field: string): string {
  const v = body[field]
  if (typeof v !== 'string' || v === '') throw bad(`${field} must be a non-empty string`)
  if (new TextEncoder().encode(v).length > MAX_REVOKED_VALUE_BYTES) {
    throw bad(`${field} must be at most ${MAX_REVOKED_VALUE_BYTES} bytes`)
  }
  return v
}

function unixTime(body: Record<string, unknown>, field: string): number | undefined {
  const v = body[field]
  if (v === undefined) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw bad(`${field} must be a unix time in whole seconds`)
  }
  return v
}

/** Validates everything before anything is written: a bad body writes nothing. */
export async function parseRevocation(
  request: Request,
  config: GatewayConfig,
  nowMs: number,
): Promise<RevocationRecord> {
  const body = await readJson(request)
  for (const field of Object.keys(body)) {
    if (!ALLOWED_FIELDS.has(field)) throw bad(`unknown field "${field}"`)
  }
  const kinds = (['jti', 'sub', 'all'] as const).filter((k) => body[k] !== undefined)
  if (kinds.length !== 1) throw bad('exactly one of "jti", "sub" or "all" is required')
  const kind = kinds[0]!

  let iss: string
  if (body.iss === undefined) {
    if (config.issuers.length !== 1)
      throw bad('"iss" is required when several issuers are configured')
    iss = config.issuers[0]!.issuer
  } else if (typeof body.iss !== 'string' || !config.issuers.some((i) => i.issuer === body.iss)) {
    throw bad('"iss" must be a configured issuer')
  } else {
    iss = body.iss
  }

  const now = Math.floor(nowMs / 1000)
  const createdAt = now
  const source = 'admin'
  if (kind === 'jti') {
    if (body.before !== undefined) throw bad('"before" goes with "sub" or "all", not "jti"')
    const jti = shortString(body, 'jti')
    const exp = unixTime(body, 'exp')
    return { id: await revocationId('jti', iss, jti), kind, iss, jti, exp, createdAt, source }
  }
  if (body.exp !== undefined) throw bad('"exp" goes with "jti" only')
  const before = unixTime(body, 'before') ?? now
  if (before > now + MAX_BEFORE_AHEAD_S) throw bad('"before" is too far in the future')
  if (kind === 'sub') {
    const sub = shortString(body, 'sub')
    return { id: await revocationId('sub', iss, sub), kind, iss, sub, before, createdAt, source }
  }
  if (body.all !== true) throw bad('"all" must be true')
  return { id: await revocationId('all', iss), kind, iss, before, createdAt, source }
}
