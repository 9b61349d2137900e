/**
 * Config: parse and validate the worker's environment once into a frozen GatewayConfig.
 * Owns: the model (model.ts), the shared field validators (fields.ts), simple mode (simple.ts),
 * structured mode (structured.ts). Pure. No I/O. A bad value yields a ConfigError naming the
 * variable; never a partial config. Must not import any other folder of src/.
 */
import { ConfigError, type ConfigResult, type RawEnv } from './model'
import { simpleMode } from './simple'
import { structuredMode } from './structured'

export * from './model'
export { isLoopback, keyUrl } from './fields'
export { DEFAULT_ASSERTION_HEADER } from './structured'

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/** Simple-mode variables; setting any of them together with GATEWAY is ambiguous. */
const SIMPLE_ONLY = [
  'ORIGIN_URL',
  'JWT_ISSUER',
  'JWT_AUDIENCE',
  'JWT_CLIENT_IDS',
  'JWT_CLIENT_ID_CLAIM',
  'JWT_TENANTS',
  'JWKS_URL',
  'JWT_ALGORITHMS',
]

export function parseConfig(env: RawEnv): ConfigResult {
  try {
    if (env.GATEWAY === undefined) return { ok: true, config: deepFreeze(simpleMode(env)) }
    const both = SIMPLE_ONLY.find((name) => env[name] !== undefined)
    if (both) throw new ConfigError(both, 'must not be set together with GATEWAY (use one mode)')
    return { ok: true, config: deepFreeze(structuredMode(env)) }
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, error: err }
    throw err
  }
}
