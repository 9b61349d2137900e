/**
 * A real OpenID Provider for the end-to-end suites: the certified `oidc-provider` package (v9),
 * listening on 127.0.0.1, port 0, over plain http (workerd reaches loopback over http). Node only;
 * start it from a vitest globalSetup and `provide` its URL to the workerd tests.
 *
 *   const op = await startOidcProvider({
 *     algorithms: ['ES256', 'RS256'],        // signing keys made now, one per algorithm
 *     configuration: {                       // any oidc-provider Configuration, passed through
 *       clients: [{ client_id: 'svc', client_secret: 's', grant_types: ['client_credentials'],
 *                   redirect_uris: [], response_types: [] }],
 *       features: {
 *         clientCredentials: { enabled: true },
 *         resourceIndicators: jwtAccessTokens({ 'https://api.test': { scope: 'read', alg: 'ES256' } }),
 *         introspection: { enabled: true },  // dPoP, backchannelLogout, ... likewise
 *       },
 *     },
 *     setup: (provider) => provider.on('server_error', console.error),
 *   })
 *   op.url           // the issuer, e.g. http://127.0.0.1:41234 (no trailing slash)
 *   op.provider      // the current Provider instance
 *   await op.rotate({ algorithms: ['ES256'] })  // see below
 *   await op.close()
 *
 * Key rotation: `rotate()` makes new keys and builds a new Provider with them first in its JWKS
 * (so they sign from that moment, as oidc-provider does) and the previous keys after them (so
 * tokens already issued still verify); `keep: false` drops the previous keys. The HTTP server,
 * its URL and the in-memory adapter's storage stay; `setup` runs again for the new instance.
 *
 * Controls for tests in workerd, which cannot call Node functions: `POST {url}/_harness/<name>`
 * with a JSON body runs `controls[name](body, handle)` and answers its JSON result. `rotate` is
 * built in (body: the `rotate()` options; answer: `{ kids }`). Only loopback callers reach it.
 */
import { generateKeyPairSync } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Provider, { type Configuration, type JWKS } from 'oidc-provider'

/** Algorithms the harness can make keys for. */
export type SigningAlgorithm = 'RS256' | 'PS256' | 'ES256' | 'ES384' | 'EdDSA'

export type Control = (body: unknown, handle: OidcProviderHandle) => unknown | Promise<unknown>

export interface OidcProviderOptions {
  /** oidc-provider configuration, passed through; `jwks` defaults to keys for `algorithms`. */
  configuration?: Configuration
  /** One signing key per algorithm, made at start; the first is the default. Default: ['RS256']. */
  algorithms?: readonly SigningAlgorithm[]
  /** Called with each Provider instance built (at start and after every rotation). */
  setup?: (provider: Provider) => void
  /** Extra `POST /_harness/<name>` controls. */
  controls?: Record<string, Control>
}

export interface RotateOptions {
  /** Algorithms of the new keys. Default: the `algorithms` the provider started with. */
  algorithms?: readonly SigningAlgorithm[]
  /** Keep the previous keys published after the new ones. Default: true. */
  keep?: boolean
}

export interface OidcProviderHandle {
  /** The issuer identifier and base URL, `http://127.0.0.1:<port>`. */
  readonly url: string
  /** The current Provider (a new one after each rotation). */
  readonly provider: Provider
  /** The private JWKS the current Provider signs with, newest keys first. */
  readonly jwks: JWKS
  rotate(options?: RotateOptions): Promise<{ kids: string[] }>
  close(): Promise<void>
}

const KEY_PARAMS: Record<SigningAlgorithm, Parameters<typeof generateKeyPairSync>> = {
  RS256: ['rsa', { modulusLength: 2048 }],
  PS256: ['rsa', { modulusLength: 2048 }],
  ES256: ['ec', { namedCurve: 'P-256' }],
  ES384: ['ec', { namedCurve: 'P-384' }],
  EdDSA: ['ed25519', {}],
} as unknown as Record<SigningAlgorithm, Parameters<typeof generateKeyPairSync>>

