#!/usr/bin/env node
// Checks every relative link in the project's Markdown: README.md, docs/**/*.md, .github/*.md and
// test/bench/*.md. A link's file (or folder) must exist, and a `#anchor` must match a heading of
// the target Markdown file as GitHub slugs it. Links with a scheme (https:, mailto:, ...) are not
// checked. Dead links are printed as `file:line: target` and the exit code is 1.
//
//   node scripts/check-docs.mjs
//
// No dependencies: Node 20 or later.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** The Markdown files whose links are checked, as paths relative to the root. */
function sources() {
  const files = ['README.md']
  files.push(...markdownIn('docs', true), ...markdownIn('.github', false))
  files.push(...markdownIn(join('test', 'bench'), false))
  return files.filter((f) => existsSync(join(root, f)))
}

function markdownIn(dir, recursive) {
  const abs = join(root, dir)
  if (!existsSync(abs)) return []
  const out = []
  for (const entry of readdirSync(abs, { withFileTypes: true }).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  )) {
    const path = join(dir, entry.name)
    if (entry.isDirectory() && recursive) out.push(...markdownIn(path, true))
    else if (entry.isFile() && entry.name.endsWith('.md')) out.push(path)
  }
  return out
}

/**
 * The text with fenced code blocks and inline code spans replaced by spaces (newlines kept), so
 * offsets and line numbers stay those of the original and nothing inside code counts as a link.
 */
