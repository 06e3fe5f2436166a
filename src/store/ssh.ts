// Stores on other machines, reached the way Nix reaches an ssh-ng:// store: `ssh HOST nix-daemon
// --stdio`, with the worker protocol over ssh's stdin and stdout. Temp roots registered there live
// on the host for as long as that ssh connection does.
//
// A store URL can arrive from the channel, and becomes an ssh command line: it is untrusted. The
// parser accepts only what a host name, a user name and a port can be, and the command line puts
// the destination after "--", where ssh cannot take it for an option. A refused URL is a usage
// error here, as any bad argument is; where it came from the channel, serve.ts answers it as the
// caller's protocol error.

import { HoldError } from '../errors.js'

export interface SshStore {
  /** The URL as given: how messages and the channel name this store. */
  readonly uri: string
  readonly scheme: 'ssh' | 'ssh-ng'
  readonly user: string | undefined
  readonly host: string
  readonly port: number | undefined
  readonly sshKey: string | undefined
  readonly compress: boolean
  /** The command the host runs: its nix-daemon serving the worker protocol on stdio. */
  readonly remoteCommand: string
}

// A user or host name as ssh takes it: letters, digits, '.', '_', '-', never '-' first. An IPv6
// address is bracketed in a URL.
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/
const IPV6 = /^\[[0-9A-Fa-f:.]+\]$/
// A program the remote shell runs: a plain word or path, no shell syntax
const PROGRAM = /^[A-Za-z0-9_./+][A-Za-z0-9_./+-]*$/
// Control characters and whitespace anywhere: ssh's parser and the remote shell split on them
const FORBIDDEN = /[\s\u0000-\u001f\u007f]/
// The store the host's daemon serves, as `--store`: a local store in plain characters only. Any
// other kind keeps no temp roots there (its roots would be silently no-ops), and quotes or
// backslashes mean different things to different login shells.
const REMOTE_STORE = /^(auto|daemon|local(\?[A-Za-z0-9_./=&%+-]*)?|unix:\/\/\/[A-Za-z0-9_./+-]*|\/[A-Za-z0-9_./+-]*)$/

const refuse = (uri: string, why: string): HoldError => new HoldError('usage', `refusing the store URL ${JSON.stringify(uri)}: ${why}`)

/** Whether `uri` names a store reached over ssh (it may still be refused by `parseSshStore`). */
export const isSshStoreUri = (uri: string): boolean => /^ssh(-ng)?:\/\//.test(uri)

// A word for the remote shell, quoted so nothing in it is shell syntax.
const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/**
 * Parses `ssh-ng://[user@]host[:port][?params]` (or `ssh://…`) strictly; throws a HoldError of
 * kind `usage` for anything that could reach ssh as an option or a second argument.
 * Parameters honoured as Nix honours them: `ssh-key`, `compress`, `remote-store`, and for
 * ssh-ng `remote-program` (for ssh:// it names nix-store --serve, which keeps no temp roots, so
 * the host's nix-daemon is used all the same).
 */
export function parseSshStore(uri: string): SshStore {
  if (FORBIDDEN.test(uri)) throw refuse(uri, 'it contains whitespace or a control character')
  const m = /^(ssh|ssh-ng):\/\/([^?#]*)(?:\?([^#]*))?$/.exec(uri)
  if (!m) throw refuse(uri, 'expected ssh-ng://[user@]host[:port][?params] or ssh://…')
  const [, scheme, authority = '', query = ''] = m
  if (authority.includes('/')) throw refuse(uri, 'an ssh store URL has no path')
  const at = authority.lastIndexOf('@')
  const user = at >= 0 ? authority.slice(0, at) : undefined
  const hostPort = at >= 0 ? authority.slice(at + 1) : authority
  if (user !== undefined && !NAME.test(user)) throw refuse(uri, 'the user name must be letters, digits, ".", "_" or "-", and not start with "-"')
  const hp = /^(\[[^\]]*\]|[^:]*)(?::([0-9]{1,5}))?$/.exec(hostPort)
  if (!hp || hp[1] === '') throw refuse(uri, 'no host')
  const host = hp[1]!
  if (!NAME.test(host) && !IPV6.test(host)) throw refuse(uri, 'the host must be a name or address of letters, digits, ".", "_" or "-", not starting with "-"')
  const port = hp[2] === undefined ? undefined : Number(hp[2])
  if (port !== undefined && (port < 1 || port > 65535)) throw refuse(uri, `port ${port} is out of range`)

  let params: URLSearchParams
  try {
    params = new URLSearchParams(query)
  } catch {
    throw refuse(uri, 'its parameters cannot be read')
  }
  for (const [name, value] of params) {
    if (FORBIDDEN.test(value)) throw refuse(uri, `parameter ${name} contains whitespace or a control character`)
  }
  const sshKey = params.get('ssh-key') ?? undefined
  if (sshKey !== undefined && (sshKey === '' || sshKey.startsWith('-'))) throw refuse(uri, 'ssh-key must be a file name, not starting with "-"')
  if (params.has('base64-ssh-public-host-key')) {
    // Nix writes the key to a temporary known_hosts file; nix-hold writes no files
    throw refuse(uri, 'base64-ssh-public-host-key is not supported (nix-hold writes no files): put the host key in known_hosts')
  }
  const program = scheme === 'ssh-ng' ? (params.get('remote-program') ?? 'nix-daemon') : 'nix-daemon'
  if (!PROGRAM.test(program)) throw refuse(uri, 'remote-program must be a plain program name or path')
  const remoteStore = params.get('remote-store') ?? undefined
  if (remoteStore !== undefined && !REMOTE_STORE.test(remoteStore)) throw refuse(uri, 'remote-store must be a local store (auto, daemon, local[?…], unix:///…, /path) in plain characters')
  const remoteCommand = `${program} --stdio${remoteStore === undefined ? '' : ` --store ${shellQuote(remoteStore)}`}`
  return {
    uri,
    scheme: scheme as 'ssh' | 'ssh-ng',
    user,
    host: IPV6.test(host) ? host.slice(1, -1) : host,
    port,
    sshKey,
    compress: params.get('compress') === 'true',
    remoteCommand,
  }
}

/**
 * The arguments for `ssh` that run the host's daemon: BatchMode first (ssh keeps the first value
 * of an option, so NIX_SSHOPTS cannot turn prompting back on: a missing key or an unknown host
 * key fails at once), then NIX_SSHOPTS as Nix splits it, then keep-alives and a connect timeout
 * (after NIX_SSHOPTS, so its own values win): a host that crashed must end the connection, or its
 * paths would be reported held while nothing holds them there. Then the URL's own options, "--",
 * the destination and the remote command. Host keys are checked as the user's ssh config says.
 */
export function sshArguments(store: SshStore, env: NodeJS.ProcessEnv): string[] {
  const args = ['-o', 'BatchMode=yes', '-x', '-a']
  args.push(...(env.NIX_SSHOPTS ?? '').split(/\s+/).filter(Boolean))
  args.push('-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=3', '-o', 'ConnectTimeout=30')
  if (store.sshKey !== undefined) args.push('-i', store.sshKey)
  if (store.port !== undefined) args.push('-p', String(store.port))
  if (store.compress) args.push('-C')
  args.push('--', store.user === undefined ? store.host : `${store.user}@${store.host}`, store.remoteCommand)
  return args
}
