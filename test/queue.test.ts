// The queue behind a daemon connection's unanswered requests and a channel's unread lines.

import fc from 'fast-check'
import { expect, it } from 'vitest'
import { Queue } from '../src/queue.js'

it('gives items back in the order they were pushed, whatever the mix of pushes and takes', () => {
  // runs of pushes and takes, long enough to cross the point where the taken front is dropped
  const step = fc.oneof(fc.record({ push: fc.integer({ min: 1, max: 3000 }) }), fc.record({ take: fc.integer({ min: 1, max: 3000 }) }))
  fc.assert(
    fc.property(fc.array(step, { maxLength: 12 }), (steps) => {
      const queue = new Queue<number>()
      const model: number[] = []
      let next = 0
      for (const s of steps) {
        if ('push' in s) {
          for (let i = 0; i < s.push; i++) {
            queue.push(next)
            model.push(next++)
          }
        } else {
          const fronts: Array<number | undefined> = []
          const taken: Array<number | undefined> = []
          for (let i = 0; i < s.take; i++) {
            fronts.push(queue.peek())
            taken.push(queue.shift())
          }
          const expected = model.splice(0, s.take)
          expect(taken).toEqual([...expected, ...Array(s.take - expected.length).fill(undefined)])
          expect(fronts).toEqual(taken)
        }
        expect(queue.size).toBe(model.length)
      }
      expect(queue.takeAll()).toEqual(model)
      expect(queue.size).toBe(0)
      expect(queue.shift()).toBeUndefined()
    }),
    { numRuns: 200 },
  )
})
