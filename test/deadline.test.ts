// The reason deadline.ts exists: on Node 20 a deadline that only AbortSignal.any refers to is
// collected with the next garbage collection and never fires.

import { expect, it } from 'vitest'
import { deadline } from '../src/deadline.js'
import { collectGarbage } from './helpers/gc.js'

it('fires after a garbage collection when another signal is all that refers to it', async () => {
  const other = new AbortController()
  const combined = AbortSignal.any([other.signal, deadline(50).signal])
  await collectGarbage()
  const fired = await new Promise<boolean>((resolve) => {
    combined.addEventListener('abort', () => resolve(true))
    setTimeout(() => resolve(false), 2000).unref()
  })
  expect(fired).toBe(true)
  expect(combined.reason).toMatchObject({ name: 'TimeoutError' })
})

it('never fires once cleared', async () => {
  const d = deadline(10)
  d.clear()
  await new Promise((resolve) => setTimeout(resolve, 50))
  expect(d.signal.aborted).toBe(false)
})
