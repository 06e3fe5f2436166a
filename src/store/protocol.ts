// Constants of the Nix daemon worker protocol, named as in Nix's src/libstore/worker-protocol.hh
// (without the `wop` prefix) so they can be grepped across codebases.

import { HoldError } from '../errors.js'

export const WORKER_MAGIC_1 = 0x6e697863 // "nixc"
export const WORKER_MAGIC_2 = 0x6478696f // "dxio"

/** A protocol version is `major << 8 | minor`; major has always been 1. */
export const protocolVersion = (minor: number): number => (1 << 8) | minor
export const majorOf = (version: number): number => version >> 8
export const minorOf = (version: number): number => version & 0xff

/** The newest minor this client implements (Nix 2.24+; 2.35's 1.39 changed nothing on the wire). */
export const NEWEST_MINOR = 38
/** The oldest daemon minor accepted: 1.21 is Nix 2.1/2.3, the oldest still in use. */
export const OLDEST_MINOR = 21

/** Refuses a protocol minor that no supported daemon can serve: a HoldError of kind `usage`, before any I/O. */
export function checkMinor(minor: number): void {
  if (!Number.isInteger(minor) || minor < OLDEST_MINOR || minor > NEWEST_MINOR) {
    // below 1.21 the handshake differs (and Nix 2.3 would wait for a word never sent); Lix serves
    // 1.35 and up only, Nix 2.33+ 1.18 and up
    throw new HoldError('usage', `protocol minor ${minor} is outside what nix-hold speaks: 1.${OLDEST_MINOR} to 1.${NEWEST_MINOR}`)
  }
}

export const Op = {
  IsValidPath: 1,
  AddTempRoot: 11,
  CollectGarbage: 20,
  QueryDerivationOutputs: 22,
  QueryValidPaths: 31,
  QueryDerivationOutputMap: 41,
} as const
export type Op = (typeof Op)[keyof typeof Op]

/** What a CollectGarbage request asks for (GCOptions::GCAction). */
export const GcAction = {
  ReturnLive: 0,
  ReturnDead: 1,
  DeleteDead: 2,
  DeleteSpecific: 3,
} as const

export const Stderr = {
  Next: 0x6f6c6d67, // "olmg"
  Read: 0x64617461, // "data"
  Write: 0x64617416, // "dat\x16"
  Last: 0x616c7473, // "alts"
  Error: 0x63787470, // "cxtp"
  StartActivity: 0x53545254, // "STRT"
  StopActivity: 0x53544f50, // "STOP"
  Result: 0x52534c54, // "RSLT"
} as const

/** Trust status the daemon reports from 1.35 on. */
export const Trust = { 0: 'unknown', 1: 'trusted', 2: 'not-trusted' } as const
export type Trust = (typeof Trust)[keyof typeof Trust]
