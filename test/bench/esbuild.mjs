/**
 * The bench's bundler: the esbuild wrangler depends on (so the bundles are the ones `wrangler
 * deploy` would make) and the options every bench worker is built with, close to wrangler's
 * (ESM for workerd, not minified). Callers add what differs: names kept, cloudflare:* external or
 * shimmed.
 */
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

/** @param {string} root the repository root */
export async function esbuildOfWrangler(root) {
  const requireFromRoot = createRequire(join(root, 'package.json'))
  const requireFromWrangler = createRequire(requireFromRoot.resolve('wrangler/package.json'))
  return import(pathToFileURL(requireFromWrangler.resolve('esbuild')).href)
}

/** esbuild options shared by every bench worker's bundle. */
export const WORKER_BUILD_OPTIONS = {
  bundle: true,
  format: /** @type {const} */ ('esm'),
  platform: /** @type {const} */ ('neutral'),
  target: 'es2022',
  conditions: ['workerd', 'worker', 'browser'],
  mainFields: ['module', 'main'],
  logLevel: /** @type {const} */ ('silent'),
}
