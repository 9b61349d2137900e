/**
 * Folder observability/: the request log line and metrics. Must not import revocation/, proxy/,
 * admin/ or gateway.ts (everyone logs; the log depends on nobody's behaviour).
 *
 * Structured logging: one JSON object per line on the console, which Workers Logs and
 * `wrangler tail` index. Never token text, never claims other than `sub`.
 */
import type { GatewayError } from '../errors'
import type { Identity } from '../auth/identity'

export type LogFields = Record<string, string | number | boolean | null | undefined>

export function log(fields: LogFields): void {
  console.log(asciiJson({ level: 'info', ...fields }))
}

/** The request line: its fields already start with `level`, so no copy is made per request. */
function writeLine(fields: LogFields): void {
  console.log(asciiJson(fields))
}

/** Every character JSON.stringify leaves raw that is not printable ASCII. */
const NON_ASCII = /[\u007f-\uffff]/
const NON_ASCII_ALL = new RegExp(NON_ASCII.source, 'g')

/**
 * JSON with every non-ASCII character as a \u escape: U+2028, U+2029 and U+0085 are line breaks
 * to some log readers, which would split one request's line in two (a forged second line).
 * Lone surrogates are escaped the same way. Still valid JSON for the same value.
 */
export function asciiJson(value: unknown): string {
  const json = JSON.stringify(value)
  return NON_ASCII.test(json) ? json.replace(NON_ASCII_ALL, escapeChar) : json
}

function escapeChar(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`
}

/** A well-formed client request id is kept so traces join up; anything else is replaced. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export interface RequestLog {
  readonly requestId: string
  /** Milliseconds spent authenticating, once known. */
  authMs(): number | undefined
  auth(identity: Identity, ms: number, cached: boolean): void
  fail(err: GatewayError): void
  /** How the token was bound to the sender: dpop, mtls or none. */
  binding(kind: string): void
  /** The request was for the gateway's own endpoints, not the origin. */
  admin(): void
  route(name: string): void
  /** The gateway answered with this route's protected-resource metadata (RFC 9728). */
  metadata(route: string): void
  /** Milliseconds until the origin's response headers arrived. */
  origin(ms: number): void
  end(status: number): void
}

/** The subset of a Workers Analytics Engine binding this uses. */
export interface MetricsSink {
  writeDataPoint(point: { blobs?: string[]; doubles?: number[]; indexes?: string[] }): void
}

const ms = (v: number) => Math.round(v * 1000) / 1000

/**
 * Collects one request's facts and writes them as a single line when the request ends, and as
 * one Analytics Engine data point when a metrics binding is given. Note: on Workers the clock
 * advances only across I/O, so CPU-only work (a cached token) measures as 0 ms.
 */
export function requestLog(
  request: Request,
  metrics?: MetricsSink,
  forwardedLines = true,
): RequestLog {
  const started = performance.now()
  const given = request.headers.get('x-request-id')
  const fields: LogFields = {
    level: 'info',
    event: 'request',
    requestId: given !== null && REQUEST_ID.test(given) ? given : crypto.randomUUID(),
    method: request.method,
  }
  return {
    requestId: fields.requestId as string,
    authMs: () => fields.authMs as number | undefined,
    auth(identity, elapsed, cached) {
      fields.cached = cached
      fields.iss = identity.issuer
      fields.sub = identity.sub
      fields.kid = identity.kid
      fields.authMs = ms(elapsed)
    },
    binding(kind) {
      fields.binding = kind
    },
    fail(err) {
      fields.reason = err.code
      fields.detail = err.detail
    },
    admin() {
      fields.route = 'admin'
    },
    route(name) {
      fields.route = name
    },
    metadata(route) {
      fields.route = route
      fields.metadata = true
    },
    origin(elapsed) {
      fields.originMs = ms(elapsed)
    },
    end(status) {
      fields.status = status
      fields.outcome =
        fields.reason !== undefined
          ? 'refused'
          : fields.route === 'admin'
            ? 'admin'
            : fields.metadata
              ? 'metadata'
              : 'forwarded'
      fields.totalMs = ms(performance.now() - started)
      if (status >= 500) fields.level = 'error'
      // LOG_REQUESTS=refused: only the requests the origin served go unlogged (metrics keep them).
      if (forwardedLines || fields.outcome !== 'forwarded') writeLine(fields)
      // Blobs carry no token and no claim but the issuer: the same rule as the log line.
      metrics?.writeDataPoint({
        indexes: [String(fields.route ?? 'none')],
        blobs: [String(fields.outcome), String(fields.reason ?? ''), String(fields.iss ?? '')],
        doubles: [
          status,
          Number(fields.authMs ?? 0),
          Number(fields.originMs ?? 0),
          Number(fields.totalMs),
        ],
      })
    },
  }
}
