import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { expect, it } from 'vitest'
import { checkOwnedBy, isRunning, processNow } from '../../src/owner/process.js'

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

it('takes this user\'s own process, and refuses it for another user', () => {
  const me = processNow(process.pid)
  expect(() => checkOwnedBy(me, process.geteuid!())).not.toThrow()
  const other = process.geteuid!() + 1
  expect(() => checkOwnedBy(me, other)).toThrow(expect.objectContaining({ kind: 'usage', message: expect.stringContaining(`belongs to uid ${process.geteuid!()}`) }))
})

// Python's main thread leaves with pthread_exit while a second thread reads stdin: the process's
// own stat then shows Z, as a finished process would, while the process runs on
it('counts a process whose first thread has exited as running while another thread lives', async () => {
  const program = [
    'import ctypes, sys, threading, os',
    'def rest():',
    '    sys.stdin.readline()',
    '    os._exit(0)',
    'threading.Thread(target=rest).start()',
    'print("started", flush=True)',
    'ctypes.CDLL(None).pthread_exit(None)',
  ].join('\n')
  const child = spawn('python3', ['-c', program], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exit = once(child, 'exit')
  const [first] = await once(createInterface({ input: child.stdout! }), 'line')
  expect(first).toBe('started')
  const owner = processNow(child.pid!)
  // wait for the first thread to be gone, as the kernel shows it
  const { readFileSync } = await import('node:fs')
  const { eventually } = await import('../helpers/proc.js')
  expect(await eventually(() => /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${child.pid}/stat`, 'utf8')), 5000)).toBe(true)
  expect(isRunning(owner)).toBe(true)
  child.stdin!.end('\n')
  await exit
  expect(isRunning(owner)).toBe(false)
})
