// nix-hold's command line: parse flags, open the channel, and drive the library. No protocol logic.
// bin.ts runs main(); scripts/code-cache.mjs loads this file too, to make its code cache.

import { parseArgs } from 'node:util'
import { constants } from 'node:os'
import pkg from '../package.json' with { type: 'json' }
import { Channel, checkChannel, describeHangup, type ChannelSpec } from './channel/channel.js'
import { errorEvent, type Event, type Request } from './channel/messages.js'
import { HoldError, isHoldError, type HoldErrorKind } from './errors.js'
import { buildAndHold, holdPaths, type Hold, type HoldOptions } from './hold.js'
import type { ProcessId } from './owner/process.js'
import { checkMinor } from './store/daemon.js'

const USAGE = `Usage:
  nix-hold --for PID [options] -- nix build ARGS...
  nix-hold --for PID [options] -- nix-build ARGS...
  nix-hold --for PID [options] --keep PATH...
  nix-hold (--fd N | --command-fd R --status-fd W | --stdio) [options] -- nix build ARGS...
  nix-hold (--fd N | --command-fd R --status-fd W | --stdio) [options] -- nix-build ARGS...
  nix-hold (--fd N | --command-fd R --status-fd W | --stdio) [options] --keep PATH...

Builds, then keeps every output alive against garbage collection until process PID exits
(--for), or until the caller writes {"release":true} or closes the channel. With --for, the
held paths are printed one per line and nix-hold exits at once, leaving one holder per PID in
the background. On a channel, events go out as JSON lines: {"built":[...]}.

How long (exactly one):
  --for PID             until process PID exits (for a script, $$)
  --fd N                one socket (a socketpair end) for both directions
  --command-fd R        read requests from fd R (a pipe) ...
  --status-fd W         ... and write events to fd W (a pipe)
  --stdio               requests on standard input, events on standard output

Options:
  --keep                hold existing paths (given as arguments) instead of building
  --store URL           the store to build in and hold roots on (as nix --store)
  --max-hold SECONDS    release on its own after this long (on a channel, sending {"expired":true})
  --protocol-minor N    announce at most worker protocol 1.N, 21 to 38 (for testing)
  -h, --help            show this help
  -V, --version         show the version

Exit status: 0 after a release, or with --for once the paths are held; the build's own status if it failed (128+N for signal N);
2 usage; 3 store; 4 the caller closed the channel before anything was held. PROTOCOL.md
describes the channel.`

/** The exit status when the caller closed the channel before anything was held: nothing happened. */
export const CALLER_LEFT = 4

// One table from an error's kind to the exit status; a failed build exits with the build's own.
const EXIT: Readonly<Record<HoldErrorKind, number>> = { build: 1, protocol: 2, usage: 2, store: 3 }
const exitCodeOf = (err: HoldError): number => (err.kind === 'build' && err.exitCode !== undefined ? err.exitCode : EXIT[err.kind])

interface Invocation {
  /** The channel; undefined with --for. */
  readonly channel: ChannelSpec | undefined
  /** --for: the process whose life the hold lasts. */
  readonly owner: number | undefined
  readonly keep: boolean
  readonly operands: readonly string[]
  readonly store: string | undefined
  readonly maxHoldMs: number | undefined
  readonly protocolMinor: number | undefined
}

// What each option with a value takes, as a message about a wrong one says it
const TAKES: Readonly<Record<string, string>> = {
  '--fd': 'a file descriptor number',
  '--command-fd': 'a file descriptor number',
  '--status-fd': 'a file descriptor number',
  '--for': 'a process id',
  '--store': 'a store URL',
  '--max-hold': 'a positive number of seconds',
  '--protocol-minor': 'a number',
}

/** The longest time a Node timer waits. */
const MAX_TIMER_MS = 2 ** 31 - 1

const wrongValue = (flag: string, value: string | undefined, cause?: unknown): HoldError =>
  new HoldError('usage', `${flag} takes ${TAKES[flag]}, got ${value === undefined ? 'nothing' : `"${value}"`}`, { cause })

