/**
 * The per-isolate gateway: the parsed config and one key store per issuer, built once per `env`.
 * No request handling here; index.ts owns the pipeline.
 */
import { parseConfig, type ConfigError, type GatewayConfig } from './config'
import { KeyStore } from './keys'
import { RevocationList } from './revocation'
import { VerifiedTokenCache } from './token-cache'
import type { Issuer } from './verify'

export interface Gateway {
  readonly config: GatewayConfig
  readonly issuers: readonly Issuer[]
  /** null when revocation is off (no REVOCATIONS binding). */
  readonly revocations: RevocationList | null
  readonly verified: VerifiedTokenCache
}

export type GatewayResult = { ok: true; gateway: Gateway } | { ok: false; error: ConfigError }

// workerd hands every request of an isolate the same `env` object, so this parses once per isolate
// (and once per distinct env in tests). Key stores live here: they hold values, never promises.
const built = new WeakMap<object, GatewayResult>()

export function gatewayFor(env: object): GatewayResult {
  let result = built.get(env)
  if (!result) {
    const parsed = parseConfig(env as Record<string, unknown>)
    result = parsed.ok
      ? {
          ok: true,
          gateway: {
            config: parsed.config,
            issuers: parsed.config.issuers.map((config) => ({
              config,
              keys: new KeyStore(config.keySource, config.algorithms, config.jwks),
            })),
            revocations: parsed.config.revocation
              ? new RevocationList(
                  (env as { REVOCATIONS: KVNamespace }).REVOCATIONS,
                  parsed.config.revocation,
                )
              : null,
            verified: new VerifiedTokenCache(skewOf(parsed.config.issuers)),
          },
        }
      : parsed
    built.set(env, result)
  }
  return result
}

function skewOf(issuers: GatewayConfig['issuers']): (issuer: string) => number {
  const skew = new Map(issuers.map((i) => [i.issuer, i.clockSkewS]))
  return (issuer) => skew.get(issuer) ?? 0
}
