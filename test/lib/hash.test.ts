import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { sha256hex, sha256hexSync } from '../../src/lib/hash'

describe('sha256hexSync', () => {
  it('matches WebCrypto for any text, across block boundaries and in any script', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'grapheme', maxLength: 300 }), async (text) => {
        expect(sha256hexSync(text)).toBe(await sha256hex(text))
      }),
      { numRuns: 300 },
    )
    for (let n = 0; n <= 130; n++) {
      const text = 'x'.repeat(n)
      expect(sha256hexSync(text)).toBe(await sha256hex(text))
    }
  })

  it('gives the FIPS 180-4 example digests', () => {
    expect(sha256hexSync('abc')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    )
    expect(sha256hexSync('')).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    )
  })
})
