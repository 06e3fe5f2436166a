import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { resolveStore } from '../../src/store/resolve.js'

describe('resolveStore', () => {
  const env = { NIX_STATE_DIR: '/state' }

  it('finds the daemon socket as Nix does', () => {
    expect(resolveStore('daemon', env)).toEqual({ type: 'socket', path: '/state/daemon-socket/socket' })
    expect(resolveStore('daemon', { ...env, NIX_DAEMON_SOCKET_PATH: '/elsewhere' })).toEqual({ type: 'socket', path: '/elsewhere' })
    expect(resolveStore('daemon', {})).toEqual({ type: 'socket', path: '/nix/var/nix/daemon-socket/socket' })
    expect(resolveStore('unix:///run/s?trusted=1', env)).toEqual({ type: 'socket', path: '/run/s' })
  })

  it('takes NIX_REMOTE when no store is named', () => {
    expect(resolveStore(undefined, { ...env, NIX_REMOTE: 'daemon' })).toMatchObject({ type: 'socket' })
    expect(resolveStore(undefined, { ...env, NIX_REMOTE: 'local' })).toMatchObject({ type: 'stdio', storeUri: 'local' })
  })

  it('serves a local store through nix-daemon --stdio, keeping its URL', () => {
    expect(resolveStore('/some/root', env)).toMatchObject({ type: 'stdio', storeUri: '/some/root' })
    expect(resolveStore('local?root=/r', env)).toMatchObject({ type: 'stdio', storeUri: 'local?root=/r' })
  })

  it('picks local for auto when the state directory is writable, as Nix does', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nix-hold-resolve-'))
    expect(resolveStore('auto', { NIX_STATE_DIR: dir })).toMatchObject({ type: 'stdio', storeUri: 'local' })
  })

  it.each(['https://cache.nixos.org', 'ssh://host', 'ssh-ng://host', 'file:///tmp/cache', 's3://bucket'])('refuses %s, which keeps no temp roots', (uri) => {
    expect(() => resolveStore(uri, env)).toThrow(expect.objectContaining({ kind: 'store', message: expect.stringContaining(uri) }))
  })
})
