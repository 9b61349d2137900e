/**
 * Bundles the gateway (src/index.ts, which also exports the RevocationLog Durable Object) once for
 * the auxiliary workers of vitest.config.ts: two gateway isolates and the object's host. esbuild
 * is resolved through wrangler, as test/bench does, so it is the one `wrangler deploy` would use.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { TestProject } from 'vitest/node'

declare module 'vitest' {
  export interface ProvidedContext {
    gatewayBundle: string
  }
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

export default async function ({ provide }: TestProject) {
  const requireFromRoot = createRequire(join(root, 'package.json'))
  const requireFromWrangler = createRequire(requireFromRoot.resolve('wrangler/package.json'))
  const esbuild = (await import(
    pathToFileURL(requireFromWrangler.resolve('esbuild')).href
  )) as typeof import('esbuild')
  const dir = mkdtempSync(join(tmpdir(), 'gateway-bundle-'))
  const outfile = join(dir, 'gateway.mjs')
  await esbuild.build({
    entryPoints: [join(root, 'src/index.ts')],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    conditions: ['workerd', 'worker', 'browser'],
    mainFields: ['module', 'main'],
    external: ['cloudflare:*', 'node:*'],
    logLevel: 'silent',
  })
  provide('gatewayBundle', outfile)
  return () => rmSync(dir, { recursive: true, force: true })
}
