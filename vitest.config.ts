import { cloudflareTest } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'

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
        },
        // A Worker origin for routes with `service = "ECHO_SERVICE"` (test/routes.test.ts).
        serviceBindings: { ECHO_SERVICE: 'echo-service' },
        workers: [
          {
            name: 'echo-service',
            modules: true,
            scriptPath: './test/fixtures/echo-service.mjs',
            compatibilityDate: '2026-11-01',
          },
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
    ],
    silent: 'passed-only',
  },
})
