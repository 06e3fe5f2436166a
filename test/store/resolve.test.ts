import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { configuredStore, resolveStore, type Machine } from '../../src/store/resolve.js'

const scratch = mkdtempSync(join(tmpdir(), 'nix-hold-resolve-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

let dirs = 0
/** A directory of nix.conf-style files: name -> contents. */
function confDir(files: Record<string, string>): string {
  const dir = join(scratch, `conf-${++dirs}`)
  mkdirSync(dir)
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true })
    writeFileSync(join(dir, name), text)
  }
  return dir
}

// A machine where nothing exists and nothing may be written, unless said otherwise.
const machine = (over: Partial<Machine> = {}): Machine => ({ writable: () => false, exists: () => false, isRoot: false, ...over })
// No configuration files of this machine's: a HOME and config dirs that hold none.
const bare = (): NodeJS.ProcessEnv => ({ HOME: join(scratch, 'no-home'), NIX_CONF_DIR: join(scratch, 'no-etc'), XDG_CONFIG_DIRS: join(scratch, 'no-xdg') })

describe('resolveStore', () => {
  const env = { ...bare(), NIX_STATE_DIR: '/state' }

  it('finds the daemon socket as Nix does, and the state directory that goes with it', () => {
    expect(resolveStore('daemon', env)).toEqual({ type: 'socket', path: '/state/daemon-socket/socket', stateDir: '/state' })
    expect(resolveStore('daemon', { ...env, NIX_DAEMON_SOCKET_PATH: '/elsewhere' })).toEqual({ type: 'socket', path: '/elsewhere', stateDir: undefined })
    expect(resolveStore('daemon', bare())).toEqual({ type: 'socket', path: '/nix/var/nix/daemon-socket/socket', stateDir: '/nix/var/nix' })
    expect(resolveStore('unix:///run/s?trusted=1', env)).toEqual({ type: 'socket', path: '/run/s', stateDir: undefined })
  })

  it('takes NIX_REMOTE when no store is named or configured', () => {
    expect(resolveStore(undefined, { ...env, NIX_REMOTE: 'daemon' })).toMatchObject({ type: 'socket' })
    expect(resolveStore(undefined, { ...env, NIX_REMOTE: 'local' })).toMatchObject({ type: 'stdio', storeUri: 'local', stateDir: '/state' })
  })

  it('serves a local store through nix-daemon --stdio, keeping its URL, and knows its state directory', () => {
    expect(resolveStore('/some/root', env)).toMatchObject({ type: 'stdio', storeUri: '/some/root', stateDir: '/some/root/nix/var/nix' })
    expect(resolveStore('local?root=/r', env)).toMatchObject({ type: 'stdio', storeUri: 'local?root=/r', stateDir: '/r/nix/var/nix' })
    expect(resolveStore('local?root=/r&state=/s', env)).toMatchObject({ stateDir: '/s' })
  })

  it('picks local for auto when the state directory is writable, as Nix does', () => {
    expect(resolveStore('auto', { ...bare(), NIX_STATE_DIR: scratch })).toMatchObject({ type: 'stdio', storeUri: 'local' })
  })

  it('picks the daemon for auto when the state directory is not writable and the socket exists', () => {
    const m = machine({ exists: (p) => p === '/state/daemon-socket/socket' || p === '/state' })
    expect(resolveStore('auto', env, m)).toMatchObject({ type: 'socket', path: '/state/daemon-socket/socket' })
  })

  it('picks the store under the user\'s data directory for auto where Nix 2.10+ does: no /nix, no daemon, not root', () => {
    const home = { ...bare(), HOME: '/home/u' }
    expect(resolveStore('auto', home, machine())).toMatchObject({ type: 'stdio', storeUri: 'local?root=/home/u/.local/share/nix/root', stateDir: '/home/u/.local/share/nix/root/nix/var/nix' })
    expect(resolveStore(undefined, { ...home, XDG_DATA_HOME: '/xdg' }, machine())).toMatchObject({ storeUri: 'local?root=/xdg/nix/root' })
    expect(resolveStore(undefined, { ...home, NIX_DATA_HOME: '/nd' }, machine())).toMatchObject({ storeUri: 'local?root=/nd/root' })
    // not when any of its conditions fails: then the plain local store, as Nix falls back to
    expect(resolveStore('auto', home, machine({ isRoot: true }))).toMatchObject({ storeUri: 'local' })
    expect(() => resolveStore('auto', home, machine({ exists: (p) => p === '/nix/var/nix' }))).toThrow(
      expect.objectContaining({ kind: 'store', message: expect.stringMatching(/no Nix daemon is running .* may not write the local store's state directory \/nix\/var\/nix/) }),
    )
    expect(resolveStore('auto', { ...home, NIX_STORE_DIR: '/s' }, machine())).toMatchObject({ storeUri: 'local' })
    expect(resolveStore('auto?root=/r', home, machine())).toMatchObject({ storeUri: 'local?root=/r' })
  })

  it('reaches ssh:// and ssh-ng:// stores through ssh, refusing a URL that could reach ssh as an option', () => {
    expect(resolveStore('ssh-ng://root@h1:2200', env)).toMatchObject({ type: 'ssh', store: { host: 'h1', user: 'root', port: 2200 } })
    expect(resolveStore('ssh-ng://h1', env).stateDir).toBeUndefined() // its collector cannot be watched from here
    expect(resolveStore('ssh://h1', env)).toMatchObject({ type: 'ssh', store: { remoteCommand: 'nix-daemon --stdio' } })
    expect(() => resolveStore('ssh-ng://-oProxyCommand=x', env)).toThrow(expect.objectContaining({ kind: 'usage' }))
  })

  it.each(['https://cache.nixos.org', 'file:///tmp/cache', 's3://bucket'])('refuses %s, which keeps no temp roots', (uri) => {
    expect(() => resolveStore(uri, env)).toThrow(expect.objectContaining({ kind: 'store', message: expect.stringContaining(uri) }))
  })
})

describe('the store setting, read as Nix reads its configuration', () => {
  it('takes `store` from nix.conf over NIX_REMOTE, as the setting\'s default is only that variable', () => {
    const etc = confDir({ 'nix.conf': '# a comment\nsubstituters =\nstore = local?root=/from-etc # trailing\n' })
    expect(configuredStore({ ...bare(), NIX_CONF_DIR: etc, NIX_REMOTE: 'daemon' })).toBe('local?root=/from-etc')
    expect(resolveStore(undefined, { ...bare(), NIX_CONF_DIR: etc })).toMatchObject({ type: 'stdio', storeUri: 'local?root=/from-etc' })
  })

  it('lets the user\'s files override nix.conf, the first of them winning, and NIX_CONFIG override both', () => {
    const etc = confDir({ 'nix.conf': 'store = daemon\n' })
    const first = confDir({ 'nix/nix.conf': 'store = unix:///first\n' })
    const second = confDir({ 'nix/nix.conf': 'store = unix:///second\n' })
    const env = { ...bare(), NIX_CONF_DIR: etc, XDG_CONFIG_HOME: first, XDG_CONFIG_DIRS: second }
    expect(configuredStore(env)).toBe('unix:///first')
    expect(configuredStore({ ...env, XDG_CONFIG_HOME: join(scratch, 'none') })).toBe('unix:///second')
    expect(configuredStore({ ...env, NIX_USER_CONF_FILES: join(second, 'nix', 'nix.conf') })).toBe('unix:///second')
    expect(configuredStore({ ...env, NIX_CONFIG: 'store = local\nsandbox = false' })).toBe('local')
  })

  it('follows include and !include, relative to the including file', () => {
    const etc = confDir({ 'nix.conf': 'store = daemon\ninclude extra/more.conf\n!include missing.conf\n', 'extra/more.conf': 'store = /included\n' })
    expect(configuredStore({ ...bare(), NIX_CONF_DIR: etc })).toBe('/included')
  })

  it('is NIX_REMOTE, then auto, when nothing sets it', () => {
    expect(configuredStore({ ...bare(), NIX_REMOTE: 'daemon' })).toBe('daemon')
    expect(configuredStore(bare())).toBe('auto')
  })
})
