/**
 * The demo's fixed addresses and names. They must match `[env.demo.vars]` in wrangler.toml, which
 * is what the gateway reads; these are what the demo issuer, origin and token script use.
 */

export const DEMO_HOST = '127.0.0.1'
/** The demo issuer and origin (src/demo/server.ts). */
export const DEMO_PORT = 8788
/** Where `wrangler dev` serves the gateway. */
export const GATEWAY_PORT = 8787

export const DEMO_BASE_URL = `http://${DEMO_HOST}:${DEMO_PORT}`
export const DEMO_ISSUER = DEMO_BASE_URL
export const DEMO_AUDIENCE = 'demo-api'
export const DEMO_JWKS_PATH = '/.well-known/jwks.json'
export const DEMO_TOKEN_PATH = '/token'
export const DEMO_ORIGIN_PATH = '/origin'

export const DEFAULT_TOKEN_TTL_S = 900
export const MAX_TOKEN_TTL_S = 86_400
