// Nix's own words when a command of the build fails, cut from the end of its error output: what a
// caller needs to see why, without the build's whole log.

import { Writable } from 'node:stream'

/** How much of a command's error output is kept while it runs: its end, where Nix says what failed. */
export const ERROR_TAIL_BYTES = 64 * 1024
/** At most this many lines of Nix's error output go into a message: the first, then the last. */
export const MAX_ERROR_LINES = 20
// Nix 2.3's nix-store prints the build's log as it runs and then only says that the builder
// failed; this many log lines before that are taken with it
const LOG_LINES_BEFORE = 10

// colours and cursor movement (CSI sequences), should a Nix print them where no terminal is
const CSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g
// a message of Nix's starts with "error:"; Nix 2.3 says "builder for '…' failed" without it
const opensError = (line: string): boolean => /^(error:|builder for )/.test(line)
// Nix indents the lines of a message after its first, and leaves blank lines in some
const continuesError = (line: string): boolean => line === '' || /^\s/.test(line)

/**
 * The end of `output` that holds Nix's error messages: the trailing run of lines that open a
 * message (`error: …`) or continue one (indented), with Nix 2.3's log lines before its `builder
 * for … failed`. Output that does not end in a message gives its last message to the end, or
 * failing that its last lines. At most MAX_ERROR_LINES lines; '' for no output.
 */
export function nixErrorOf(output: string): string {
  // a line redrawn with carriage returns shows as its last drawing
  const lines = output.replace(CSI, '').split('\n').map((line) => line.slice(line.lastIndexOf('\r') + 1).trimEnd())
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop()
  let start = lines.length
  for (let i = lines.length - 1; i >= 0 && (opensError(lines[i]!) || continuesError(lines[i]!)); i--) {
    if (opensError(lines[i]!)) start = i
  }
  if (start === lines.length) {
    // something after the message (as nix's "Try 'nix --help' …"), or no message at all
    let last = lines.length - 1
    while (last >= 0 && !opensError(lines[last]!)) last--
    start = last >= 0 ? last : Math.max(0, lines.length - 5)
  }
  if (lines[start]?.startsWith('builder for ')) {
    const first = start
    while (start > 0 && first - start < LOG_LINES_BEFORE && !/^building '/.test(lines[start - 1]!) && !opensError(lines[start - 1]!)) start--
  }
  const block = lines.slice(start)
  return (block.length > MAX_ERROR_LINES ? [block[0]!, '…', ...block.slice(2 - MAX_ERROR_LINES)] : block).join('\n')
}

/** A stream that keeps the last `max` bytes written to it, for a command's error output. */
export class OutputTail extends Writable {
  #tail = Buffer.alloc(0)

  constructor(readonly max = ERROR_TAIL_BYTES) {
    super()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    const joined = Buffer.concat([this.#tail, chunk])
    this.#tail = joined.length > this.max ? joined.subarray(joined.length - this.max) : joined
    done()
  }

  /** What was kept, as text (a character cut in two at its start shows as U+FFFD). */
  get text(): string {
    return this.#tail.toString('utf8')
  }
}
