// --for against the machine's other users, and against what its own owner may be: a second local
// user who tries to reach, flood or borrow the holder; an owner of another user; an owner whose
// first thread has exited; an owner whose standard error is open only for reading; the
// environment the holder keeps; thousands of paths into a pipe.

import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { execa } from 'execa'
import { expect, it } from 'vitest'
import { unique, useNix } from '../helpers/nix.js'
import { useOtherUser } from '../helpers/other-user.js'
import { holdersFor, noHolderFor, startOwner } from '../helpers/owner.js'
import { eventually } from '../helpers/proc.js'
import { CLI } from '../helpers/wrapper.js'
import { WATCH_MS } from '../../src/owner/holder.js'

const nix = useNix()
const other = useOtherUser()

const bash = (script: string, args: readonly string[] = [], env = nix.env) => startOwner('bash', ['-c', `set -e\n${script}`, 'owner', ...args], env)

// What another user runs: finds every socket of nix-hold's in /proc/net/unix (which shows every
// user's sockets, abstract ones as @name, a socket by the name it was bound to) and those it is
// told of, and either tries each once ("probe", printing what each
// connect gave) or keeps a thousand connections to each open until its stdin closes ("flood").
const ATTACKER = `
const fs = require('fs'), net = require('net')
const found = fs.readFileSync('/proc/net/unix', 'utf8').split('\\n').slice(1)
  .map((l) => l.trim().split(/\\s+/)[7]).filter((p) => p && p.includes('nix-hold'))
  .concat(process.argv.slice(2)) // and any it was told of
// an abstract name is listed with an @ for each NUL byte in it, the first one included
const address = (p) => (p.startsWith('@') ? p.replace(/@/g, '\\0') : p)
const tryOnce = (p) => new Promise((done) => {
  const s = net.connect({ path: address(p) })
  s.once('connect', () => (s.destroy(), done('connected')))
  s.once('error', (e) => done(e.code))
})
if (process.argv[1] === 'probe') {
  Promise.all(found.map(tryOnce)).then((results) => console.log(JSON.stringify(found.map((path, i) => ({ path, result: results[i] })))))
} else {
  // connections left open, a thousand at a time, each made again as soon as it ends: the
  // listen backlog stays full unless the kernel refuses them outright
  let stop = false, attempts = 0
  const again = (p) => {
    attempts++
    const s = net.connect({ path: address(p) })
    s.on('error', () => undefined)
    s.once('close', () => stop || setImmediate(again, p))
  }
  for (const p of found) for (let i = 0; i < 1000; i++) again(p)
  console.log(JSON.stringify(found))
  process.stdin.on('end', () => { stop = true; console.log(attempts); process.exit(0) })
  process.stdin.resume()
}
`

async function attacker(mode: 'probe' | 'flood', paths: readonly string[] = []) {
  const child = other.spawn(process.execPath, ['-e', ATTACKER, mode, ...paths])
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s))
  const next = async (): Promise<unknown> => {
    const l = await lines.next()
    if (l.done) throw new Error(`the other user's program ended early: ${stderr}`)
    return JSON.parse(l.value)
  }
  return { child, next }
}

it("refuses to hold for another user's process, even as root, and starts no holder (exit 2)", async () => {
  const path = await nix.buildDemo(unique('users-foreign'))
  const theirs = other.spawn('sleep', ['600'])
  try {
    await once(theirs, 'spawn')
    const r = spawnSync(process.execPath, [CLI, '--for', String(theirs.pid), '--keep', path], { env: nix.env, encoding: 'utf8' })
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(`process ${theirs.pid} belongs to uid ${other.uid}`)
    expect(r.stdout).toBe('')
    expect(holdersFor(theirs.pid!)).toEqual([])
  } finally {
    theirs.kill('SIGKILL')
  }
})

