/**
 * The per-isolate gateway: the parsed config and one key store per issuer, built once per `env`.
 * No request handling here; index.ts owns the pipeline.
 */
import { AssertionSigner } from './proxy/assertion'
import {
  parseConfig,
  type ConfigError,
  type GatewayConfig,
  type RevocationConfig,
  type RouteConfig,
} from './config'
import { DEFAULT_ASSERTION_HEADER } from './config/structured'
import { droppedHeaders } from './proxy/forward'
import { keyProviderFor } from './auth/keys'
import { RevocationList, type RevocationRecord } from './revocation/list'
import { KvStore } from './revocation/store'
import { LogStore } from './revocation/log-store'
import type { RevocationLog } from './revocation/log-object'
import type { MetricsSink } from './observability/log'
import { ReplayMemory } from './revocation/replay'
import type { Transmitter } from './revocation/signals'
import { RejectedTokenCache, VerifiedTokenCache } from './auth/token-cache'
import type { Issuer } from './auth/verify'
import { Introspector } from './auth/introspection'
import { LocalReplayCache, type ReplayNamespace } from './auth/dpop-replay'
import { NonceSource } from './auth/dpop-nonce'
import type { SenderState } from './auth/sender'
import { CLIENT_CERT_CHAIN_HEADER, CLIENT_CERT_HEADER } from './auth/mtls'
import type { Challenges } from './errors'

export interface Gateway {
  readonly config: GatewayConfig
  readonly issuers: readonly Issuer[]
  /** null when revocation is off (no REVOCATIONS binding). */
  readonly revocations: RevocationList | null
  readonly verified: VerifiedTokenCache
  readonly rejected: RejectedTokenCache
  /** Each route's trusted issuers, so verification never even looks at another issuer's keys. */
  readonly routeIssuers: ReadonlyMap<RouteConfig, readonly Issuer[]>
  /** Per issuer with introspection, its endpoint client and cache. */
  readonly introspectors: ReadonlyMap<string, Introspector>
  /** Each route's introspector for opaque tokens; absent when the route refuses them. */
  readonly routeIntrospector: ReadonlyMap<RouteConfig, Introspector>
  readonly assertion: AssertionSigner | null
  /** Per route, the header names never forwarded to its origin (see forward.ts). */
  readonly droppedHeaders: ReadonlyMap<RouteConfig, ReadonlySet<string>>
  /** The issuers that log users out over the back channel: the same objects as in `issuers`. */
  readonly logoutIssuers: readonly Issuer[]
  /** Shared Signals transmitters, each with its own key store. */
  readonly transmitters: readonly Transmitter[]
  /** jti of the logout tokens and SETs this isolate acted on. */
  readonly replays: ReplayMemory
  /** DPoP and mTLS checking state: the proof replay memory, nonces, the replay store. */
  readonly sender: SenderState
  /** Per route, the challenges of its 401s: as configured, and for a request that used DPoP. */
  readonly challenges: ReadonlyMap<RouteConfig, RouteChallenges>
}

export interface RouteChallenges {
  readonly bearer: Challenges
  readonly dpop: Challenges
}

export type GatewayResult = { ok: true; gateway: Gateway } | { ok: false; error: ConfigError }

// workerd hands every request of an isolate the same `env` object, so this parses once per isolate
// (and once per distinct env in tests). Key stores live here: they hold values, never promises.
const built = new WeakMap<object, GatewayResult>()

export function gatewayFor(env: object): GatewayResult {
  let result = built.get(env)
  if (!result) {
    const parsed = parseConfig(env as Record<string, unknown>)
    result = parsed.ok ? { ok: true, gateway: build(parsed.config, env) } : parsed
    built.set(env, result)
  }
  return result
}

function skewOf(issuers: GatewayConfig['issuers']): (issuer: string) => number {
  const skew = new Map(issuers.map((i) => [i.issuer, i.clockSkewS]))
  return (issuer) => skew.get(issuer) ?? 0
}

