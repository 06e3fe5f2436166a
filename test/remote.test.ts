// Holds on other machines: loopback sshd "hosts", each with its own Nix store, reached as
// ssh-ng://hostN through `ssh hostN nix-daemon --stdio`, many from one nix-hold process.

import { existsSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { holdPaths } from '../src/index.js'
import { demoCommand, unique, useNix } from './helpers/nix.js'
import { childrenOf, eventually, parentOf } from './helpers/proc.js'
import { holdersFor, noHolderFor, startOwner } from './helpers/owner.js'
import { NIX_HOLD_SCRIPT, withShims } from './helpers/shims.js'
import { startSshHosts, type SshHosts } from './helpers/ssh-host.js'
import { startWrapper, type Wrapper } from './helpers/wrapper.js'

const nix = useNix()
let ssh: SshHosts
let env: NodeJS.ProcessEnv
const store = (i: number) => `ssh-ng://host${i + 1}`

beforeAll(async () => {
  // host4 has no nix-daemon on its PATH; host5 serves the instance's own store, so it can build
  ssh = await startSshHosts(nix, 5, { withoutNixDaemon: [3], instanceStore: [4] })
  // two more names in a config of the test's own: "stranger" is host1 under a host key alias no
  // known_hosts line vouches for; "nowhere" is a port nothing listens on
  const config = readFileSync(ssh.sshConfig, 'utf8')
  const host1 = /^Host host1\n(?:[ \t]+.*\n?)*/m.exec(config)![0]
  const stranger = host1.replace(/^Host host1/, 'Host stranger').replace(/HostKeyAlias host1/, 'HostKeyAlias stranger')
  const nowhere = host1.replace(/^Host host1/, 'Host nowhere').replace(/Port \d+/, 'Port 1')
  const ours = join(nix.root, 'ssh_config')
  writeFileSync(ours, `${config}\n${stranger}\n${nowhere}\n`)
  env = { ...ssh.clientEnv(nix.env), NIX_SSHOPTS: `-F ${ours}` }
})
afterAll(async () => ssh?.stop())

/** A path built locally and copied to the given hosts (0-based). */
async function onHosts(label: string, hosts: number[]): Promise<string> {
  const path = await nix.buildDemo(unique(label))
  for (const i of hosts) await execa('nix', ['copy', '--no-check-sigs', '--to', store(i), path], { env, extendEnv: false, stdin: 'ignore' })
  return path
}

/** The next `count` events, whatever order the stores answer in. */
async function events(w: Wrapper, count: number): Promise<Record<string, unknown>[]> {
  const out = []
  for (let i = 0; i < count; i++) out.push(await w.next())
  return out
}

/** A hold of a local path with the channel open, to send requests on. */
async function localHold(): Promise<Wrapper> {
  const own = await nix.buildDemo(unique('own'))
  const w = startWrapper(['--keep', own], env)
  expect(await w.next()).toEqual({ kept: [own] })
  return w
}

describe('remote stores', () => {
  it('holds on three hosts from one process through each host\'s GC, and lets all go at EOF', async () => {
    const paths = await Promise.all([0, 1, 2].map((i) => onHosts(`three-${i}`, [i])))
    const w = await localHold()
    for (const i of [0, 1, 2]) w.send({ keep: [paths[i]], store: store(i) })
    expect(await events(w, 3)).toEqual(expect.arrayContaining([0, 1, 2].map((i) => ({ kept: [paths[i]], store: store(i) }))))
    for (const i of [0, 1, 2]) await ssh.hosts[i]!.gc()
    for (const i of [0, 1, 2]) expect(await ssh.hosts[i]!.isValid(paths[i]!)).toBe(true)
    w.end()
    expect((await w.exit).code).toBe(0)
    // nix-hold exits once every host's daemon has hung up: their roots are gone
    for (const i of [0, 1, 2]) await ssh.hosts[i]!.gc()
    for (const i of [0, 1, 2]) expect(await ssh.hosts[i]!.isValid(paths[i]!)).toBe(false)
  })

  it('holds on two hosts for a script with --for, until the script exits', async () => {
    const paths = await Promise.all([0, 1].map((i) => onHosts(`for-${i}`, [i])))
    const script = 'for i in 1 2; do "$NODE" "$CLI" --for $$ --store "ssh-ng://host$i" --keep "${!i}"; done\nread -r _ || true'
    const owner = startOwner('bash', ['-c', script, 'owner', ...paths], env)
    expect([await owner.line(), await owner.line()]).toEqual(paths)
    expect(holdersFor(owner.pid)).toHaveLength(1)
    for (const i of [0, 1]) await ssh.hosts[i]!.gc()
    for (const i of [0, 1]) expect(await ssh.hosts[i]!.isValid(paths[i]!)).toBe(true)
    owner.finish()
    expect(await noHolderFor(owner.pid)).toBe(true)
    for (const i of [0, 1]) await ssh.hosts[i]!.gc()
    for (const i of [0, 1]) expect(await ssh.hosts[i]!.isValid(paths[i]!)).toBe(false)
  })

  it('roots a path before it exists with "expect": a copy under a running GC loop lands it held, and "keep" confirms it', async () => {
    const path = await nix.buildDemo(unique('expected'))
    const host = ssh.hosts[0]!
    const w = await localHold()
    w.send({ expect: [path], store: store(0) })
    expect(await w.next()).toEqual({ expected: [path], store: store(0) })
    let collecting = true
    let collections = 0
    const loop = (async () => {
      while (collecting) {
        await host.gc()
        collections++
      }
    })()
    await execa('nix', ['copy', '--no-check-sigs', '--to', store(0), path], { env, extendEnv: false, stdin: 'ignore' })
    const after = collections
    while (collections < after + 2) await sleep(10) // two whole collections with the path there
    collecting = false
    await loop
    expect(await host.isValid(path)).toBe(true)
    w.send({ keep: [path], store: store(0) })
    expect(await w.next()).toEqual({ kept: [path], store: store(0) })
    // a keep of an expected path that never arrived is refused, and nothing else changes
    const never = (await nix.buildDemo(unique('never-copied')))
    w.send({ expect: [never], store: store(0) })
    expect(await w.next()).toEqual({ expected: [never], store: store(0) })
    w.send({ keep: [never], store: store(0) })
    expect(await w.next()).toEqual({ error: { kind: 'protocol', message: expect.stringMatching(/not valid in the store ssh-ng:\/\/host1: .*has the copy happened/) }, store: store(0) })
    await host.gc()
    expect(await host.isValid(path)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    await host.gc()
    expect(await host.isValid(path)).toBe(false)
  })

  it.each([
    ['an unknown host key', 'stranger', /Host key verification failed/],
    ['a host nothing listens on', 'nowhere', /Connection refused/],
    ['a host without nix-daemon', 'host4', /nix-daemon: command not found/],
  ])('answers a request naming %s with a store error for that store, and the other holds stay', async (_, name, why) => {
    const path = await onHosts('faults', [0])
    const w = await localHold()
    w.send({ keep: [path], store: store(0) })
    expect(await w.next()).toEqual({ kept: [path], store: store(0) })
    w.send({ keep: [path], store: `ssh-ng://${name}` })
    expect(await w.next()).toEqual({ error: { kind: 'store', message: expect.stringMatching(why) }, store: `ssh-ng://${name}` })
    await ssh.hosts[0]!.gc()
    expect(await ssh.hosts[0]!.isValid(path)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    expect((await w.exit).code).toBe(0)
  })

  it('exits 3 with a store error naming the host when the hold\'s own store cannot be reached', async () => {
    const path = await onHosts('own-unreachable', [0])
    const w = startWrapper(['--store', 'ssh-ng://stranger', '--keep', path], env)
    expect(await w.next()).toEqual({ error: { kind: 'store', message: expect.stringMatching(/ssh-ng:\/\/stranger.*Host key verification failed/) } })
    expect((await w.exit).code).toBe(3)
  })

  it('builds on a host with --store ssh-ng://host, and holds the outputs there over ssh alone', async () => {
    const w = startWrapper(['--store', store(4), '--', ...demoCommand(unique('remote-build'))], env)
    const { built } = (await w.next()) as { built: string[] }
    expect(built).toHaveLength(1)
    const host = ssh.hosts[4]!
    // nix-hold's one connection is the ssh one: what keeps the output is the host's temp root
    await host.gc()
    expect(await host.isValid(built[0]!)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    await host.gc()
    expect(await host.isValid(built[0]!)).toBe(false)
  })

  it('holds on a host as its own store with --store ssh-ng://host --keep', async () => {
    const path = await onHosts('own-remote', [1])
    const w = startWrapper(['--store', store(1), '--keep', path], env)
    expect(await w.next()).toEqual({ kept: [path] })
    await ssh.hosts[1]!.gc()
    expect(await ssh.hosts[1]!.isValid(path)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    await ssh.hosts[1]!.gc()
    expect(await ssh.hosts[1]!.isValid(path)).toBe(false)
  })

  it('re-holds on a host whose connection dropped (its ssh session killed), and leaves the other hosts\' connections alone', async () => {
    const [a, b] = [await onHosts('dropped', [0]), await onHosts('untouched', [1])]
    const w = await localHold()
    w.send({ keep: [a], store: store(0) })
    w.send({ keep: [b], store: store(1) })
    await events(w, 2)
    const [session] = ssh.hosts[0]!.sessionPids()
    const others = ssh.hosts[1]!.sessionPids()
    process.kill(session!, 'SIGKILL')
    expect(await eventually(() => /reconnected to ssh-ng:\/\/host1; 1 paths held again/.test(w.stderr()), 20_000)).toBe(true)
    expect(ssh.hosts[1]!.sessionPids()).toEqual(others)
    for (const i of [0, 1]) await ssh.hosts[i]!.gc()
    expect([await ssh.hosts[0]!.isValid(a), await ssh.hosts[1]!.isValid(b)]).toEqual([true, true])
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true }) // no "lost": nothing was
  })

  it('re-holds on a host whose ssh child of nix-hold\'s own was killed', async () => {
    const a = await onHosts('ssh-killed', [1])
    const w = await localHold()
    w.send({ keep: [a], store: store(1) })
    await w.next()
    const sshChild = childrenOf(w.child.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('host2'))
    expect(sshChild).toBeDefined()
    process.kill(sshChild!, 'SIGKILL')
    expect(await eventually(() => /reconnected to ssh-ng:\/\/host2; 1 paths held again/.test(w.stderr()), 20_000)).toBe(true)
    await ssh.hosts[1]!.gc()
    expect(await ssh.hosts[1]!.isValid(a)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
  })

  it('says {"lost","store"} for a path a host collected while its connection was down, and holds the rest there again', async () => {
    const [a, b] = [await onHosts('lost', [0]), await onHosts('kept', [0])]
    const host = ssh.hosts[0]!
    const w = await localHold()
    w.send({ keep: [a, b], store: store(0) })
    expect(await w.next()).toEqual({ kept: [a, b], store: store(0) })
    const [session] = host.sessionPids()
    const sshd = parentOf(session!)!
    // a stopped sshd accepts no login: the reconnect waits while the host collects
    process.kill(sshd, 'SIGSTOP')
    try {
      process.kill(session!, 'SIGKILL')
      expect(await eventually(() => /lost the daemon connection to ssh-ng:\/\/host1/.test(w.stderr()), 10_000)).toBe(true)
      // the session's nix-daemon exits on EOF, and its roots with it: then a can go
      const deleted = await eventually(async () => (await execa('nix-store', ['--delete', a], { env: host.env, extendEnv: false, stdin: 'ignore', reject: false })).exitCode === 0, 10_000)
      expect(deleted).toBe(true)
    } finally {
      process.kill(sshd, 'SIGCONT')
    }
    expect(await w.next()).toEqual({ lost: [a], store: store(0) })
    await host.gc()
    expect(await host.isValid(b)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
  })

  it('drops the roots on every host when nix-hold itself is SIGKILLed', async () => {
    const paths = await Promise.all([0, 1, 2].map((i) => onHosts(`killed-${i}`, [i])))
    const w = await localHold()
    for (const i of [0, 1, 2]) w.send({ keep: [paths[i]], store: store(i) })
    await events(w, 3)
    w.child.kill('SIGKILL')
    await w.exit
    // its ssh children read EOF on stdin, and each host's daemon exits with the connection
    for (const i of [0, 1, 2]) {
      expect(await eventually(async () => (await ssh.hosts[i]!.gc(), !(await ssh.hosts[i]!.isValid(paths[i]!))), 10_000)).toBe(true)
    }
  })

  it('starts no ssh for a store URL that could reach ssh as an option, answering a protocol error', async () => {
    // an `ssh` first on PATH that only records that it ran
    const marker = join(nix.root, unique('ssh-ran'))
    const own = await nix.buildDemo(unique('own'))
    const w = startWrapper(['--keep', own], withShims(nix.root, env, { ssh: `#!/bin/sh\necho "$@" >> "${marker}"\nexit 255\n` }))
    await w.next()
    const path = own
    const hostile = ['ssh-ng://-oProxyCommand=touch%20pwned', 'ssh://-oProxyCommand=sh', 'ssh-ng://-l@x', 'ssh-ng://', 'ssh-ng://a b', 'ssh-ng://h?remote-program=sh%20-c%20id', 'ssh-ng://h?ssh-key=-oProxyCommand=x']
    for (const s of hostile) {
      w.send({ keep: [path], store: s })
      expect(await w.next()).toEqual({ error: { kind: 'protocol', message: expect.stringContaining('refusing the store URL') }, store: s })
    }
    expect(existsSync(marker)).toBe(false)
    // the shim does run for an acceptable URL: the check above could have failed
    w.send({ keep: [path], store: 'ssh-ng://shimhost' })
    expect(await w.next()).toMatchObject({ error: { kind: 'store' }, store: 'ssh-ng://shimhost' })
    expect(readFileSync(marker, 'utf8')).toMatch(/-- shimhost nix-daemon --stdio\n$/)
    w.send({ release: true })
    await w.exit
  })

  it('holds on hosts through the library: holdPaths on a remote store, keep and expect naming others, one release for all', async () => {
    const [a, b] = [await onHosts('lib-a', [0]), await nix.buildDemo(unique('lib-b'))]
    const hold = await holdPaths([a], { env, store: store(0) })
    expect(await hold.expect([b], { store: store(2) })).toEqual([b])
    await execa('nix', ['copy', '--no-check-sigs', '--to', store(2), b], { env, extendEnv: false, stdin: 'ignore' })
    expect(await hold.keep([b], { store: store(2) })).toEqual([b])
    for (const i of [0, 2]) await ssh.hosts[i]!.gc()
    expect([await ssh.hosts[0]!.isValid(a), await ssh.hosts[2]!.isValid(b)]).toEqual([true, true])
    await hold.release()
    for (const i of [0, 2]) await ssh.hosts[i]!.gc()
    expect([await ssh.hosts[0]!.isValid(a), await ssh.hosts[2]!.isValid(b)]).toEqual([false, false])
  })

  it('runs the fleet example: built once here, expected, copied, kept and switched on three hosts, then released', async () => {
    // each host's profile directory exists, as /nix/var/nix/profiles does
    const profiles = join(nix.root, unique('profiles'))
    for (const h of ['host1', 'host2', 'host3']) mkdirSync(join(profiles, h), { recursive: true })
    const fleet = new URL('../examples/deploy/fleet.sh', import.meta.url).pathname
    const system = new URL('../examples/deploy/system.nix', import.meta.url).pathname
    const { stdout } = await execa('bash', [fleet, join(profiles, '{host}', 'system'), 'host1', 'host2', 'host3', '--', system, '--argstr', 'name', unique('fleet')], {
      env: withShims(nix.root, env, { 'nix-hold': NIX_HOLD_SCRIPT }),
      extendEnv: false,
      stdin: 'ignore',
    })
    const path = /^built (\S+)$/m.exec(stdout)![1]!
    expect(stdout).toMatch(/released$/)
    for (const i of [0, 1, 2]) {
      await ssh.hosts[i]!.gc()
      // the profile roots it on each host, and nothing else holds it any more
      expect(await ssh.hosts[i]!.isValid(path)).toBe(true)
      expect(readlinkSync(join(profiles, `host${i + 1}`, 'system'))).toMatch(/system-1-link$/)
    }
    await nix.gc()
    expect(await nix.isValid(path)).toBe(false)
  })
})
