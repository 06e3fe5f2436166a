// Daemons that run as a child of nix-hold and speak the protocol on its stdin and stdout: the
// local store's own `nix-daemon --stdio`, and another machine's over ssh.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { once } from 'node:events'
import { HoldError } from '../errors.js'
import { sshArguments, type SshStore } from './ssh.js'
import { CLOSE_WAIT_MS, type Transport } from './transport.js'

/**
 * Starts a child that speaks the protocol on its stdin and stdout, and waits until it runs; a
 * failure to start is a HoldError of kind `store` that says it could not start `what`.
 */
async function startChild(file: string, args: string[], options: SpawnOptions, what: string, signal?: AbortSignal): Promise<{ child: ChildProcess; destroy: () => void; closed: Promise<void> }> {
  const child = spawn(file, args, options)
  // a spawn that fails after an abort has stopped waiting for it must not be an uncaught 'error'
  child.on('error', () => undefined)
  // 'close' comes once the child has exited and its output is read to the end
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
  try {
    await once(child, 'spawn', signal ? { signal } : {})
  } catch (err) {
    child.kill('SIGKILL')
    if (signal?.aborted) throw signal.reason
    throw new HoldError('store', `cannot start ${what}: ${String(err)}`, { cause: err })
  }
  const destroy = () => {
    child.stdin!.destroy()
    child.stdout!.destroy()
    child.kill('SIGKILL')
  }
  return { child, destroy, closed }
}

/** `nix-daemon --stdio` serving the local store `storeUri`. */
export async function openStdioDaemon(storeUri: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<Transport> {
  // The child serves the local store in-process and registers temp roots under its own pid; it
  // exits when its stdin closes, which also happens if this process is killed.
  const { child, destroy, closed } = await startChild('nix-daemon', ['--stdio'], { env: { ...env, NIX_REMOTE: storeUri }, stdio: ['pipe', 'pipe', 'inherit'] }, 'nix-daemon --stdio for the local store', signal)
  // The child's temp-roots file is locked while it lives, and a collector ignores an unlocked one:
  // once it has exited, its roots are gone, so killing it is as good as a clean shutdown, and quicker.
  return { input: child.stdout!, output: child.stdin!, destroy, end: () => (destroy(), closed) }
}

// ssh says on stderr why a connection failed (unknown host key, refused key, no nix-daemon on the
// host); the last lines of it are kept for the error message, and the rest is not echoed: a
// hold on many hosts would otherwise fill its stderr with their banners.
const STDERR_KEPT = 4096

/** The host's daemon over ssh, as Nix reaches an ssh-ng:// store. */
export async function openSshDaemon(store: SshStore, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<Transport> {
  const { child, destroy, closed } = await startChild('ssh', sshArguments(store, env), { env, stdio: ['pipe', 'pipe', 'pipe'] }, `ssh for the store ${store.uri}`, signal)
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    stderr = (stderr + s).slice(-STDERR_KEPT)
  })
  return {
    input: child.stdout!,
    output: child.stdin!,
    destroy,
    // closing ssh's stdin is EOF for the host's daemon: it drops its roots and exits, and ssh with it
    async end() {
      child.stdin!.end()
      const timer = setTimeout(destroy, CLOSE_WAIT_MS)
      await closed
      clearTimeout(timer)
    },
    why: () => stderr.split(/\r?\n/).map((line) => line.trim()).filter(Boolean).slice(-2).join('; ') || undefined,
  }
}
