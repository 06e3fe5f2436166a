// `export NIX_REMOTE=$(nix-hold --for $$ --proxy)`: unmodified Nix commands, run through the
// proxy, keep what they built or added alive until the script exits, on every Nix in the matrix.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { FIXTURES, nixLabel, nixVersions, scriptCommand, unique, useNix } from '../helpers/nix.js'
import { holdersFor, noHolderFor } from '../helpers/owner.js'
import { proxied as proxiedWith, q, run } from '../helpers/proxied.js'
import { eventually, exited } from '../helpers/proc.js'

const nix = useNix()
const proxied = () => proxiedWith(nix.env)

const direct = (args: string[]) => execa(args[0]!, args.slice(1), { env: nix.env, extendEnv: false, stdin: 'ignore', reject: false })

// The relay reads the protocol as each minor has it: 1.21 (Nix 2.3), 1.34 (2.8), 1.35 (2.18, Lix)
// and 1.38 (2.24 to 2.35). Nix 2.26 and 2.34 speak 1.38 as 2.24 and 2.35 do, so this file skips
// them to keep the test run short; the race through the proxy (gc-race.test.ts) runs on them too.
const { daemon } = nixVersions()
const sameAsAnother = !daemon.lix && daemon.major === 2 && (daemon.minor === 26 || daemon.minor === 34)