it('refuses a process that runs with another user\'s rights, and says so', async () => {
  // as a setuid program would: the real uid is the caller's, the effective one is not
  const program = `import os, sys\nos.setresuid(0, ${other.uid}, 0)\nprint("ready", flush=True)\nsys.stdin.readline()`
  const child = spawn('python3', ['-c', program], { stdio: ['pipe', 'pipe', 'inherit'] })
  try {
    const [line] = await once(createInterface({ input: child.stdout! }), 'line')
    expect(line).toBe('ready')
    const r = spawnSync(process.execPath, [CLI, '--for', String(child.pid), '--keep', nix.storeDir], { env: nix.env, encoding: 'utf8' })
    expect(r.status).toBe(2)
    expect(r.stderr).toContain(`runs a program with another user's rights (effective uid ${other.uid}`)
  } finally {
    child.kill('SIGKILL')
  }
})

it("gives another user nothing to connect to, holder or proxy, with the owner's address layout fixed (ASLR off)", async () => {
  const path = await nix.buildDemo(unique('users-aslr'))
  // setarch -R: the owner's auxv (what the holder's name once came from) is the same every run
  // a proxy as well: its socket is the holder's too
  const owner = startOwner('setarch', [process.arch === 'x64' ? 'x86_64' : process.arch, '-R', 'bash', '-c', '"$NODE" "$CLI" --for $$ --keep "$1"\n"$NODE" "$CLI" --for $$ --proxy\nread -r _ || true', 'owner', path], nix.env)
  expect(await owner.line()).toBe(path)
  const proxy = (await owner.line()).slice('unix://'.length)
  expect(holdersFor(owner.pid)).toHaveLength(1)
  // told where the proxy is, as if it could guess
  const probe = await attacker('probe', [proxy])
  const results = (await probe.next()) as Array<{ path: string; result: string }>
  // the holder's and the proxy's sockets are in the list (the listing shows them), and refuse this user
  expect(results.filter((r) => r.path.startsWith(dirname(proxy))).length).toBeGreaterThanOrEqual(3)
  expect(results.map((r) => r.result)).toEqual(results.map(() => 'EACCES'))
  await nix.gc()
  expect(await nix.isValid(path)).toBe(true)
})

it("joins the holder every time while another user floods every socket of nix-hold's", async () => {
  const paths = await nix.addFiles(unique('users-flood'), 10)
  const owner = bash('"$NODE" "$CLI" --for $$ --keep "$1"\nread -r _\nfor p in "${@:2}"; do "$NODE" "$CLI" --for $$ --keep "$p"; done\necho done\nread -r _ || true', paths)
  expect(await owner.line()).toBe(paths[0])
  const flood = await attacker('flood')
  expect(((await flood.next()) as string[]).length).toBeGreaterThan(0)
  owner.child.stdin!.write('\n')
  const printed: string[] = []
  for (let line = await owner.line(); line !== 'done'; line = await owner.line()) printed.push(line)
  flood.child.stdin!.end()
  expect(await flood.next()).toBeGreaterThan(0) // it did try
  expect(printed).toEqual(paths.slice(1))
  expect(holdersFor(owner.pid)).toHaveLength(1)
  await nix.gc()
  expect(await Promise.all(paths.map((p) => nix.isValid(p)))).toEqual(paths.map(() => true))
})

it('starts the holder with an empty environment: nothing of the hold\'s is kept, and a store path in it is not rooted', async () => {
  const [held, inEnv] = await nix.addFiles(unique('users-env'), 2)
  // in nix-hold's environment only: the script's own would root it for as long as the script runs
  const owner = bash('DEPLOY_TOKEN=hunter2 EXTRA_PATH="$2" NIX_PATH="nixpkgs=$2" "$NODE" "$CLI" --for $$ --keep "$1"\nread -r _ || true', [held!, inEnv!])
  expect(await owner.line()).toBe(held)
  const [holder] = holdersFor(owner.pid)
  expect(readFileSync(`/proc/${holder}/environ`, 'utf8')).toBe('')
  // nix-hold itself has exited; the holder runs on, and a collection looks at its environment
  await nix.gc()
  expect(await nix.isValid(held!)).toBe(true)
  expect(await nix.isValid(inEnv!)).toBe(false)
})

