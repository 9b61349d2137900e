/**
 * Shared Signals Framework 1.0 receiver: validate a Security Event Token (RFC 8417) pushed per
 * RFC 8935 and return what its CAEP and RISC events revoke. Verification goes through auth/verify
 * (the transmitter's own key store, same algorithm rules); nothing is written here: the caller
 * writes the records through the revocation list, then remembers the jti. Subjects are RFC 9493
 * identifiers (`iss_sub`, `opaque`, `email`, `aliases`) or SSF complex subjects (`user`,
 * `session`). Key fetches only through `deps.fetch`; time from `deps.now`.
 */
import type { JWTPayload } from 'jose'
import type { KeyDeps } from '../auth/keys'
import { verifyJwt, type Issuer, type JwtProfile } from '../auth/verify'
import type { IssuerConfig, TransmitterConfig } from '../config'
import { GatewayError, type ReasonCode } from '../errors'
import type { RevocationRecord } from './list'
import { sessionRevocation, shortText, subjectCutoff } from './records'
import type { ReplayMemory } from './replay'

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/'
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/'
const SSF = 'https://schemas.openid.net/secevent/ssf/event-type/'

/** The event types acted on, by their URIs (CAEP 1.0 §3, RISC 1.0 §2, SSF 1.0 §8.1.4). */
export const EVENTS = {
  sessionRevoked: `${CAEP}session-revoked`,
  credentialChange: `${CAEP}credential-change`,
  accountDisabled: `${RISC}account-disabled`,
  accountPurged: `${RISC}account-purged`,
  sessionsRevoked: `${RISC}sessions-revoked`,
  credentialCompromise: `${RISC}credential-compromise`,
  verification: `${SSF}verification`,
} as const

/** Events after which none of the subject's tokens issued so far may be used. */
const CUT_OFF_SUBJECT: readonly string[] = [
  EVENTS.accountDisabled,
  EVENTS.accountPurged,
  EVENTS.sessionsRevoked,
  EVENTS.credentialCompromise,
]

/**
 * Oldest SET accepted (by `iat`), in seconds. Transmitters retry a failed push with backoff
 * (RFC 8935 §2.4), so a signal may arrive late; a 400 would make them drop it for good.
 */
export const MAX_SET_AGE_S = 3600
/** Most events one SET may carry (SSF profiles one; a few more cost little, thousands would). */
export const MAX_EVENTS_PER_SET = 8
/** Most identifiers in one `aliases` subject. */
export const MAX_ALIASES = 8

/** RFC 8935 §2.4 error codes (the IANA "Security Event Token Error Codes" registry). */
export type SetErrorCode =
  | 'invalid_request'
  | 'invalid_key'
  | 'invalid_issuer'
  | 'invalid_audience'
  | 'authentication_failed'

export class SetError extends Error {
  constructor(
    readonly err: SetErrorCode,
    readonly description: string,
  ) {
    super(err)
    this.name = 'SetError'
  }
}

/** A transmitter and the key store its SETs are verified with. */
export interface Transmitter {
  readonly config: TransmitterConfig
  readonly signer: Issuer
}

export interface SignalOutcome {
  /** The event type URI. */
  readonly event: string
  /** revoked: records to write; acknowledged: nothing to do (unknown event, ignored, no match). */
  readonly action: 'revoked' | 'acknowledged'
  readonly why?: string
  readonly records: readonly RevocationRecord[]
}

export interface SetOutcome {
  readonly transmitter: Transmitter
  readonly jti: string
  readonly rememberUntilMs: number
  readonly signals: readonly SignalOutcome[]
}

function setProfile(cfg: IssuerConfig): JwtProfile {
  return {
    // aud is required: a SET without one could be meant for any receiver.
    audience: { audiences: cfg.audiences, clientIds: null },
    types: cfg.types,
    typeOptional: cfg.typeOptional,
    // RFC 8417 §2.2: iss, iat, jti and events are required; exp is checked when present.
    requiredClaims: ['iat', 'jti', 'events'],
    maxTokenAgeS: MAX_SET_AGE_S,
  }
}

