/**
 * Stateless DPoP server nonces (RFC 9449 §8, §9): a nonce is an HMAC over a time step, from a
 * secret, so every isolate and location issues and accepts the same values without shared state.
 * The current and the previous step's nonce are accepted; a proof with the previous one passes and
 * gets the current one back in DPoP-Nonce.
 * No I/O. No clock: callers pass `nowMs`. Holds values only (the imported key, the step's nonces).
 */
import { base64url } from 'jose'

/** Length of one nonce step: a nonce is accepted for one to two of these. */
export const DPOP_NONCE_STEP_S = 60
/** Bytes of the HMAC kept in a nonce: 128 bits cannot be guessed. */
const NONCE_BYTES = 16

export interface Nonces {
  readonly current: string
  readonly previous: string
}

export class NonceSource {
  private key: CryptoKey | null = null
  private step = -1
  private values: Nonces | null = null

  constructor(private readonly secret: string) {}

  /** This step's and the previous step's nonces, computed once per step per isolate. */
  async nonces(nowMs: number): Promise<Nonces> {
    const step = Math.floor(nowMs / (DPOP_NONCE_STEP_S * 1000))
    if (this.values !== null && this.step === step) return this.values
    if (this.key === null) {
      this.key = await crypto.subtle.importKey(
        'raw',
        new TextEncoder().encode(this.secret),
        { name: 'HMAC', hash: 'SHA-256' },
        false,
        ['sign'],
      )
    }
    const [current, previous] = await Promise.all([this.mac(step), this.mac(step - 1)])
    this.step = step
    this.values = { current, previous }
    return this.values
  }

  private async mac(step: number): Promise<string> {
    const data = new TextEncoder().encode(`dpop-nonce ${step}`)
    const sig = await crypto.subtle.sign('HMAC', this.key!, data)
    return base64url.encode(new Uint8Array(sig).slice(0, NONCE_BYTES))
  }
}
