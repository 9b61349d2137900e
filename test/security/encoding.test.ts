/**
 * Adversarial catalogue, the token's encoding and size: other spellings of one signature
 * (padding, whitespace, the standard alphabet, non-zero spare bits, the ECDSA (r, n-s) twin),
 * JWE-shaped tokens (five parts, `zip`, PBES2), text that is not UTF-8, `Bearer` with a million
 * dots, and 8 / 32 / 64 KB headers. Every refusal: exact status, exact WWW-Authenticate, the
 * reason logged, origin not called, and how many JWKS fetches it cost.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_MAX_TOKEN_BYTES } from '../../src/auth/credentials'
import {
  b64u,
  claims,
  ISSUER,
  AUDIENCE,
  makeKey,
  mint,
  send,
  signRaw,
  structuredEnv,
  Stub,
  type TestKey,
} from '../helpers'
import {
  attempt,
  fixture,
  forwarded,
  invalidRequest,
  invalidToken,
  missingToken,
  withToken,
  type Seen,
} from './harness'

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

let key: TestKey

beforeAll(async () => {
  key = await makeKey('ES256')
})

function bytes(b64url: string): Uint8Array {
  return Uint8Array.from(atob(b64url.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0))
}

/** The last character with its unused low bits set: same bytes, another spelling. */
function spareBitsSet(segment: string): string {
  const spare = segment.length % 4 === 2 ? 15 : 3
  const last = B64URL.indexOf(segment.at(-1)!)
  return segment.slice(0, -1) + B64URL[last | spare]
}

/** A token whose three segments all end in a partial group (so each has spare bits). */
async function partialToken(): Promise<[string, string, string]> {
  for (let pad = ''; ; pad += 'x') {
    const header = { alg: 'ES256', kid: key.kid, typ: 'JWT', pad }
    const t = await signRaw(header, claims({ pad }), key.privateKey)
    const parts = t.split('.') as [string, string, string]
    if (parts.every((p) => p.length % 4 !== 0)) return parts
  }
}

/** A valid token whose signature uses `-` or `_`, so the standard alphabet spells it otherwise. */
async function urlSafeToken(): Promise<string> {
  for (;;) {
    const t = await mint(key, { jti: crypto.randomUUID() })
    if (/[-_]/.test(t.split('.')[2]!)) return t
  }
}

