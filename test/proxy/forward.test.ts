/**
 * Forwarding to the origin: method, path and query as sent; bodies streamed both ways; what is
 * stripped (Authorization, hop-by-hop, identity-shaped headers) and what is added (X-Auth-*),
 * including claim values that would split a header; origin down or slow.
 */
import { decodeJwt } from 'jose'
import { describe, expect, it } from 'vitest'
import { pathAndQuery } from '../../src/proxy/forward'
import {
  bearer,
  body,
  claims,
  expectRefusal,
  fromB64u,
  gatewayEnv,
  makeKey,
  mint,
  send,
  signRaw,
  sleep,
  Stub,
  type OriginCall,
} from '../helpers'

async function setup(vars: Record<string, unknown> = {}) {
  const stub = new Stub()
  const key = await makeKey('ES256')
  await stub.publish(key)
  return { stub, key, gw: gatewayEnv(stub, vars) }
}

/** The one origin call so far. */
async function originCall(stub: Stub): Promise<OriginCall> {
  const { origin } = await stub.calls()
  expect(origin).toHaveLength(1)
  return origin[0]!
}

/** Header names as they arrived at the origin (lower case), in order, repeats kept. */
function names(call: OriginCall): string[] {
  return call.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
}

function header(call: OriginCall, name: string): string | undefined {
  const v = call.headers[name]
  return Array.isArray(v) ? v.join('\n') : v
}

describe('method, path and query', () => {
  it('reach the origin exactly as the worker received them', async () => {
    const { stub, key, gw } = await setup()
    const cases: [string, string, string][] = [
      ['GET', '/hello?x=1', '/hello?x=1'],
      ['GET', '/a%2Fb/c?x=%20&y=a+b', '/a%2Fb/c?x=%20&y=a+b'],
      ['GET', '/a%20b/c%5Cd?x=%20&y=a+b', '/a%20b/c%5Cd?x=%20&y=a+b'],
      ['POST', '/p?q=%27x%27&r=%zz&s=%C3%A9|{}&t=%2F', '/p?q=%27x%27&r=%zz&s=%C3%A9|{}&t=%2F'],
      ['PUT', '/p?', '/p?'],
      ['PATCH', '/semi;p=1/x?a=1&a=2&=&&b', '/semi;p=1/x?a=1&a=2&=&&b'],
      ['DELETE', '/%E2%82%AC/%7e?%E2%82%AC=%e2%82%ac', '/%E2%82%AC/%7e?%E2%82%AC=%e2%82%ac'],
      ['OPTIONS', '/', '/'],
      ['PROPFIND', '/dav/file.txt', '/dav/file.txt'],
      // The client URL parser (here, Request) resolves dot segments before the worker sees them.
      ['GET', '/a/b/../c?x=%20&y=a+b', '/a/c?x=%20&y=a+b'],
      ['GET', '/a%2Fb/../c?x=%20&y=a+b', '/c?x=%20&y=a+b'],
      ['GET', '/p#fragment', '/p'],
    ]
    for (const [method, path, seen] of cases) {
      const init = { method, ...bearer(await mint(key)) }
      const request = new Request(`https://gw.test${path}`, init)
      expect(pathAndQuery(request.url)).toBe(seen)
      const res = await send(gw, request)
      expect(res.status).toBe(200)
    }
    // Paths that start with two slashes stay paths, not a host.
    const res = await send(
      gw,
      new Request('https://gw.test//evil.example/x', bearer(await mint(key))),
    )
    expect(res.status).toBe(200)
    const calls = (await stub.calls()).origin
    expect(calls.map((c) => [c.method, c.url])).toEqual([
      ...cases.map(([method, , seen]) => [method, `/ns/${stub.id}/origin${seen}`]),
      ['GET', `/ns/${stub.id}/origin//evil.example/x`],
    ])
  })

  it('a dot segment hidden behind an encoded separator is refused (400) before token work', async () => {
    const { stub, key, gw } = await setup()
    // An origin that decodes %2F would resolve `..` that the gateway never saw as a segment.
    for (const path of [
      '/public/..%2Fadmin',
      '/x/%2E%2E%2Fadmin?q=1',
      '/a/..%5Cb',
      '/a%2F..%2Fb',
    ]) {
      await expectRefusal(await send(gw, path, bearer(await mint(key))), 400, null, {
        error: 'invalid_request',
        error_description: 'The request path is not acceptable',
      })
    }
    expect(await stub.calls()).toMatchObject({ jwksFetches: 0, origin: [] })
  })

  it('HEAD is forwarded and answered without a body', async () => {
    const { stub, key, gw } = await setup()
    const res = await send(gw, '/h?x=1', { method: 'HEAD', ...bearer(await mint(key)) })
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('')
    expect((await originCall(stub)).method).toBe('HEAD')
  })

  // workerd's HTTP server hands the worker the request-target unparsed (request.url can hold
  // `/a/../b`); fetch() then resolves dot segments against the *origin's* path unless the
  // gateway resolves them first against the client's root.
  it.each([
    ['https://gw.test/a%2Fb/../c?x=%20&y=a+b', '/c?x=%20&y=a+b'],
    ['https://gw.test/../../secret', '/secret'],
    ['https://gw.test/api/%2e%2e/%2E%2E/secret?q', '/secret?q'],
    ['https://gw.test/x/..%2Fsecret', '/x/..%2Fsecret'],
    ['https://gw.test/p?', '/p?'],
    ['https://gw.test/p?a=%20+b#frag', '/p?a=%20+b'],
    ['https://gw.test', '/'],
  ])('a raw request URL %s is forwarded as %s, never above the origin path', (raw, expected) => {
    const got = pathAndQuery(raw)
    expect(got).toBe(expected)
    const base = 'https://origin.internal/api'
    expect(new URL(base + got).pathname.startsWith('/api/')).toBe(true)
  })
})

