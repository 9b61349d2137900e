import { cloudflareTest } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'
import {
  IMPORT_KV_ID,
  LOG_HOST,
  revocationLogWorkers,
} from './test/fixtures/revocation-log-workers.ts'

export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: './wrangler.toml' },
      miniflare: {
        bindings: {
          STUB_URL: inject<string>('stubUrl'),
          OIDC_URL: inject<string>('oidcUrl'),
          INTROSPECTION_STUB_URL: inject<string>('introspectionStubUrl'),
          OIDC_INTROSPECTION_URL: inject<string>('oidcIntrospectionUrl'),
          OIDC_INTROSPECTION_CLIENT_KEY: inject<string>('oidcIntrospectionClientKey'),
          MCP_SERVER_URL: inject<string>('mcpServerUrl'),
          MCP_OIDC_URL: inject<string>('mcpOidcUrl'),
          OIDC_LOGOUT_URL: inject<string>('oidcLogoutUrl'),
        },
        // A Worker origin for routes with `service = "ECHO_SERVICE"` (test/routes.test.ts).
        serviceBindings: {
          ECHO_SERVICE: 'echo-service',
          // Two gateway isolates on one revocation log (test/revocation/log.test.ts).
          GATEWAY_A: 'gateway-a',
          GATEWAY_B: 'gateway-b',
        },
        // The log itself, for tests that drive RevocationList directly. Not named REVOCATION_LOG,
        // so every other test keeps running in KV mode.
        durableObjects: {
          TEST_REVOCATION_LOG: { className: 'RevocationLog', scriptName: LOG_HOST },
          // The DPoP replay store (exported by src/index.ts); tests opt in as DPOP_REPLAY.
          TEST_DPOP_REPLAY: 'DpopReplayStore',
        },
        kvNamespaces: { TEST_IMPORT_KV: IMPORT_KV_ID },
        workers: [
          {
            name: 'echo-service',
            modules: true,
            scriptPath: './test/fixtures/echo-service.mjs',
            compatibilityDate: '2026-11-01',
          },
          ...revocationLogWorkers(
            inject<string>('gatewayBundle'),
            inject<string>('stubUrl'),
            'api://gateway-test',
          ),
        ],
      },
    })),
  ],
  // Request logs are printed only for failing tests, where they explain the failure.
  test: {
    globalSetup: [
      'test/node/global-setup.ts',
      'test/node/oidc-setup.ts',
      'test/node/introspection-setup.ts',
      'test/node/oidc-introspection-setup.ts',
      'test/node/oidc-logout-setup.ts',
      'test/node/gateway-bundle-setup.ts',
      'test/node/mcp-setup.ts',
    ],
    silent: 'passed-only',
  },
})
