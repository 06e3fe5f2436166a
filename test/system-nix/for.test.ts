// --for PID against a real daemon: scripts (bash, sh -c, Python) that hold with one line, for as
// long as they run, and not a moment longer.

import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { demoCommand, failedBuildCode, FIXTURES, scriptCommand, unique, useNix } from '../helpers/nix.js'
import { holdersFor, noHolderFor, startOwner } from '../helpers/owner.js'
import { eventually, exited } from '../helpers/proc.js'
import { CLI } from '../helpers/wrapper.js'

const nix = useNix()

const bash = (script: string, args: readonly string[] = []) => startOwner('bash', ['-c', `set -e\n${script}`, 'owner', ...args], nix.env)


const nixBuild = (n: string) => ['nix-build', join(FIXTURES, 'demo.nix'), '--argstr', 'n', n]
const builds: Array<[string, (n: string) => string[]]> = [
  ['the build command', demoCommand],
  ['nix-build', nixBuild],
]

it.each(builds)('holds what out=$(nix-hold --for $$ -- %s) printed until the script exits, then nothing', async (_, command) => {
  const owner = bash('out=$("$NODE" "$CLI" --for $$ -- "$@")\necho "$out"\nread -r _ || true', command(unique('for')))
  const out = await owner.line()
  expect(out).toMatch(new RegExp(`^${nix.storeDir}/[a-z0-9]{32}-demo-for-`))
  await nix.gc()
  expect(await nix.isValid(out)).toBe(true)
  expect(holdersFor(owner.pid)).toHaveLength(1)

  owner.finish()
  expect(await owner.exit).toBe(0)
  expect(await noHolderFor(owner.pid)).toBe(true)
  await nix.gc()
  expect(await nix.isValid(out)).toBe(false)
})

it('ends the hold when the owner is killed with SIGKILL', async () => {
  const path = await nix.buildDemo(unique('for-kill'))
  const owner = bash('"$NODE" "$CLI" --for $$ --keep "$1"\nread -r _ || true', [path])
  expect(await owner.line()).toBe(path)
  await nix.gc()
  expect(await nix.isValid(path)).toBe(true)

  owner.child.kill('SIGKILL')
  await owner.exit
  expect(await noHolderFor(owner.pid)).toBe(true)
  await nix.gc()
  expect(await nix.isValid(path)).toBe(false)
})

it('serves twenty holds for one script with one holder, each path held', async () => {
  const paths = await nix.addFiles(unique('for-many'), 20)
  const owner = bash('for p in "$@"; do "$NODE" "$CLI" --for $$ --keep "$p"; done\necho done\nread -r _ || true', paths)
  const printed: string[] = []
  for (let line = await owner.line(); line !== 'done'; line = await owner.line()) printed.push(line)
  expect(printed).toEqual(paths)
  expect(holdersFor(owner.pid)).toHaveLength(1)
  await nix.gc()
  expect(await Promise.all(paths.map((p) => nix.isValid(p)))).toEqual(paths.map(() => true))
  owner.finish()
  expect(await noHolderFor(owner.pid)).toBe(true)
})

it('returns from $(… 2>&1) and from sh -c as soon as the paths are printed', async () => {
  const path = await nix.buildDemo(unique('for-sh'))
  // were the holder to keep either output open, $(…) would wait for it: for as long as the script runs
  const owner = bash(`out=$(sh -c '"$NODE" "$CLI" --for "$1" --keep "$2"' sh $$ "$1" 2>&1)\necho "$out"\nread -r _ || true`, [path])
  expect(await owner.line()).toBe(path)
  await nix.gc()
  expect(await nix.isValid(path)).toBe(true)
  owner.finish()
  expect(await owner.exit).toBe(0)
})

it("holds for a Python program that ran nix-hold with subprocess.run(capture_output=True)", async () => {
  const path = await nix.buildDemo(unique('for-py'))
  const program = [
    'import os, subprocess, sys',
    'r = subprocess.run([os.environ["NODE"], os.environ["CLI"], "--for", str(os.getpid()), "--keep", sys.argv[1]], capture_output=True, text=True, check=True, timeout=30)',
    'print(r.stdout.strip(), flush=True)',
    'sys.stdin.readline()',
  ].join('\n')
  const owner = startOwner('python3', ['-c', program, path], nix.env)
  expect(await owner.line()).toBe(path)
  await nix.gc()
  expect(await nix.isValid(path)).toBe(true)
  owner.finish()
  expect(await owner.exit).toBe(0)
  expect(await noHolderFor(owner.pid)).toBe(true)
})