describe('bodies are streamed', () => {
  it('a 50 MB request body arrives whole (byte count and sha256)', async () => {
    const { stub, key, gw } = await setup()
    const CHUNK = 1 << 20
    const TOTAL = 50 * CHUNK
    const digest = new crypto.DigestStream('SHA-256')
    const writer = digest.getWriter()
    let sent = 0
    let sawProgress = false
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === TOTAL) {
          controller.close()
          await writer.close()
          return
        }
        if (sent === 2 * CHUNK) {
          // Streaming, not buffering: the origin already has the first bytes before the rest exist.
          for (let i = 0; i < 500 && !sawProgress; i++) {
            sawProgress = (await stub.originBytesSeen()) > 0
            if (!sawProgress) await sleep(10)
          }
        }
        const chunk = new Uint8Array(CHUNK)
        for (let i = 0; i < CHUNK; i += 4096) chunk[i] = (sent / CHUNK + i) & 0xff
        chunk[CHUNK - 1] = sent / CHUNK
        sent += CHUNK
        await writer.write(chunk)
        controller.enqueue(chunk)
      },
    })
    const res = await send(gw, '/upload', {
      method: 'POST',
      body: stream,
      headers: { authorization: `Bearer ${await mint(key)}`, 'content-type': 'application/x-test' },
    })
    expect(res.status).toBe(200)
    const expectedSha = [...new Uint8Array(await digest.digest)]
      .map((b) => b.toString(16).padStart(2, '0'))
      .join('')
    const call = await originCall(stub)
    expect({ bytes: call.bodyBytes, sha256: call.bodySha256 }).toEqual({
      bytes: TOTAL,
      sha256: expectedSha,
    })
    expect(sawProgress).toBe(true)
    expect(header(call, 'content-type')).toBe('application/x-test')
  })

  it('a small body keeps the length the client declared', async () => {
    const { stub, key, gw } = await setup()
    // As a network client sends it: a body of unknown length goes out chunked (see forward.ts).
    const res = await send(gw, '/p', {
      method: 'PUT',
      body: 'hello',
      headers: { authorization: `Bearer ${await mint(key)}`, 'content-length': '5' },
    })
    expect(res.status).toBe(200)
    const call = await originCall(stub)
    expect(call.bodyBytes).toBe(5)
    expect(header(call, 'content-length')).toBe('5')
  })

  it('the origin status, headers and body come back as the origin sent them', async () => {
    const { stub, key, gw } = await setup()
    await stub.setup({
      originStatus: 418,
      originHeaders: { 'x-custom': 'v', 'cache-control': 'private, max-age=5', vary: 'accept' },
    })
    const res = await send(gw, '/tea', bearer(await mint(key)))
    expect(res.status).toBe(418)
    expect(res.headers.get('x-origin')).toBe('stub')
    expect(res.headers.get('x-custom')).toBe('v')
    expect(res.headers.get('cache-control')).toBe('private, max-age=5')
    expect(res.headers.get('vary')).toBe('accept')
    expect(res.headers.getSetCookie()).toEqual(['a=1'])
    expect(res.headers.get('www-authenticate')).toBe(null)
    expect((await body(res)).url).toBe(`/ns/${stub.id}/origin/tea`)
  })

  it("the origin's 5xx and redirects are passed through, not followed or rewritten", async () => {
    const { stub, key, gw } = await setup()
    await stub.setup({ originStatus: 503 })
    const down = await send(gw, '/x', bearer(await mint(key)))
    expect(down.status).toBe(503)
    expect((await body(down)).method).toBe('GET')
    await stub.setup({
      originStatus: 302,
      originHeaders: { location: 'https://elsewhere.example/' },
    })
    const moved = await send(gw, '/x', bearer(await mint(key)))
    expect(moved.status).toBe(302)
    expect(moved.headers.get('location')).toBe('https://elsewhere.example/')
    expect((await stub.calls()).origin).toHaveLength(2)
  })

  it('the response is streamed: its first bytes arrive before the origin has finished', async () => {
    const { stub, key, gw } = await setup()
    await stub.setup({ originHold: true })
    // Would never return if the gateway buffered: the origin holds the rest until released.
    const res = await send(gw, '/slow', bearer(await mint(key)))
    expect(res.status).toBe(200)
    const reader = res.body!.getReader()
    const first = await reader.read()
    expect(new TextDecoder().decode(first.value)).toBe('first\n')
    await stub.release()
    let rest = ''
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      rest += new TextDecoder().decode(r.value)
    }
    expect(rest).toBe('second\n')
  })

  it('a 20 MB response arrives whole (sha256 named by the origin)', async () => {
    const { stub, key, gw } = await setup()
    await stub.setup({ originBodyBytes: 20 * (1 << 20) + 7 })
    const res = await send(gw, '/big', bearer(await mint(key)))
    expect(res.status).toBe(200)
    const digest = new crypto.DigestStream('SHA-256')
    let bytes = 0
    await res
      .body!.pipeThrough(
        new TransformStream({
          transform: (c, ctl) => {
            bytes += c.byteLength
            ctl.enqueue(c)
          },
        }),
      )
      .pipeTo(digest)
    const sha = [...new Uint8Array(await digest.digest)]
      .map((b) => b.toString(16).padStart(2, '0'))
      .join('')
    expect({ bytes, sha }).toEqual({
      bytes: 20 * (1 << 20) + 7,
      sha: res.headers.get('x-body-sha256'),
    })
  })

  it('the origin timeout covers the headers only: a slow body is not cut', async () => {
    const { stub, key, gw } = await setup({ ORIGIN_TIMEOUT_MS: '100' })
    await stub.setup({ originHold: true })
    const res = await send(gw, '/slow', bearer(await mint(key)))
    expect(res.status).toBe(200)
    const text = res.text()
    await sleep(300)
    await stub.release()
    expect(await text).toBe('first\nsecond\n')
  })
})