let kidCounter = 0

/** A private signing JWK for `alg` with a fresh kid, made now. */
export function signingKey(alg: SigningAlgorithm): JWKS['keys'][number] {
  const [type, params] = KEY_PARAMS[alg]
  const { privateKey } = (generateKeyPairSync as (t: unknown, p: unknown) => { privateKey: any })(
    type,
    params,
  )
  const jwk = privateKey.export({ format: 'jwk' })
  return { ...jwk, alg, use: 'sig', kid: `${alg.toLowerCase()}-${Date.now()}-${++kidCounter}` }
}

/** A resource server's RFC 9068 JWT access-token settings, by resource indicator. */
export interface JwtResource {
  scope: string
  alg?: SigningAlgorithm
  /** Seconds. Default 300. */
  ttl?: number
}

/**
 * `features.resourceIndicators` that issues RFC 9068 JWT access tokens (`typ: at+jwt`) for the
 * given resource indicators, `aud` = the indicator; the first is the default resource.
 */
export function jwtAccessTokens(
  resources: Record<string, JwtResource>,
): NonNullable<Configuration['features']>['resourceIndicators'] {
  const first = Object.keys(resources)[0]
  return {
    enabled: true,
    defaultResource: () => first!,
    useGrantedResource: () => true,
    getResourceServerInfo: (_ctx, indicator) => {
      const r = resources[indicator]
      if (!r) throw new Error(`unknown resource ${indicator}`)
      return {
        scope: r.scope,
        audience: indicator,
        accessTokenTTL: r.ttl ?? 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: r.alg ?? 'RS256' } },
      }
    },
  }
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  const text = Buffer.concat(chunks).toString('utf8')
  return text === '' ? {} : JSON.parse(text)
}

function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1'
}

export async function startOidcProvider(
  options: OidcProviderOptions = {},
): Promise<OidcProviderHandle> {
  const algorithms = options.algorithms ?? ['RS256']
  let jwks: JWKS = options.configuration?.jwks ?? { keys: algorithms.map(signingKey) }
  let current: Provider | null = null
  let callback: ((req: IncomingMessage, res: ServerResponse) => void) | null = null

  const server = createServer((req, res) => {
    if (req.url?.startsWith('/_harness/') && req.method === 'POST') {
      void control(req, res)
      return
    }
    callback!(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const build = () => {
    const provider = new Provider(url, {
      // Fixed cookie keys and quiet defaults: the tests drive grants, not browser sessions.
      cookies: { keys: ['oidc-harness-cookie-key'] },
      ...options.configuration,
      jwks,
    })
    options.setup?.(provider)
    current = provider
    callback = provider.callback()
  }
  build()

  const handle: OidcProviderHandle = {
    url,
    get provider() {
      return current!
    },
    get jwks() {
      return jwks
    },
    async rotate(opts: RotateOptions = {}) {
      const fresh = (opts.algorithms ?? algorithms).map(signingKey)
      jwks = { keys: [...fresh, ...(opts.keep === false ? [] : jwks.keys)] }
      build()
      return { kids: fresh.map((k) => k.kid!) }
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((err) => (err ? reject(err) : resolve()))
      }),
  }

  const controls: Record<string, Control> = {
    rotate: (body) => handle.rotate(body as RotateOptions),
    ...options.controls,
  }
  async function control(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const name = req.url!.slice('/_harness/'.length)
    const fn = controls[name]
    // Controls change the provider's keys: only a caller on this machine may use them.
    if (!fn || !isLoopback(req.socket.remoteAddress)) {
      res.writeHead(404).end()
      return
    }
    try {
      const result = await fn(await readBody(req), handle)
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result ?? {}))
    } catch (err) {
      res
        .writeHead(500, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: String(err) }))
    }
  }

  return handle
}
