// nix-hold's command: read the command line, open the channel, start the hold and serve it, and
// say how it ended as an exit status. bin.ts runs main(); scripts/code-cache.mjs loads this file
// too, to make its code cache.

import { constants } from 'node:os'
import pkg from '../package.json' with { type: 'json' }
import { Channel, checkChannel, describeHangup } from './channel/channel.js'
import { errorEvent, type ChannelEvent } from './channel/messages.js'
import { parseInvocation, USAGE, type Invocation } from './command-line.js'
import { HoldError, isHoldError, type HoldErrorKind } from './errors.js'
import { buildAndHold, holdPaths } from './hold/start.js'
import type { Hold, HoldOptions } from './hold/types.js'
import type { ProcessId } from './owner/process.js'
import { serve } from './serve.js'

export { parseInvocation } // scripts/code-cache.mjs runs it to fill the code cache

/** The exit status when the caller closed the channel before anything was held: nothing happened. */
export const CALLER_LEFT = 4

// One table from an error's kind to the exit status; a failed build exits with the build's own.
const EXIT: Readonly<Record<HoldErrorKind, number>> = { build: 1, protocol: 2, usage: 2, store: 3 }
const exitStatusOf = (err: HoldError): number => (err.kind === 'build' && err.exitCode !== undefined ? err.exitCode : EXIT[err.kind])

const say = (message: string): void => {
  process.stderr.write(`nix-hold: ${message}\n`)
}

// Writes to standard output and settles once the text has left this process (or standard output
// has failed: a reader that went away). The caller exits right after, and process.exit() drops
// whatever a pipe has not taken yet: a `$(…)` would see only the first paths of many.
const print = (text: string): Promise<void> =>
  new Promise((resolve) => {
    process.stdout.once('error', () => resolve())
    process.stdout.write(text, () => resolve())
  })

// A failed build's message ends with Nix's own lines, which went to stderr as the build ran: its
// first line says what failed without printing them twice
const sayError = (err: HoldError): void => say(err.kind === 'build' ? err.message.split('\n')[0]! : err.message)

// Loading the build runner (execa and its dependencies) runs loops hot enough for V8 to optimise
// them, and the optimising compiler's working memory then stays resident for the whole hold:
// about 4 MiB here, for code that runs once. Nothing nix-hold does while holding needs optimised
// code, so the CLI turns the optimiser off before it loads the runner. The runner's code cache is
// made with the same flag set (scripts/code-cache.mjs calls this), since V8 accepts a cache only
// under the flags it was made with.
//
// Changing a flag also makes V8 refuse Node's own code cache for every built-in module compiled
// afterwards. execa reads process.stdin, stdout and stderr as it loads, which pulls in Node's file
// and stream modules: creating the three streams first (as execa would a moment later) keeps those
// compiles cached, about 8 ms. node:v8 is required here rather than imported: in this CommonJS
// bundle an import() would load Node's ESM loader, and a static import would load it for --keep
// too.
export function keepCompilerMemorySmall(): void {
  void [process.stdin, process.stdout, process.stderr]
  const v8 = require('node:v8') as typeof import('node:v8')
  v8.setFlagsFromString('--max-opt=1')
}

const HOLD_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
type HoldSignal = (typeof HOLD_SIGNALS)[number]

/**
 * Why the command stopped short: a signal, or the caller hanging up its channel. It is the reason
 * the hold's signal aborts with, so a step that broke off throws it (or a HoldError caused by it),
 * and what ended the hold can be told from an error of its own by type.
 */
class Stop extends Error {
  constructor(readonly by: HoldSignal | 'hangup') {
    super(`stopped by ${by}`)
  }
}

const stopOf = (err: unknown): Stop | undefined => (err instanceof Stop ? err : isHoldError(err) && err.cause instanceof Stop ? err.cause : undefined)

// What every mode hands the library from the command line.
const holdOptions = (inv: Invocation, signal: AbortSignal): HoldOptions => ({
  env: process.env,
  signal,
  log: say,
  ...(inv.store === undefined ? {} : { store: inv.store }),
  ...(inv.protocolMinor === undefined ? {} : { protocolMinor: inv.protocolMinor }),
})

// A signal that came before anything was held: says so, and gives the exit status (128+N).
function stoppedBy(stopped: AbortSignal): { sig: HoldSignal; code: number } {
  const sig = (stopped.reason as Stop).by as HoldSignal
  say(`stopped by ${sig} before anything was held`)
  return { sig, code: 128 + constants.signals[sig] }
}

