/**
 * Test helpers that run inside workerd: keys made with jose at test time, a namespace on the
 * loopback stub per test, and a way to drive the real worker with a fresh isolate-level state.
 */
import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { expect } from 'vitest'
import {
  exportJWK,
  generateKeyPair,
  SignJWT,
  type CryptoKey as JoseKey,
  type JWK,
  type JWTPayload,
} from 'jose'
import worker from '../src'
import type { NamespaceSetup, OriginCall } from './node/stub'

export const STUB_URL = (env as unknown as { STUB_URL: string }).STUB_URL
export const ISSUER = 'https://issuer.test'
export const AUDIENCE = 'api://gateway-test'

export interface TestKey {
  kid: string
  alg: string
  privateKey: JoseKey
  publicJwk: JWK
}

export async function makeKey(alg = 'ES256', kid = crypto.randomUUID()): Promise<TestKey> {
  const opts = alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048 } : {}
  const { privateKey, publicKey } = await generateKeyPair(alg, { ...opts, extractable: true })
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
  return { kid, alg, privateKey, publicJwk }
}

export interface MintOptions {
  header?: Record<string, unknown>
  /** Seconds from now; null leaves the claim out. */
  exp?: number | null
}

export async function mint(
  key: TestKey,
  claims: JWTPayload = {},
  opts: MintOptions = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const payload: JWTPayload = { iss: ISSUER, aud: AUDIENCE, sub: 'alice', iat: now, ...claims }
  if (opts.exp !== null && payload.exp === undefined) payload.exp = now + (opts.exp ?? 300)
  return new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...opts.header })
    .sign(key.privateKey)
}

/** One test's slice of the loopback stub: its JWKS, discovery document and origin. */
export class Stub {
  readonly id = crypto.randomUUID().replaceAll('-', '')
  readonly base = `${STUB_URL}/ns/${this.id}`
  readonly jwksUrl = `${this.base}/jwks`
  readonly originUrl = `${this.base}/origin`

  async setup(setup: NamespaceSetup): Promise<void> {
    const res = await fetch(`${this.base}/_setup`, { method: 'POST', body: JSON.stringify(setup) })
    if (!res.ok) throw new Error(`stub setup failed: ${res.status}`)
  }

  async publish(...keys: TestKey[]): Promise<void> {
    await this.setup({ jwks: { keys: keys.map((k) => k.publicJwk) } })
  }

  async calls(): Promise<{ jwksFetches: number; discoveryFetches: number; origin: OriginCall[] }> {
    return (await fetch(`${this.base}/_calls`)).json()
  }

  /** Request body bytes the origin has received so far (counted as they arrive). */
  async originBytesSeen(): Promise<number> {
    const res = await fetch(`${this.base}/_progress`)
    return ((await res.json()) as { originBytesSeen: number }).originBytesSeen
  }

  /** A fresh RSA private JWK of any size (Node generates it; workerd cannot for odd sizes). */
  async rsaPrivateJwk(bits: number): Promise<JWK> {
    return (await fetch(`${this.base}/_rsa/${bits}`)).json()
  }

  /** Let held origin responses (`originHold`) finish. */
  async release(): Promise<void> {
    await (await fetch(`${this.base}/_release`, { method: 'POST' })).body?.cancel()
  }
}

export type { OriginCall }

export type GatewayEnv = Record<string, unknown>

/** A fresh env object: the worker builds new isolate-level state (config, key caches) for it. */
export function gatewayEnv(stub: Stub, vars: GatewayEnv = {}): GatewayEnv {
  return {
    ...env,
    ORIGIN_URL: stub.originUrl,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    JWKS_URL: stub.jwksUrl,
    ...vars,
  }
}

/** Send one request through the real worker with the given env. */
export async function send(
  gwEnv: GatewayEnv,
  input: string | Request,
  init?: RequestInit,
): Promise<Response> {
  const request =
    typeof input === 'string' ? new Request(new URL(input, 'https://gw.test'), init) : input
  const ctx = createExecutionContext()
  const res = await worker.fetch(request, gwEnv, ctx)
  await waitOnExecutionContext(ctx)
  return res
}

export function bearer(token: string): RequestInit {
  return { headers: { authorization: `Bearer ${token}` } }
}

export async function body(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export function b64u(input: string | Uint8Array): string {
  const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : input
  let bin = ''
  for (const b of bytes) bin += String.fromCharCode(b)
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

export function fromB64u(text: string): string {
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/'))
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)))
}

/** WebCrypto parameters for a JWS algorithm (ECDSA signatures come out raw r||s, as JWS wants). */
function signParams(alg: string): Parameters<SubtleCrypto['sign']>[0] {
  const bits = alg.slice(2)
  if (alg.startsWith('ES')) return { name: 'ECDSA', hash: `SHA-${bits}` }
  if (alg.startsWith('RS')) return { name: 'RSASSA-PKCS1-v1_5' }
  if (alg.startsWith('PS')) return { name: 'RSA-PSS', saltLength: Number(bits) / 8 }
  if (alg.startsWith('HS')) return { name: 'HMAC' }
  return { name: 'Ed25519' }
}

