// What happens to a hold when its caller dies, signals arrive while it holds, or --max-hold runs
// out: nix-hold's own part, the same whatever Nix is behind it (test/nix/faults.test.ts has the
// rest).

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