/** Which schemes a route's refusals offer (RFC 9449 §7.1): DPoP once the route asks for it. */
function routeChallenges(
  route: RouteConfig,
  issuers: GatewayConfig['issuers'],
  algs: string,
): RouteChallenges {
  const trusted = issuers.filter((i) => route.issuers.includes(i.issuer))
  const bearer =
    route.binding !== 'dpop' && !(trusted.length > 0 && trusted.every((i) => i.binding === 'dpop'))
  const modes = [route.binding, ...trusted.map((i) => i.binding)]
  const advertise = route.dpopNonce || modes.some((m) => m === 'dpop' || m === 'any')
  return {
    bearer: { bearer, dpopAlgs: advertise ? algs : null, usedDpop: false },
    dpop: { bearer, dpopAlgs: algs, usedDpop: true },
  }
}

function build(config: GatewayConfig, env: object): Gateway {
  const issuers: Issuer[] = config.issuers.map((c) => ({
    config: c,
    keys: keyProviderFor(c.keySource, c.algorithms, c.jwks),
  }))
  // Header names only the gateway sets (claim headers, assertion headers of every route).
  const reserved = new Set([
    DEFAULT_ASSERTION_HEADER,
    ...config.routes.flatMap((r) => [
      ...r.identity.claimHeaders.map(([name]) => name),
      ...(r.assertion ? [r.assertion.header] : []),
    ]),
    // Without a trusted proxy in front, a client could name any certificate it likes.
    ...(config.mtls.trustClientCertHeader ? [] : [CLIENT_CERT_HEADER, CLIENT_CERT_CHAIN_HEADER]),
  ])
  const introspectors = new Map(
    config.issuers.filter((c) => c.introspection).map((c) => [c.issuer, new Introspector(c)]),
  )
  const routeIntrospector = new Map<RouteConfig, Introspector>()
  for (const r of config.routes) {
    const i = r.opaqueIssuer === null ? undefined : introspectors.get(r.opaqueIssuer)
    if (i) routeIntrospector.set(r, i)
  }
  const algs = config.dpop.algorithms.join(' ')
  return {
    config,
    issuers,
    introspectors,
    routeIntrospector,
    revocations: config.revocation ? revocationList(config.revocation, env) : null,
    verified: new VerifiedTokenCache(skewOf(config.issuers)),
    rejected: new RejectedTokenCache(),
    routeIssuers: new Map(
      config.routes.map((r) => [r, issuers.filter((i) => r.issuers.includes(i.config.issuer))]),
    ),
    assertion: config.assertion ? new AssertionSigner(config.assertion) : null,
    droppedHeaders: new Map(config.routes.map((r) => [r, droppedHeaders(r.identity, reserved)])),
    logoutIssuers: issuers.filter((i) => i.config.backchannelLogout !== null),
    transmitters: config.transmitters.map((t) => ({
      config: t,
      signer: {
        config: t.signer,
        keys: keyProviderFor(t.signer.keySource, t.signer.algorithms, t.signer.jwks),
      },
    })),
    replays: new ReplayMemory(),
    sender: {
      dpop: config.dpop,
      mtls: config.mtls,
      local: new LocalReplayCache(),
      nonces: config.dpop.nonceSecret === null ? null : new NonceSource(config.dpop.nonceSecret),
      replay:
        config.dpop.replay === null ? null : (env as { DPOP_REPLAY: ReplayNamespace }).DPOP_REPLAY,
    },
    challenges: new Map(config.routes.map((r) => [r, routeChallenges(r, config.issuers, algs)])),
  }
}

/** The list over the Durable Object log when REVOCATION_LOG is bound, else over KV. */
function revocationList(config: RevocationConfig, env: object): RevocationList {
  const bindings = env as {
    REVOCATIONS?: KVNamespace
    REVOCATION_LOG?: DurableObjectNamespace<RevocationLog>
    METRICS?: Partial<MetricsSink>
  }
  const metrics =
    typeof bindings.METRICS?.writeDataPoint === 'function'
      ? (bindings.METRICS as MetricsSink)
      : undefined
  if (config.log === undefined) {
    return new RevocationList(new KvStore(bindings.REVOCATIONS!), config)
  }
  // One cached change set per location and interval; whole seconds are the Cache API's unit.
  const cacheTtlS = Math.max(1, Math.ceil(config.log.syncMs / 1000))
  const cache = typeof caches === 'undefined' ? null : caches.default
  const store = new LogStore<RevocationRecord>(bindings.REVOCATION_LOG!, cache, cacheTtlS)
  return new RevocationList(store, config, undefined, { metrics })
}