/** RFC 8935 §2.4: which error a verification failure is, for the transmitter. */
function setErrorOf(code: ReasonCode): SetErrorCode {
  if (code === 'bad_issuer') return 'invalid_issuer'
  if (code === 'bad_audience' || code === 'missing_audience') return 'invalid_audience'
  if (code === 'bad_signature' || code === 'unknown_kid' || code === 'alg_not_allowed') {
    return 'invalid_key'
  }
  return 'invalid_request'
}

const DESCRIPTIONS: Partial<Record<ReasonCode, string>> = {
  bad_issuer: 'iss is not a configured transmitter',
  bad_audience: 'aud does not name this receiver',
  missing_audience: 'aud is missing',
  bad_signature: 'the signature does not verify with the transmitter’s keys',
  unknown_kid: 'no key of the transmitter matches kid and alg',
  alg_not_allowed: 'alg is not allowed for this transmitter',
  token_expired: `expired, or iat older than ${MAX_SET_AGE_S} s`,
  token_not_yet_valid: 'iat or nbf is in the future',
  bad_typ: 'typ is not secevent+jwt',
  malformed_token: 'not a signed JWT',
  token_too_large: 'the SET is too large',
}

/**
 * Throws SetError (the transmitter's fault), or GatewayError jwks_unavailable (ours or the key
 * host's: worth a retry). Returns what each event asks for.
 */
export async function validateSet(
  token: string,
  transmitters: readonly Transmitter[],
  deps: KeyDeps,
  seen: ReplayMemory,
): Promise<SetOutcome> {
  let verified
  try {
    verified = await verifyJwt(
      token,
      transmitters.map((t) => t.signer),
      deps,
      setProfile,
    )
  } catch (err) {
    if (!(err instanceof GatewayError) || err.code === 'jwks_unavailable') throw err
    const description = DESCRIPTIONS[err.code] ?? 'the SET does not verify'
    throw new SetError(setErrorOf(err.code), description)
  }
  const { claims } = verified
  const transmitter = transmitters.find((t) => t.signer === verified.issuer)!
  const cfg = transmitter.config
  const iss = cfg.signer.issuer
  const nowMs = deps.now()
  const jti = claims.jti
  if (!shortText(jti)) throw new SetError('invalid_request', 'jti is not a short string')
  if (seen.has(iss, jti, nowMs)) throw new SetError('invalid_request', 'jti was seen before')
  const events = claims.events
  if (typeof events !== 'object' || events === null || Array.isArray(events)) {
    throw new SetError('invalid_request', 'events is not a JSON object')
  }
  const entries = Object.entries(events as Record<string, unknown>)
  if (entries.length === 0) throw new SetError('invalid_request', 'events is empty')
  if (entries.length > MAX_EVENTS_PER_SET) {
    throw new SetError('invalid_request', `more than ${MAX_EVENTS_PER_SET} events`)
  }
  const signals: SignalOutcome[] = []
  for (const [event, payload] of entries) {
    // RFC 8417 §2.2: each event's payload is a JSON object (possibly empty).
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      throw new SetError('invalid_request', 'an event payload is not a JSON object')
    }
    signals.push(await signalOf(event, payload as Record<string, unknown>, claims, cfg, nowMs))
  }
  const iat = claims.iat as number
  const rememberUntilMs = (iat + MAX_SET_AGE_S + cfg.signer.clockSkewS) * 1000
  return { transmitter, jti, rememberUntilMs, signals }
}

