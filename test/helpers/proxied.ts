// A script that holds through the proxy: it exports `nix-hold --for $$ --proxy`'s URI as
// NIX_REMOTE, prints it, then runs the commands a test writes to its stdin, one line each.

import { startOwner, type Owner } from './owner.js'

/** Starts the script with `env`; its first line is the URI. */
export function proxied(env: NodeJS.ProcessEnv): Owner {
  const script = [
    'export NIX_REMOTE=$("$NODE" "$CLI" --for $$ --proxy)',
    'echo "$NIX_REMOTE"',
    'while read -r line; do s=0; eval "$line" || s=$?; echo "ok $s"; done',
  ].join('\n')
  return startOwner('bash', ['-c', script], env)
}

/** Runs `command` (a line of bash) in the script; its output lines and exit status. */
export async function run(owner: Owner, command: string): Promise<{ lines: string[]; status: number }> {
  owner.child.stdin!.write(`${command}\n`)
  const lines: string[] = []
  for (;;) {
    const line = await owner.line()
    const done = /^ok (\d+)$/.exec(line)
    if (done) return { lines, status: Number(done[1]) }
    lines.push(line)
  }
}

/** `s` quoted for bash. */
export const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`
