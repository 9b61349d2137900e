/**
 * How the adversarial suite judges a request: everything a refusal is judged by, gathered into one
 * object (status, challenge, body, the logged reason code, origin calls, JWKS fetches), so that each
 * case asserts all of it with one `toEqual` and a failure shows the whole picture at once.
 */
import { expect } from 'vitest'
import {
  captureLogs,
  gatewayEnv,
  INVALID_TOKEN_BODY,
  INVALID_TOKEN_CHALLENGE,
  send,
  Stub,
  type GatewayEnv,
  type LogLine,
  type TestKey,
} from '../helpers'

export interface Seen {
  status: number
  /** The WWW-Authenticate header, exactly. */
  challenge: string | null
  body: unknown
  /** The reason code on the gateway's log line for the request (never sent to the client). */
  reason: string | undefined
  /** Requests the origin received. */
  origin: number
  /** Requests the JWKS endpoint received. */
  jwks: number
}

export interface Fixture {
  stub: Stub
  gw: GatewayEnv
}

/** A fresh issuer namespace serving `keys`, and a fresh gateway (isolate state) in front of it. */
export async function fixture(keys: TestKey[], vars: GatewayEnv = {}): Promise<Fixture> {
  const stub = new Stub()
  await stub.publish(...keys)
  return { stub, gw: gatewayEnv(stub, vars) }
}

/** What `attempt` saw besides `Seen`, for checks on the raw answer and every log line. */
export interface Raw {
  headers: Headers
  text: string
  logs: LogLine[]
}

/** Send one request through the worker and collect what it did. */
export async function attempt(
  gw: GatewayEnv,
  stub: Stub,
  input: string | Request,
  init?: RequestInit,
  raw?: (seen: Raw) => void,
): Promise<Seen> {
  const logs = captureLogs()
  let res: Response
  try {
    res = await send(gw, input, init)
  } finally {
    logs.restore()
  }
  const text = await res.text()
  raw?.({ headers: res.headers, text, logs: logs.lines })
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // Not JSON: compared as text.
  }
  const calls = await stub.calls()
  return {
    status: res.status,
    challenge: res.headers.get('www-authenticate'),
    body,
    reason: logs.lines.find((l) => l.event === 'request')?.reason,
    origin: calls.origin.length,
    jwks: calls.jwksFetches,
  }
}

/** `Authorization: Bearer <token>` through the worker. */
export function withToken(f: Fixture, token: string, path = '/r'): Promise<Seen> {
  return attempt(f.gw, f.stub, path, { headers: { authorization: `Bearer ${token}` } })
}

/** 401 invalid_token for `reason`, after `jwks` JWKS fetches, and the origin never called. */
export function invalidToken(reason: string, jwks: number): Seen {
  return {
    status: 401,
    challenge: INVALID_TOKEN_CHALLENGE,
    body: INVALID_TOKEN_BODY,
    reason,
    origin: 0,
    jwks,
  }
}

export const EXPIRED_CHALLENGE =
  'Bearer realm="gateway", error="invalid_token", error_description="The access token expired"'

/** 401 invalid_token with the "expired" description (RFC 6750 lets it say so). */
export function expired(jwks = 1): Seen {
  return {
    status: 401,
    challenge: EXPIRED_CHALLENGE,
    body: { error: 'invalid_token', error_description: 'The access token expired' },
    reason: 'token_expired',
    origin: 0,
    jwks,
  }
}

/** 400 invalid_request: the Authorization header itself is refused, before any token work. */
export function invalidRequest(): Seen {
  return {
    status: 400,
    challenge:
      'Bearer realm="gateway", error="invalid_request", error_description="The Authorization header is malformed"',
    body: { error: 'invalid_request', error_description: 'The Authorization header is malformed' },
    reason: 'malformed_request',
    origin: 0,
    jwks: 0,
  }
}

/** 401 with a bare challenge: no bearer credentials at all. */
export function missingToken(): Seen {
  return {
    status: 401,
    challenge: 'Bearer realm="gateway"',
    body: { error: 'unauthorized', error_description: 'A bearer token is required' },
    reason: 'missing_token',
    origin: 0,
    jwks: 0,
  }
}

/** Accepted and forwarded once. */
export function forwarded(jwks = 1): Seen {
  return {
    status: 200,
    challenge: null,
    body: expect.any(Object),
    reason: undefined,
    origin: 1,
    jwks,
  }
}

/** Which of `secrets` (upstream hosts, error texts) the client's answer contains. */
export function leaked(raw: Raw, ...secrets: string[]): string[] {
  const all = `${[...raw.headers].join('\n')}\n${raw.text}`
  return secrets.filter((s) => all.includes(s))
}
