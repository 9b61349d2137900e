/**
 * One small JSON document over HTTP, for the key stores and the introspection client: a timeout, no
 * redirects, a size cap, a 200 or an error. I/O only through the `fetch` it is given.
 * Errors are plain Errors whose messages name what went wrong, never a request's body.
 */

export interface FetchedJson {
  readonly body: unknown
  /** The body exactly as received, for callers that check or forward the JSON text itself. */
  readonly text: string
  readonly cacheControl: string | null
}

export async function fetchJson(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string },
  limits: { timeoutMs: number; maxBytes: number },
  fetcher: typeof fetch,
): Promise<FetchedJson> {
  const ac = new AbortController()
  const timer = setTimeout(() => ac.abort(), limits.timeoutMs)
  try {
    // A redirect could move the request (and any credential in it) to a host nobody configured.
    const res = await fetcher(url, {
      ...init,
      redirect: 'manual',
      signal: ac.signal,
      headers: { accept: 'application/json', ...init.headers },
    })
    if (res.status !== 200) {
      await res.body?.cancel()
      throw new Error(`HTTP ${res.status}`)
    }
    const declared = Number(res.headers.get('content-length') ?? '0')
    if (declared > limits.maxBytes) {
      await res.body?.cancel()
      throw new Error(`body over ${limits.maxBytes} bytes`)
    }
    const text = await readCapped(res, limits.maxBytes)
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      throw new Error('body is not JSON')
    }
    return { body, text, cacheControl: res.headers.get('cache-control') }
  } catch (err) {
    if (ac.signal.aborted) throw new Error(`timed out after ${limits.timeoutMs} ms`)
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/** A body as text, refused past `cap` bytes without reading further. Throws a plain Error. */
export async function readCapped(
  res: { readonly body: ReadableStream<Uint8Array> | null },
  cap: number,
): Promise<string> {
  if (!res.body) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > cap) {
      await reader.cancel()
      throw new Error(`body over ${cap} bytes`)
    }
    chunks.push(value)
  }
  const all = new Uint8Array(size)
  let at = 0
  for (const c of chunks) {
    all.set(c, at)
    at += c.byteLength
  }
  return new TextDecoder().decode(all)
}
