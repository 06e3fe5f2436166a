// Store URLs for other machines become an ssh command line, and may come from the channel: the
// parser is the only thing between a caller's string and ssh's option parser.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isHoldError } from '../../src/errors.js'
import { parseSshStore, sshArguments } from '../../src/store/ssh.js'

const refused = (uri: string) => {
  try {
    parseSshStore(uri)
  } catch (err) {
    return isHoldError(err) && err.kind === 'usage'
  }
  return false
}

describe('parseSshStore', () => {
  it('reads user, host, port and the parameters Nix honours', () => {
    expect(parseSshStore('ssh-ng://root@host1:2222?ssh-key=/k/id&remote-store=local%3Froot%3D%2Fr&compress=true')).toEqual({
      uri: 'ssh-ng://root@host1:2222?ssh-key=/k/id&remote-store=local%3Froot%3D%2Fr&compress=true',
      scheme: 'ssh-ng',
      user: 'root',
      host: 'host1',
      port: 2222,
      sshKey: '/k/id',
      compress: true,
      remoteCommand: "nix-daemon --stdio --store 'local?root=/r'",
    })
    expect(parseSshStore('ssh-ng://h?remote-program=/opt/nix/bin/nix-daemon').remoteCommand).toBe('/opt/nix/bin/nix-daemon --stdio')
    // ssh:// names nix-store --serve as its remote program, which keeps no temp roots
    expect(parseSshStore('ssh://h?remote-program=nix-store').remoteCommand).toBe('nix-daemon --stdio')
    expect(parseSshStore('ssh://[::1]:22')).toMatchObject({ host: '::1', port: 22 })
  })

  it.each([
    ['ssh-ng://-oProxyCommand=touch%20x', 'the host must be'],
    ['ssh-ng://-oProxyCommand=sh', 'the host must be'],
    ['ssh-ng://-luser@host', 'the user name'],
    ['ssh-ng://-x@host', 'the user name'],
    ['ssh-ng://', 'no host'],
    ['ssh-ng://user@', 'no host'],
    ['ssh-ng://host name', 'whitespace'],
    ['ssh-ng://host\tx', 'whitespace'],
    ['ssh-ng://host\nx', 'whitespace'],
    ['ssh-ng://host/path', 'no path'],
    ['ssh-ng://host:99999', 'out of range'],
    ['ssh-ng://host?remote-program=nix-daemon;rm', 'remote-program'],
    ['ssh-ng://host?remote-program=-oProxyCommand', 'remote-program'],
    ['ssh-ng://host?ssh-key=-oProxyCommand=x', 'ssh-key'],
    ['ssh-ng://host?remote-store=a%0Ab', 'control character'],
    ['ssh-ng://host?remote-store=ssh://other', 'remote-store must be a local store'],
    ["ssh-ng://host?remote-store=x%5C'%3Breboot%3B%23", 'remote-store must be a local store'],
    ['ssh-ng://host?base64-ssh-public-host-key=AAAA', 'known_hosts'],
  ])('refuses %j as a usage error', (uri, why) => {
    expect(() => parseSshStore(uri)).toThrow(expect.objectContaining({ kind: 'usage', message: expect.stringContaining(why) }))
  })

  it('refuses every URL whose host or user starts with "-" or holds whitespace or control characters', () => {
    const hostile = fc.oneof(
      fc.string().map((s) => `-${s}`),
      fc.tuple(fc.string(), fc.constantFrom(' ', '\t', '\n', '\r', '\0', '\u001b', '\u007f'), fc.string()).map(([a, c, b]) => `${a}${c}${b}`),
    )
    const url = fc.oneof(
      hostile.map((h) => `ssh-ng://${h}`),
      hostile.map((h) => `ssh://${h}`),
      fc.tuple(hostile, fc.domain()).map(([u, h]) => `ssh-ng://${u}@${h}`),
      fc.tuple(fc.domain(), hostile).map(([h, p]) => `ssh-ng://${h}?remote-program=${p}`),
    )
    fc.assert(fc.property(url, (u) => refused(u)), { numRuns: 3000 })
  })

  it('puts nothing from an accepted URL before "--" but the values of -i and -p, and the destination right after it', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (tail) => {
        const uri = `ssh-ng://${tail}`
        let store
        try {
          store = parseSshStore(uri)
        } catch {
          return true // refused: nothing starts
        }
        const args = sshArguments(store, { NIX_SSHOPTS: '-F /etc/cfg' })
        const dash = args.indexOf('--')
        expect(args.slice(0, 12)).toEqual(['-o', 'BatchMode=yes', '-x', '-a', '-F', '/etc/cfg', '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=3', '-o', 'ConnectTimeout=30'])
        const options = args.slice(12, dash)
        for (let i = 0; i < options.length; i++) {
          if (options[i] === '-i' || options[i] === '-p') i++
          else expect(options[i]).toBe('-C')
        }
        expect(args.length).toBe(dash + 3)
        expect(args[dash + 1]!.startsWith('-')).toBe(false)
        return true
      }),
      { numRuns: 3000 },
    )
  })
})
