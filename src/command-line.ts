// nix-hold's command line as words: what was asked for, checked, before anything is opened.

import { parseArgs } from 'node:util'
import type { ChannelSpec } from './channel/channel.js'
import { HoldError } from './errors.js'
import { checkMinor } from './store/protocol.js'

export const USAGE = `Usage:
  nix-hold --for PID [options] -- nix build ARGS...
  nix-hold --for PID [options] -- nix-build ARGS...
  nix-hold --for PID [options] --keep PATH...
  nix-hold --for PID --proxy [--store URL]
  nix-hold (--fd N | --command-fd R --status-fd W | --stdio) [options] -- nix build ARGS...
  nix-hold (--fd N | --command-fd R --status-fd W | --stdio) [options] -- nix-build ARGS...
  nix-hold (--fd N | --command-fd R --status-fd W | --stdio) [options] --keep PATH...

Builds, then keeps every output alive against garbage collection until process PID exits
(--for), or until the caller writes {"release":true} or closes the channel. With --for, the
held paths are printed one per line and nix-hold exits at once, leaving one holder per PID in
the background. On a channel, events go out as JSON lines: {"built":[...]}.

With --for PID --proxy, nix-hold prints a store URI (unix://...) and exits: every Nix command
given it (export NIX_REMOTE=$(nix-hold --for $$ --proxy)) keeps what it builds, adds or uses
alive until process PID exits.

How long (exactly one):
  --for PID             until process PID exits (for a script, $$)
  --fd N                one socket (a socketpair end) for both directions
  --command-fd R        read requests from fd R (a pipe) ...
  --status-fd W         ... and write events to fd W (a pipe)
  --stdio               requests on standard input, events on standard output

Options:
  --keep                hold existing paths (given as arguments) instead of building
  --proxy               with --for: print a store URI that holds what Nix commands do through it
  --store URL           the store to build in and hold roots on (as nix --store)
  --max-hold SECONDS    release on its own after this long (on a channel, sending {"expired":true})
  --protocol-minor N    announce at most worker protocol 1.N, 21 to 38 (for testing)
  -h, --help            show this help
  -V, --version         show the version

Exit status: 0 after a release, or with --for once the paths are held; the build's own status if it failed (128+N for signal N);
2 usage; 3 store; 4 the caller closed the channel before anything was held. PROTOCOL.md
describes the channel.`

export interface Invocation {
  /** The channel; undefined with --for. */
  readonly channel: ChannelSpec | undefined
  /** --for: the process whose life the hold lasts. */
  readonly owner: number | undefined
  readonly keep: boolean
  /** --proxy: print the URI of the owner's proxy for the store, rather than build or keep. */
  readonly proxy: boolean
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
        proxy: { type: 'boolean' },
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
  if (!keep && beforeTerminator > 0 && values.proxy !== true) {
    throw new HoldError('usage', `unexpected argument "${positionals[0]}"; put the build command after --`)
  }
  const proxy = values.proxy === true
  if (proxy) {
    if (owner === undefined) throw new HoldError('usage', '--proxy goes with --for PID: the proxy lasts as long as that process')
    if (keep || positionals.length > 0) throw new HoldError('usage', '--proxy takes no paths and no build command: run Nix commands through the store URI it prints')
    if (values['max-hold'] !== undefined || values['protocol-minor'] !== undefined) throw new HoldError('usage', '--proxy takes only --store')
  } else if (positionals.length === 0) throw new HoldError('usage', keep ? '--keep needs at least one path' : 'no build command given after --')

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
    proxy,
    operands: positionals,
    store: values.store,
    maxHoldMs,
    protocolMinor: minor === undefined ? undefined : Number(minor),
  }
}

