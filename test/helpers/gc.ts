// A full garbage collection on demand, for tests of what must survive one.

import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/**
 * Runs a full garbage collection on the next turn of the event loop (the flag is set at run time;
 * a new context sees `gc`). Not in this turn: what the turn made may still be held by it.
 */
export async function collectGarbage(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve))
  setFlagsFromString('--expose-gc')
  ;(runInNewContext('gc') as () => void)()
}
