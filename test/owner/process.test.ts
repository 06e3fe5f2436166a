import { spawnSync } from 'node:child_process'
import { expect, it } from 'vitest'
import { isRunning, ownerSecret, processNow } from '../../src/owner/process.js'

it('names a running process by its pid and start time', () => {
  const me = processNow(process.pid)
  expect(me.pid).toBe(process.pid)
  expect(me.start).toMatch(/^\d+$/)
  expect(isRunning(me)).toBe(true)
})

it('does not take a later process with the same pid for the owner', () => {
  const me = processNow(process.pid)
  expect(isRunning({ pid: me.pid, start: String(Number(me.start) + 1) })).toBe(false)
})

it('refuses a pid that is not running, as a usage error', () => {
  const gone = spawnSync('true').pid
  expect(() => processNow(gone)).toThrow(expect.objectContaining({ kind: 'usage', message: expect.stringContaining(`no process ${gone}`) }))
  expect(isRunning({ pid: gone, start: '0' })).toBe(false)
})

it("derives the owner's secret from its own memory layout, the same each time and different per process", () => {
  const me = processNow(process.pid)
  expect(ownerSecret(me).equals(ownerSecret(me))).toBe(true)
  const parent = processNow(process.ppid)
  expect(ownerSecret(parent).equals(ownerSecret(me))).toBe(false)
})
