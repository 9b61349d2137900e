/**
 * globalSetup: the real OpenID Provider (test/node/oidc-provider.ts) the provider end-to-end suite
 * (test/e2e/oidc-provider.test.ts) gets its tokens from, handed to workerd as OIDC_URL.
 * RFC 9068 JWT access tokens by client credentials, one resource indicator per algorithm.
 */
import type { TestProject } from 'vitest/node'
import { jwtAccessTokens, startOidcProvider } from './oidc-provider'

declare module 'vitest' {
  export interface ProvidedContext {
    oidcUrl: string
  }
}

/** The client and resources test/e2e/oidc-provider.test.ts uses (it restates them). */
export const E2E_CLIENT = { id: 'gateway-e2e', secret: 'gateway-e2e-secret-0123456789abcdef' }
export const E2E_RESOURCES = {
  'https://api.gateway.test/es256': { scope: 'read write', alg: 'ES256' },
  'https://api.gateway.test/rs256': { scope: 'read write', alg: 'RS256' },
  'https://api.gateway.test/ps256': { scope: 'read write', alg: 'PS256' },
  'https://api.gateway.test/eddsa': { scope: 'read write', alg: 'EdDSA' },
} as const

export default async function ({ provide }: TestProject) {
  const op = await startOidcProvider({
    algorithms: ['ES256', 'RS256', 'PS256', 'EdDSA'],
    configuration: {
      clients: [
        {
          client_id: E2E_CLIENT.id,
          client_secret: E2E_CLIENT.secret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
        },
      ],
      features: {
        clientCredentials: { enabled: true },
        devInteractions: { enabled: false },
        resourceIndicators: jwtAccessTokens(E2E_RESOURCES),
      },
      ttl: { ClientCredentials: 300 },
    },
  })
  provide('oidcUrl', op.url)
  return () => op.close()
}