// parseArgs' own text speaks of an "ambiguous" argument where a value is missing (`--fd --stdio`)
// or starts with a dash (`--max-hold -1`), quotes options unevenly, and suggests passing them
// after "--", which here would make them part of the build command
function parseArgsError(err: unknown, argv: readonly string[]): HoldError {
  const { code, message } = err as NodeJS.ErrnoException
  const flag = /'(-[^' ]*)/.exec(message)?.[1]
  if (flag && code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return new HoldError('usage', `unknown option ${flag}`, { cause: err })
  if (flag && code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    if (!(flag in TAKES)) return new HoldError('usage', `${flag} takes no value`, { cause: err })
    // the occurrence parseArgs refused: the one with no value after it, or one starting with a dash
    const at = argv.findIndex((arg, i) => arg === flag && (argv[i + 1] ?? '-').startsWith('-'))
    return wrongValue(flag, argv[at + 1], err)
  }
  return new HoldError('usage', message.split('\n')[0]!, { cause: err })
}

const fdNumber = (flag: string, value: string | undefined): number | undefined => {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw wrongValue(flag, value)
  return Number(value)
}

/** Reads the command line; throws a HoldError of kind `usage`, or returns 'help' / 'version'. */
export function parseInvocation(argv: readonly string[]): Invocation | 'help' | 'version' {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      tokens: true,
      options: {
        fd: { type: 'string' },
        'command-fd': { type: 'string' },
        'status-fd': { type: 'string' },
        stdio: { type: 'boolean' },
        for: { type: 'string' },
        keep: { type: 'boolean' },
        store: { type: 'string' },
        'max-hold': { type: 'string' },
        'protocol-minor': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
    })
  } catch (err) {
    throw parseArgsError(err, argv)
  }
  const { values, positionals, tokens } = parsed
  if (values.help) return 'help'
  if (values.version) return 'version'

  const fd = fdNumber('--fd', values.fd)
  const commandFd = fdNumber('--command-fd', values['command-fd'])
  const statusFd = fdNumber('--status-fd', values['status-fd'])
  if (values.for !== undefined && !/^[1-9]\d*$/.test(values.for)) throw wrongValue('--for', values.for)
  const owner = values.for === undefined ? undefined : Number(values.for)
  const chosen = [owner !== undefined, fd !== undefined, commandFd !== undefined || statusFd !== undefined, values.stdio === true].filter(Boolean).length
  if (chosen !== 1) throw new HoldError('usage', 'choose exactly one of --for PID, --fd N, --command-fd R with --status-fd W, or --stdio')
  let channel: ChannelSpec | undefined
  if (owner !== undefined) channel = undefined
  else if (fd !== undefined) channel = { type: 'fd', fd }
  else if (values.stdio) channel = { type: 'stdio' }
  else if (commandFd === undefined || statusFd === undefined) throw new HoldError('usage', '--command-fd and --status-fd go together')
  else channel = { type: 'pipes', commandFd, statusFd }

  // Operands before "--" are only allowed as --keep paths; the build command follows "--".
  const terminator = tokens.findIndex((t) => t.kind === 'option-terminator')
  const beforeTerminator = tokens.filter((t, i) => t.kind === 'positional' && (terminator < 0 || i < terminator)).length
  const keep = values.keep === true
  if (!keep && beforeTerminator > 0) {
    throw new HoldError('usage', `unexpected argument "${positionals[0]}"; put the build command after --`)
  }
  if (positionals.length === 0) throw new HoldError('usage', keep ? '--keep needs at least one path' : 'no build command given after --')

  let maxHoldMs: number | undefined
  if (values['max-hold'] !== undefined) {
    const seconds = Number(values['max-hold'])
    if (!(seconds > 0) || !Number.isFinite(seconds)) throw wrongValue('--max-hold', values['max-hold'])
    // a timer longer than 2^31 - 1 ms fires at once (Node only warns): a longer hold would end
    // as soon as it began
    if (seconds * 1000 > MAX_TIMER_MS) throw new HoldError('usage', `--max-hold takes at most ${Math.floor(MAX_TIMER_MS / 1000)} seconds (about 24 days), got "${values['max-hold']}"; to hold without a limit, leave it out`)
    maxHoldMs = Math.ceil(seconds * 1000)
  }
  const minor = values['protocol-minor']
  if (minor !== undefined && !/^\d+$/.test(minor)) throw wrongValue('--protocol-minor', minor)
  if (minor !== undefined) checkMinor(Number(minor))
  return {
    channel,
    owner,
    keep,
    operands: positionals,
    store: values.store,
    maxHoldMs,
    protocolMinor: minor === undefined ? undefined : Number(minor),
  }
}

