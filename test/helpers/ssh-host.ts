// Loopback SSH "hosts" (../shared/nix-test-instance.md, "Loopback SSH hosts"): one sshd of the
// test's own per host, on a free 127.0.0.1 port, whose sessions see a chroot Nix store of their own
// at the client instance's logical store dir. `ssh-ng://hostN` then reaches that store through
// `ssh hostN nix-daemon --stdio`, as Nix and nix-hold run it. Used by the tests and the benchmarks
// alike, so it imports nothing from vitest.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import type { NixInstance } from './nix-instance.js'
import { childrenOf, descendantsOf } from './proc.js'

const SSHD = '/usr/sbin/sshd'

export interface SshHost {
  /** The ssh alias of this host in the client ssh_config, e.g. "host1"; a store URL is `ssh-ng://${name}`. */
  readonly name: string
  /**
   * The chroot store root R. Nix 2.8 keeps a chroot store's files in R/nix/store whatever
   * NIX_STORE_DIR says (that only names the paths), and its db and temp roots in R/nix/var/nix.
   */
  readonly root: string
  /**
   * Environment for running Nix commands directly against this host's store
   * (NIX_REMOTE=local?root=R, the client instance's NIX_STORE_DIR, an own NIX_CONF_DIR with the
   * instance's nix.conf). It has no NIX_STATE_DIR: a chroot store keeps its state in R/nix/var/nix.
   */
  readonly env: NodeJS.ProcessEnv
  /** Runs a full garbage collection on the host's store (locally, with `env`). */
  gc(): Promise<void>
  /** Whether `path` is valid in the host's store (`nix-store --check-validity`). */
  isValid(path: string): Promise<boolean>
  /**
   * The pids of the host's sshd session processes now: the children of its sshd, one per open
   * connection. For root, sshd forks no unprivileged child after login, so each is the process
   * that holds the connection: killing it closes the client's ssh at once, and the session's
   * `nix-daemon --stdio` (its child, same process group) exits on EOF.
   */
  sessionPids(): number[]
}