describe('one signature, other spellings', () => {
  const cases: [string, () => Promise<string>, Seen][] = [
    [
      '"=" padding on the signature',
      async () => `${await mint(key)}=`,
      invalidToken('malformed_token', 0),
    ],
    [
      '"==" padding on the signature',
      async () => `${await mint(key)}==`,
      invalidToken('malformed_token', 0),
    ],
    [
      'padding on the header',
      async () => (await mint(key)).replace('.', '=.'),
      invalidToken('malformed_token', 0),
    ],
    [
      'the standard base64 alphabet (+ /)',
      async () => {
        const [h, p, s] = (await urlSafeToken()).split('.')
        return `${h}.${p}.${s!.replace(/-/g, '+').replace(/_/g, '/')}`
      },
      invalidToken('malformed_token', 0),
    ],
    [
      'spare bits set in the signature',
      async () => {
        const [h, p, s] = await partialToken()
        return `${h}.${p}.${spareBitsSet(s)}`
      },
      invalidToken('malformed_token', 0),
    ],
    [
      'spare bits set in the payload',
      async () => {
        const [h, p, s] = await partialToken()
        return `${h}.${spareBitsSet(p)}.${s}`
      },
      invalidToken('malformed_token', 0),
    ],
    [
      'spare bits set in the header',
      async () => {
        const [h, p, s] = await partialToken()
        return `${spareBitsSet(h)}.${p}.${s}`
      },
      invalidToken('malformed_token', 0),
    ],
    [
      'one signature character removed (a length no bytes encode to)',
      async () => (await mint(key)).slice(0, -1),
      invalidToken('malformed_token', 0),
    ],
    [
      'one zero byte appended to the signature',
      async () => {
        const [h, p, s] = (await mint(key)).split('.')
        return `${h}.${p}.${b64u(Uint8Array.from([...bytes(s!), 0]))}`
      },
      invalidToken('bad_signature', 1),
    ],
    [
      'a percent-encoded dot',
      async () => (await mint(key)).replace('.', '%2E'),
      invalidToken('malformed_token', 0),
    ],
    ['a trailing dot', async () => `${await mint(key)}.`, invalidToken('malformed_token', 0)],
    ['a leading dot', async () => `.${await mint(key)}`, invalidToken('malformed_token', 0)],
    ['a space inside', async () => (await mint(key)).replace('.', '. '), invalidRequest()],
    ['a tab inside', async () => (await mint(key)).replace('.', '.\t'), invalidRequest()],
  ]
  it.each(cases)('%s: refused', async (_, make, want) => {
    const f = await fixture([key])
    expect(await withToken(f, await make())).toEqual(want)
  })

  const same: [string, (token: string) => string][] = [
    ['trailing whitespace (not part of a header value, RFC 9110 §5.5)', (t) => `Bearer ${t} \t`],
    ['two spaces after the scheme (1*SP, RFC 7235)', (t) => `Bearer  ${t}`],
    ['the scheme in lower case', (t) => `bearer ${t}`],
  ]
  it.each(same)('control: %s is the same token', async (_, header) => {
    const f = await fixture([key])
    const seen = await attempt(f.gw, f.stub, '/r', {
      headers: { authorization: header(await mint(key)) },
    })
    expect(seen).toEqual(forwarded())
  })

  describe('the ECDSA (r, n - s) twin', () => {
    const N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551')
    function twin(token: string): string {
      const [h, p, s] = token.split('.') as [string, string, string]
      const sig = bytes(s)
      const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join('')
      const high = (N - BigInt(`0x${hex(sig.subarray(32))}`)).toString(16).padStart(64, '0')
      const sHigh = Uint8Array.from(high.match(/../g)!, (x) => parseInt(x, 16))
      return `${h}.${p}.${b64u(Uint8Array.from([...sig.subarray(0, 32), ...sHigh]))}`
    }

    // ECDSA is malleable and JWS does not forbid it: the twin is a valid signature of the same
    // claims. Nothing keys on token bytes for security, so it grants nothing the original does not.
    it('verifies, like the original (documented, not refused)', async () => {
      const f = await fixture([key])
      expect(await withToken(f, twin(await mint(key)))).toEqual(forwarded())
    })

    it('a revoked token stays revoked in its twin: revocation is by jti, not token bytes', async () => {
      const f = await fixture([key])
      const original = await mint(key, { jti: crypto.randomUUID() })
      const out = await send(f.gw, '/_gateway/logout', {
        method: 'POST',
        headers: { authorization: `Bearer ${original}` },
      })
      expect(out.status).toBe(204)
      expect(await withToken(f, twin(original))).toEqual(invalidToken('token_revoked', 1))
    })
  })
})

