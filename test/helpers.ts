/**
 * Test helpers that run inside workerd: keys made with jose at test time, a namespace on the
 * loopback stub per test, and a way to drive the real worker with a fresh isolate-level state.
 */
import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import {
  exportJWK,
  generateKeyPair,
  SignJWT,
  type CryptoKey as JoseKey,
  type JWK,
  type JWTPayload,
} from 'jose'
import worker from '../src/index'
import type { NamespaceSetup } from './node/stub'

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
}

export interface OriginCall {
  method: string
  url: string
  headers: Record<string, string | string[] | undefined>
  rawHeaders: string[]
  bodyBytes: number
  bodySha256: string
}

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
  const request = typeof input === 'string' ? new Request(new URL(input, 'https://gw.test'), init) : input
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
