/** Constant-time comparison of a presented secret with the expected one. Pure (WebCrypto only). */

/** Compared as SHA-256 digests, so lengths match and the time taken says nothing about either. */
export async function sameSecret(given: string, expected: string): Promise<boolean> {
  const enc = new TextEncoder()
  const [a, b] = await Promise.all([
    crypto.subtle.digest('SHA-256', enc.encode(given)),
    crypto.subtle.digest('SHA-256', enc.encode(expected)),
  ])
  return crypto.subtle.timingSafeEqual(a, b)
}
