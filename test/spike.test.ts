import { env } from 'cloudflare:test'
import { it, expect } from 'vitest'
it('reaches loopback', async () => {
  const r = await fetch(`${(env as any).STUB_URL}/x?y=1`)
  expect(await r.json()).toEqual({ path: '/x?y=1' })
})
