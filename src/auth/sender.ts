/**
 * Sender-constrained tokens for one request, in order: the DPoP proof (dpop.ts, with the server
 * nonce of dpop-nonce.ts), the client certificate (mtls.ts), the binding rules (binding.ts), and
 * last the proof's first use (dpop-replay.ts), so a proof refused for any other reason never
 * reaches the replay store. I/O only through the replay store.
 */
import type { BindingMode, DpopConfig, IssuerConfig, MtlsConfig, RouteConfig } from '../config'
import { GatewayError } from '../errors'
import { checkBinding, confirmation, needsCertificate, type Binding } from './binding'
import type { TokenScheme } from './credentials'
import { checkProof, proofHeader, type CheckedProof } from './dpop'
import type { NonceSource } from './dpop-nonce'
import { claimRemote, replayKey, type LocalReplayCache, type ReplayNamespace } from './dpop-replay'
import type { Identity } from './identity'
import { certificateThumbprint } from './mtls'

/** Per-isolate state the checks use: values only. */
export interface SenderState {
  readonly dpop: DpopConfig
  readonly mtls: MtlsConfig
  readonly local: LocalReplayCache
  /** null when DPOP_NONCE_SECRET is unset. */
  readonly nonces: NonceSource | null
  /** The DPOP_REPLAY binding; null when it is not bound. */
  readonly replay: ReplayNamespace | null
}

/** What a route (or the logout endpoint) asks of the sender. */
export interface SenderPolicy {
  readonly required: readonly BindingMode[]
  readonly allowUnboundDpop: boolean
  readonly nonce: boolean
}

/** Facts for the answer, success or refusal: the nonce to send in DPoP-Nonce. */
export interface SenderAnswer {
  dpopNonce?: string
}

/** A route's policy for a token of this issuer: both bindings must hold. */
export function senderPolicy(
  route: Pick<RouteConfig, 'binding' | 'allowUnboundDpop' | 'dpopNonce'> | null,
  issuer: Pick<IssuerConfig, 'binding'> | undefined,
): SenderPolicy {
  const required = [issuer?.binding ?? 'none', route?.binding ?? 'none'].filter((m) => m !== 'none')
  return {
    required,
    allowUnboundDpop: route?.allowUnboundDpop ?? false,
    nonce: route?.dpopNonce ?? false,
  }
}

/** The URL the client addressed: behind another proxy, the configured public base plus the path. */
export function publicUrl(request: Request, url: URL, dpop: DpopConfig): string {
  return dpop.publicBaseUrl === null ? request.url : dpop.publicBaseUrl + url.pathname
}

export async function bindSender(
  request: Request,
  url: URL,
  token: { readonly token: string; readonly scheme: TokenScheme },
  identity: Identity,
  policy: SenderPolicy,
  state: SenderState,
  nowMs: number,
  answer: SenderAnswer,
): Promise<Binding> {
  const cnf = confirmation(identity.claims.cnf)
  let proof: CheckedProof | null = null
  if (token.scheme === 'dpop') {
    const header = proofHeader(request.headers)
    if (header === null) throw new GatewayError('dpop_proof_missing', 'DPoP scheme without proof')
    let accepts: ((nonce: string) => boolean) | null = null
    if (policy.nonce && state.nonces !== null) {
      const { current, previous } = await state.nonces.nonces(nowMs)
      // Sent with a refusal (use_dpop_nonce) and with a success that used an older nonce.
      answer.dpopNonce = current
      accepts = (n) => n === current || n === previous
    }
    proof = await checkProof(
      header,
      {
        method: request.method,
        url: publicUrl(request, url, state.dpop),
        accessToken: token.token,
      },
      { algorithms: state.dpop.algorithms, windowS: state.dpop.proofWindowS, nonce: accepts },
      nowMs,
    )
    if (proof.nonce === answer.dpopNonce) delete answer.dpopNonce
  }
  const policyFacts = { required: policy.required, allowUnboundDpop: policy.allowUnboundDpop }
  const certThumbprint = needsCertificate(cnf, policyFacts)
    ? await certificateThumbprint(request, state.mtls)
    : null
  const binding = checkBinding(
    identity.claims.cnf,
    { scheme: token.scheme, proofJkt: proof?.jkt ?? null, certThumbprint },
    policyFacts,
  )
  if (proof !== null) await firstUse(proof, state, nowMs)
  return binding
}

async function firstUse(proof: CheckedProof, state: SenderState, nowMs: number): Promise<void> {
  const key = replayKey(proof.jkt, proof.jti)
  if (!state.local.firstUse(key, proof.untilMs, nowMs)) {
    throw new GatewayError('dpop_replayed', 'jti seen before in this isolate')
  }
  const settings = state.dpop.replay
  if (state.replay === null || settings === null) return
  let first: boolean
  try {
    first = await claimRemote(state.replay, key, proof.untilMs, settings)
  } catch (err) {
    // Fail-open trusts this isolate's memory alone; closed (the default) refuses with a 503.
    if (settings.failOpen) return
    state.local.forget(key)
    throw err
  }
  if (!first) throw new GatewayError('dpop_replayed', 'jti seen before by the replay store')
}
