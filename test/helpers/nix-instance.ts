// An isolated Nix instance (../shared/nix-test-instance.md): its own store, state, config and
// daemon socket under one temporary directory, never the machine's /nix. Used by the tests and
// the benchmarks alike, so it imports nothing from vitest.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { childrenOf } from './proc.js'

export const FIXTURES = new URL('../fixtures/', import.meta.url).pathname

// Nix 2.3 has no experimental features (it warns about the setting), and `nix` there needs none.
const nixConf = (legacy: boolean): string => `substituters =
sandbox = false
build-users-group =
${legacy ? '' : 'experimental-features = nix-command\n'}fsync-metadata = false
`

/**
 * Which Nix the tests run against. The matrix (scripts/test.sh, vitest.config.ts) sets these per
 * project: the bin dir whose `nix-daemon` serves the instance, and the bin dir whose `nix`,
 * `nix-build` and `nix-store` (and `nix-daemon --stdio`) the clients find first on PATH. Unset, both
 * are the Nix on PATH (Debian's nix-bin).
 */
const DAEMON_BIN = process.env.NIX_HOLD_TEST_DAEMON_BIN || undefined
const CLIENT_BIN = process.env.NIX_HOLD_TEST_CLIENT_BIN || undefined

/** A Nix version as numbers, for gating what older releases lack. */
export interface NixVersion {
  readonly text: string
  readonly major: number
  readonly minor: number
  /** Whether this is Nix 2.3 or older: `nix build` has no --json, and files live where NIX_DATA_DIR says. */
  readonly legacy: boolean
  /**
   * Whether this is Lix ("nix-store (Lix, like Nix) 2.95.3"): its daemon speaks 1.35 and refuses
   * clients that offer less, and it has `nix store ping` where Nix has `nix store info`.
   */
  readonly lix: boolean
}

