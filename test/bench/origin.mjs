/**
 * The bench's origin and JWKS stub: one raw-socket HTTP/1.1 server on loopback that answers from
 * canned bytes, so it costs far less per request than any worker in front of it.
 * Node only; its own process (run.mjs starts it), so it never shares an event loop with the load
 * generator. Prints `{"port":N}` on stdout once listening.
 *
 *   GET /jwks     the JWKS given as argv[2] (a JSON file), Cache-Control: max-age=600
 *   POST /introspect  the RFC 7662 answer given as argv[3] (a JSON file), for the opaque scenario
 *   GET /_stats   request counts since the last /_stats: {"origin":N,"jwks":N,"introspect":N}; not counted
 *   anything else a tiny 200 text/plain body ("ok"), counted as an origin call
 *
 * Only what the bench sends is parsed: a request line, headers, and a Content-Length body (the
 * workers forward GETs; a chunked body gets a 501 and the connection closes).
 */
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

const jwksBody = Buffer.from(readFileSync(process.argv[2] ?? '', 'utf8'))
const introspectBody = Buffer.from(
  process.argv[3] ? readFileSync(process.argv[3], 'utf8') : '{"active":false}',
)

/** @param {number} status @param {string} type @param {Buffer} body @param {string} [extra] */
function response(status, type, body, extra = '') {
  const head =
    `HTTP/1.1 ${status} ${status === 200 ? 'OK' : 'Error'}\r\n` +
    `content-type: ${type}\r\ncontent-length: ${body.length}\r\n${extra}` +
    `connection: keep-alive\r\n\r\n`
  return Buffer.concat([Buffer.from(head, 'latin1'), body])
}

const OK = response(200, 'text/plain', Buffer.from('ok'))
const JWKS = response(200, 'application/json', jwksBody, 'cache-control: public, max-age=600\r\n')
const INTROSPECT = response(200, 'application/json', introspectBody)
const NOT_IMPLEMENTED = response(501, 'text/plain', Buffer.from('chunked bodies not supported'))

const counts = { origin: 0, jwks: 0, introspect: 0 }

/** @param {import('node:net').Socket} socket */
function serve(socket) {
  socket.setNoDelay(true)
  /** @type {Buffer} */
  let pending = Buffer.alloc(0)
  /** Body bytes of the current request still to be skipped. */
  let skip = 0
  socket.on('data', (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    /** @type {Buffer[]} */
    const out = []
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, pending.length)
        skip -= n
        pending = pending.subarray(n)
        if (skip > 0) break
      }
      const end = pending.indexOf('\r\n\r\n')
      if (end === -1) break
      const head = pending.subarray(0, end).toString('latin1')
      pending = pending.subarray(end + 4)
      const lower = head.toLowerCase()
      if (lower.includes('\r\ntransfer-encoding:')) {
        out.push(NOT_IMPLEMENTED)
        socket.end(Buffer.concat(out))
        return
      }
      const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower)
      skip = cl ? Number(cl[1]) : 0
      const path = head.slice(head.indexOf(' ') + 1, head.indexOf(' ', head.indexOf(' ') + 1))
      if (path === '/jwks') {
        counts.jwks++
        out.push(JWKS)
      } else if (path === '/introspect') {
        counts.introspect++
        out.push(INTROSPECT)
      } else if (path === '/_stats') {
        out.push(response(200, 'application/json', Buffer.from(JSON.stringify(counts))))
        counts.origin = 0
        counts.jwks = 0
        counts.introspect = 0
      } else {
        counts.origin++
        out.push(OK)
      }
    }
    if (out.length > 0) socket.write(out.length === 1 ? out[0] : Buffer.concat(out))
  })
  socket.on('error', () => socket.destroy())
}

const server = createServer({ noDelay: true }, serve)
server.listen(0, '127.0.0.1', () => {
  const a = server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof a === 'object' && a ? a.port : 0 })}\n`)
})
// The parent owns this process: when it goes, so do we.
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
