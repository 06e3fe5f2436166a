// Every example in examples/ runs as it is, against an isolated daemon: it builds under nix-hold,
// prints "held PATH...", waits for a line on stdin (the test collects garbage meanwhile), releases.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { build } from 'esbuild'
import { beforeAll, describe, expect, it } from 'vitest'
import { FIXTURES, demoCommand, unique, useNix } from '../helpers/nix.js'
import { holdersFor, noHolderFor } from '../helpers/owner.js'
import { NIX_HOLD_SCRIPT, withShims } from '../helpers/shims.js'

const ROOT = new URL('../..', import.meta.url).pathname
const EXAMPLES = join(ROOT, 'examples')

const nix = useNix()
let env: NodeJS.ProcessEnv
beforeAll(() => {
  // nix-hold on PATH, as an installed package would put it
  env = withShims(nix.root, nix.env, { 'nix-hold': NIX_HOLD_SCRIPT })
})
const demo = (tool: 'nix' | 'nix-build') => {
  const n = unique('example')
  // Nix 2.3's nix build has no --json: demoCommand gives its nix-build there
  return tool === 'nix' ? demoCommand(n) : ['nix-build', join(FIXTURES, 'demo.nix'), '--argstr', 'n', n]
}

/**
 * The example's stdout, line by line. A line that does not come within 40 s fails the test with
 * what the example said so far (on stdout and stderr), rather than the test's bare timeout.
 */