describe('JWE-shaped tokens', () => {
  const random = (n: number) => b64u(crypto.getRandomValues(new Uint8Array(n)))
  const jwe = (header: Record<string, unknown>, encryptedKey = random(256)) =>
    [b64u(JSON.stringify(header)), encryptedKey, random(12), random(64), random(16)].join('.')
  async function deflated(text: string): Promise<Uint8Array> {
    const stream = new Blob([text]).stream().pipeThrough(new CompressionStream('deflate-raw'))
    return new Uint8Array(await new Response(stream).arrayBuffer())
  }
  const P2 = { p2c: 2_147_483_647, p2s: random(16) }

  const cases: [string, () => Promise<string> | string, Seen][] = [
    [
      'five parts, RSA-OAEP-256',
      () => jwe({ alg: 'RSA-OAEP-256', enc: 'A256GCM' }),
      invalidToken('malformed_token', 0),
    ],
    [
      'five parts, dir with zip and an empty key segment',
      () => jwe({ alg: 'dir', enc: 'A256GCM', zip: 'DEF' }, ''),
      invalidToken('malformed_token', 0),
    ],
    [
      'five parts, PBES2 with a huge p2c',
      () => jwe({ alg: 'PBES2-HS512+A256KW', enc: 'A256GCM', ...P2 }),
      invalidToken('malformed_token', 0),
    ],
    [
      'five parts, PBES2 and zip, kid of the real key',
      () => jwe({ alg: 'PBES2-HS256+A128KW', enc: 'A128GCM', zip: 'DEF', kid: key.kid, ...P2 }),
      invalidToken('malformed_token', 0),
    ],
    [
      'three parts under a PBES2 header: no password work, no key fetched',
      () =>
        signRaw(
          { alg: 'PBES2-HS256+A128KW', enc: 'A128GCM', kid: key.kid, ...P2 },
          claims(),
          key.privateKey,
          'ES256',
        ),
      invalidToken('alg_not_allowed', 0),
    ],
    [
      'three parts with zip and a deflated payload',
      async () => {
        const h = b64u(JSON.stringify({ alg: 'ES256', kid: key.kid, zip: 'DEF' }))
        const p = b64u(await deflated(JSON.stringify(claims())))
        const sig = await crypto.subtle.sign(
          { name: 'ECDSA', hash: 'SHA-256' },
          key.privateKey as CryptoKey,
          new TextEncoder().encode(`${h}.${p}`),
        )
        return `${h}.${p}.${b64u(new Uint8Array(sig))}`
      },
      invalidToken('malformed_token', 0),
    ],
    [
      'four parts',
      async () => `${await mint(key)}.${random(8)}`,
      invalidToken('malformed_token', 0),
    ],
    [
      'two parts',
      async () => (await mint(key)).split('.').slice(0, 2).join('.'),
      invalidToken('malformed_token', 0),
    ],
  ]
  it.each(cases)('%s: refused', async (_, make, want) => {
    const f = await fixture([key])
    expect(await withToken(f, await make())).toEqual(want)
  })
})

describe('text that is not UTF-8 JSON', () => {
  const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0))
  const cases: [string, () => [Uint8Array, Uint8Array]][] = [
    [
      'a Latin-1 byte in a header value',
      () => [
        latin1(`{"alg":"ES256","kid":"${key.kid}","typ":"JWT","x":"caf\xe9"}`),
        new TextEncoder().encode(JSON.stringify(claims())),
      ],
    ],
    [
      'a Latin-1 byte in a claim',
      () => [
        new TextEncoder().encode(JSON.stringify({ alg: 'ES256', kid: key.kid, typ: 'JWT' })),
        latin1(JSON.stringify(claims({ name: 'caf\xe9' }))),
      ],
    ],
    [
      'a UTF-16 payload',
      () => [
        new TextEncoder().encode(JSON.stringify({ alg: 'ES256', kid: key.kid, typ: 'JWT' })),
        Uint8Array.from([...JSON.stringify(claims())].flatMap((c) => [c.charCodeAt(0), 0])),
      ],
    ],
    [
      'a payload that is a JSON array',
      () => [
        new TextEncoder().encode(JSON.stringify({ alg: 'ES256', kid: key.kid, typ: 'JWT' })),
        new TextEncoder().encode(JSON.stringify([claims()])),
      ],
    ],
  ]
  it.each(cases)('%s: refused before any key is fetched', async (_, parts) => {
    const f = await fixture([key])
    const [h, p] = parts()
    const input = `${b64u(h)}.${b64u(p)}`
    const sig = await crypto.subtle.sign(
      { name: 'ECDSA', hash: 'SHA-256' },
      key.privateKey as CryptoKey,
      new TextEncoder().encode(input),
    )
    expect(await withToken(f, `${input}.${b64u(new Uint8Array(sig))}`)).toEqual(
      invalidToken('malformed_token', 0),
    )
  })
})

