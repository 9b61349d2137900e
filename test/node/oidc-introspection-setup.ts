/**
 * globalSetup: a second real OpenID Provider (the shared harness, test/node/oidc-provider.ts) that
 * issues opaque access tokens and introspects them (RFC 7662), for
 * test/e2e/introspection-oidc.test.ts. Three resource-server clients, one per client
 * authentication method the gateway speaks; the private_key_jwt client's key is made now and
 * handed to workerd (as the secret the gateway would read). Tokens come from a real client
 * credentials grant or, for tokens with a subject, from the `mint` control below (the provider's
 * own AccessToken model, so the value and its introspection are oidc-provider's).
 */
import { generateKeyPairSync } from 'node:crypto'
import type Provider from 'oidc-provider'
import type { TestProject } from 'vitest/node'
import { startOidcProvider } from './oidc-provider'

declare module 'vitest' {
  export interface ProvidedContext {
    oidcIntrospectionUrl: string
    /** The private JWK (JSON) of the private_key_jwt resource-server client. */
    oidcIntrospectionClientKey: string
  }
}

/** As test/e2e/introspection-oidc.test.ts restates them. */
export const OPAQUE_RESOURCE = 'https://api.gateway.test/opaque'
export const APP = { id: 'opaque-app', secret: 'opaque-app-secret-0123456789abcdef' }
export const RS_BASIC = { id: 'gateway-rs-basic', secret: 'gateway-rs-basic-secret-0123456789' }
export const RS_POST = { id: 'gateway-rs-post', secret: 'gateway-rs-post-secret-0123456789ab' }
export const RS_JWT = { id: 'gateway-rs-jwt' }

interface MintBody {
  sub: string
  scope?: string
  /** Mint a refresh token instead. */
  refresh?: boolean
}

/** A user's opaque access (or refresh) token, made and stored by the provider itself. */
async function mint(body: MintBody, provider: Provider): Promise<{ token: string }> {
  const client = (await provider.Client.find(APP.id))!
  const grant = new provider.Grant({ accountId: body.sub, clientId: APP.id })
  grant.addResourceScope(OPAQUE_RESOURCE, body.scope ?? 'read')
  const grantId = await grant.save()
  const scope = body.scope ?? 'read'
  const fields = { accountId: body.sub, client, grantId, scope, gty: 'authorization_code' }
  if (body.refresh) return { token: await new provider.RefreshToken(fields).save() }
  const token = new provider.AccessToken(fields)
  token.setAudience(OPAQUE_RESOURCE)
  return { token: await token.save() }
}

export default async function ({ provide }: TestProject) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const clientPrivate = { ...privateKey.export({ format: 'jwk' }), kid: 'rs-jwt-1' }
  const clientPublic = { ...publicKey.export({ format: 'jwk' }), kid: 'rs-jwt-1', alg: 'ES256' }
  const resourceServer = {
    grant_types: [],
    redirect_uris: [],
    response_types: [],
  }
  const op = await startOidcProvider({
    algorithms: ['RS256'],
    configuration: {
      clients: [
        {
          client_id: APP.id,
          client_secret: APP.secret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
        },
        { ...resourceServer, client_id: RS_BASIC.id, client_secret: RS_BASIC.secret },
        {
          ...resourceServer,
          client_id: RS_POST.id,
          client_secret: RS_POST.secret,
          token_endpoint_auth_method: 'client_secret_post',
        },
        {
          ...resourceServer,
          client_id: RS_JWT.id,
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [clientPublic] },
        },
      ],
      features: {
        clientCredentials: { enabled: true },
        devInteractions: { enabled: false },
        introspection: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => OPAQUE_RESOURCE,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({
            scope: 'read write',
            audience: OPAQUE_RESOURCE,
            accessTokenTTL: 300,
            accessTokenFormat: 'opaque',
          }),
        },
      },
      ttl: { ClientCredentials: 300, AccessToken: 300 },
    },
    controls: {
      mint: async (raw, { provider }) => {
        try {
          return await mint(raw as MintBody, provider)
        } catch (err) {
          const e = err as { message: string; error_description?: string }
          throw new Error(`${e.message}: ${e.error_description}`)
        }
      },
      // Revoke at the provider (what its revocation endpoint would do).
      revoke: async (raw, { provider }) => {
        const found = await provider.AccessToken.find((raw as { token: string }).token)
        await found?.destroy()
        return { revoked: Boolean(found) }
      },
    },
  })
  provide('oidcIntrospectionUrl', op.url)
  provide('oidcIntrospectionClientKey', JSON.stringify(clientPrivate))
  return () => op.close()
}