export interface SshHosts {
  readonly hosts: SshHost[]
  /** Path of the client ssh_config (one `Host` block per host and per alias). */
  readonly sshConfig: string
  /** `base` plus NIX_SSHOPTS="-F <sshConfig>" (how Nix and nix-hold pass ssh options). */
  clientEnv(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv
  /** Kills every sshd started here and every session it forked, and removes the directory. */
  stop(): Promise<void>
}

export interface SshHostOptions {
  /** Extra host aliases that reach an existing host's sshd (for "50 stores" benchmarks): alias -> index into `hosts`. */
  readonly aliases?: Record<string, number>
  /** Indexes into `hosts` whose remote PATH has no nix-daemon (to test "no nix-daemon on the host"). */
  readonly withoutNixDaemon?: readonly number[]
  /**
   * Indexes into `hosts` that serve the client instance's own store, through its daemon, instead
   * of a chroot store of their own: a machine that can build (a chroot store cannot without a
   * sandbox). Its `gc` and `isValid` act on the instance's store.
   */
  readonly instanceStore?: readonly number[]
}

/** Fails with a clear message when openssh-server is not installed, rather than skipping. */
function requireSshd(): void {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: install openssh-server (apt-get install -y openssh-server), or run bash .ci/run, which does`)
  // sshd refuses to start without its privilege-separation directory; the package's service makes it at boot
  mkdirSync('/run/sshd', { recursive: true })
}

/** A port that was free a moment ago (sshd may still lose it to someone else: the caller retries). */
async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  server.close()
  await once(server, 'close')
  if (address === null || typeof address === 'string') throw new Error('cannot read the port of a listening socket')
  return address.port
}

/** Generates an ed25519 key pair without passphrase at `path` and `path`.pub; returns the public key line. */
function keygen(path: string): string {
  execFileSync('ssh-keygen', ['-t', 'ed25519', '-N', '', '-q', '-C', 'nix-hold-test', '-f', path], { stdio: ['ignore', 'ignore', 'pipe'] })
  return readFileSync(`${path}.pub`, 'utf8').trim()
}

// sshd_config splits its lines like a shell (misc.c argv_split): double quotes keep `?`, `=` and
// spaces in one token, and a backslash escapes `"` and `\`.
const quote = (s: string): string => `"${s.replace(/["\\]/g, '\\$&')}"`

const kill = (pid: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

interface Sshd {
  readonly child: ChildProcess
  readonly port: number
}

/**
 * Starts `/usr/sbin/sshd -D -e` with the config that `configFor(port)` returns, on a port that is
 * free, and waits until it listens. Its log (stderr) goes to `log`. A port lost to someone else
 * between picking it and binding it is retried with another.
 */
async function startSshd(dir: string, configFor: (port: number) => string, log: string): Promise<Sshd> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const config = join(dir, 'sshd_config')
    writeFileSync(config, configFor(port))
    const fd = openSync(log, 'w')
    // its own process group, so stop() can kill it whole; sessions setsid() away from it and are killed by pid
    const child = spawn(SSHD, ['-D', '-e', '-f', config], { detached: true, stdio: ['ignore', 'ignore', fd] })
    closeSync(fd)
    const listening = `Server listening on 127.0.0.1 port ${port}`
    for (let waited = 0; ; waited += 20) {
      const text = readFileSync(log, 'utf8')
      if (text.includes(listening)) return { child, port }
      if (child.exitCode !== null || child.signalCode !== null) {
        if (text.includes('Address already in use') && attempt < 5) break
        throw new Error(`sshd (${config}) exited with ${child.exitCode ?? child.signalCode} before listening on port ${port}:\n${text}`)
      }
      if (waited > 10_000) {
        kill(-child.pid!, 'SIGKILL')
        throw new Error(`sshd (${config}) did not listen on port ${port} within 10 s:\n${text}`)
      }
      await sleep(20) // polling its log: sshd -e says when it listens, and says nothing else then
    }
  }
}

/**
 * Starts `count` loopback SSH hosts for the instance `nix`, named host1..hostN (hosts[0] is host1),
 * each an sshd on 127.0.0.1 whose sessions serve a chroot store of their own at `nix.storeDir`, so
 * store paths have the same names on both sides. Everything lives in one directory inside
 * `nix.root`. If a host fails to start, the ones already started are stopped before this throws.
 */
export async function startSshHosts(nix: NixInstance, count: number, options: SshHostOptions = {}): Promise<SshHosts> {
  requireSshd()
  const { aliases = {}, withoutNixDaemon = [], instanceStore = [] } = options
  const names = Array.from({ length: count }, (_, i) => `host${i + 1}`)
  for (const [alias, index] of Object.entries(aliases)) {
    if (!/^[\w.-]+$/.test(alias) || names.includes(alias)) throw new Error(`ssh host alias ${JSON.stringify(alias)} is not a plain name of its own`)
    if (!Number.isInteger(index) || index < 0 || index >= count) throw new Error(`ssh host alias ${alias} points at host index ${index}, but there are ${count} hosts`)
  }

  const dir = mkdtempSync(join(nix.root, 'ssh-'))
  const clientDir = join(dir, 'client')
  mkdirSync(clientDir)
  const identity = join(clientDir, 'id_ed25519')
  const authorizedKeys = join(clientDir, 'authorized_keys')
  writeFileSync(authorizedKeys, `${keygen(identity)}\n`)
  const nixConf = readFileSync(join(nix.env.NIX_CONF_DIR!, 'nix.conf'), 'utf8')
  const user = userInfo().username

  // what the instance's clients have, minus the instance's NIX_* settings, plus the Nix 2.3 tree
  // (NIX_DATA_DIR and co, set only for a legacy Nix) that the remote nix-daemon needs as well
  const base: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(nix.env)) if (!k.startsWith('NIX_')) base[k] = v
  for (const k of ['NIX_DATA_DIR', 'NIX_LIBEXEC_DIR', 'NIX_BIN_DIR']) if (nix.env[k] !== undefined) base[k] = nix.env[k]

  const started: Sshd[] = []
  async function stop(): Promise<void> {
    for (const { child } of started) {
      const pid = child.pid!
      if (child.exitCode !== null || child.signalCode !== null) continue
      // stopped first, it forks no session between our look at its children and the kill
      kill(pid, 'SIGSTOP')
      const sessions = descendantsOf(pid)
      const exited = once(child, 'exit')
      kill(-pid, 'SIGKILL')
      for (const session of sessions) {
        kill(-session, 'SIGKILL') // a session leader's group: its shell and nix-daemon, even if forked since
        kill(session, 'SIGKILL')
      }
      await exited
    }
    started.length = 0
    if (existsSync(dir)) {
      // store paths are read-only: make them writable so the directory can go
      execFileSync('chmod', ['-R', 'u+w', dir])
      rmSync(dir, { recursive: true, force: true })
    }
  }