function blankCode(text) {
  const lines = text.split('\n')
  let fence = null
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    if (fence === null) {
      const open = /^ {0,3}(`{3,}|~{3,})/.exec(line)
      if (open && !(open[1][0] === '`' && line.slice(open[0].length).includes('`'))) {
        fence = open[1]
        lines[i] = ' '.repeat(line.length)
      }
    } else {
      const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line)
      if (close && close[1][0] === fence[0] && close[1].length >= fence.length) fence = null
      lines[i] = ' '.repeat(line.length)
    }
  }
  const chars = lines.join('\n').split('')
  const s = chars.join('')
  // Inline code: a run of n backticks up to the next run of exactly n, within one paragraph.
  const run = /`+/g
  let m
  while ((m = run.exec(s)) !== null) {
    if (m.index > 0 && s[m.index - 1] === '\\') continue
    const n = m[0].length
    const paragraphEnd = s.slice(m.index).search(/\n[ \t]*\n/)
    const limit = paragraphEnd === -1 ? s.length : m.index + paragraphEnd
    const closer = new RegExp(`(?<!\`)\`{${n}}(?!\`)`, 'g')
    closer.lastIndex = m.index + n
    const c = closer.exec(s)
    if (c === null || c.index >= limit) continue
    for (let k = m.index; k < c.index + n; k++) if (chars[k] !== '\n') chars[k] = ' '
    run.lastIndex = c.index + n
  }
  return chars.join('')
}

/** GitHub's heading slug: lowercase, punctuation dropped (not `-` or `_`), spaces to `-`. */
function slug(heading) {
  let text = heading
    .replace(/`+([^`]*?)`+/g, (_, code) => code.replace(/_/g, '\u0000')) // keep code's underscores
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // links and images: their text
    .replace(/<[^>]+>/g, '') // HTML tags
    .replace(/(^|[^\p{L}\p{N}])_+([^_]+?)_+(?=[^\p{L}\p{N}]|$)/gu, '$1$2') // _emphasis_
    .replace(/\u0000/g, '_')
  text = text.trim().toLowerCase()
  return text.replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-')
}

const anchorCache = new Map()

/** The anchors a Markdown file defines: heading slugs (duplicates numbered) and HTML ids. */
function anchorsOf(file) {
  if (anchorCache.has(file)) return anchorCache.get(file)
  const lines = blankCode(readFileSync(file, 'utf8')).split('\n')
  const raw = readFileSync(file, 'utf8').split('\n')
  const anchors = new Set()
  const seen = new Map()
  const add = (heading) => {
    const base = slug(heading)
    let s = base
    for (let n = seen.get(base) ?? 0; anchors.has(s); n++) {
      s = `${base}-${n + 1}`
      seen.set(base, n + 1)
    }
    anchors.add(s)
  }
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === '' && raw[i].trim() !== '') continue // inside a code block
    const atx = /^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/.exec(raw[i])
    if (atx) {
      add(atx[1] ?? '')
      continue
    }
    const prev = i > 0 ? raw[i - 1] : ''
    const isText =
      prev.trim() !== '' &&
      lines[i - 1]?.trim() !== '' &&
      !/^ {0,3}(#|>|[-*+] |\d+[.)] |\|)/.test(prev) &&
      !/^\s*\|/.test(prev)
    if (i > 0 && isText && /^ {0,3}(=+|-+)[ \t]*$/.test(raw[i])) add(prev)
    for (const m of raw[i].matchAll(/<[a-z][^>]*?\s(?:id|name)\s*=\s*["']([^"']+)["']/gi)) {
      anchors.add(m[1])
    }
  }
  anchorCache.set(file, anchors)
  return anchors
}

/** Every link target in a file: inline links and images, and reference definitions. */
function linksOf(text) {
  const blanked = blankCode(text)
  const found = []
  const lineAt = (index) => blanked.slice(0, index).split('\n').length
  const inline =
    /!?\[(?:[^[\]\\]|\\.|\[(?:[^[\]\\]|\\.)*\])*\]\(\s*(<[^>\n]*>|(?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)/g
  for (const m of blanked.matchAll(inline)) found.push({ target: m[1], line: lineAt(m.index) })
  const definition = /^ {0,3}\[(?!\^)[^\]\n]+\]:[ \t]*(<[^>\n]*>|\S+)/gm
  for (const m of blanked.matchAll(definition)) found.push({ target: m[1], line: lineAt(m.index) })
  return found.map(({ target, line }) => ({ target: target.replace(/^<|>$/g, ''), line }))
}

function check(file) {
  const abs = join(root, file)
  const dead = []
  const links = linksOf(readFileSync(abs, 'utf8'))
  for (const { target, line } of links) {
    if (target === '' || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue // external, or empty
    const hash = target.indexOf('#')
    const pathPart = (hash === -1 ? target : target.slice(0, hash)).replace(/\?.*$/, '')
    const anchor = hash === -1 ? null : target.slice(hash + 1)
    let path
    try {
      path = decodeURIComponent(pathPart)
    } catch {
      dead.push({ line, target })
      continue
    }
    const dest =
      path === '' ? abs : path.startsWith('/') ? join(root, path) : join(dirname(abs), path)
    if (!existsSync(dest) || (!dest.startsWith(root + sep) && dest !== root)) {
      dead.push({ line, target })
      continue
    }
    if (anchor === null || anchor === '') continue
    let wanted
    try {
      wanted = decodeURIComponent(anchor)
    } catch {
      dead.push({ line, target })
      continue
    }
    const isFile = statSync(dest).isFile()
    if (isFile && dest.endsWith('.md')) {
      if (!anchorsOf(dest).has(wanted)) dead.push({ line, target })
    } else if (!(isFile && /^L\d+(-L\d+)?$/.test(wanted))) {
      dead.push({ line, target }) // only line anchors make sense on other files
    }
  }
  return { count: links.length, dead }
}

const files = sources()
let total = 0
let deadCount = 0
for (const file of files) {
  const { count, dead } = check(file)
  total += count
  deadCount += dead.length
  const shown = relative(root, join(root, file)).split(sep).join('/')
  for (const d of dead) console.log(`${shown}:${d.line}: ${d.target}`)
}
if (deadCount > 0) {
  console.log(`check-docs: ${deadCount} dead of ${total} links in ${files.length} files`)
  process.exit(1)
}
console.log(`check-docs: ${total} links in ${files.length} files, all resolve`)
