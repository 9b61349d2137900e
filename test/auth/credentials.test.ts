/**
 * Finding the bearer token: the pure parser (src/auth/credentials.ts) and what the worker answers for
 * every kind of missing or malformed credential. Refusals never reach the JWKS or the origin.
 */
import { describe, expect, it } from 'vitest'
import { bearerToken, DEFAULT_MAX_TOKEN_BYTES } from '../../src/auth/credentials'
import { GatewayError, toResponse, type ReasonCode } from '../../src/errors'
import {
  b64u,
  bearer,
  captureLogs,
  expectInvalidToken,
  expectRefusal,
  gatewayEnv,
  makeKey,
  mint,
  send,
  signRaw,
  claims,
  Stub,
  type TestKey,
} from '../helpers'

const MALFORMED_CHALLENGE =
  'Bearer realm="gateway", error="invalid_request", error_description="The Authorization header is malformed"'
const MALFORMED_BODY = {
  error: 'invalid_request',
  error_description: 'The Authorization header is malformed',
}
const MISSING_BODY = { error: 'unauthorized', error_description: 'A bearer token is required' }

/** The code bearerToken throws, or 'ok:<token>' / 'null'. */
function parse(header: string | null): string {
  try {
    const t = bearerToken(header)
    return t === null ? 'null' : `ok:${t}`
  } catch (err) {
    if (err instanceof GatewayError) return err.code
    throw err
  }
}

/** A well-formed (unsigned) compact JWS of exactly `length` characters. */
function tokenOfLength(length: number): string {
  const head = 'eyJhbGciOiJFUzI1NiJ9'
  const sig = 'A'.repeat(86)
  let payload = 'A'.repeat(length - head.length - sig.length - 2)
  // 4k+1 characters is not base64url: move one character into the signature.
  if (payload.length % 4 === 1) return `${head}.${payload.slice(1)}.${sig}A`
  return `${head}.${payload}.${sig}`
}

describe('bearerToken (pure)', () => {
  const T = 'aaaa.bbbb.cccc'

  it('returns the token, with the scheme matched case-insensitively', () => {
    expect(parse(`Bearer ${T}`)).toBe(`ok:${T}`)
    expect(parse(`bearer ${T}`)).toBe(`ok:${T}`)
    expect(parse(`BEARER ${T}`)).toBe(`ok:${T}`)
    expect(parse(`bEaReR ${T}`)).toBe(`ok:${T}`)
    // RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token
    expect(parse(`Bearer   ${T}`)).toBe(`ok:${T}`)
  })

  it('treats no header and other schemes as no bearer credentials', () => {
    expect(parse(null)).toBe('null')
    expect(parse('Basic dXNlcjpwYXNz')).toBe('null')
    expect(parse('DPoP aaaa.bbbb.cccc')).toBe('null')
    expect(parse('Bearerx aaaa.bbbb.cccc')).toBe('null')
  })

  it.each<[string, string, ReasonCode]>([
    [
      'two Authorization values joined by the runtime',
      `Bearer ${T}, Bearer ${T}`,
      'malformed_request',
    ],
    ['a comma inside the credentials', `Bearer ${T},`, 'malformed_request'],
    ['text after the token', `Bearer ${T} extra`, 'malformed_request'],
    ['a tab after the token', `Bearer ${T}\t`, 'malformed_request'],
    ['a newline after the token', `Bearer ${T}\n`, 'malformed_request'],
    ['whitespace inside the token', 'Bearer aaaa.bb bb.cccc', 'malformed_request'],
    ['a tab instead of a space after the scheme', `Bearer\t${T}`, 'malformed_request'],
    ['the scheme alone', 'Bearer', 'malformed_request'],
    ['the scheme and a space', 'Bearer ', 'malformed_request'],
    ['an empty header', '', 'malformed_request'],
    ['leading space', ` Bearer ${T}`, 'malformed_request'],
    ['a scheme that is not a token', `Bea(rer ${T}`, 'malformed_request'],
    ['two segments', 'Bearer aaaa.bbbb', 'malformed_token'],
    ['four segments', 'Bearer aaaa.bbbb.cccc.dddd', 'malformed_token'],
    ['JWE compact (five segments)', 'Bearer aaaa.bbbb.cccc.dddd.eeee', 'malformed_token'],
    ['empty signature (alg none style)', 'Bearer aaaa.bbbb.', 'malformed_token'],
    ['empty segments', 'Bearer ..', 'malformed_token'],
    ['base64 padding', 'Bearer aaaa.bbbb.cc==', 'malformed_token'],
    ['padding on the header', 'Bearer aa==.bbbb.cccc', 'malformed_token'],
    ['standard base64 alphabet', 'Bearer aa+a.bb/b.cccc', 'malformed_token'],
    ['a segment of 4k+1 characters', 'Bearer aaaaa.bbbb.cccc', 'malformed_token'],
    ['non-zero spare bits (a second spelling)', 'Bearer aaaa.bbbb.cB', 'malformed_token'],
    ['non-ASCII', 'Bearer aaaa.bbbé.cccc', 'malformed_token'],
    ['a NUL', 'Bearer aaaa.bb\0b.cccc', 'malformed_token'],
    [
      'a token one byte over the limit',
      `Bearer ${tokenOfLength(DEFAULT_MAX_TOKEN_BYTES + 1)}`,
      'token_too_large',
    ],
  ])('refuses %s', (_, header, code) => {
    expect(parse(header)).toBe(code)
  })

  it('accepts a token of exactly DEFAULT_MAX_TOKEN_BYTES', () => {
    const t = tokenOfLength(DEFAULT_MAX_TOKEN_BYTES)
    expect(t).toHaveLength(16384)
    expect(parse(`Bearer ${t}`)).toBe(`ok:${t}`)
    expect(tokenOfLength(DEFAULT_MAX_TOKEN_BYTES + 1)).toHaveLength(16385)
  })
})

