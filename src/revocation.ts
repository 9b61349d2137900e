/**
 * The revocation list: KV-backed, with a bounded in-isolate cache in front of it.
 * I/O only through the KV namespace it is given; time comes from the caller.
 *
 * KV layout (stable; keys are hashes so no claim bytes become keys and issuers never collide):
 *   jti:<sha256hex(iss + "\n" + jti)>  one token, expires with the token
 *   sub:<sha256hex(iss + "\n" + sub)>  tokens of one subject with iat <= before
 *   all:<sha256hex(iss)>               every token of the issuer with iat <= before
 * Each value is the JSON record below; the record is also the key's metadata, so listing is one call.
 */
import type { RevocationConfig } from './config'
import { GatewayError } from './errors'
import { log } from './log'
import type { Identity } from './verify'

/** Most lookups one isolate remembers; the oldest go first. Bounds memory under unique tokens. */
export const REVOCATION_CACHE_MAX_ENTRIES = 10_000
/** KV refuses an expirationTtl under 60 s. */
export const KV_MIN_TTL_S = 60

export type RevocationKind = 'jti' | 'sub' | 'all'

export interface RevocationRecord {
  readonly id: string
  readonly kind: RevocationKind
  readonly iss: string
  readonly jti?: string
  readonly sub?: string
  /** kind jti: when the token expires and the record with it (absent: kept until deleted). */
  readonly exp?: number
  /** kinds sub and all: tokens with iat <= before are revoked. */
  readonly before?: number
  readonly createdAt: number
}

/** What KV says about one key: a cut-off time, "revoked" (jti) or nothing. */
type Lookup =
  | { readonly revoked: false }
  | { readonly revoked: true; readonly kind: RevocationKind; readonly before?: number }

const NOT_REVOKED: Lookup = { revoked: false }

async function sha256hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))
  let hex = ''
  for (const b of new Uint8Array(digest)) hex += b.toString(16).padStart(2, '0')
  return hex
}

export async function revocationId(kind: RevocationKind, iss: string, value?: string) {
  return `${kind}:${await sha256hex(kind === 'all' ? iss : `${iss}\n${value}`)}`
}

export class RevocationList {
  /** id -> lookup, in insertion order for eviction. Values only: no promise outlives its request. */
  private readonly cache = new Map<string, { lookup: Lookup; untilMs: number }>()

  constructor(
    private readonly kv: KVNamespace,
    readonly config: RevocationConfig,
  ) {}

  /**
   * Throws token_revoked, or revocation_unavailable when KV cannot answer and we fail closed.
   * When every lookup is cached this stays synchronous: no KV call, no timer, no await.
   */
  check(identity: Identity, nowMs: number): void | Promise<void> {
    const { issuer, sub, claims } = identity
    const jti = typeof claims.jti === 'string' ? claims.jti : undefined
    const wanted: [RevocationKind, string | undefined][] = [
      ['sub', sub],
      ['all', undefined],
    ]
    if (jti !== undefined) wanted.push(['jti', jti])
    const cached = wanted.map(([kind, value]) => this.cached(memoKey(kind, issuer, value), nowMs))
    if (cached.every((l) => l !== undefined)) return judge(cached as Lookup[], claims.iat)
    return this.checkSlow(wanted, cached, identity, nowMs)
  }

