// The messages a daemon sends before each result: log lines, progress, and finally success or an
// error (the "stderr loop" of Nix's src/libstore/remote-store.cc, tags in worker-protocol.hh).

import { HoldError } from '../errors.js'
import { Stderr } from './protocol.js'
import type { WireReader } from './wire.js'

export type StderrMessage =
  | { readonly type: 'last' }
  | { readonly type: 'error'; readonly message: string; readonly status?: number }
  | { readonly type: 'log'; readonly text: string }
  | { readonly type: 'activity' }
  | { readonly type: 'read'; readonly max: number }
  | { readonly type: 'write' }

// Activity fields are typed: 0 = a word, 1 = a string (src/libutil/logging.hh). A word field may
// be any u64 (an activity id among them), so it is skipped as raw bytes, never read as a number.
function skipFields(r: WireReader): void {
  const n = r.u64()
  for (let i = 0; i < n; i++) {
    const tag = r.u64()
    if (tag === 0) r.raw(8)
    else if (tag === 1) r.bytes()
    else throw new HoldError('store', `the Nix daemon sent an activity field of unknown type ${tag}`)
  }
}

// Nix colours names in its messages; the escapes mean nothing in JSON or a log file.
const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g

/**
 * Consumes one error payload: the structured form from minor 26 on, the message-and-status form
 * before. Both are reduced to the daemon's own message text, without colour escapes.
 */
export function readError(r: WireReader, minor: number): { message: string; status?: number } {
  if (minor < 26) {
    const message = r.string().replace(ANSI, '')
    return { message, status: r.u64() }
  }
  const type = r.string()
  if (type !== 'Error') throw new HoldError('store', `the Nix daemon sent an error of type "${type}", expected "Error"`)
  r.u64() // verbosity level
  r.string() // name: always "Error" too
  const message = r.string()
  if (r.u64() !== 0) throw new HoldError('store', 'the Nix daemon sent an error with a position, which no version sends')
  const traces = r.u64()
  const lines = [message]
  for (let i = 0; i < traces; i++) {
    if (r.u64() !== 0) throw new HoldError('store', 'the Nix daemon sent an error trace with a position')
    lines.push(r.string())
  }
  return { message: lines.join('\n').replace(ANSI, '') }
}

/** Consumes one stderr-loop message; an unknown tag throws a HoldError of kind `store`. */
export function readStderrMessage(r: WireReader, minor: number): StderrMessage {
  const tag = r.u64()
  switch (tag) {
    case Stderr.Last:
      return { type: 'last' }
    case Stderr.Error:
      return { type: 'error', ...readError(r, minor) }
    case Stderr.Next:
      return { type: 'log', text: r.string() }
    // Activity ids are (worker pid << 32) + n: with pids above 2^21 they pass 2^53, which a
    // JavaScript number cannot hold. They are only skipped here, so they stay raw bytes.
    case Stderr.StartActivity:
      r.raw(8) // id
      r.raw(8) // level
      r.raw(8) // activity type
      r.bytes() // text
      skipFields(r)
      r.raw(8) // parent id
      return { type: 'activity' }
    case Stderr.StopActivity:
      r.raw(8) // id
      return { type: 'activity' }
    case Stderr.Result:
      r.raw(8) // activity id
      r.raw(8) // result type
      skipFields(r)
      return { type: 'activity' }
    case Stderr.Read:
      return { type: 'read', max: r.u64() }
    case Stderr.Write:
      r.bytes()
      return { type: 'write' }
    default:
      throw new HoldError('store', `the Nix daemon sent an unknown message tag 0x${tag.toString(16)}`)
  }
}