describe('credentials through the worker', () => {
  async function setup(): Promise<{ stub: Stub; key: TestKey; gw: Record<string, unknown> }> {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    return { stub, key, gw: gatewayEnv(stub) }
  }

  async function expectUntouched(stub: Stub): Promise<void> {
    const calls = await stub.calls()
    expect({ jwks: calls.jwksFetches, origin: calls.origin.length }).toEqual({ jwks: 0, origin: 0 })
  }

  it('no credentials: 401 with a bare challenge (no error attribute) and a JSON body', async () => {
    const { stub, gw } = await setup()
    await expectRefusal(await send(gw, '/r'), 401, 'Bearer realm="gateway"', MISSING_BODY)
    await expectRefusal(
      await send(gw, '/r', { method: 'POST', body: 'x' }),
      401,
      'Bearer realm="gateway"',
      MISSING_BODY,
    )
    // Another scheme is not a bearer credential: the client is told which scheme to use.
    await expectRefusal(
      await send(gw, '/r', { headers: { authorization: 'Basic dXNlcjpwYXNz' } }),
      401,
      'Bearer realm="gateway"',
      MISSING_BODY,
    )
    await expectUntouched(stub)
  })

  it('names the configured realm in the challenge', async () => {
    const stub = new Stub()
    const gw = gatewayEnv(stub, { GATEWAY_REALM: 'orders api' })
    await expectRefusal(await send(gw, '/r'), 401, 'Bearer realm="orders api"', MISSING_BODY)
    await expectRefusal(
      await send(gw, '/r', bearer('aaaa.bbbb')),
      401,
      'Bearer realm="orders api", error="invalid_token", error_description="The access token is invalid"',
      { error: 'invalid_token', error_description: 'The access token is invalid' },
    )
  })

  it('two Authorization headers (joined with ", " by workerd) -> 400 invalid_request', async () => {
    const { stub, key, gw } = await setup()
    const token = await mint(key)
    const headers = new Headers()
    headers.append('authorization', `Bearer ${token}`)
    headers.append('authorization', `Bearer ${token}`)
    expect(headers.get('authorization')).toBe(`Bearer ${token}, Bearer ${token}`)
    await expectRefusal(await send(gw, '/r', { headers }), 400, MALFORMED_CHALLENGE, MALFORMED_BODY)

    // A bearer token next to another scheme's credentials is just as ambiguous.
    const mixed = new Headers()
    mixed.append('authorization', 'Basic dXNlcjpwYXNz')
    mixed.append('authorization', `Bearer ${token}`)
    await expectRefusal(
      await send(gw, '/r', { headers: mixed }),
      400,
      MALFORMED_CHALLENGE,
      MALFORMED_BODY,
    )
    await expectUntouched(stub)
  })

  it('anything after the token, or odd whitespace -> 400 invalid_request', async () => {
    const { stub, key, gw } = await setup()
    const token = await mint(key)
    for (const value of [
      `Bearer ${token} extra`,
      `Bearer ${token} ${token}`,
      `Bearer ${token}\tx`,
      `Bearer\t${token}`,
      `Bearer ${token.slice(0, 20)} ${token.slice(20)}`,
      'Bearer',
    ]) {
      const res = await send(gw, '/r', { headers: { authorization: value } })
      await expectRefusal(res, 400, MALFORMED_CHALLENGE, MALFORMED_BODY)
    }
    await expectUntouched(stub)
  })

  it('bad JWS syntax, padding, a token over 8 KiB -> 401 invalid_token', async () => {
    const { stub, key, gw } = await setup()
    const token = await mint(key)
    const [h, p, s] = token.split('.') as [string, string, string]
    for (const bad of [
      `${h}.${p}`,
      `${h}.${p}.`,
      `${h}.${p}.${s}.${s}`,
      `${h}.${p}.${s}=`,
      `${h}=.${p}.${s}`,
      `${h}.${p}.${s.replace(/-/g, '+').replace(/_/g, '/')}+/`,
      // 86 + 3 = 4k+1 characters: no byte string encodes to that.
      `${h}.${p}.${s}AAA`,
      '...',
      tokenOfLength(DEFAULT_MAX_TOKEN_BYTES + 1),
      // The header decodes but is not a JSON object.
      `${b64u('"x"')}.${p}.${s}`,
      `${b64u('{"alg":"ES256"')}.${p}.${s}`,
      `${h}.${b64u('[1,2]')}.${s}`,
    ]) {
      await expectInvalidToken(await send(gw, '/r', bearer(bad)))
    }
    await expectUntouched(stub)
  })

  it('a real token of exactly DEFAULT_MAX_TOKEN_BYTES (16 KiB) is accepted; one byte more is refused before any key work', async () => {
    const { stub, key, gw } = await setup()
    async function signedOfLength(length: number): Promise<string> {
      // Grow a padding claim and a header parameter until the compact form is exactly `length`
      // (an ES256 signature is always 86 characters).
      const body = claims()
      const base = JSON.stringify({ ...body, pad: '' }).length
      const guess = Math.floor(((length - 88) * 3) / 4) - base
      for (let pad = guess - 256; pad < guess + 8; pad++) {
        for (let hpad = 0; hpad < 4; hpad++) {
          const header = { alg: 'ES256', kid: key.kid, typ: 'JWT', p: 'x'.repeat(hpad) }
          const payload = { ...body, pad: 'y'.repeat(pad) }
          const size = b64u(JSON.stringify(header)).length + b64u(JSON.stringify(payload)).length
          if (size + 88 === length) return signRaw(header, payload, key.privateKey)
        }
      }
      throw new Error('no such length')
    }
    const exact = await signedOfLength(DEFAULT_MAX_TOKEN_BYTES)
    expect((await send(gw, '/r', bearer(exact))).status).toBe(200)
    const over = await signedOfLength(DEFAULT_MAX_TOKEN_BYTES + 1)
    await expectInvalidToken(await send(gw, '/r', bearer(over)))
    const calls = await stub.calls()
    expect(calls.origin).toHaveLength(1)
    expect(calls.jwksFetches).toBe(1)
  })

  it('the scheme is case-insensitive', async () => {
    const { stub, key, gw } = await setup()
    const token = await mint(key)
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEARER']) {
      const res = await send(gw, '/r', { headers: { authorization: `${scheme} ${token}` } })
      expect(res.status).toBe(200)
    }
    expect((await stub.calls()).origin).toHaveLength(4)
  })

  it('refusals carry no token text and no kid, in the response or the log', async () => {
    const { stub, key, gw } = await setup()
    const other = await makeKey('ES256')
    const tokens = [
      await mint(other, {}, { header: { kid: key.kid } }), // bad signature
      await mint(other), // unknown kid
      await mint(key, { aud: 'someone-else' }),
      await mint(key, {}, { exp: -3600 }),
      `${(await mint(key)).slice(0, -4)}AAAA`,
    ]
    const logs = captureLogs()
    try {
      for (const token of tokens) {
        const res = await send(gw, '/r', bearer(token))
        const text = `${res.headers.get('www-authenticate')} ${await res.text()}`
        expect(res.status).toBe(401)
        for (const secret of [...token.split('.'), key.kid, other.kid]) {
          expect(text).not.toContain(secret)
        }
      }
    } finally {
      logs.restore()
    }
    for (const token of tokens) {
      for (const part of token.split('.')) expect(logs.text()).not.toContain(part)
    }
    expect(logs.lines.filter((l) => l.event === 'request').map((l) => l.reason)).toEqual([
      'bad_signature',
      'unknown_kid',
      'bad_audience',
      'token_expired',
      'bad_signature',
    ])
    expect((await stub.calls()).origin).toHaveLength(0)
  })
})

