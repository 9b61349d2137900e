/**
 * The revocation records the logout and signal receivers write: a subject cut-off and a session.
 * Pure (hashing only). No I/O. Time comes from the caller.
 */
import { revocationId, type RevocationRecord, type RevocationSource } from './list'

/** Longest sub, sid or jti acted on, in UTF-8 bytes: a record must fit KV's 1024-byte metadata. */
export const MAX_SIGNAL_VALUE_BYTES = 256

export function shortText(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value !== '' &&
    value.isWellFormed() &&
    new TextEncoder().encode(value).length <= MAX_SIGNAL_VALUE_BYTES
  )
}

/** Every token of `sub` issued at or before `before` (unix seconds). */
export async function subjectCutoff(
  iss: string,
  sub: string,
  before: number,
  nowMs: number,
  source: RevocationSource,
): Promise<RevocationRecord> {
  const id = await revocationId('sub', iss, sub)
  return { id, kind: 'sub', iss, sub, before, createdAt: Math.floor(nowMs / 1000), source }
}

/** Every token carrying `sid`, for `keepS` seconds: past the life of any token of that session. */
export async function sessionRevocation(
  iss: string,
  sid: string,
  keepS: number,
  nowMs: number,
  source: RevocationSource,
): Promise<RevocationRecord> {
  const now = Math.floor(nowMs / 1000)
  const id = await revocationId('sid', iss, sid)
  return { id, kind: 'sid', iss, sid, exp: now + keepS, createdAt: now, source }
}
