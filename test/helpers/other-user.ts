// A second local user, for what another user on the machine can and cannot do. The tests run as
// root; the user is made before the file's tests (when missing) and removed after them.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { afterAll, beforeAll } from 'vitest'

export interface OtherUser {
  readonly name: string
  readonly uid: number
  readonly gid: number
  /** Starts `file` with `args` as that user, in `/`, with an environment of its own. */
  spawn(file: string, args: readonly string[]): ChildProcess
}

const NAME = 'nixhold-other'

const idOf = (flag: '-u' | '-g'): number | undefined => {
  try {
    return Number(execFileSync('id', [flag, NAME], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
  } catch {
    return undefined
  }
}

/** The other user for the calling test file. */
export function useOtherUser(): OtherUser {
  let made = false
  let ids: { uid: number; gid: number } | undefined
  beforeAll(() => {
    if (idOf('-u') === undefined) {
      execFileSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--user-group', NAME])
      made = true
    }
    ids = { uid: idOf('-u')!, gid: idOf('-g')! }
  })
  afterAll(() => {
    if (made) execFileSync('userdel', [NAME])
  })
  const get = () => {
    if (!ids) throw new Error('the other user is used before beforeAll made it')
    return ids
  }
  return {
    name: NAME,
    get uid() {
      return get().uid
    },
    get gid() {
      return get().gid
    },
    spawn: (file, args) =>
      spawn(file, [...args], {
        uid: get().uid,
        gid: get().gid,
        cwd: '/',
        env: { PATH: process.env.PATH, HOME: '/nonexistent' },
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
  }
}
