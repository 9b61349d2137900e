import { createServer } from 'node:http'
import type { TestProject } from 'vitest/node'
export default async function ({ provide }: TestProject) {
  const s = createServer((req, res) => { res.end(JSON.stringify({ path: req.url })) })
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const a = s.address()
  provide('stubUrl', `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`)
  return () => new Promise<void>((r) => s.close(() => r()))
}
