// A deadline as an abort signal that a timer holds.
//
// Not AbortSignal.timeout: nothing but its listeners holds that signal, and AbortSignal.any holds
// its sources weakly, so on Node 20 (20.20 checked) a timeout signal combined with another one is
// garbage: after the next collection it never fires. A --max-hold ran for ever that way.

export interface Deadline {
  /** Aborts with a TimeoutError when the time is up. */
  readonly signal: AbortSignal
  /** Stops the timer; the signal then never aborts. */
  clear(): void
}

/** A deadline `ms` from now. The timer does not keep the process alive. */
export function deadline(ms: number): Deadline {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new DOMException(`${ms} ms passed`, 'TimeoutError')), ms)
  timer.unref()
  return { signal: controller.signal, clear: () => clearTimeout(timer) }
}
