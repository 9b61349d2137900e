// Fails on any import cycle among the worker's modules (src/, type-only imports included: a type
// cycle is still a layering mistake), and on an import a folder's header forbids (FORBIDDEN below
// restates those headers). Dependency-free so it runs on any Node >= 20.
import fs from 'node:fs'
import path from 'node:path'

const root = path.resolve(import.meta.dirname, '..', 'src')
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'(\.{1,2}\/[^']+)'|import\s*\(\s*'(\.{1,2}\/[^']+)'\s*\)/g

function files(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return files(p)
    return /\.ts$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : []
  })
}

function resolve(from, spec) {
  const base = path.resolve(path.dirname(from), spec)
  for (const c of [base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (fs.existsSync(c) && fs.statSync(c).isFile()) return c
  }
  return null
}

// folder (or root file) -> the folders and root files it must not import.
const FORBIDDEN = {
  config: [
    'auth',
    'revocation',
    'proxy',
    'admin',
    'observability',
    'lib',
    'errors.ts',
    'gateway.ts',
  ],
  lib: [
    'config',
    'auth',
    'revocation',
    'proxy',
    'admin',
    'observability',
    'errors.ts',
    'gateway.ts',
  ],
  'errors.ts': ['config', 'auth', 'revocation', 'proxy', 'admin', 'observability', 'gateway.ts'],
  observability: ['revocation', 'proxy', 'admin', 'gateway.ts'],
  auth: ['proxy', 'admin'],
  revocation: ['proxy', 'admin', 'gateway.ts'],
  proxy: ['revocation', 'admin', 'observability', 'gateway.ts'],
  admin: ['gateway.ts'],
  'gateway.ts': ['admin'],
}
const unitOf = (file) => path.relative(root, file).split(path.sep)[0]

const graph = new Map()
for (const f of files(root)) {
  const deps = []
  for (const m of fs.readFileSync(f, 'utf8').matchAll(IMPORT)) {
    const target = resolve(f, m[1] ?? m[2])
    if (target) deps.push(target)
  }
  graph.set(f, deps)
}

const cycles = []
const state = new Map() // 1 = on the stack, 2 = done
const stack = []
function visit(node) {
  state.set(node, 1)
  stack.push(node)
  for (const dep of graph.get(node) ?? []) {
    if (state.get(dep) === 1) cycles.push([...stack.slice(stack.indexOf(dep)), dep])
    else if (!state.has(dep)) visit(dep)
  }
  stack.pop()
  state.set(node, 2)
}
for (const node of graph.keys()) if (!state.has(node)) visit(node)

const rel = (p) => path.relative(path.dirname(root), p)
const forbidden = []
for (const [file, deps] of graph) {
  for (const dep of deps) {
    if (unitOf(dep) === 'index.ts') forbidden.push(`${rel(file)} imports src/index.ts`)
    if (FORBIDDEN[unitOf(file)]?.includes(unitOf(dep)))
      forbidden.push(`${rel(file)} -> ${rel(dep)}`)
  }
}
for (const c of cycles) console.error(`import cycle: ${c.map(rel).join(' -> ')}`)
for (const f of forbidden) console.error(`forbidden import: ${f}`)
if (cycles.length > 0 || forbidden.length > 0) process.exit(1)
console.log(`check-imports: ${graph.size} modules in src/, no cycles, no forbidden imports`)