  private async checkSlow(
    wanted: [RevocationKind, string | undefined][],
    cached: (Lookup | undefined)[],
    identity: Identity,
    nowMs: number,
  ): Promise<void> {
    let found: Lookup[]
    try {
      found = await this.withTimeout(
        Promise.all(
          wanted.map(
            ([kind, value], i) => cached[i] ?? this.lookup(kind, identity.issuer, value, nowMs),
          ),
        ),
      )
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err)
      if (this.config.failOpen) {
        log({ level: 'error', event: 'revocation_check_failed', failOpen: true, detail })
        return
      }
      throw new GatewayError('revocation_unavailable', detail)
    }
    judge(found, identity.claims.iat)
  }

  private cached(memo: string, nowMs: number): Lookup | undefined {
    const hit = this.cache.get(memo)
    return hit && hit.untilMs > nowMs ? hit.lookup : undefined
  }

  async put(record: RevocationRecord, nowMs: number): Promise<void> {
    const options: KVNamespacePutOptions = { metadata: record }
    if (record.exp !== undefined) {
      options.expirationTtl = Math.max(KV_MIN_TTL_S, record.exp - Math.floor(nowMs / 1000))
    }
    await this.kv.put(record.id, JSON.stringify(record), options)
    // Takes effect at once on this isolate, whatever the cache held.
    this.remember(
      memoOf(record),
      { revoked: true, kind: record.kind, before: record.before },
      nowMs,
    )
  }

  async get(id: string): Promise<RevocationRecord | null> {
    return this.kv.get<RevocationRecord>(id, 'json')
  }

  async delete(record: RevocationRecord, nowMs: number): Promise<void> {
    await this.kv.delete(record.id)
    this.remember(memoOf(record), NOT_REVOKED, nowMs)
  }

  async list(limit: number, cursor?: string) {
    const page = await this.kv.list<RevocationRecord>({ limit, cursor })
    return {
      records: page.keys.flatMap((k) => (k.metadata ? [k.metadata] : [])),
      cursor: page.list_complete ? null : page.cursor,
    }
  }

  private async lookup(
    kind: RevocationKind,
    iss: string,
    value: string | undefined,
    nowMs: number,
  ): Promise<Lookup> {
    // Keyed by the claim text, not the KV id, so a cache hit costs no hashing.
    const memo = memoKey(kind, iss, value)
    const text = await this.kv.get(await revocationId(kind, iss, value))
    const lookup = text === null ? NOT_REVOKED : parseLookup(kind, text)
    this.remember(memo, lookup, nowMs)
    return lookup
  }

  private remember(memo: string, lookup: Lookup, nowMs: number): void {
    this.cache.delete(memo)
    if (this.config.cacheTtlS === 0) return
    if (this.cache.size >= REVOCATION_CACHE_MAX_ENTRIES) {
      this.cache.delete(this.cache.keys().next().value!)
    }
    this.cache.set(memo, { lookup, untilMs: nowMs + this.config.cacheTtlS * 1000 })
  }

  private withTimeout<T>(work: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`KV did not answer in ${this.config.timeoutMs} ms`)),
        this.config.timeoutMs,
      )
    })
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer))
  }
}

/** Revoked by jti outright; by a cut-off when iat is at or before it. */
function judge(found: readonly Lookup[], iatClaim: unknown): void {
  const iat = typeof iatClaim === 'number' ? iatClaim : undefined
  for (const lookup of found) {
    if (!lookup.revoked) continue
    // A jti record has no cut-off. Without iat nobody can show the token came after a cut-off.
    if (lookup.before === undefined || iat === undefined || iat <= lookup.before) {
      throw new GatewayError('token_revoked', lookup.kind)
    }
  }
}

function memoKey(kind: RevocationKind, iss: string, value: string | undefined): string {
  return `${kind}\n${iss}\n${value ?? ''}`
}

function memoOf(record: RevocationRecord): string {
  return memoKey(record.kind, record.iss, record.kind === 'jti' ? record.jti : record.sub)
}

/** A record written by hand with `wrangler kv key put` may be malformed: read it strictly. */
function parseLookup(kind: RevocationKind, text: string): Lookup {
  if (kind === 'jti') return { revoked: true, kind }
  let before: unknown
  try {
    before = (JSON.parse(text) as { before?: unknown }).before
  } catch {
    before = undefined
  }
  if (typeof before !== 'number') throw new Error(`revocation record ${kind} has no numeric before`)
  return { revoked: true, kind, before }
}