/** Runs nix-hold and returns its exit status. */
export async function main(argv: readonly string[]): Promise<number> {
  // a --for hold starts the holder for its owner as this same program (owner/join.ts)
  // (--for's code, and node:crypto with it, is loaded only by --for: every other hold stays as small)
  if (argv[0] === SERVE_HOLDER) return (await import('./owner/holder.js')).runHolder({ pid: Number(argv[1]), start: String(argv[2]) })
  let inv: ReturnType<typeof parseInvocation>
  let owner: ProcessId | undefined
  try {
    inv = parseInvocation(argv)
    if (typeof inv === 'object' && inv.channel) checkChannel(inv.channel)
    if (typeof inv === 'object' && inv.owner !== undefined) {
      const [{ checkOwnedBy, processNow }, { runtimeDir }] = await Promise.all([import('./owner/process.js'), import('./rendezvous/runtime-dir.js')])
      owner = processNow(inv.owner)
      // a process of another user, or a private directory that cannot be used, is refused now,
      // not after the build
      checkOwnedBy(owner, process.geteuid!())
      runtimeDir(process.env)
    }
  } catch (err) {
    if (!isHoldError(err)) throw err
    if (err.kind !== 'usage') {
      sayError(err)
      return exitStatusOf(err)
    }
    say(`${err.message} (see nix-hold --help)`)
    return 2
  }
  if (inv === 'help') {
    await print(`${USAGE}\n`)
    return 0
  }
  if (inv === 'version') {
    await print(`nix-hold ${pkg.version}\n`)
    return 0
  }

  // A signal stops a build in progress, or ends a hold the way a release does. The handlers stay
  // installed: execa's exit hook re-raises a signal that no other listener handles.
  const stopped = new AbortController()
  for (const sig of HOLD_SIGNALS) process.on(sig, () => stopped.abort(new Stop(sig)))
  if (owner) return mainFor(inv, owner, stopped.signal)
  const hangup = new AbortController()

  let channel!: Channel // opened below, once the build is under way
  const options: HoldOptions = {
    ...holdOptions(inv, AbortSignal.any([stopped.signal, hangup.signal])),
    onLost: (paths, store) => channel.send({ lost: paths, ...(store === undefined ? {} : { store }) }),
  }
  if (!inv.keep) keepCompilerMemorySmall()
  const holding = inv.keep ? holdPaths(inv.operands, options) : buildAndHold(inv.operands, options)
  holding.catch(() => undefined) // its outcome is awaited below, with the channel open

  // The build starts first and the channel opens while it runs (with --keep, while the daemon
  // answers): nothing up to the build's spawn waits for I/O, so it is under way by the time this
  // turn of the event loop ends. (Were it not, the channel would merely open a little before it.)
  // A caller that hangs up meanwhile is seen as soon as the channel is open, and stops the build.
  await new Promise<void>((resolve) => setImmediate(resolve))
  channel = Channel.open(inv.channel!) // every mode but --for has one
  void channel.hangup.then(() => hangup.abort(new Stop('hangup')))
  const finish = async (code: number, last?: ChannelEvent): Promise<number> => {
    if (last) channel.send(last)
    await channel.close()
    return code
  }

  let hold: Hold
  try {
    hold = await holding
  } catch (err) {
    if (stopped.signal.aborted) {
      const { sig, code } = stoppedBy(stopped.signal)
      return finish(code, errorEvent(new HoldError('build', `stopped by ${sig} before the build finished`, { exitCode: code })))
    }
    // the caller left first (what stopped the build or the connection was its hang-up); an
    // error of the build, the store or the command line that came first keeps its own status
    if (hangup.signal.aborted && (stopOf(err)?.by === 'hangup' || !isHoldError(err))) {
      say(`the caller closed the channel before anything was held: ${describeHangup(inv.channel!)}; stopping`)
      return finish(CALLER_LEFT)
    }
    if (!isHoldError(err)) throw err
    sayError(err)
    return finish(exitStatusOf(err), errorEvent(err))
  }

  channel.send(inv.keep ? { kept: hold.paths } : { built: hold.paths, ...(hold.derivations ? { outputs: hold.derivations } : {}) })
  await serve(channel, hold, { stopped: stopped.signal, maxHoldMs: inv.maxHoldMs })
  return finish(0)
}

/** The argument that makes this program the holder for a --for hold's owner (owner/holder.ts). */
const SERVE_HOLDER = '--serve-holder'

// --for: build or root, hand the paths to the owner's holder, print them and exit. With no
// channel, the paths on standard output and the exit status are all a caller gets.
async function mainFor(inv: Invocation, owner: ProcessId, stopped: AbortSignal): Promise<number> {
  if (!inv.keep) keepCompilerMemorySmall()
  const options = holdOptions(inv, stopped)
  // the holder is this same program: the same Node, with the same flags
  const holderCommand = [process.execPath, ...process.execArgv, process.argv[1]!]
  const [{ holdFor, proxyUri }, { isRunning }] = await Promise.all([import('./owner/for.js'), import('./owner/process.js')])
  try {
    if (inv.proxy) {
      await print(`${await proxyUri(owner, options, holderCommand)}\n`)
      return 0
    }
    const paths = await holdFor(owner, { keep: inv.keep, operands: inv.operands, maxHoldMs: inv.maxHoldMs }, options, holderCommand)
    await print(paths.map((p) => `${p}\n`).join(''))
    return 0
  } catch (err) {
    if (stopped.aborted) return stoppedBy(stopped).code
    if (!isRunning(owner)) {
      say(`process ${owner.pid} exited before its paths were held; nothing is held`)
      return CALLER_LEFT
    }
    // anything but a HoldError (a socket error of the hand-over) is still a clear failure
    const e = isHoldError(err) ? err : new HoldError('store', `could not hand the paths to the holder for process ${owner.pid}: ${String(err)}`, { cause: err })
    sayError(e)
    return exitStatusOf(e)
  }
}

