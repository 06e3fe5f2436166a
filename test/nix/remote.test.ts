// Holds on other machines: loopback sshd "hosts", each with its own Nix store, reached as
// ssh-ng://hostN through `ssh hostN nix-daemon --stdio`, many from one nix-hold process. What the
// hosts' Nix does is tested here, on every Nix in the matrix; ssh's own part in test/system-nix/ssh.test.ts.

import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { demoCommand, unique, useNix } from '../helpers/nix.js'
import { eventually, parentOf } from '../helpers/proc.js'
import { startWrapper } from '../helpers/wrapper.js'
import { events, store, useRemoteHosts } from '../helpers/remote.js'

const nix = useNix()
const remote = useRemoteHosts(nix)
const { onHosts, localHold } = remote

describe('remote stores', () => {
  it('holds on three hosts from one process through each host\'s GC, and lets all go at EOF', async () => {
    const paths = await Promise.all([0, 1, 2].map((i) => onHosts(`three-${i}`, [i])))
    const w = await localHold()
    for (const i of [0, 1, 2]) w.send({ keep: [paths[i]], store: store(i) })
    expect(await events(w, 3)).toEqual(expect.arrayContaining([0, 1, 2].map((i) => ({ kept: [paths[i]], store: store(i) }))))
    for (const i of [0, 1, 2]) await remote.ssh.hosts[i]!.gc()
    for (const i of [0, 1, 2]) expect(await remote.ssh.hosts[i]!.isValid(paths[i]!)).toBe(true)
    w.end()
    expect((await w.exit).code).toBe(0)
    // nix-hold exits once every host's daemon has hung up: their roots are gone
    for (const i of [0, 1, 2]) await remote.ssh.hosts[i]!.gc()
    for (const i of [0, 1, 2]) expect(await remote.ssh.hosts[i]!.isValid(paths[i]!)).toBe(false)
  })

  it('roots a path before it exists with "expect": a copy under a running GC loop lands it held, and "keep" confirms it', async () => {
    const path = await nix.buildDemo(unique('expected'))
    const host = remote.ssh.hosts[0]!
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
    await execa('nix', ['copy', '--no-check-sigs', '--to', store(0), path], { env: remote.env, extendEnv: false, stdin: 'ignore' })
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

  it('builds on a host with --store ssh-ng://host, and holds the outputs there over ssh alone', async () => {
    const w = startWrapper(['--store', store(4), '--', ...demoCommand(unique('remote-build'))], remote.env)
    const built = (await w.next()).built!
    expect(built).toHaveLength(1)
    const host = remote.ssh.hosts[4]!
    // nix-hold's one connection is the ssh one: what keeps the output is the host's temp root
    await host.gc()
    expect(await host.isValid(built[0]!)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    await host.gc()
    expect(await host.isValid(built[0]!)).toBe(false)
  })

  it('re-holds on a host whose connection dropped (its ssh session killed), and leaves the other hosts\' connections alone', async () => {
    const [a, b] = [await onHosts('dropped', [0]), await onHosts('untouched', [1])]
    const w = await localHold()
    w.send({ keep: [a], store: store(0) })
    w.send({ keep: [b], store: store(1) })
    await events(w, 2)
    const [session] = remote.ssh.hosts[0]!.sessionPids()
    const others = remote.ssh.hosts[1]!.sessionPids()
    process.kill(session!, 'SIGKILL')
    expect(await eventually(() => /reconnected to ssh-ng:\/\/host1; 1 paths held again/.test(w.stderr()), 20_000)).toBe(true)
    expect(remote.ssh.hosts[1]!.sessionPids()).toEqual(others)
    for (const i of [0, 1]) await remote.ssh.hosts[i]!.gc()
    expect([await remote.ssh.hosts[0]!.isValid(a), await remote.ssh.hosts[1]!.isValid(b)]).toEqual([true, true])
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true }) // no "lost": nothing was
  })

  it('says {"lost","store"} for a path a host collected while its connection was down, and holds the rest there again', async () => {
    const [a, b] = [await onHosts('lost', [0]), await onHosts('kept', [0])]
    const host = remote.ssh.hosts[0]!
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

})