describe('size', () => {
  const KB = 1024
  const junk = (n: number) => 'a'.repeat(n)

  describe('Authorization', () => {
    const cases: [string, string][] = [
      ['Bearer and 1,000,000 dots', `Bearer ${'.'.repeat(1_000_000)}`],
      [
        'Bearer and a token one byte over DEFAULT_MAX_TOKEN_BYTES',
        `Bearer ${junk(DEFAULT_MAX_TOKEN_BYTES + 1)}`,
      ],
      ['16 KB: Bearer and a 16 KiB token in JWS shape', `Bearer a.${junk(16 * KB)}.c`],
      ['32 KB', `Bearer ${junk(32 * KB)}`],
      ['64 KB', `Bearer ${junk(64 * KB)}`],
      // Over MAX_AUTHORIZATION_BYTES the header is not read at all, whatever its scheme.
      ['64 KB of Basic credentials', `Basic ${junk(64 * KB)}`],
    ]
    it.each(cases)('%s: refused before any parsing', async (_, authorization) => {
      const f = await fixture([key])
      expect(await attempt(f.gw, f.stub, '/r', { headers: { authorization } })).toEqual(
        invalidToken('token_too_large', 0),
      )
    })
  })

  describe('other headers of 8, 32 and 64 KB', () => {
    const sizes = [8, 32, 64]
    it.each(sizes)('%i KB X-Pad without a token: 401, origin not called', async (kb) => {
      const f = await fixture([key])
      const seen = await attempt(f.gw, f.stub, '/r', { headers: { 'x-pad': junk(kb * KB) } })
      expect(seen).toEqual(missingToken())
    })

    it.each(sizes)('%i KB Cookie with a forged token: 401, origin not called', async (kb) => {
      const f = await fixture([key])
      const forged = await mint(await makeKey('ES256'), {}, { header: { kid: key.kid } })
      const seen = await attempt(f.gw, f.stub, '/r', {
        headers: { authorization: `Bearer ${forged}`, cookie: `c=${junk(kb * KB)}` },
      })
      expect(seen).toEqual(invalidToken('bad_signature', 1))
    })

    // The gateway forwards big headers; whether they are acceptable is the origin's call (a Node
    // origin answers 431 over 16 KiB, and that answer is passed through). This origin takes them.
    it.each(sizes)('%i KB X-Pad with a valid token: forwarded whole, never a 5xx', async (kb) => {
      const stub = new Stub()
      await stub.publish(key)
      const gw = structuredEnv(stub, {
        issuers: [{ issuer: ISSUER, jwksUrl: stub.jwksUrl, audiences: [AUDIENCE] }],
        routes: [{ path: '/', service: 'ECHO_SERVICE' }],
      })
      const res = await send(gw, '/r', {
        headers: { authorization: `Bearer ${await mint(key)}`, 'x-pad': junk(kb * KB) },
      })
      expect(res.status).toBe(200)
      const echo = (await res.json()) as { headers: Record<string, string> }
      expect(echo.headers['x-pad']).toHaveLength(kb * KB)
    })
  })

  describe('tokens in a cookie or the query', () => {
    async function sourced(source: string) {
      const stub = new Stub()
      await stub.publish(key)
      const gw = structuredEnv(stub, {
        issuers: [{ issuer: ISSUER, jwksUrl: stub.jwksUrl, audiences: [AUDIENCE] }],
        routes: [{ path: '/', origin: stub.originUrl, tokenSources: [source] }],
      })
      return { stub, gw }
    }

    it('a 64 KB token cookie: refused before any parsing', async () => {
      const f = await sourced('cookie:at')
      const seen = await attempt(f.gw, f.stub, '/r', { headers: { cookie: `at=${junk(64 * KB)}` } })
      expect(seen).toEqual(invalidToken('token_too_large', 0))
    })

    it('a query token of 1,000,000 dots: refused before any parsing', async () => {
      const f = await sourced('query:at')
      const seen = await attempt(f.gw, f.stub, `/r?at=${'.'.repeat(1_000_000)}`)
      expect(seen).toEqual(invalidToken('token_too_large', 0))
    })
  })
})
