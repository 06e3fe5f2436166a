// A hold in force, driven by the caller's requests: answers them until a release, EOF, a signal
// or --max-hold ends it. Here the library's errors become the caller's: a bad path or store URL
// in a request is a mistake in the protocol (kind `protocol`), and the hold stays as it was.

import type { Channel } from './channel/channel.js'
import { errorEvent, type ChannelRequest } from './channel/messages.js'
import { deadline } from './deadline.js'
import { HoldError, isHoldError } from './errors.js'
import type { Hold } from './hold/types.js'

/** How a hold served on a channel ended. */
export type Ending = 'released' | 'expired' | 'ended'

export interface ServeOptions {
  /** Ends the hold the way a release does (a signal to nix-hold). */
  readonly stopped: AbortSignal
  /** Ends the hold after this long, telling the caller {"expired":true}. */
  readonly maxHoldMs?: number | undefined
}

/**
 * Answers the caller's requests on `channel` from `hold`, and releases it at the end. Requests for
 * one store are answered in order; requests for different stores run side by side, so one slow or
 * unreachable host holds up no other (an answer names its store).
 */
export async function serve(channel: Channel, hold: Hold, { stopped, maxHoldMs }: ServeOptions): Promise<Ending> {
  const expiry = maxHoldMs === undefined ? undefined : deadline(maxHoldMs)
  try {
    return await answerUntilEnd(channel, hold, stopped, expiry?.signal)
  } finally {
    expiry?.clear()
  }
}

async function answerUntilEnd(channel: Channel, hold: Hold, stopped: AbortSignal, expiry: AbortSignal | undefined): Promise<Ending> {
  const end = expiry ? AbortSignal.any([stopped, expiry]) : stopped
  const queues = new Map<string, Promise<void>>()
  let over = false
  const answer = async (request: Extract<ChannelRequest, { type: 'keep' | 'expect' }>): Promise<void> => {
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
  const finish = async (ending: 'released' | 'expired'): Promise<Ending> => {
    over = true
    await hold.release()
    channel.send(ending === 'released' ? { released: true } : { expired: true })
    return ending
  }
  for (;;) {
    const next = await channel.next(end)
    if (end.aborted) return finish(stopped.aborted ? 'released' : 'expired')
    if (next === undefined) {
      // EOF or hang-up: the caller is gone or done, and there is no one left to tell
      over = true
      await hold.release()
      return 'ended'
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
      return finish('released')
    }
    const key = request.store ?? ''
    const queued = (queues.get(key) ?? Promise.resolve()).then(() => answer(request))
    queues.set(key, queued)
  }
}