describe.skipIf(sameAsAnother)(`through the proxy on ${nixLabel()}`, () => {
  it('prints one unix:// URI in a private directory, the same again, and removes it when the script exits', async () => {
    const owner = proxied()
    const uri = await owner.line()
    expect(uri).toMatch(/^unix:\/\/\/.*\/[0-9a-f]{32}\.sock$/)
    const path = uri.slice('unix://'.length)
    const { lines } = await run(owner, '"$NODE" "$CLI" --for $$ --proxy')
    expect(lines).toEqual([uri])
    expect(existsSync(path)).toBe(true)
    owner.finish()
    await owner.exit
    expect(await noHolderFor(owner.pid)).toBe(true)
    expect(existsSync(path)).toBe(false)
  })

  it('holds what nix-build, nix-instantiate with nix-store --realise, nix build and nix-store --add made, after each command exits, until the script does', async () => {
    const owner = proxied()
    await owner.line()
    const held: string[] = []
    const legacy = nixVersions().client.legacy
    const built = await run(owner, `nix-build ${q(join(FIXTURES, 'demo.nix'))} --argstr n ${unique('px')} --no-out-link`)
    expect(built.status).toBe(0)
    expect(built.lines).toHaveLength(1)
    held.push(...built.lines)
    // nix-instantiate, then nix-store --realise of both outputs
    const drv = await run(owner, `nix-instantiate ${q(join(FIXTURES, 'multi.nix'))} --argstr n ${unique('px')}`)
    expect(drv.lines[0]).toMatch(/\.drv$/)
    const realised = await run(owner, `nix-store --realise ${q(drv.lines[0]!)}`)
    expect(realised.status).toBe(0)
    expect(realised.lines).toHaveLength(2)
    held.push(drv.lines[0]!, ...realised.lines)
    // nix build of both outputs, which the script finds with nix-store -q
    if (!legacy) {
      const n = unique('px')
      const multi = q(join(FIXTURES, 'multi.nix'))
      expect((await run(owner, `nix build -f ${multi} --argstr n ${n} --no-link out lib`)).status).toBe(0)
      const outs = await run(owner, `nix-store -q --outputs "$(nix-instantiate ${multi} --argstr n ${n})"`)
      expect(outs.lines).toHaveLength(2)
      held.push(...outs.lines)
    }
    // nix-store --add and --add-fixed
    const dir = join(nix.root, unique('px-files'))
    mkdirSync(dir)
    writeFileSync(join(dir, 'a'), `${dir} a\n`)
    writeFileSync(join(dir, 'b'), `${dir} b\n`)
    const added = await run(owner, `nix-store --add ${q(join(dir, 'a'))}; nix-store --add-fixed sha256 ${q(join(dir, 'b'))}`)
    expect(added.lines).toHaveLength(2)
    held.push(...added.lines)
    // queries answer as they do directly
    const queries = `nix-store -q --references ${q(held[0]!)}; nix-store -q --hash ${q(held[0]!)}; nix path-info ${q(held[0]!)}`
    const info = await run(owner, queries)
    const infoDirect = await direct(['sh', '-c', queries])
    expect(info.lines.join('\n')).toBe(infoDirect.stdout)

    // every command has exited; only the holder keeps them now, on one connection of its own
    expect(await eventually(() => nix.workerPids().length <= 1, 10_000)).toBe(true)
    await nix.gc()
    expect(await Promise.all(held.map((p) => nix.isValid(p)))).toEqual(held.map(() => true))

    owner.finish()
    expect(await noHolderFor(owner.pid)).toBe(true)
    await nix.gc()
    expect(await Promise.all(held.map((p) => nix.isValid(p)))).toEqual(held.map(() => false))
  })

  it.skipIf(nixVersions().client.legacy)('holds what nix copy --from brought in and what nix eval built for an import from a derivation; nix copy --to reads through it', async () => {
    const owner = proxied()
    await owner.line()
    // another store on this machine, to copy from and to
    const other = join(nix.root, unique('px-other'))
    const file = join(nix.root, unique('px-copied'))
    writeFileSync(file, `${file}\n`)
    const made = await direct(['nix-store', '--store', `local?root=${other}`, '--add', file])
    const copied = made.stdout.trim()
    expect(made.exitCode).toBe(0)
    const from = await run(owner, `nix copy --no-check-sigs --from ${q(`local?root=${other}`)} ${q(copied)} 2>/dev/null`)
    expect(from.status).toBe(0)
    const n = unique('px-ifd')
    const evaluated = await run(owner, `nix eval --impure --expr ${q(`builtins.readFile (import ${join(FIXTURES, 'demo.nix')} { n = "${n}"; })`)} 2>/dev/null`)
    expect(evaluated.lines).toEqual([JSON.stringify(`${n}\n`)])
    const ifd = await run(owner, `nix-store -q --outputs "$(nix-instantiate ${q(join(FIXTURES, 'demo.nix'))} --argstr n ${n})"`)
    const to = await run(owner, `nix copy --no-check-sigs --to ${q(`local?root=${other}`)} ${q(ifd.lines[0]!)} 2>/dev/null`)
    expect(to.status).toBe(0)
    expect((await direct(['nix-store', '--store', `local?root=${other}`, '--check-validity', ifd.lines[0]!])).exitCode).toBe(0)
    expect(await eventually(() => nix.workerPids().length <= 1, 10_000)).toBe(true)
    await nix.gc()
    expect([await nix.isValid(copied), await nix.isValid(ifd.lines[0]!)]).toEqual([true, true])
  })

  it("passes on Nix's own error for a failed build: the same status and the same words", async () => {
    const owner = proxied()
    await owner.line()
    const n = unique('px-fail')
    const args = ['nix-build', join(FIXTURES, 'fail.nix'), '--argstr', 'n', n, '--no-out-link']
    const viaProxy = await run(owner, `${args.map(q).join(' ')} 2>&1`)
    const straight = await direct(['sh', '-c', `${args.map(q).join(' ')} 2>&1`])
    expect(viaProxy.status, `through the proxy:\n${viaProxy.lines.join('\n')}\ndirectly:\n${straight.stdout}`).toBe(straight.exitCode)
    expect(viaProxy.status).not.toBe(0)
    const errors = (text: string) => text.split('\n').filter((l) => /error/.test(l))
    expect(errors(viaProxy.lines.join('\n'))).toEqual(errors(straight.stdout))
  })

  it('stops the build of a client killed in the middle of it, as the daemon does for its own clients', async () => {
    const owner = proxied()
    const uri = await owner.line()
    const marker = join(nix.root, unique('px-builder'))
    // the builder says its pid, then runs for a minute
    const command = scriptCommand(unique('px-kill'), `echo $$ > ${marker}; exec /bin/sleep 60`)
    const client = spawn(command[0]!, command.slice(1), { env: { ...nix.env, NIX_REMOTE: uri }, stdio: 'ignore' })
    expect(await eventually(() => existsSync(marker) && readFileSync(marker, 'utf8').trim() !== '', 20_000)).toBe(true)
    const builder = Number(readFileSync(marker, 'utf8').trim())
    expect(exited(builder)).toBe(false)
    client.kill('SIGKILL')
    await once(client, 'exit')
    expect(await eventually(() => exited(builder), 5000)).toBe(true)
    expect(holdersFor(owner.pid)).toHaveLength(1)
  })

  it('closes a connection that sends garbage, and goes on serving the next', async () => {
    const owner = proxied()
    const uri = await owner.line()
    const socket = createConnection({ path: uri.slice('unix://'.length) })
    socket.on('error', () => undefined)
    await once(socket, 'connect')
    socket.write(Buffer.alloc(64 * 1024, 0x41))
    await once(socket, 'close')
    const dir = join(nix.root, unique('px-after'))
    mkdirSync(dir)
    writeFileSync(join(dir, 'f'), `${dir}\n`)
    const added = await run(owner, `nix-store --add ${q(join(dir, 'f'))}`)
    expect(added.status).toBe(0)
    expect(holdersFor(owner.pid)).toHaveLength(1)
  })

  it('gives a command whose build is cut off by a daemon restart the error the daemon itself gives', async () => {
    const owner = proxied()
    const uri = await owner.line()
    const markers = [join(nix.root, unique('px-cut-direct')), join(nix.root, unique('px-cut-proxied'))]
    const started = markers.map((marker, i) => {
      const command = scriptCommand(unique('px-cut'), `echo $$ > ${marker}; exec /bin/sleep 60`)
      return execa(command[0]!, command.slice(1), { env: i === 0 ? nix.env : { ...nix.env, NIX_REMOTE: uri }, extendEnv: false, stdin: 'ignore', reject: false })
    })
    expect(await eventually(() => markers.every((m) => existsSync(m) && readFileSync(m, 'utf8').trim() !== ''), 20_000)).toBe(true)
    await nix.stopDaemon()
    const [straight, viaProxy] = await Promise.all(started)
    await nix.startDaemon()
    expect(viaProxy!.exitCode).toBe(straight!.exitCode)
    expect(viaProxy!.exitCode).not.toBe(0)
    const lastError = (text: string) => text.split('\n').filter((l) => /error/.test(l)).at(-1)
    expect(lastError(viaProxy!.stderr)).toBe(lastError(straight!.stderr))
  })

  it('holds again what it held when the daemon restarts', async () => {
    const owner = proxied()
    await owner.line()
    const built = await run(owner, `nix-build ${q(join(FIXTURES, 'demo.nix'))} --argstr n ${unique('px-restart')} --no-out-link`)
    expect(await eventually(() => nix.workerPids().length <= 1, 10_000)).toBe(true)
    await nix.stopDaemon()
    await nix.startDaemon()
    // the holder's connection is back, with the roots on it again
    expect(await eventually(() => nix.holdersOf(built.lines[0]!).length > 0, 10_000)).toBe(true)
    await nix.gc()
    expect(await nix.isValid(built.lines[0]!)).toBe(true)
    // and commands go through the proxy as before
    const dir = join(nix.root, unique('px-restart-files'))
    mkdirSync(dir)
    writeFileSync(join(dir, 'f'), `${dir}\n`)
    expect((await run(owner, `nix-store --add ${q(join(dir, 'f'))}`)).status).toBe(0)
  })
})
