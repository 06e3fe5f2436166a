// What happens to a hold when processes die, the daemon goes away, or signals arrive.

import { renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { demoCommand, scriptCommand, stepsOf, unique, useNix } from '../helpers/nix.js'
import { eventually, exited, processesWith } from '../helpers/proc.js'
import { withShims } from '../helpers/shims.js'
import { startWrapper } from '../helpers/wrapper.js'

const nix = useNix()

const demo = (n: string) => demoCommand(n)

describe('faults', () => {
  it('leaves no root when the wrapper itself is SIGKILLed', async () => {
    const w = startWrapper(['--', ...demo(unique('killed'))], nix.env)
    const built = (await w.next()).built!
    // the build's own worker may still be winding down: wait until only ours holds the output
    expect(await eventually(() => nix.holdersOf(built[0]!).length === 1, 5000)).toBe(true)
    const [worker] = nix.holdersOf(built[0]!)
    expect(worker).toBeDefined()
    w.child.kill('SIGKILL')
    await w.exit
    // the daemon's worker notices the closed connection and exits, and its temp roots go with it
    // (judged by a collection, not by its temp-roots file: Nix 2.34.0-2.35.1 leave that behind)
    expect(await eventually(() => exited(worker!), 5000)).toBe(true)
    await nix.gc()
    expect(await nix.isValid(built[0]!)).toBe(false)
  })

  it('registers every path again when the daemon worker holding them dies', async () => {
    const [a, b] = [await nix.buildDemo(unique('worker')), await nix.buildDemo(unique('worker'))]
    const w = startWrapper(['--keep', a, b], nix.env)
    await w.next()
    // the worker that added a may still be winding down: wait until only ours holds it
    expect(await eventually(() => nix.holdersOf(a).length === 1, 5000)).toBe(true)
    const [worker] = nix.holdersOf(a)
    process.kill(worker!, 'SIGKILL')
    // a new worker (another pid) holds both again once nix-hold has reconnected
    expect(await eventually(() => nix.holdersOf(a).some((p) => p !== worker) && nix.holdersOf(b).some((p) => p !== worker), 10_000)).toBe(true)
    await nix.gc()
    expect([await nix.isValid(a), await nix.isValid(b)]).toEqual([true, true])
    expect(w.stderr()).toMatch(/reconnected; 2 paths held again/)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true }) // no "lost" before it: nothing was lost
  })

  it('reports a daemon that hangs up before the handshake (it cannot open its store) as a store error, exit 3', async () => {
    const [a, b] = await nix.addFiles(unique('unrecordable'), 2)
    const dir = join(nix.stateDir, 'temproots')
    renameSync(dir, `${dir}.saved`)
    writeFileSync(dir, 'not a directory\n') // a new worker cannot open the store: it needs that directory
    try {
      const w = startWrapper(['--keep', a!, b!], nix.env)
      const event = await w.next()
      expect(event.error).toMatchObject({ kind: 'store', message: expect.stringMatching(/(closed|dropped) the connection.* before the handshake|temproots' is not a directory/) }) // 2.3 handshakes first, then says why
      expect((await w.exit).code).toBe(3)
    } finally {
      rmSync(dir)
      renameSync(`${dir}.saved`, dir)
    }
  })

  it('says {"lost"} for a path that a collection took while the daemon was down, and holds the rest again', async () => {
    const [a, b] = [await nix.buildDemo(unique('restart')), await nix.buildDemo(unique('restart'))]
    const w = startWrapper(['--keep', a, b], nix.env)
    await w.next()
    await nix.stopDaemon()
    // with the daemon down nothing holds a: delete it straight from the store database
    await execa('nix-store', ['--delete', a], { env: { ...nix.env, NIX_REMOTE: 'local' }, extendEnv: false, stdin: 'ignore' })
    await nix.startDaemon()
    expect(await w.next()).toEqual({ lost: [a] })
    await nix.gc()
    expect(await nix.isValid(b)).toBe(true)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    expect((await w.exit).code).toBe(0)
  })

  it('replaces a daemon connection that was lost while the build ran, and holds the outputs on the new one', async () => {
    // a shim for the program that builds runs the real one, then kills every daemon worker:
    // nix-hold's among them
    const tool = stepsOf(demo('x')).builds
    const env = withShims(nix.root, nix.env, {
      [tool]: `#!/bin/sh
PATH="$REAL_PATH" ${tool} "$@" || exit $?
for f in /proc/[0-9]*/stat; do
  read -r pid comm state ppid rest < "$f" 2>/dev/null || continue
  [ "$ppid" = "${nix.daemonPid()}" ] && kill -9 "$pid"
done
exit 0
`,
    })
    const w = startWrapper(['--', ...demo(unique('lostduringbuild'))], env)
    const built = (await w.next()).built!
    await nix.gc()
    expect(await nix.isValid(built[0]!)).toBe(true)
    w.send({ release: true })
    expect((await w.exit).code).toBe(0)
  })

  it('stops a build that is under way when the daemon cannot be reached, and reports the store error', async () => {
    // the build runs while the connection is made; a `nix` that never finishes stands in for a long one
    const marker = unique('unreachable')
    const env = withShims(nix.root, nix.env, { [stepsOf(demo('x')).first]: `#!/bin/sh\nexec /bin/sleep 600 ${marker}\n` })
    const socket = join(nix.root, marker, 'no-daemon-here')
    const w = startWrapper(['--store', `unix://${socket}`, '--', ...demo(marker)], env)
    const event = await w.next()
    expect(event.error).toMatchObject({ kind: 'store', message: expect.stringContaining(socket) })
    expect((await w.exit).code).toBe(3)
    expect(await eventually(() => processesWith((arg) => arg === marker).length === 0, 10_000)).toBe(true)
  })

  it('reports a build command killed by a signal as a build error with 128+N, holding nothing', async () => {
    const command = demo(unique('sig'))
    const tool = stepsOf(command).first
    const w = startWrapper(['--', ...command], withShims(nix.root, nix.env, { [tool]: '#!/bin/sh\nkill -KILL $$\n' }))
    const name = command[0] === 'nix' ? 'nix build' : 'nix-build' // what the user ran, whichever step it was
    expect(await w.next()).toEqual({ error: { kind: 'build', message: `${name} was killed by SIGKILL`, exitCode: 137 } })
    expect((await w.exit).code).toBe(137)
  })

})

describe('signals', () => {
  const slow = (marker: string) => scriptCommand('slow', `/bin/sleep 60; echo ${marker}`)

  it.each(['SIGINT', 'SIGTERM', 'SIGHUP'] as const)('%s during the build stops it, leaves no process, and exits 128+N', async (signal) => {
    const marker = unique(`marker-${signal}`)
    const w = startWrapper(['--', ...slow(marker)], nix.env)
    // the builder is running once a process has its script as an argument of its own
    const script = `/bin/sleep 60; echo ${marker}`
    expect(await eventually(() => processesWith((arg) => arg === script).length > 0, 20_000)).toBe(true)
    w.child.kill(signal)
    const event = await w.next()
    const code = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 }[signal]
    expect(event.error).toEqual({ kind: 'build', message: `stopped by ${signal} before the build finished`, exitCode: code })
    expect((await w.exit).code).toBe(code)
    // neither the builder, nor nix build, nor nix-hold is left
    expect(await eventually(() => processesWith((arg) => arg.includes(marker)).length === 0, 10_000)).toBe(true)
  })

})