const say = (message: string): void => {
  process.stderr.write(`nix-hold: ${message}\n`)
}

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
  const sig = stopped.reason as HoldSignal
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
      const { ownerSecret, processNow } = await import('./owner/process.js')
      owner = processNow(inv.owner)
      ownerSecret(owner) // a process of another user is refused now, not after the build
    }
  } catch (err) {
    if (!isHoldError(err)) throw err
    say(`${err.message} (see nix-hold --help)`)
    return 2
  }
  if (inv === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  if (inv === 'version') {
    process.stdout.write(`nix-hold ${pkg.version}\n`)
    return 0
  }

  // A signal stops a build in progress, or ends a hold the way a release does. The handlers stay
  // installed: execa's exit hook re-raises a signal that no other listener handles.
  const stopped = new AbortController()
  for (const sig of HOLD_SIGNALS) process.on(sig, () => stopped.abort(sig))
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
  void channel.hangup.then(() => hangup.abort('hangup'))
  const finish = async (code: number, last?: Event): Promise<number> => {
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
    if (hangup.signal.aborted && !(isHoldError(err) && err.cause !== hangup.signal.reason)) {
      say(`the caller closed the channel before anything was held: ${describeHangup(inv.channel!)}; stopping`)
      return finish(CALLER_LEFT)
    }
    if (!isHoldError(err)) throw err
    sayError(err)
    return finish(exitCodeOf(err), errorEvent(err))
  }

  channel.send(inv.keep ? { kept: hold.paths } : { built: hold.paths, ...(hold.derivations ? { outputs: hold.derivations } : {}) })
  const code = await serve(channel, hold, stopped.signal, inv.maxHoldMs)
  await hold.release()
  return finish(code)
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
  const [{ holdFor }, { isRunning }] = await Promise.all([import('./owner/for.js'), import('./owner/process.js')])
  try {
    const paths = await holdFor(owner, { keep: inv.keep, operands: inv.operands, maxHoldMs: inv.maxHoldMs }, options, holderCommand)
    process.stdout.write(paths.map((p) => `${p}\n`).join(''))
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
    return exitCodeOf(e)
  }
}

// Answers requests until a release, EOF, a signal or --max-hold ends the hold. Requests for one
// store are answered in order; requests for different stores run side by side, so one slow or
// unreachable host holds up no other (an answer names its store).
async function serve(channel: Channel, hold: Hold, stopped: AbortSignal, maxHoldMs: number | undefined): Promise<number> {
  const end = AbortSignal.any(maxHoldMs === undefined ? [stopped] : [stopped, AbortSignal.timeout(maxHoldMs)])
  const queues = new Map<string, Promise<void>>()
  let over = false
  const answer = async (request: Extract<Request, { type: 'keep' | 'expect' }>): Promise<void> => {
    const store = request.store === undefined ? {} : { store: request.store }
    try {
      const paths = request.type === 'keep' ? await hold.keep(request.paths, store) : await hold.expect(request.paths, store)
      if (!over) channel.send(request.type === 'keep' ? { kept: paths, ...store } : { expected: paths, ...store })
    } catch (caught) {
      if (over) return
      // anything but a HoldError is a fault of nix-hold's: still an answer, never a crash that
      // would drop every root
      const err = isHoldError(caught) ? caught : new HoldError('store', `nix-hold failed: ${String(caught)}`, { cause: caught })
      // a bad path or store URL in a request is the caller's mistake in the protocol; the hold
      // stays as it was
      channel.send(errorEvent(err.kind === 'usage' ? new HoldError('protocol', err.message, { cause: err }) : err, request.store))
    }
  }
  const finish = async (event: Event): Promise<number> => {
    over = true
    await hold.release()
    channel.send(event)
    return 0
  }
  for (;;) {
    const next = await channel.next(end)
    if (end.aborted) return finish(stopped.aborted ? { released: true } : { expired: true })
    if (next === undefined) {
      over = true
      return 0 // EOF or hang-up: the caller is gone or done
    }
    if (next.type === 'invalid') {
      channel.send(errorEvent(next.error))
      continue
    }
    const request = next.request
    // requests before a release are answered before it, as they were sent (a store being
    // connected to gives up within ssh's ConnectTimeout)
    if (request.type === 'release') {
      await Promise.allSettled(queues.values())
      return finish({ released: true })
    }
    const key = request.store ?? ''
    const queued = (queues.get(key) ?? Promise.resolve()).then(() => answer(request))
    queues.set(key, queued)
  }
}