function lines(child: ChildProcess): () => Promise<string> {
  const it = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  let stderr = ''
  let last = '(none)'
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s))
  return async () => {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no line from the example within 40 s; its last line: ${last}; its stderr:\n${stderr}`)), 40_000)
    })
    try {
      const { value, done } = await Promise.race([it.next(), late])
      if (done) throw new Error(`the example ended early; stderr:\n${stderr}`)
      return (last = value as string)
    } finally {
      clearTimeout(timer)
    }
  }
}

// Starts an example and waits for its "held PATH..." line; checks that a collection spares them.
async function startHeld(file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const child = spawn(file, args, { cwd: options.cwd ?? ROOT, env: options.env ?? env, stdio: ['pipe', 'pipe', 'pipe'] })
  const next = lines(child)
  const held = await next()
  expect(held).toMatch(/^held \//)
  const paths = held.slice('held '.length).split(' ')
  await nix.gc()
  for (const p of paths) expect(await nix.isValid(p)).toBe(true)
  return { child, next, paths }
}

async function holdsThenReleases(file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<void> {
  const { child, next, paths } = await startHeld(file, args, options)
  child.stdin!.write('\n')
  expect(await next()).toBe('released')
  const [code] = await once(child, 'exit')
  expect(code).toBe(0)
  await nix.gc()
  for (const p of paths) expect(await nix.isValid(p)).toBe(false)
}

// The Go example, compiled once for the file
let goBinary: string | undefined
function goExample(): string {
  if (goBinary) return goBinary
  const out = join(nix.root, 'nixhold-example')
  // a build cache that outlives the instance, so only the first run compiles the standard library
  const goEnv = { ...env, GOCACHE: join(tmpdir(), 'nix-hold-go-cache'), GOFLAGS: '-mod=mod', GOPATH: join(nix.root, 'go') }
  execFileSync('go', ['build', '-o', out, '.'], { cwd: join(EXAMPLES, 'go'), env: goEnv, stdio: 'inherit' })
  return (goBinary = out)
}

// The Node example, compiled as a user would (Node 20 cannot parse `await using`) once for the
// file, beside it so that 'nix-hold' resolves to this package
let nodeBinary: string | undefined
async function nodeExample(): Promise<string> {
  const outfile = join(EXAMPLES, 'node', 'hold.mjs')
  if (!nodeBinary) await build({ entryPoints: [join(EXAMPLES, 'node', 'hold.ts')], outfile, format: 'esm', platform: 'node', target: 'node20', logLevel: 'error' })
  return (nodeBinary = outfile)
}

// An example in its --for form: held while it runs (it waits for a line on stdin), and gone, with
// its holder, once it has exited
async function holdsForItsLife(file: string, args: string[]): Promise<void> {
  const { child, paths } = await startHeld(file, args)
  expect(holdersFor(child.pid!)).toHaveLength(1)
  child.stdin!.end('\n')
  expect((await once(child, 'exit'))[0]).toBe(0)
  expect(await noHolderFor(child.pid!)).toBe(true)
  await nix.gc()
  for (const p of paths) expect(await nix.isValid(p)).toBe(false)
}

describe('examples', () => {
  it('python: nix_hold() context manager over a socketpair', async () => {
    await holdsThenReleases('python3', [join(EXAMPLES, 'python', 'example.py'), ...demo('nix')])
  })

  it('python: keep and expect on the hold, and a nix-hold that dies reported with how it ended', async () => {
    const existing = await nix.buildDemo(unique('py-keep'))
    // a path that does not exist yet: demo.nix's output for a name not built so far
    const n = unique('py-expect')
    const nixOut = (tool: string, args: string[]) => execFileSync(tool, args, { env: nix.env, encoding: 'utf8' }).trim()
    const later = nixOut('nix-store', ['--query', '--outputs', nixOut('nix-instantiate', [join(FIXTURES, 'demo.nix'), '--argstr', 'n', n])])
    const program = `
import json, sys
sys.path.insert(0, ${JSON.stringify(join(EXAMPLES, 'python'))})
from nix_hold import nix_hold, NixHoldError
command, existing, later = json.loads(sys.argv[1])
with nix_hold(command) as paths:
    print("held", *paths, flush=True)
    print("kept", *paths.keep([existing]), flush=True)
    print("expected", *paths.expect([later]), flush=True)
    sys.stdin.readline()  # the test builds the expected path meanwhile
    print("kept", *paths.keep([later]), flush=True)
    print("holding", *paths, flush=True)
    sys.stdin.readline()
print("released", flush=True)
sys.stdin.readline()  # the test collects meanwhile: what follows builds again, not under its collection
try:
    with nix_hold(command) as paths:
        paths._proc.kill()  # stands in for nix-hold dying (nix_hold keeps the process to itself)
        paths.keep([existing])
except NixHoldError as e:
    print("error", e.kind, e.exit_code, e, flush=True)
try:
    with nix_hold(command, nix_hold_command=("sh", "-c", "exit 7", "nix-hold")):
        pass
except NixHoldError as e:  # a stand-in that exits at once, saying nothing
    print("error", e.kind, e.exit_code, e, flush=True)
`
    const child = spawn('python3', ['-c', program, JSON.stringify([demo('nix'), existing, later])], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] })
    const next = lines(child)
    const built = (await next()).split(' ').slice(1)
    expect(built).toHaveLength(1)
    expect(await next()).toBe(`kept ${existing}`)
    expect(await next()).toBe(`expected ${later}`)
    await nix.gc()
    for (const p of [...built, existing]) expect(await nix.isValid(p)).toBe(true)
    expect(await nix.buildDemo(n)).toBe(later) // lands rooted, as a nix copy would
    await nix.gc()
    expect(await nix.isValid(later)).toBe(true)

    child.stdin!.write('\n')
    expect(await next()).toBe(`kept ${later}`)
    expect(await next()).toBe(`holding ${[...built, existing, later].join(' ')}`)
    child.stdin!.write('\n')
    expect(await next()).toBe('released')
    await nix.gc()
    for (const p of [...built, existing, later]) expect(await nix.isValid(p)).toBe(false)
    child.stdin!.end('\n')

    expect(await next()).toBe('error store 137 store: nix-hold was killed by SIGKILL; nothing is held')
    expect(await next()).toBe('error store 7 store: nix-hold exited with status 7 without a word; nothing is held')
    expect((await once(child, 'exit'))[0]).toBe(0)
  })

  it('python: an exception in the with block leaves it within a second, nix-hold gone and nothing held', async () => {
    const program = `
import json, sys
sys.path.insert(0, ${JSON.stringify(join(EXAMPLES, 'python'))})
from nix_hold import nix_hold
hold = None
try:
    with nix_hold(json.loads(sys.argv[1])) as hold:
        print("held", *hold, flush=True)
        sys.stdin.readline()
        raise RuntimeError("nix copy failed")
except RuntimeError as e:
    print("raised", e, "nix-hold exited", hold._proc.returncode, flush=True)
`
    const child = spawn('python3', ['-c', program, JSON.stringify(demo('nix'))], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] })
    const next = lines(child)
    const held = (await next()).split(' ').slice(1)
    await nix.gc()
    expect(await nix.isValid(held[0]!)).toBe(true)
    const raisedAt = Date.now()
    child.stdin!.end('\n')
    // the exception comes out of the block as itself, once nix-hold has seen the EOF, let go and exited
    expect(await next()).toBe('raised nix copy failed nix-hold exited 0')
    expect(Date.now() - raisedAt).toBeLessThan(1000)
    expect((await once(child, 'exit'))[0]).toBe(0)
    await nix.gc()
    expect(await nix.isValid(held[0]!)).toBe(false)
  })

  it('go: nixhold.Build with ExtraFiles and a socketpair', async () => {
    await holdsThenReleases(goExample(), demo('nix-build'))
  }, 180_000)

  it('go: nixhold.BuildFor holds for as long as the program runs', async () => {
    await holdsForItsLife(goExample(), ['-for', ...demo('nix-build')])
  }, 180_000)

  it('python: hold_for_this_process() holds for as long as the program runs', async () => {
    await holdsForItsLife('python3', [join(EXAMPLES, 'python', 'example.py'), '--for', ...demo('nix')])
  })

  it('bash: coproc with --stdio', async () => {
    await holdsThenReleases('bash', [join(EXAMPLES, 'bash', 'coproc.sh'), ...demo('nix')])
  })

  it('bash: exec {fd} redirections with --stdio', async () => {
    await holdsThenReleases('bash', [join(EXAMPLES, 'bash', 'fds.sh'), ...demo('nix-build')])
  })

  it('node: the library with await using', async () => {
    await holdsThenReleases(process.execPath, [await nodeExample(), ...demo('nix')])
  })

  it('node: leaves the block, and so releases, when stdin ends without a line', async () => {
    const { child, next, paths } = await startHeld(process.execPath, [await nodeExample(), ...demo('nix')])
    child.stdin!.end()
    expect(await next()).toBe('released')
    expect((await once(child, 'exit'))[0]).toBe(0)
    await nix.gc()
    for (const p of paths) expect(await nix.isValid(p)).toBe(false)
  })
})

describe('deploy', () => {
  const system = join(EXAMPLES, 'deploy', 'system.nix')

  it('activates, sets the profile, then releases: the system stays rooted by the profile alone', async () => {
    const profile = join(nix.root, unique('profile'), 'system')
    mkdirSync(join(profile, '..'))
    const child = spawn('bash', [join(EXAMPLES, 'deploy', 'deploy.sh'), profile, system, '--argstr', 'name', unique('deploy')], { env, stdio: ['pipe', 'pipe', 'pipe'] })
    const next = lines(child)
    const path = (await next()).replace(/^held /, '')
    child.stdin!.write('\n')
    expect(await next()).toBe(`activating ${path}`)
    expect(await next()).toBe(`profile ${profile} -> ${path}`)
    expect(await next()).toBe('released')
    expect((await once(child, 'exit'))[0]).toBe(0)
    await nix.gc()
    expect(await nix.isValid(path)).toBe(true)
    expect(readlinkSync(profile)).toMatch(/system-1-link$/)
  })

  it('leaves nothing behind when killed while holding: no temp file, and the system is collectable', async () => {
    const scratch = mkdtempSync(join(nix.root, 'tmpdir-'))
    const child = spawn('bash', [join(EXAMPLES, 'deploy', 'deploy.sh'), join(nix.root, 'never', 'system'), system, '--argstr', 'name', unique('killed')], {
      env: { ...env, TMPDIR: scratch },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const path = (await lines(child)()).replace(/^held /, '')
    child.kill('SIGKILL')
    await once(child, 'exit')
    // nix-hold notices its caller's EOF and drops the roots; wait for that, bounded
    const deadline = Date.now() + 5000
    do await nix.gc()
    while ((await nix.isValid(path)) && Date.now() < deadline)
    expect(await nix.isValid(path)).toBe(false)
    expect(readdirSync(scratch)).toEqual([])
  })
})