  try {
    // all settled before a failure stops them: no host may start after stop() has looked
    const settled = await Promise.allSettled(
      names.map(async (name, index) => {
        const hostDir = join(dir, name)
        const root = join(hostDir, 'root')
        const confDir = join(hostDir, 'etc')
        const home = join(hostDir, 'home')
        const noBin = join(hostDir, 'no-bin')
        for (const d of [root, confDir, home, noBin]) mkdirSync(d, { recursive: true })
        writeFileSync(join(confDir, 'nix.conf'), nixConf)
        const hostKey = join(hostDir, 'ssh_host_ed25519_key')
        const publicKey = keygen(hostKey)
        const env: NodeJS.ProcessEnv = instanceStore.includes(index)
          ? { ...nix.env, HOME: home, XDG_CACHE_HOME: join(home, '.cache') }
          : {
              ...base,
              NIX_REMOTE: `local?root=${root}`,
              NIX_STORE_DIR: nix.storeDir,
              NIX_CONF_DIR: confDir,
              HOME: home,
              XDG_CACHE_HOME: join(home, '.cache'),
            }
        const remoteEnv: Record<string, string | undefined> = {
          NIX_REMOTE: env.NIX_REMOTE,
          NIX_STORE_DIR: env.NIX_STORE_DIR,
          NIX_STATE_DIR: env.NIX_STATE_DIR,
          NIX_LOG_DIR: env.NIX_LOG_DIR,
          NIX_CONF_DIR: env.NIX_CONF_DIR,
          NIX_DATA_DIR: env.NIX_DATA_DIR,
          NIX_LIBEXEC_DIR: env.NIX_LIBEXEC_DIR,
          NIX_BIN_DIR: env.NIX_BIN_DIR,
          HOME: env.HOME,
          XDG_CACHE_HOME: env.XDG_CACHE_HOME,
          // /bin is /usr/bin on Debian, where nix-daemon lives: the host without one gets an empty
          // dir only (the login shell itself is started by its absolute path)
          PATH: withoutNixDaemon.includes(index) ? noBin : env.PATH,
        }
        const setEnv = Object.entries(remoteEnv)
          .filter((e): e is [string, string] => e[1] !== undefined)
          .map(([k, v]) => quote(`${k}=${v}`))
          .join(' ')
        const sshd = await startSshd(
          hostDir,
          (port) => `Port ${port}
ListenAddress 127.0.0.1
HostKey ${quote(hostKey)}
PidFile ${quote(join(hostDir, 'sshd.pid'))}
AuthorizedKeysFile ${quote(authorizedKeys)}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PermitUserEnvironment no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
# benchmarks open dozens of connections at once; the default (10:30:100) drops some of them
MaxStartups 1000
SetEnv ${setEnv}
`,
          join(hostDir, 'sshd.log'),
        )
        started.push(sshd)
        const run = (cmd: string, args: string[]) => execa(cmd, args, { env, extendEnv: false, stdin: 'ignore' })
        const host: SshHost = {
          name,
          root,
          env,
          async gc() {
            await run('nix-store', ['--gc'])
          },
          async isValid(path) {
            const r = await execa('nix-store', ['--check-validity', path], { env, extendEnv: false, reject: false, stdin: 'ignore', stderr: 'ignore' })
            return r.exitCode === 0
          },
          sessionPids: () => childrenOf(sshd.child.pid!),
        }
        return { host, port: sshd.port, publicKey }
      }),
    )
    const hosts = settled.map((r) => {
      if (r.status === 'rejected') throw r.reason
      return r.value
    })

    const block = (alias: string, target: (typeof hosts)[number]): string => `Host ${alias}
  HostName 127.0.0.1
  Port ${target.port}
  User ${user}
  IdentityFile ${quote(identity)}
  IdentitiesOnly yes
  HostKeyAlias ${target.host.name}
  UserKnownHostsFile ${quote(join(clientDir, 'known_hosts'))}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
  ControlMaster no
  ControlPath none
`
    const sshConfig = join(clientDir, 'ssh_config')
    writeFileSync(
      sshConfig,
      [...hosts.map((h) => block(h.host.name, h)), ...Object.entries(aliases).map(([alias, index]) => block(alias, hosts[index]!))].join('\n'),
    )
    // a public key file is "type base64 comment"; known_hosts wants "name type base64"
    writeFileSync(join(clientDir, 'known_hosts'), hosts.map((h) => `${h.host.name} ${h.publicKey.split(' ').slice(0, 2).join(' ')}\n`).join(''))

    return {
      hosts: hosts.map((h) => h.host),
      sshConfig,
      clientEnv: (env) => ({ ...env, NIX_SSHOPTS: `-F ${sshConfig}` }),
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}