function versionOf(bin: string | undefined): NixVersion {
  const exe = bin ? join(bin, 'nix-store') : 'nix-store'
  const out = execFileSync(exe, ['--version'], { encoding: 'utf8', env: { ...process.env, ...legacyDirs(bin) } })
  const m = /(\d+)\.(\d+)(\.\d+)?/.exec(out)
  if (!m) throw new Error(`cannot read a version from ${exe} --version: ${out}`)
  const [major, minor] = [Number(m[1]), Number(m[2])]
  return { text: m[0], major, minor, legacy: major < 2 || (major === 2 && minor < 4), lix: /\(Lix\b/.test(out) }
}

// Nix 2.3 reads its corepkgs and build hook from compiled-in /opt paths unless told where its tree
// is (../shared/nix-versions/README.md); newer trees need nothing.
function legacyDirs(bin: string | undefined): NodeJS.ProcessEnv {
  if (!bin || !existsSync(join(bin, '..', 'share', 'nix', 'corepkgs'))) return {}
  return { NIX_DATA_DIR: join(bin, '..', 'share'), NIX_LIBEXEC_DIR: join(bin, '..', 'libexec'), NIX_BIN_DIR: bin }
}

let versions: { client: NixVersion; daemon: NixVersion } | undefined
/** The client's and the daemon's Nix version in this test project (read once). */
export function nixVersions(): { client: NixVersion; daemon: NixVersion } {
  requireNix()
  versions ??= { client: versionOf(CLIENT_BIN), daemon: versionOf(DAEMON_BIN) }
  return versions
}

/** A label for this project's Nix, as test names give it: "Nix 2.24.15", "Lix 2.95.3" or "Nix 2.24.15 daemon, 2.8.0 client". */
export function nixLabel(): string {
  const { client, daemon } = nixVersions()
  const name = (v: NixVersion) => `${v.lix ? 'Lix' : 'Nix'} ${v.text}`
  return client.text === daemon.text ? name(client) : `${name(daemon)} daemon, ${client.text} client`
}

/**
 * The command that builds demo.nix with `n` under nix-hold: `nix build` where it has --json, else
 * `nix-build` (Nix 2.3).
 */
export function demoCommand(n: string, fixture = 'demo.nix'): string[] {
  return nixVersions().client.legacy
    ? ['nix-build', join(FIXTURES, fixture), '--argstr', 'n', n]
    : ['nix', 'build', '-f', join(FIXTURES, fixture), '--argstr', 'n', n]
}

/** A build of a derivation whose builder runs `script` (taken as an expression: impure where Nix has that notion). */
export function scriptCommand(name: string, script: string): string[] {
  const expr = `derivation { name = "${name}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" ${JSON.stringify(script)} ]; }`
  return nixVersions().client.legacy ? ['nix-build', '-E', expr] : ['nix', 'build', '--impure', '--expr', expr]
}

/**
 * The programs nix-hold runs for a build command, found on PATH: the one it starts first, and the
 * one that builds and prints the outputs. nix-build is run as nix-instantiate, then nix-store
 * --realise; a shim that stands in for a step of the build is put first on PATH under that name.
 */
export const stepsOf = (command: readonly string[]): { first: string; builds: string } =>
  command[0] === 'nix' ? { first: 'nix', builds: 'nix' } : { first: 'nix-instantiate', builds: 'nix-store' }

/** The exit code of a build command whose derivation failed: 1, but 100 for Nix 2.3's nix-build. */
export const failedBuildCode = (command: readonly string[]): number => (command[0] !== 'nix' && nixVersions().client.legacy ? 100 : 1)

export interface NixInstance {
  readonly root: string
  readonly storeDir: string
  readonly stateDir: string
  readonly socketPath: string
  /** Environment for a client of this instance (NIX_REMOTE=daemon). */
  readonly env: NodeJS.ProcessEnv
  /** Builds `demo.nix` with `n` and returns its output path (rooted by nothing once this returns). */
  buildDemo(n: string): Promise<string>
  /**
   * Adds `count` small files to the store with one `nix-store --add` (any Nix, any daemon: no
   * worker-protocol op that some daemons lack); returns their paths, rooted by nothing.
   */
  addFiles(label: string, count?: number): Promise<string[]>
  /** Runs a full garbage collection. */
  gc(): Promise<void>
  isValid(path: string): Promise<boolean>
  /** The pids that have temp roots now (files in temproots/). */
  tempRootPids(): number[]
  /** The pids of the processes whose temp roots name `path` (the daemon workers holding it). */
  holdersOf(path: string): number[]
  /** Kills the daemon and every worker it forked, as a restart of the service would. */
  stopDaemon(): Promise<void>
  /** Starts the daemon again and waits for its socket. */
  startDaemon(): Promise<void>
  /** The running daemon's pid (its workers are its children). */
  daemonPid(): number
  /** The pids of the daemon's workers now: one per open connection, until each has wound down. */
  workerPids(): number[]
  /** Kills the daemon (its whole process group) and removes the directory. */
  stop(): Promise<void>
}

/** Fails with a clear message when Nix is not installed, rather than skipping. */
function requireNix(): void {
  try {
    execFileSync(DAEMON_BIN ? join(DAEMON_BIN, 'nix-daemon') : 'nix-daemon', ['--version'], { stdio: 'ignore', env: { ...process.env, ...legacyDirs(DAEMON_BIN) } })
  } catch {
    if (DAEMON_BIN) throw new Error(`${DAEMON_BIN}/nix-daemon does not run: install it with ../shared/nix-versions/install.sh, or run bash .ci/run, which does`)
    throw new Error('nix-daemon is not on PATH: install Nix (on Debian, as root: apt-get install -y nix-bin), or run bash .ci/run, which does')
  }
}

/** Environment for Nix commands in `root`, with nothing of the machine's own Nix settings. */
export function nixEnv(root: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NIX_')) env[k] = v
  if (CLIENT_BIN) env.PATH = `${CLIENT_BIN}:${env.PATH ?? '/usr/bin:/bin'}`
  return {
    ...env,
    ...legacyDirs(CLIENT_BIN),
    NIX_STORE_DIR: join(root, 'store'),
    NIX_STATE_DIR: join(root, 'var'),
    NIX_LOG_DIR: join(root, 'log'),
    NIX_CONF_DIR: join(root, 'etc'),
    HOME: join(root, 'home'),
    XDG_CACHE_HOME: join(root, 'home', '.cache'),
    NIX_REMOTE: 'daemon',
  }
}

// Creating a file on this VM's disk costs about a millisecond, and Nix creates several per path;
// tmpfs makes a store of thousands of paths quick. Behaviour is the same on either.
const scratch = (): string => {
  try {
    accessSync('/dev/shm', constants.W_OK)
    return '/dev/shm'
  } catch {
    return tmpdir()
  }
}

export interface StartOptions {
  /** Lines appended to the instance's nix.conf. */
  readonly extraConf?: string
}

/**
 * The process holding a flock on the file with inode `ino`, from /proc/locks ("1: FLOCK ADVISORY
 * WRITE 24658 00:1b:1971 0 EOF": pid, then major:minor:inode); waiters ("->") hold nothing yet.
 */
function lockedBy(locks: string, ino: number): number | undefined {
  for (const line of locks.split('\n')) {
    const m = /^\d+: FLOCK\s+\S+\s+\S+\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s/.exec(line)
    if (m && Number(m[2]) === ino) return Number(m[1])
  }
  return undefined
}

/** Starts a daemon on a fresh instance and waits for its socket. */
export async function startNix({ extraConf = '' }: StartOptions = {}): Promise<NixInstance> {
  requireNix()
  const root = mkdtempSync(join(scratch(), 'nix-hold-test-'))
  mkdirSync(join(root, 'etc'))
  mkdirSync(join(root, 'home'))
  // Nix 2.35's clients open the store directory before they connect: one the daemon has not made
  // yet (it does on its first connection) would fail them
  mkdirSync(join(root, 'store'))
  const { client, daemon: daemonVersion } = nixVersions()
  writeFileSync(join(root, 'etc', 'nix.conf'), nixConf(client.legacy || daemonVersion.legacy) + extraConf)
  const env = nixEnv(root)
  const socketPath = join(root, 'var', 'daemon-socket', 'socket')
  let daemon: ChildProcess | undefined

  async function startDaemon(): Promise<void> {
    rmSync(socketPath, { force: true })
    const daemonEnv: NodeJS.ProcessEnv = { ...env, ...legacyDirs(DAEMON_BIN), NIX_REMOTE: 'local' }
    if (DAEMON_BIN) daemonEnv.PATH = `${DAEMON_BIN}:${daemonEnv.PATH}`
    const child = spawn(DAEMON_BIN ? join(DAEMON_BIN, 'nix-daemon') : 'nix-daemon', [], { env: daemonEnv, detached: true, stdio: 'ignore' })
    daemon = child
    for (let waited = 0; !existsSync(socketPath); waited += 20) {
      if (waited > 20_000) throw new Error(`nix-daemon did not create ${socketPath}`)
      if (child.exitCode !== null) throw new Error(`nix-daemon exited with ${child.exitCode}`)
      await sleep(20) // polling for the socket file, the documented way to wait for the daemon
    }
  }

  async function stopDaemon(): Promise<void> {
    const child = daemon
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    const workers = childrenOf(child.pid)
    for (const pid of [child.pid, ...workers]) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    await exited
  }

  await startDaemon()
  const tempRootsDir = join(env.NIX_STATE_DIR!, 'temproots')
  // A temp-roots file counts while its process holds a lock on it, as Nix's collector decides: a
  // process that exits without removing its file (every killed one; every daemon worker of Nix
  // 2.34 and 2.35.0-1, which skip the removal) leaves it behind, unlocked, until a collection
  // removes it as stale.
  const tempRootPids = (): number[] => {
    if (!existsSync(tempRootsDir)) return []
    const locks = readFileSync('/proc/locks', 'utf8')
    return readdirSync(tempRootsDir)
      .filter((name) => /^\d+$/.test(name))
      .filter((name) => {
        try {
          return lockedBy(locks, statSync(join(tempRootsDir, name)).ino) === Number(name)
        } catch {
          return false // removed as we looked
        }
      })
      .map(Number)
  }
  const run = (cmd: string, args: string[]) => execa(cmd, args, { env, extendEnv: false, stdin: 'ignore' })
  return {
    root,
    storeDir: env.NIX_STORE_DIR!,
    stateDir: env.NIX_STATE_DIR!,
    socketPath,
    env,
    async buildDemo(n) {
      const { stdout } = await run('nix-build', [join(FIXTURES, 'demo.nix'), '--argstr', 'n', n, '--no-out-link'])
      return stdout.trim()
    },
    async addFiles(label, count = 1) {
      const dir = mkdtempSync(join(root, 'files-'))
      const files = Array.from({ length: count }, (_, i) => join(dir, `${label}-${i}`))
      for (const [i, f] of files.entries()) writeFileSync(f, `${label} ${i}\n`)
      const { stdout } = await run('nix-store', ['--add', ...files])
      rmSync(dir, { recursive: true })
      return stdout.trim().split('\n')
    },
    async gc() {
      await run('nix-store', ['--gc'])
    },
    async isValid(path) {
      const r = await execa('nix-store', ['--check-validity', path], { env, extendEnv: false, reject: false, stdin: 'ignore', stderr: 'ignore' })
      return r.exitCode === 0
    },
    tempRootPids,
    holdersOf(path) {
      return tempRootPids().filter((pid) => {
        try {
          // a temp-roots file is the paths, each followed by a NUL byte
          return readFileSync(join(tempRootsDir, String(pid)), 'utf8').split('\0').includes(path)
        } catch {
          return false // removed as we looked
        }
      })
    },
    stopDaemon,
    startDaemon,
    daemonPid: () => daemon!.pid!,
    workerPids: () => childrenOf(daemon!.pid!),
    async stop() {
      await stopDaemon()
      // store paths are read-only: make them writable so the directory can go
      execFileSync('chmod', ['-R', 'u+w', root])
      rmSync(root, { recursive: true, force: true })
    },
  }
}