it('exits with the build status of a failed build, and leaves nothing running', async () => {
  const command = scriptCommand(unique('for-fail'), 'exit 1')
  const owner = bash('status=0\n"$NODE" "$CLI" --for $$ -- "$@" || status=$?\necho "$status"\nread -r _ || true', command)
  expect(Number(await owner.line())).toBe(failedBuildCode(command))
  expect(holdersFor(owner.pid)).toEqual([])
})

it('refuses a process id that is not running, before anything is built (exit 2)', () => {
  const gone = spawnSync('true').pid!
  const r = spawnSync(process.execPath, [CLI, '--for', String(gone), '--', ...demoCommand(unique('for-gone'))], { env: nix.env, encoding: 'utf8' })
  expect(r.status).toBe(2)
  expect(r.stderr).toContain(`no process ${gone} is running`)
  expect(r.stdout).toBe('')
})

it('lets go after --max-hold while the owner still runs', async () => {
  const path = await nix.buildDemo(unique('for-max'))
  const owner = bash('"$NODE" "$CLI" --for $$ --max-hold 0.5 --keep "$1"\nread -r _ || true', [path])
  expect(await owner.line()).toBe(path)
  const collected = await eventually(async () => (await nix.gc(), !(await nix.isValid(path))), 10_000)
  expect(collected).toBe(true)
  expect(exited(owner.pid)).toBe(false)
})

it('goes on holding when the terminal goes away: the holder has a session of its own and ignores SIGHUP', async () => {
  const path = await nix.buildDemo(unique('for-hup'))
  const owner = bash('"$NODE" "$CLI" --for $$ --keep "$1"\nread -r _ || true', [path])
  expect(await owner.line()).toBe(path)
  const [holder] = holdersFor(owner.pid)
  const session = (pid: number) => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[3]
  expect(session(holder!)).not.toBe(session(owner.pid))
  process.kill(holder!, 'SIGHUP')
  await nix.gc()
  expect(await nix.isValid(path)).toBe(true)
  expect(exited(holder!)).toBe(false)
})


it("keeps none of the script's descriptors open: a pipe the script hands on still shows its reader an EOF", async () => {
  const path = await nix.buildDemo(unique('for-fds'))
  // fd 200 is inherited by nix-hold (bash does not set close-on-exec on it, and Node sets it only
  // on the low descriptors it inherits, 0 to 15 and any right after them), and so by the holder
  // it starts, unless the holder closes it
  const owner = bash('exec 200> >(cat > /dev/null; echo "reader saw EOF")\n"$NODE" "$CLI" --for $$ --keep "$1"\nexec 200>&-\nread -r _ || true', [path])
  expect(await owner.line()).toBe(path)
  // were the holder to keep fd 200, the reader would see its EOF only once the script has exited
  expect(await owner.line()).toBe('reader saw EOF')
  expect(holdersFor(owner.pid)).toHaveLength(1)
})

it('lets two holds that start at once for a new owner both hold, with one holder between them', async () => {
  const [a, b] = await nix.addFiles(unique('for-twin'), 2)
  // both find no holder and start one; one of the two steps back for the other
  const owner = bash(
    '"$NODE" "$CLI" --for $$ --keep "$1" >/dev/null & p1=$!\n"$NODE" "$CLI" --for $$ --keep "$2" >/dev/null & p2=$!\ns1=0; wait $p1 || s1=$?\ns2=0; wait $p2 || s2=$?\necho "$s1 $s2"\nread -r _ || true',
    [a!, b!],
  )
  expect(await owner.line()).toBe('0 0')
  expect(holdersFor(owner.pid)).toHaveLength(1)
  await nix.gc()
  expect([await nix.isValid(a!), await nix.isValid(b!)]).toEqual([true, true])
})