describe('headers the origin receives', () => {
  it('Authorization is removed, or kept as sent with FORWARD_AUTHORIZATION=true', async () => {
    const { stub, key, gw } = await setup()
    expect((await send(gw, '/r', bearer(await mint(key)))).status).toBe(200)
    expect(names(await originCall(stub))).not.toContain('authorization')

    const kept = await setup({ FORWARD_AUTHORIZATION: 'true' })
    const token = await mint(kept.key)
    expect(
      (await send(kept.gw, '/r', { headers: { authorization: `bearer ${token}` } })).status,
    ).toBe(200)
    const call = await originCall(kept.stub)
    expect(header(call, 'authorization')).toBe(`bearer ${token}`)
    expect(header(call, 'x-auth-sub')).toBe('alice')
  })

  it('hop-by-hop headers, and those named in Connection, are removed; the rest are kept', async () => {
    const { stub, key, gw } = await setup()
    const res = await send(gw, '/r', {
      method: 'POST',
      body: 'x',
      headers: {
        authorization: `Bearer ${await mint(key)}`,
        connection: 'X-Foo, x-bar ,keep-alive',
        'x-foo': '1',
        'x-bar': '2',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        trailer: 'x-checksum',
        upgrade: 'websocket',
        'proxy-authorization': 'Basic dXNlcjpwYXNz',
        'proxy-authenticate': 'Basic',
        'proxy-connection': 'keep-alive',
        'x-keep': 'yes',
        cookie: 'session=abc; theme=dark',
        accept: 'application/json',
        'user-agent': 'tests/1.0',
        'x-forwarded-for': '203.0.113.7',
      },
    })
    expect(res.status).toBe(200)
    const call = await originCall(stub)
    for (const gone of [
      'connection',
      'x-foo',
      'x-bar',
      'keep-alive',
      'te',
      'trailer',
      'upgrade',
      'proxy-authorization',
      'proxy-authenticate',
      'proxy-connection',
      'authorization',
    ]) {
      expect({ gone, present: names(call).includes(gone) }).toEqual({ gone, present: false })
    }
    expect(header(call, 'x-keep')).toBe('yes')
    expect(header(call, 'cookie')).toBe('session=abc; theme=dark')
    expect(header(call, 'accept')).toBe('application/json')
    expect(header(call, 'user-agent')).toBe('tests/1.0')
    expect(header(call, 'x-forwarded-for')).toBe('203.0.113.7')
  })

  it("client x-auth-* / x_auth_* headers (any case) are replaced by the gateway's", async () => {
    const { stub, key, gw } = await setup()
    const token = await mint(key, { sub: 'alice', scope: 'read', roles: ['a', 'b'] })
    const res = await send(gw, '/r', {
      headers: {
        authorization: `Bearer ${token}`,
        'X-Auth-Sub': 'mallory',
        'X-AUTH-ISS': 'https://evil.example',
        'x-auth-claims': 'eyJzdWIiOiJtYWxsb3J5In0',
        'x-auth-role': 'admin',
        X_AUTH_ADMIN: 'true',
        x_Auth_sub: 'mallory',
        'X-Auth-': 'empty-suffix',
        // Not identity-shaped: kept.
        'x-authorization-hint': 'keep',
        'x-auth': 'keep-too',
        'x-author': 'keep-three',
      },
    })
    expect(res.status).toBe(200)
    const call = await originCall(stub)
    const identityNames = names(call).filter((n) => /^x[-_]auth[-_]/.test(n))
    expect(identityNames.sort()).toEqual([
      'x-auth-binding',
      'x-auth-claims',
      'x-auth-iss',
      'x-auth-sub',
    ])
    expect(header(call, 'x-auth-sub')).toBe('alice')
    expect(header(call, 'x-auth-iss')).toBe('https://issuer.test')
    expect(JSON.parse(fromB64u(header(call, 'x-auth-claims')!))).toEqual(decodeJwt(token))
    expect(header(call, 'x-authorization-hint')).toBe('keep')
    expect(header(call, 'x-auth')).toBe('keep-too')
    expect(header(call, 'x-author')).toBe('keep-three')
  })

  it('mixed separators (x-auth_sub, x_auth-role) are identity-shaped too', async () => {
    const { stub, key, gw } = await setup()
    // CGI-style servers map both to HTTP_X_AUTH_SUB, next to the gateway's own header.
    const res = await send(gw, '/r', {
      headers: {
        authorization: `Bearer ${await mint(key)}`,
        'x-auth_sub': 'mallory',
        'X_Auth-Role': 'admin',
      },
    })
    expect(res.status).toBe(200)
    const call = await originCall(stub)
    expect(
      names(call)
        .filter((n) => /^x[-_]auth[-_]/.test(n))
        .sort(),
    ).toEqual(['x-auth-binding', 'x-auth-claims', 'x-auth-iss', 'x-auth-sub'])
  })

  it('X-Auth-Claims is base64url JSON of exactly the verified payload', async () => {
    const { stub, key, gw } = await setup()
    const token = await mint(key, {
      aud: ['api://gateway-test', 'other'],
      nested: { a: [1, 2.5, null, true], é: 'ü', emoji: '😀' },
      empty: '',
      big: 9007199254740991,
      line: 'a\r\nb\u0000c',
    })
    expect((await send(gw, '/r', bearer(token))).status).toBe(200)
    const value = header(await originCall(stub), 'x-auth-claims')!
    expect(value).toMatch(/^[A-Za-z0-9_-]+$/)
    expect(JSON.parse(fromB64u(value))).toEqual(decodeJwt(token))
  })

  it('duplicate claim names: refused, so the origin never has to pick one (test/security)', async () => {
    const { stub, key, gw } = await setup()
    const c = claims()
    const payload = JSON.stringify(c).replace('"sub":"alice"', '"sub":"alice","sub":"mallory"')
    expect(payload).toContain('"sub":"mallory"')
    const token = await signRaw({ alg: 'ES256', kid: key.kid, typ: 'JWT' }, payload, key.privateKey)
    expect((await send(gw, '/r', bearer(token))).status).toBe(401)
    expect((await stub.calls()).origin).toHaveLength(0)
  })

  describe('a sub that is not a safe header value', () => {
    const cases: [string, string, string][] = [
      [
        'CR LF (header injection)',
        'alice\r\nx-auth-role: admin',
        "utf-8''alice%0D%0Ax-auth-role%3A%20admin",
      ],
      ['a lone LF', 'alice\nx', "utf-8''alice%0Ax"],
      ['NUL', 'a\u0000b', "utf-8''a%00b"],
      ['a tab', 'a\tb', "utf-8''a%09b"],
      ['DEL', 'a\u007f', "utf-8''a%7F"],
      ['non-ASCII', 'josé', "utf-8''jos%C3%A9"],
      ['astral', '😀', "utf-8''%F0%9F%98%80"],
      ['leading and trailing spaces', ' bob ', "utf-8''%20bob%20"],
      ['only a space', ' ', "utf-8''%20"],
      ['the ext-value marker itself', "utf-8''x", "utf-8''utf-8%27%27x"],
      ['the marker in upper case', "UTF-8''x", "utf-8''UTF-8%27%27x"],
      ['a comma and quotes stay verbatim', 'a, "b" (c)!*\'', 'a, "b" (c)!*\''],
      ['inner spaces stay verbatim', 'Alice Smith', 'Alice Smith'],
    ]
    it.each(cases)('%s: encoded exactly, one header, claims intact', async (_, sub, encoded) => {
      const { stub, key, gw } = await setup()
      const token = await signRaw(
        { alg: 'ES256', kid: key.kid, typ: 'JWT' },
        claims({ sub }),
        key.privateKey,
      )
      const res = await send(gw, '/r', bearer(token))
      expect(res.status).toBe(200)
      const call = await originCall(stub)
      expect(names(call).filter((n) => n === 'x-auth-sub')).toHaveLength(1)
      expect(header(call, 'x-auth-sub')).toBe(encoded)
      expect(names(call)).not.toContain('x-auth-role')
      const seen = JSON.parse(fromB64u(header(call, 'x-auth-claims')!)) as { sub: string }
      expect(seen.sub).toBe(sub)
    })

    it('a lone surrogate (not Unicode text) is refused with 401, never 5xx', async () => {
      const { stub, key, gw } = await setup()
      for (const sub of ['\\ud800', 'a\\udc00b', '\\udbff']) {
        const payload = JSON.stringify(claims({ sub: 'PLACEHOLDER' })).replace('PLACEHOLDER', sub)
        const token = await signRaw(
          { alg: 'ES256', kid: key.kid, typ: 'JWT' },
          payload,
          key.privateKey,
        )
        const res = await send(gw, '/r', bearer(token))
        await expectRefusal(
          res,
          401,
          'Bearer realm="gateway", error="invalid_token", error_description="The access token is invalid"',
          { error: 'invalid_token', error_description: 'The access token is invalid' },
        )
      }
      expect((await stub.calls()).origin).toHaveLength(0)
    })
  })
})

