// An isolated Nix instance (../shared/nix-test-instance.md): its own store, state, config and
// daemon socket under one temporary directory, never the machine's /nix. Used by the tests and
// the benchmarks alike, so it imports nothing from vitest.

import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'

export const FIXTURES = new URL('../fixtures/', import.meta.url).pathname

const NIX_CONF = `substituters =
sandbox = false
build-users-group =
experimental-features = nix-command
fsync-metadata = false
`

export interface NixInstance {
  readonly root: string
  readonly storeDir: string
  readonly stateDir: string
  readonly socketPath: string
  /** Environment for a client of this instance (NIX_REMOTE=daemon). */
  readonly env: NodeJS.ProcessEnv
  /** Builds `demo.nix` with `n` and returns its output path (rooted by nothing once this returns). */
  buildDemo(n: string): Promise<string>
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
    execFileSync('nix-daemon', ['--version'], { stdio: 'ignore' })
  } catch {
    throw new Error('nix-daemon is not on PATH: install Nix (on Debian, as root: apt-get install -y nix-bin), or run bash .ci/run, which does')
  }
}

/** Environment for Nix commands in `root`, with nothing of the machine's own Nix settings. */
export function nixEnv(root: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NIX_')) env[k] = v
  return {
    ...env,
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

/** The pids whose parent is `pid`: a daemon's workers (they start sessions of their own). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        return Number(/^\d+ \(.*\) \S (\d+)/.exec(readFileSync(`/proc/${name}/stat`, 'utf8'))?.[1]) === pid
      } catch {
        return false
      }
    })
    .map(Number)
}

/** Starts a daemon on a fresh instance and waits for its socket. */
export async function startNix(): Promise<NixInstance> {
  requireNix()
  const root = mkdtempSync(join(scratch(), 'nix-hold-test-'))
  mkdirSync(join(root, 'etc'))
  mkdirSync(join(root, 'home'))
  writeFileSync(join(root, 'etc', 'nix.conf'), NIX_CONF)
  const env = nixEnv(root)
  const socketPath = join(root, 'var', 'daemon-socket', 'socket')
  let daemon: ChildProcess | undefined

  async function startDaemon(): Promise<void> {
    rmSync(socketPath, { force: true })
    const child = spawn('nix-daemon', [], { env: { ...env, NIX_REMOTE: 'local' }, detached: true, stdio: 'ignore' })
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
  const tempRootPids = (): number[] => (existsSync(tempRootsDir) ? readdirSync(tempRootsDir).map(Number) : [])
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

