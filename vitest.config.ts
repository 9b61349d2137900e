import { cloudflareTest } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: './wrangler.toml' },
      miniflare: { bindings: { STUB_URL: inject<string>('stubUrl') } },
    })),
  ],
  // Request logs are printed only for failing tests, where they explain the failure.
  test: { globalSetup: ['test/node/global-setup.ts'], silent: 'passed-only' },
})