/**
 * A compact JWS built by hand, so tests can send what jose would refuse to produce: any header
 * (`crit`, `jku`, `alg: none`), any payload text (duplicate members, lone surrogates), any key.
 * Objects are JSON-serialised; strings are used verbatim.
 */
export async function signRaw(
  header: Record<string, unknown> | string,
  payload: JWTPayload | string,
  key: CryptoKey,
  alg = typeof header === 'string' ? 'ES256' : String(header.alg),
): Promise<string> {
  const enc = (v: unknown) => b64u(typeof v === 'string' ? v : JSON.stringify(v))
  const input = `${enc(header)}.${enc(payload)}`
  const sig = await crypto.subtle.sign(signParams(alg), key, new TextEncoder().encode(input))
  return `${input}.${b64u(new Uint8Array(sig))}`
}

/** The claims a valid token for the default issuer and audience carries, valid for 5 minutes. */
export function claims(extra: JWTPayload = {}): JWTPayload {
  const now = Math.floor(Date.now() / 1000)
  return { iss: ISSUER, aud: AUDIENCE, sub: 'alice', iat: now, exp: now + 300, ...extra }
}

export interface LogLine {
  event?: string
  reason?: string
  error?: string
  [field: string]: unknown
}

/** Collects the worker's JSON log lines until `restore()`. */
export function captureLogs(): { lines: LogLine[]; text: () => string; restore: () => void } {
  const lines: LogLine[] = []
  const raw: string[] = []
  const original = console.log
  console.log = (...args: unknown[]) => {
    const text = args.map(String).join(' ')
    raw.push(text)
    try {
      lines.push(JSON.parse(text) as LogLine)
    } catch {
      // not one of ours
    }
  }
  return { lines, text: () => raw.join('\n'), restore: () => void (console.log = original) }
}

/** The `reason` of each request log line written while `run` runs (undefined when it passed). */
export async function logReasons(run: () => Promise<unknown>): Promise<(string | undefined)[]> {
  const logs = captureLogs()
  try {
    await run()
  } finally {
    logs.restore()
  }
  return logs.lines.filter((l) => l.event === 'request').map((l) => l.reason)
}

/** What a refused request must look like: exact status, challenge and JSON body. */
export async function expectRefusal(
  res: Response,
  status: number,
  wwwAuthenticate: string | null,
  json: { error: string; error_description: string },
): Promise<void> {
  const got = {
    status: res.status,
    wwwAuthenticate: res.headers.get('www-authenticate'),
    contentType: res.headers.get('content-type'),
    body: await res.json(),
  }
  const want = {
    status,
    wwwAuthenticate,
    contentType: 'application/json; charset=utf-8',
    body: json,
  }
  expect(got).toEqual(want)
}

export const INVALID_TOKEN_CHALLENGE =
  'Bearer realm="gateway", error="invalid_token", error_description="The access token is invalid"'
export const INVALID_TOKEN_BODY = {
  error: 'invalid_token',
  error_description: 'The access token is invalid',
}

/** The answer to any token that fails verification: 401 invalid_token, nothing more specific. */
export function expectInvalidToken(res: Response): Promise<void> {
  return expectRefusal(res, 401, INVALID_TOKEN_CHALLENGE, INVALID_TOKEN_BODY)
}

/**
 * A structured-mode env: GATEWAY set (an object or a JSON string) and every simple-mode variable
 * unset, since setting both is a configuration error.
 */
export function structuredEnv(stub: Stub, gateway: unknown, vars: GatewayEnv = {}): GatewayEnv {
  return gatewayEnv(stub, {
    ORIGIN_URL: undefined,
    JWT_ISSUER: undefined,
    JWT_AUDIENCE: undefined,
    JWKS_URL: undefined,
    GATEWAY: gateway,
    ...vars,
  })
}

const KV = (env as unknown as { REVOCATIONS: KVNamespace }).REVOCATIONS
let kvCount = 0
/** A KV namespace nobody else writes to: same binding, keys isolated by a per-test prefix view. */
export async function freshKv(): Promise<KVNamespace> {
  const prefix = `t${++kvCount}-${crypto.randomUUID()}/`
  return {
    get: (k: string, o?: unknown) => KV.get(prefix + k, o as 'text'),
    put: (k: string, v: string, o?: KVNamespacePutOptions) => KV.put(prefix + k, v, o),
    delete: (k: string) => KV.delete(prefix + k),
    async list(o?: KVNamespaceListOptions) {
      const page = await KV.list({ ...o, prefix: prefix + (o?.prefix ?? '') })
      return { ...page, keys: page.keys.map((k) => ({ ...k, name: k.name.slice(prefix.length) })) }
    },
  } as unknown as KVNamespace
}

/** Every record the admin API lists (one page of up to 1000; tests use a fresh namespace). */
export async function listedRevocations(
  gw: GatewayEnv,
  adminToken: string,
): Promise<Record<string, unknown>[]> {
  const res = await send(gw, '/_gateway/revocations?limit=1000', {
    headers: { authorization: `Bearer ${adminToken}` },
  })
  return (await body(res)).records as Record<string, unknown>[]
}