describe('toResponse (pure)', () => {
  it('shares generic answers per code and realm, never one naming a scope or a variable', async () => {
    const scoped = toResponse(new GatewayError('insufficient_scope', 'd', undefined, 'read'), {
      realm: 'r',
    })
    expect(scoped.headers.get('www-authenticate')).toContain('scope="read"')
    const plain = toResponse(new GatewayError('insufficient_scope'), { realm: 'r' })
    expect(plain.headers.get('www-authenticate')).toBe(
      'Bearer realm="r", error="insufficient_scope", error_description="The access token does not grant access to this resource"',
    )
    const named = toResponse(new GatewayError('config_invalid'), {
      realm: 'r',
      description: 'X: bad',
    })
    expect(await named.json()).toEqual({ error: 'server_error', error_description: 'X: bad' })
    const generic = toResponse(new GatewayError('config_invalid'), { realm: 'r' })
    expect(await generic.json()).toEqual({
      error: 'server_error',
      error_description: 'The gateway is misconfigured',
    })
    // Another realm, another challenge; each answer is its own Response.
    const other = toResponse(new GatewayError('bad_signature'), { realm: 'other' })
    const again = toResponse(new GatewayError('bad_signature'), { realm: 'other' })
    expect(other.headers.get('www-authenticate')).toMatch(/^Bearer realm="other", /)
    expect(other).not.toBe(again)
    again.headers.set('x-request-id', 'one')
    expect(
      toResponse(new GatewayError('bad_signature'), { realm: 'other' }).headers.has('x-request-id'),
    ).toBe(false)
  })
})