async function signalOf(
  event: string,
  payload: Record<string, unknown>,
  claims: JWTPayload,
  cfg: TransmitterConfig,
  nowMs: number,
): Promise<SignalOutcome> {
  const ack = (why: string): SignalOutcome => ({ event, action: 'acknowledged', why, records: [] })
  // SSF 1.0 §8.1.4: a verification event asks only for the 202.
  if (event === EVENTS.verification) return ack('verification')
  const cutOff = CUT_OFF_SUBJECT.includes(event)
  const isSessionRevoked = event === EVENTS.sessionRevoked
  if (event === EVENTS.credentialChange) {
    if (cfg.credentialChange === 'ignore') return ack('credential-change is configured to ignore')
  } else if (!cutOff && !isSessionRevoked) {
    // RFC 8417 §2.2 lets a receiver ignore events it does not understand.
    return ack('event type not acted on')
  }
  // SSF 1.0 §3: the subject is the top-level sub_id; CAEP and RISC events defined earlier carry
  // it as the event's own `subject` member, which wins when both are present.
  const subject = payload.subject ?? (claims as { sub_id?: unknown }).sub_id
  if (subject === undefined) throw new SetError('invalid_request', 'the event has no subject')
  const targets = targetsOf(subject, cfg)
  const source = `ssf:${event}` as const
  const before = Math.floor(claims.iat as number)
  const records: RevocationRecord[] = []
  // CAEP session-revoked about one session ends that session only; about a user, all of them.
  if (isSessionRevoked && targets.sessions.length > 0) {
    for (const { iss, id } of targets.sessions) {
      records.push(await sessionRevocation(iss, id, cfg.sessionRevocationS, nowMs, source))
    }
  } else {
    for (const { iss, id } of targets.users) {
      records.push(await subjectCutoff(iss, id, before, nowMs, source))
    }
  }
  if (records.length === 0) return ack(targets.why ?? 'no subject this transmitter may revoke')
  return { event, action: 'revoked', records }
}

interface Target {
  readonly iss: string
  readonly id: string
}

interface Targets {
  readonly users: Target[]
  readonly sessions: Target[]
  /** Why an identifier was not acted on, for the log. */
  why?: string
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SetError('invalid_request', `${what} is not a JSON object`)
  }
  return value as Record<string, unknown>
}

function member(o: Record<string, unknown>, name: string, format: string): string {
  const v = o[name]
  if (!shortText(v)) throw new SetError('invalid_request', `${format} subject has no short ${name}`)
  return v
}

/** The users and sessions a subject names, at the gateway issuers this transmitter may revoke. */
function targetsOf(raw: unknown, cfg: TransmitterConfig): Targets {
  const out: Targets = { users: [], sessions: [] }
  const subject = asObject(raw, 'the subject')
  if (subject.format === 'complex') {
    // SSF 1.0 §3.2: a complex subject's members are simple identifiers of one principal each.
    if (subject.user !== undefined) addUser(out, asObject(subject.user, 'user'), cfg)
    if (subject.session !== undefined) {
      const session = asObject(subject.session, 'session')
      if (session.format !== 'opaque') {
        out.why = `session format ${String(session.format)} not acted on`
      } else {
        const id = member(session, 'id', 'opaque')
        // A session is the user's issuer's session when the user says whose; else any of ours.
        const issuers =
          out.users.length > 0 ? [...new Set(out.users.map((u) => u.iss))] : cfg.issuers
        for (const iss of issuers) out.sessions.push({ iss, id })
      }
    }
    return out
  }
  addUser(out, subject, cfg)
  return out
}

function addUser(out: Targets, id: Record<string, unknown>, cfg: TransmitterConfig): void {
  switch (id.format) {
    case 'iss_sub': {
      const iss = member(id, 'iss', 'iss_sub')
      const sub = member(id, 'sub', 'iss_sub')
      // Another issuer's subject is not ours to revoke: its tokens never pass this gateway.
      if (cfg.issuers.includes(iss)) out.users.push({ iss, id: sub })
      else out.why = 'iss_sub names an issuer this transmitter may not revoke for'
      return
    }
    case 'opaque': {
      const sub = member(id, 'id', 'opaque')
      for (const iss of cfg.issuers) out.users.push({ iss, id: sub })
      return
    }
    case 'email': {
      const email = member(id, 'email', 'email')
      if (cfg.emailClaim !== 'sub') {
        out.why = 'email subjects are not mapped to a token claim (emailClaim)'
        return
      }
      for (const iss of cfg.issuers) out.users.push({ iss, id: email })
      return
    }
    case 'aliases': {
      const list = id.identifiers
      if (!Array.isArray(list) || list.length === 0 || list.length > MAX_ALIASES) {
        throw new SetError('invalid_request', 'aliases subject has no short identifiers list')
      }
      for (const alias of list) {
        const a = asObject(alias, 'an alias')
        if (a.format === 'aliases') throw new SetError('invalid_request', 'nested aliases')
        addUser(out, a, cfg)
      }
      return
    }
    default:
      if (typeof id.format !== 'string') {
        throw new SetError('invalid_request', 'a subject identifier has no format')
      }
      out.why = `subject format ${id.format} not acted on`
  }
}
