// What happens to a hold when its caller dies, signals arrive while it holds, --max-hold runs out,
// or a daemon worker dies with a request in flight: nix-hold's own part, the same whatever Nix is
// behind it (test/nix/faults.test.ts has the rest).

import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describe, expect, it } from 'vitest'
import { demoCommand, unique, useNix } from '../helpers/nix.js'
import { eventually, exited } from '../helpers/proc.js'
import { CLI, startWrapper } from '../helpers/wrapper.js'

const nix = useNix()

const demo = (n: string) => demoCommand(n)

describe('faults', () => {
  it('releases and exits within a second when its caller is SIGKILLed', async () => {
    const caller = spawn('python3', [join(__dirname, '..', 'helpers', 'caller.py'), process.execPath, CLI, '--', ...demo(unique('caller'))], { env: nix.env, stdio: ['ignore', 'pipe', 'inherit'] })
    const lines = createInterface({ input: caller.stdout! })[Symbol.asyncIterator]()
    const pid = Number((await lines.next()).value)
    const path = (JSON.parse((await lines.next()).value as string) as { built: string[] }).built[0]!
    await nix.gc()
    expect(await nix.isValid(path)).toBe(true)

    caller.kill('SIGKILL')
    const killedAt = Date.now()
    expect(await eventually(() => exited(pid), 5000)).toBe(true)
    expect(Date.now() - killedAt).toBeLessThan(1000)
    await nix.gc()
    expect(await nix.isValid(path)).toBe(false)
  })

  // How a request lost with its connection is made again is nix-hold's own; that a dead worker's
  // connection is made again at all is tested on every Nix (test/nix/faults.test.ts). The 10,000
  // paths keep the request in flight long enough for the kill to land inside it.
  it('survives the daemon worker dying while a keep request is in flight, and answers it on a new connection', async () => {
    const [a] = await nix.addFiles(unique('inflight-a'))
    const many = await nix.addFiles(unique('inflight'), 10_000)
    const w = startWrapper(['--keep', a!], nix.env)
    expect(await w.next()).toEqual({ kept: [a] })
    expect(await eventually(() => nix.holdersOf(a!).length === 1, 5000)).toBe(true)
    const [worker] = nix.holdersOf(a!)
    w.send({ keep: many })
    // the request is being served once the worker has rooted the first of its paths
    expect(await eventually(() => nix.holdersOf(many[0]!).includes(worker!), 10_000)).toBe(true)
    process.kill(worker!, 'SIGKILL')
    // the whole request was served before the kill landed: its answer has already come (lines are
    // recorded as they arrive), so this is read now, before the next() below waits for it
    const answered = w.received.length > 1
    expect(await w.next()).toEqual({ kept: many })
    await nix.gc()
    expect(await nix.isValid(a!)).toBe(true)
    expect(await nix.isValid(many[0]!)).toBe(true)
    expect(await nix.isValid(many[9999]!)).toBe(true)
    if (!answered) expect(w.stderr()).toMatch(/lost the daemon connection .*; reconnecting/)
    w.send({ release: true })
    expect(await w.next()).toEqual({ released: true })
    expect((await w.exit).code).toBe(0)
  })

  it('reports a build command that is not on PATH as a build error', async () => {
    const w = startWrapper(['--', 'nix-build', 'x.nix'], { ...nix.env, PATH: '/nonexistent' })
    const event = await w.next()
    // nix-build is run as nix-instantiate and nix-store --realise, and the message says so
    expect(event.error).toMatchObject({ kind: 'build', message: expect.stringMatching(/cannot run nix-instantiate.*ENOENT.*runs nix-build as nix-instantiate/), exitCode: 127 })
    expect((await w.exit).code).toBe(127)
  })
})

describe('signals', () => {
  it.each(['SIGINT', 'SIGTERM', 'SIGHUP'] as const)('%s while holding releases, says so, and exits 0', async (signal) => {
    const w = startWrapper(['--', ...demo(unique(signal))], nix.env)
    const built = (await w.next()).built!
    w.child.kill(signal)
    expect(await w.next()).toEqual({ released: true })
    expect((await w.exit).code).toBe(0)
    await nix.gc()
    expect(await nix.isValid(built[0]!)).toBe(false)
  })

  it('--max-hold releases on its own with {"expired":true}', async () => {
    const w = startWrapper(['--max-hold', '0.5', '--', ...demo(unique('expire'))], nix.env)
    const built = (await w.next()).built!
    expect(await w.next()).toEqual({ expired: true })
    expect((await w.exit).code).toBe(0)
    await nix.gc()
    expect(await nix.isValid(built[0]!)).toBe(false)
  })
})
