/**
 * Read the start of a request body without changing what the origin receives.
 * I/O on the request's stream only. The bytes held are bounded: MAX_PEEKED_BODY_BYTES plus at most
 * the one chunk that crossed it.
 */
import { GatewayError } from '../errors'

/** Longest body read to learn its JSON-RPC method and tool; MCP requests are a few hundred bytes. */
export const MAX_PEEKED_BODY_BYTES = 64 * 1024

export interface Peeked {
  /** The whole body when it is no longer than the bound; null when it is (or says it is) longer. */
  readonly bytes: Uint8Array | null
  /** The body for the origin: exactly the bytes the client sent, in order. */
  readonly body: ReadableStream<Uint8Array> | Uint8Array | null
}

function joined(chunks: readonly Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.byteLength
  }
  return out
}

/** The chunks already read, then the rest of the stream as it arrives (and its failure, if any). */
function replay(
  chunks: Uint8Array[],
  reader: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = chunks.shift()
      if (next !== undefined) return controller.enqueue(next)
      const chunk = await reader.read()
      if (chunk.done) controller.close()
      else controller.enqueue(chunk.value)
    },
    cancel: (reason) => reader.cancel(reason),
  })
}

export async function peekBody(request: Request, max = MAX_PEEKED_BODY_BYTES): Promise<Peeked> {
  const body = request.body
  if (body === null) return { bytes: new Uint8Array(0), body: null }
  // A declared length over the bound: not one byte is read, the stream goes on untouched.
  if (Number(request.headers.get('content-length') ?? 0) > max) return { bytes: null, body }
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  while (size <= max) {
    let chunk: ReadableStreamReadResult<Uint8Array>
    try {
      chunk = await reader.read()
    } catch {
      throw new GatewayError('body_unreadable', 'request body failed while being read')
    }
    if (chunk.done) {
      const bytes = joined(chunks, size)
      return { bytes, body: bytes }
    }
    chunks.push(chunk.value)
    size += chunk.value.byteLength
  }
  return { bytes: null, body: replay(chunks, reader) }
}
