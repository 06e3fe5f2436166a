// Loopback ssh hosts for a test file that holds on other machines: five hosts (host4 without
// nix-daemon, host5 serving the instance's own store, so it can build there), and two names that
// fail: "stranger" (host1 under a host key alias no known_hosts line vouches for) and "nowhere" (a
// port nothing listens on).

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, expect } from 'vitest'
import { unique, type NixInstance } from './nix.js'
import { startSshHosts, type SshHosts } from './ssh-host.js'
import { startWrapper, type WrapperEvent, type Wrapper } from './wrapper.js'

export interface RemoteHosts {
  readonly ssh: SshHosts
  /** The client environment: the instance's, with NIX_SSHOPTS naming the hosts. */
  readonly env: NodeJS.ProcessEnv
  /** A path built locally and copied to the given hosts (0-based). */
  onHosts(label: string, hosts: number[]): Promise<string>
  /** A hold of a local path with the channel open, to send requests on. */
  localHold(): Promise<Wrapper>
}

/** The store URL of host i (0-based). */
export const store = (i: number): string => `ssh-ng://host${i + 1}`

/** The next `count` events, whatever order the stores answer in. */
export async function events(w: Wrapper, count: number): Promise<WrapperEvent[]> {
  const out = []
  for (let i = 0; i < count; i++) out.push(await w.next())
  return out
}

/** The hosts for the calling test file: started before its first test, stopped after its last. */
export function useRemoteHosts(nix: NixInstance): RemoteHosts {
  let ssh: SshHosts | undefined
  let env: NodeJS.ProcessEnv = {}
  beforeAll(async () => {
    ssh = await startSshHosts(nix, 5, { withoutNixDaemon: [3], instanceStore: [4] })
    const config = readFileSync(ssh.sshConfig, 'utf8')
    const host1 = /^Host host1\n(?:[ \t]+.*\n?)*/m.exec(config)![0]
    const stranger = host1.replace(/^Host host1/, 'Host stranger').replace(/HostKeyAlias host1/, 'HostKeyAlias stranger')
    const nowhere = host1.replace(/^Host host1/, 'Host nowhere').replace(/Port \d+/, 'Port 1')
    const ours = join(nix.root, 'ssh_config')
    writeFileSync(ours, `${config}\n${stranger}\n${nowhere}\n`)
    env = { ...ssh.clientEnv(nix.env), NIX_SSHOPTS: `-F ${ours}` }
  })
  afterAll(async () => ssh?.stop())
  return {
    get ssh() {
      if (!ssh) throw new Error('the ssh hosts are used before beforeAll started them')
      return ssh
    },
    get env() {
      return env
    },
    async onHosts(label, hosts) {
      const path = await nix.buildDemo(unique(label))
      for (const i of hosts) await execa('nix', ['copy', '--no-check-sigs', '--to', store(i), path], { env, extendEnv: false, stdin: 'ignore' })
      return path
    },
    async localHold() {
      const own = await nix.buildDemo(unique('own'))
      const w = startWrapper(['--keep', own], env)
      expect(await w.next()).toEqual({ kept: [own] })
      return w
    },
  }
}
