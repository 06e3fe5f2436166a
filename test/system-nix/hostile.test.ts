// Hostile callers, bad paths, broken daemons, and the promise to create no file.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import { describe, expect, it } from 'vitest'
import { cat, hex, str, word } from '../helpers/bytes.js'
import { fakeDaemon, type ScriptedPeer } from '../helpers/fake-daemon.js'
import { demoCommand, FIXTURES, unique, useNix } from '../helpers/nix.js'
import { CLI, startWrapper } from '../helpers/wrapper.js'

const nix = useNix()

const demo = (n: string) => demoCommand(n)

/** Every entry below `dir`, recursively, as relative paths. */
const tree = (dir: string): string[] => readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()

it('does not block on a caller that never reads, nor hold on to a flood: a release still ends it', async () => {
  // a heap this small holds no flood of 100,000 lines or their replies: kept, they end in a crash
  const env = { ...nix.env, NODE_OPTIONS: '--max-old-space-size=24' }
  const child = spawn(process.execPath, [CLI, '--fd', '3', '--', ...demo(unique('noread'))], { env, stdio: ['ignore', 'ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s))
  const channel = child.stdio[3] as Socket
  const [first] = (await once(channel, 'data')) as [Buffer]
  const path = (JSON.parse(first.toString()) as { built: string[] }).built[0]!
  channel.pause() // from here on the caller reads nothing

  // each line draws an error reply of ~70 bytes: 7 MB of replies nobody reads
  channel.write(Buffer.from('garbage\n'.repeat(100_000)))
  channel.write('{"release":true}\n')
  const [code] = await once(child, 'exit')
  expect(stderr).toContain('dropping replies')
  expect(code).toBe(0)
  await nix.gc()
  expect(await nix.isValid(path)).toBe(false)
})

describe('paths', () => {
  it('refuses --keep of a symlink that leads out of the store', async () => {
    const link = join(nix.root, unique('out-link'))
    symlinkSync('/etc', link)
    const w = startWrapper(['--keep', link], nix.env)
    expect(await w.next()).toEqual({ error: { kind: 'usage', message: expect.stringMatching(/resolves to \/etc, outside the store/) } })
    expect((await w.exit).code).toBe(2)
  })

  it.each([
    ['outside the store', '/etc/passwd', /outside the store/],
    ['with ..', `${'/nix/store'}/../etc/passwd`, /".." segment/],
    ['with a NUL byte', '/nix/store/0000000000000000000000000000000a-x\u0000y', /NUL/],
  ])('refuses a {"keep"} of a path %s, and keeps holding', async (_, bad, why) => {
    const held = await nix.buildDemo(unique('hostile-keep'))
    const w = startWrapper(['--keep', held], nix.env)
    await w.next()
    w.send({ keep: [bad] })
    expect(await w.next()).toEqual({ error: { kind: 'protocol', message: expect.stringMatching(why) } })
    await nix.gc()
    expect(await nix.isValid(held)).toBe(true)
    w.send({ release: true })
    await w.exit
  })
})

describe('a daemon that misbehaves', () => {
  const MAGIC_1 = hex('6378696e00000000')
  const MAGIC_2 = hex('6f69786400000000')
  const P = '/nix/store/0000000000000000000000000000000a-x'

  async function against(script: (peer: ScriptedPeer) => Promise<void>) {
    const d = fakeDaemon(script)
    try {
      const w = startWrapper(['--store', `unix://${d.path}`, '--keep', P], { ...nix.env, NIX_STORE_DIR: '/nix/store' })
      const event = await w.next()
      return { event, code: (await w.exit).code }
    } finally {
      d.close()
    }
  }

  it('is a store error, exit 3, when the daemon is older than supported', async () => {
    const { event, code } = await against(async (peer) => {
      await peer.expect(cat(MAGIC_1, word(0x126)))
      peer.send(cat(MAGIC_2, word(0x114)))
    })
    expect(event.error).toEqual({ kind: 'store', message: expect.stringMatching(/speaks protocol 1\.20; nix-hold needs 1\.21 or newer/) })
    expect(code).toBe(3)
  })

  it('is a store error, exit 3, when the peer is not a daemon at all', async () => {
    const { event, code } = await against(async (peer) => {
      await peer.expect(cat(MAGIC_1, word(0x126)))
      peer.send(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'))
    })
    expect(event.error).toEqual({ kind: 'store', message: expect.stringMatching(/not a Nix daemon: expected the magic word "dxio"/) })
    expect(code).toBe(3)
  })

  it('is a store error, exit 3, carrying the daemon\'s message when it answers with an error', async () => {
    const { event, code } = await against(async (peer) => {
      await peer.expect(cat(MAGIC_1, word(0x126)))
      peer.send(cat(MAGIC_2, word(0x122)))
      await peer.expect(cat(word(0), word(0)))
      peer.send(cat(str('2.8.0'), hex('73746c6100000000')))
      // AddTempRoot, the wait for a running collection (a socket outside a state directory: it
      // cannot be watched from here), then QueryValidPaths (substitute = false), in the same write
      await peer.expect(cat(word(11), str(P), word(20), word(0), word(0), word(0), word(0), word(0), word(0), word(0), word(31), word(1), str(P), word(0)))
      peer.send(cat(hex('73746c6100000000'), word(1)))
      peer.send(cat(hex('73746c6100000000'), word(0), word(0), word(0)))
      peer.send(cat(hex('7074786300000000'), str('Error'), word(0), str('Error'), str('disk on fire'), word(0), word(0)))
    })
    expect(event.error).toEqual({ kind: 'store', message: 'disk on fire' })
    expect(code).toBe(3)
  })
})

// nix-build on its own registers a temporary out-link in gcroots/auto, which the next collection
// removes as dangling; under nix-hold it runs as nix-instantiate and nix-store --realise, which
// register none. So gcroots is compared before any collection could tidy it.
it.each([
  ['nix build where it has --json, else nix-build', (n: string) => demo(n)],
  ['nix-build', (n: string) => ['nix-build', join(FIXTURES, 'demo.nix'), '--argstr', 'n', n]],
])('creates no file with %s: working directory, TMPDIR and HOME stay empty, and no GC root is added', async (_, command) => {
  const fresh = () => mkdtempSync(join(nix.root, 'empty-'))
  const [cwd, tmp, home] = [fresh(), fresh(), fresh()]
  const gcroots = join(nix.stateDir, 'gcroots')
  const rootsBefore = tree(gcroots)
  const env = { ...nix.env, TMPDIR: tmp, HOME: home }
  const child = spawn(process.execPath, [CLI, '--fd', '3', '--', ...command(unique('nofiles'))], { cwd, env, stdio: ['ignore', 'ignore', 'pipe', 'pipe'] })
  const channel = child.stdio[3] as Socket
  const [first] = (await once(channel, 'data')) as [Buffer]
  const path = (JSON.parse(first.toString()) as { built: string[] }).built[0]!
  expect(tree(gcroots)).toEqual(rootsBefore)
  await nix.gc()
  expect(await nix.isValid(path)).toBe(true)
  channel.write('{"release":true}\n')
  expect((await once(child, 'exit'))[0]).toBe(0)

  expect([tree(cwd), tree(tmp), tree(home)]).toEqual([[], [], []])
  expect(tree(gcroots)).toEqual(rootsBefore)
})