it('holds for an owner whose first thread has exited while its others run, until the last one ends', async () => {
  const path = await nix.buildDemo(unique('users-thread'))
  const program = [
    'import ctypes, os, subprocess, sys, threading',
    'out = subprocess.run([os.environ["NODE"], os.environ["CLI"], "--for", str(os.getpid()), "--keep", sys.argv[1]], capture_output=True, text=True, check=True).stdout',
    'def rest():',
    '    sys.stdin.readline()',
    '    os._exit(0)',
    'threading.Thread(target=rest).start()',
    'print(out.strip(), flush=True)',
    'ctypes.CDLL(None).pthread_exit(None)',
  ].join('\n')
  const owner = startOwner('python3', ['-c', program, path], nix.env)
  expect(await owner.line()).toBe(path)
  const zombieLeader = () => /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${owner.pid}/stat`, 'utf8'))
  expect(await eventually(zombieLeader, 5000)).toBe(true)
  // the holder looks every WATCH_MS: over several looks it must not take the owner for gone
  expect(await eventually(() => holdersFor(owner.pid).length === 0, 6 * WATCH_MS)).toBe(false)
  await nix.gc()
  expect(await nix.isValid(path)).toBe(true)
  owner.finish()
  expect(await noHolderFor(owner.pid)).toBe(true)
})

it.each([
  ['open for writing', '2>>"$1"', true],
  ['open only for reading', '2<"$1"', false],
])("tells the owner's standard error of a path lost while the daemon restarted only when it is %s", async (_, redirect, told) => {
  const dir = join(nix.root, unique('users-stderr'))
  mkdirSync(dir)
  const file = join(dir, 'stderr')
  writeFileSync(file, 'before\n')
  chmodSync(file, 0o600)
  const [lost, kept, again] = await nix.addFiles(unique('users-lost'), 3)
  const owner = bash(`exec ${redirect}\n"$NODE" "$CLI" --for $$ --keep "$2" "$3"\nread -r _\n"$NODE" "$CLI" --for $$ --keep "$4"\nread -r _ || true`, [file, lost!, kept!, again!])
  expect(await owner.line()).toBe(lost)
  expect(await owner.line()).toBe(kept)
  await nix.stopDaemon()
  // with the daemon down nothing holds it: delete it straight from the store database
  await execa('nix-store', ['--delete', lost!], { env: { ...nix.env, NIX_REMOTE: 'local' }, extendEnv: false, stdin: 'ignore' })
  await nix.startDaemon()
  // a second hold for the same store is answered once the holder has its connection back and
  // has said what it lost
  owner.child.stdin!.write('\n')
  expect(await owner.line()).toBe(again)
  const text = readFileSync(file, 'utf8')
  if (told) expect(text).toBe(`before\nnix-hold: ${lost} was collected in unix://${nix.socketPath} while the connection to the store was being made again, and is no longer held\n`)
  else expect(text).toBe('before\n')
  await nix.gc()
  expect(await nix.isValid(kept!)).toBe(true)
})

it('prints every one of 20,000 held paths into a pipe before it exits', async () => {
  const paths = await registerPaths(unique('users-many'), 20_000)
  const owner = bash('"$NODE" "$CLI" --for $$ --keep "$@" | { n=0; while read -r _; do n=$((n+1)); done; echo "$n"; }\nread -r _ || true', paths)
  expect(await owner.line()).toBe('20000')
  await nix.gc()
  expect(await nix.isValid(paths[19_999]!)).toBe(true)
}, 120_000)

// `count` valid store paths, made quickly: written straight into the store directory and
// registered in its database (nix-store --add of 20,000 files takes about 18 s here)
async function registerPaths(label: string, count: number): Promise<string[]> {
  const alphabet = '0123456789abcdfghijklmnpqrsvwxyz'
  const paths = Array.from({ length: count }, (_, i) => {
    let hash = ''
    for (let n = i + 1, k = 0; k < 32; k++, n = Math.floor(n / 32)) hash += alphabet[n % 32]
    return join(nix.storeDir, `${hash}-${label}`)
  })
  for (const p of paths) writeFileSync(p, 'x\n')
  const registration = paths.map((p) => `${p}\n\n0\n`).join('')
  await execa('nix-store', ['--register-validity'], { env: { ...nix.env, NIX_REMOTE: 'local' }, extendEnv: false, input: registration })
  return paths
}
