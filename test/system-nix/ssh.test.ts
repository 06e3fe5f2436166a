// Holding on other machines, the part that is ssh's and nix-hold's own whatever Nix the hosts run:
// hosts that cannot be reached, URLs that could reach ssh as an option, ssh children killed, the
// library and the examples over ssh, and --for on hosts.

import { existsSync, mkdirSync, readFileSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { holdPaths } from '../../src/index.js'
import { unique, useNix } from '../helpers/nix.js'
import { childrenOf, eventually } from '../helpers/proc.js'
import { holdersFor, noHolderFor, startOwner } from '../helpers/owner.js'
import { NIX_HOLD_SCRIPT, withShims } from '../helpers/shims.js'
import { startWrapper } from '../helpers/wrapper.js'
import { events, store, useRemoteHosts } from '../helpers/remote.js'

const nix = useNix()
const remote = useRemoteHosts(nix)
const { onHosts, localHold } = remote

describe('remote stores', () => {
  it('holds on two hosts for a script with --for, until the script exits', async () => {
    const paths = await Promise.all([0, 1].map((i) => onHosts(`for-${i}`, [i])))
    const script = 'for i in 1 2; do "$NODE" "$CLI" --for $$ --store "ssh-ng://host$i" --keep "${!i}"; done\nread -r _ || true'
    const owner = startOwner('bash', ['-c', script, 'owner', ...paths], remote.env)
    expect([await owner.line(), await owner.line()]).toEqual(paths)
    expect(holdersFor(owner.pid)).toHaveLength(1)
    for (const i of [0, 1]) await remote.ssh.hosts[i]!.gc()
    for (const i of [0, 1]) expect(await remote.ssh.hosts[i]!.isValid(paths[i]!)).toBe(true)
    owner.finish()
    expect(await noHolderFor(owner.pid)).toBe(true)
    for (const i of [0, 1]) await remote.ssh.hosts[i]!.gc()
    for (const i of [0, 1]) expect(await remote.ssh.hosts[i]!.isValid(paths[i]!)).toBe(false)
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
    await remote.ssh.hosts[0]!.gc()
    expect(await remote.ssh.hosts[0]!.isValid(path)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    expect((await w.exit).code).toBe(0)
  })

  it('exits 3 with a store error naming the host when the hold\'s own store cannot be reached', async () => {
    const path = await onHosts('own-unreachable', [0])
    const w = startWrapper(['--store', 'ssh-ng://stranger', '--keep', path], remote.env)
    expect(await w.next()).toEqual({ error: { kind: 'store', message: expect.stringMatching(/ssh-ng:\/\/stranger.*Host key verification failed/) } })
    expect((await w.exit).code).toBe(3)
  })

  it('starts no ssh for a store URL that could reach ssh as an option, answering a protocol error', async () => {
    // an `ssh` first on PATH that only records that it ran
    const marker = join(nix.root, unique('ssh-ran'))
    const own = await nix.buildDemo(unique('own'))
    const w = startWrapper(['--keep', own], withShims(nix.root, remote.env, { ssh: `#!/bin/sh\necho "$@" >> "${marker}"\nexit 255\n` }))
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
    const hold = await holdPaths([a], { env: remote.env, store: store(0) })
    expect(await hold.expect([b], { store: store(2) })).toEqual([b])
    await execa('nix', ['copy', '--no-check-sigs', '--to', store(2), b], { env: remote.env, extendEnv: false, stdin: 'ignore' })
    expect(await hold.keep([b], { store: store(2) })).toEqual([b])
    for (const i of [0, 2]) await remote.ssh.hosts[i]!.gc()
    expect([await remote.ssh.hosts[0]!.isValid(a), await remote.ssh.hosts[2]!.isValid(b)]).toEqual([true, true])
    await hold.release()
    for (const i of [0, 2]) await remote.ssh.hosts[i]!.gc()
    expect([await remote.ssh.hosts[0]!.isValid(a), await remote.ssh.hosts[2]!.isValid(b)]).toEqual([false, false])
  })

  it('runs the fleet example: built once here, expected, copied, kept and switched on three hosts, then released', async () => {
    // each host's profile directory exists, as /nix/var/nix/profiles does
    const profiles = join(nix.root, unique('profiles'))
    for (const h of ['host1', 'host2', 'host3']) mkdirSync(join(profiles, h), { recursive: true })
    const fleet = new URL('../../examples/deploy/fleet.sh', import.meta.url).pathname
    const system = new URL('../../examples/deploy/system.nix', import.meta.url).pathname
    const { stdout } = await execa('bash', [fleet, join(profiles, '{host}', 'system'), 'host1', 'host2', 'host3', '--', system, '--argstr', 'name', unique('fleet')], {
      env: withShims(nix.root, remote.env, { 'nix-hold': NIX_HOLD_SCRIPT }),
      extendEnv: false,
      stdin: 'ignore',
    })
    const path = /^built (\S+)$/m.exec(stdout)![1]!
    expect(stdout).toMatch(/released$/)
    for (const i of [0, 1, 2]) {
      await remote.ssh.hosts[i]!.gc()
      // the profile roots it on each host, and nothing else holds it any more
      expect(await remote.ssh.hosts[i]!.isValid(path)).toBe(true)
      expect(readlinkSync(join(profiles, `host${i + 1}`, 'system'))).toMatch(/system-1-link$/)
    }
    await nix.gc()
    expect(await nix.isValid(path)).toBe(false)
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
    await remote.ssh.hosts[1]!.gc()
    expect(await remote.ssh.hosts[1]!.isValid(a)).toBe(true)
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
      expect(await eventually(async () => (await remote.ssh.hosts[i]!.gc(), !(await remote.ssh.hosts[i]!.isValid(paths[i]!))), 10_000)).toBe(true)
    }
  })

  it('holds on a host as its own store with --store ssh-ng://host --keep', async () => {
    const path = await onHosts('own-remote', [1])
    const w = startWrapper(['--store', store(1), '--keep', path], remote.env)
    expect(await w.next()).toEqual({ kept: [path] })
    await remote.ssh.hosts[1]!.gc()
    expect(await remote.ssh.hosts[1]!.isValid(path)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    await remote.ssh.hosts[1]!.gc()
    expect(await remote.ssh.hosts[1]!.isValid(path)).toBe(false)
  })
})