describe('the origin failing', () => {
  const BAD_GATEWAY = {
    error: 'bad_gateway',
    error_description: 'The upstream service could not be reached',
  }
  const TIMEOUT = {
    error: 'gateway_timeout',
    error_description: 'The upstream service did not answer in time',
  }

  async function leaks(res: Response, ...secrets: string[]): Promise<string[]> {
    const text = `${[...res.headers].join('\n')}\n${await res.clone().text()}`
    return secrets.filter((s) => text.includes(s))
  }

  it('refused -> 502 with a JSON body that does not name the origin', async () => {
    const stub = new Stub()
    const key = await makeKey('ES256')
    await stub.publish(key)
    const gw = gatewayEnv(stub, { ORIGIN_URL: 'http://127.0.0.1:9/internal-api' })
    const res = await send(gw, '/r', bearer(await mint(key)))
    expect(await leaks(res, '127.0.0.1', ':9', 'internal-api')).toEqual([])
    await expectRefusal(res, 502, null, BAD_GATEWAY)
    // Authentication still comes first.
    const anon = await send(gw, '/r')
    expect(anon.status).toBe(401)
  })

  it('slower than ORIGIN_TIMEOUT_MS -> 504 with a JSON body that does not name the origin', async () => {
    const { stub, key, gw } = await setup({ ORIGIN_TIMEOUT_MS: '100' })
    await stub.setup({ originDelayMs: 1000 })
    const res = await send(gw, '/r', bearer(await mint(key)))
    expect(await leaks(res, '127.0.0.1', stub.id, '/origin')).toEqual([])
    await expectRefusal(res, 504, null, TIMEOUT)
    expect((await stub.calls()).origin).toHaveLength(1)
  })
})
