// A root that reaches a garbage collection already on its way to deleting the path. Nix 2.5 to
// 2.34 (and Lix) acknowledge such a root and delete the path anyway (fixed in Nix 2.35.0); nix-hold
// must not report a path held that the collection then deletes. Nix 2.3 makes the root wait for
// the collection instead, which this test accepts as well: what it checks is the promise, not the
// mechanism.

import { existsSync, renameSync, symlinkSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { holdPaths } from '../../src/index.js'
import { nixLabel, nixVersions, unique, useNix } from '../helpers/nix.js'
import { startOwner } from '../helpers/owner.js'
import { startSshHosts, type SshHosts } from '../helpers/ssh-host.js'
import { hasRaceFix } from '../../src/store/collector.js'

const nix = useNix()

const FAN = 1500

/**
 * A path P that refers to FAN garbage paths and is referred to by FAN more, all garbage, made in
 * the store that `env` reaches directly. A collection that reaches P from one of its references
 * visits P and all its referrers first, then deletes the referrers one by one before P: the
 * window in which P still exists but is doomed. Returns the store paths and `file`, where each
 * one's file is on this machine.
 */
async function fixture(env: NodeJS.ProcessEnv, realStoreDir: string): Promise<{ p: string; referrers: string[]; file: (path: string) => string }> {
  const salt = unique('race')
  const expr = `let
    deps = builtins.genList (i: builtins.toFile "dep-\${toString i}" "dep \${toString i} ${salt}") ${FAN};
    p = builtins.toFile "p-${salt}" (builtins.concatStringsSep "\\n" deps);
    refs = builtins.genList (i: builtins.toFile "ref-\${toString i}" "\${p} \${toString i}") ${FAN};
  in [ p (builtins.head deps) ] ++ refs`
  const { stdout } = await execa('nix-instantiate', ['--eval', '--strict', '--read-write-mode', '-E', expr], { env, extendEnv: false, stdin: 'ignore' })
  const [p, dep, ...referrers] = [...stdout.matchAll(/"([^"]+)"/g)].map((m) => m[1]!)
  const file = (path: string) => join(realStoreDir, basename(path))
  // A collection visits the store directory's entries in the order readdir gives them: on tmpfs,
  // newest first, so it would reach each referrer on its own (deleting it alone) before P. Moving
  // one reference out and back makes it the newest entry: the collection then starts from it,
  // visits it, P and every referrer as one garbage closure, and deletes them referrers first.
  // (On a disk file system the order is a hash's; the window then opens in some runs only.)
  renameSync(file(dep!), `${file(dep!)}.moving`)
  renameSync(`${file(dep!)}.moving`, file(dep!))
  return { p: p!, referrers, file }
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

/**
 * Runs a collection in the store `env` reaches directly (with `gcEnv`, if another Nix collects),
 * and the moment it has begun deleting P's closure (P still there), roots P with `root`. Held must
 * mean held: P valid once the collection has ended. Returns how many times the window was caught.
 */
async function race(env: NodeJS.ProcessEnv, realStoreDir: string, isValid: (p: string) => Promise<boolean>, root: (p: string) => Promise<{ release(): Promise<void> } | 'refused'>, gcEnv = env): Promise<number> {
  let raced = 0
  for (let attempt = 0; attempt < 6 && raced === 0; attempt++) {
    const { p, referrers, file } = await fixture(env, realStoreDir)
    const gc = execa('nix-store', ['--gc'], { env: gcEnv, extendEnv: false, stdin: 'ignore' })
    let gcDone = false
    void gc.finally(() => (gcDone = true)).catch(() => undefined)
    // watch the store itself: the moment the first referrer is gone, P is doomed but still there
    while (!gcDone && referrers.every((r) => existsSync(file(r)))) await turn()
    if (gcDone || !existsSync(file(p))) {
      await gc
      continue // the collection was too quick to catch this time
    }
    const outcome = await root(p)
    await gc
    if (outcome !== 'refused') {
      // held means held: the collection that was running must not have taken it
      expect(await isValid(p)).toBe(true)
      await outcome.release()
    } else {
      expect(await isValid(p)).toBe(false)
    }
    raced++
  }
  return raced
}

const notValid = (err: unknown): 'refused' => {
  expect(err).toMatchObject({ kind: 'usage', message: expect.stringContaining('not valid in the store') })
  return 'refused'
}

it(`never reports a path held that a running collection then deletes (${nixLabel()})`, async () => {
  const raced = await race(nix.env, nix.storeDir, (p) => nix.isValid(p), (p) => holdPaths([p], { env: nix.env }).catch(notValid))
  // the race must have been run for real at least once, or this test showed nothing
  expect(raced).toBeGreaterThan(0)
})

it(`waits through the daemon where the store's state directory is not known: a socket elsewhere (${nixLabel()})`, async () => {
  // a link to the daemon's socket names no state directory: the collector's socket cannot be found
  const link = join(nix.root, unique('daemon.sock'))
  symlinkSync(nix.socketPath, link)
  const env = { ...nix.env, NIX_REMOTE: `unix://${link}` }
  const raced = await race(nix.env, nix.storeDir, (p) => nix.isValid(p), (p) => holdPaths([p], { env }).catch(notValid))
  expect(raced).toBeGreaterThan(0)
})

it(`never tells a command run through the proxy that a path is there which a running collection then deletes (${nixLabel()})`, async () => {
  const owner = startOwner('bash', ['-c', 'export NIX_REMOTE=$("$NODE" "$CLI" --for $$ --proxy)\necho "$NIX_REMOTE"\nread -r _ || true'], nix.env)
  const uri = await owner.line()
  try {
    // nix-store --realise of a path that is there: the daemon's worker roots it (BuildPaths), and
    // says so; the proxy holds that answer back until the holder has it rooted, past the collection
    const realise = async (p: string) => {
      const r = await execa('nix-store', ['--realise', p], { env: { ...nix.env, NIX_REMOTE: uri }, extendEnv: false, stdin: 'ignore', reject: false })
      return r.exitCode === 0 ? { release: async () => undefined } : ('refused' as const)
    }
    const raced = await race(nix.env, nix.storeDir, (p) => nix.isValid(p), realise)
    expect(raced).toBeGreaterThan(0)
  } finally {
    owner.finish()
  }
})

describe('on another machine', () => {
  let ssh: SshHosts
  beforeAll(async () => {
    ssh = await startSshHosts(nix, 1)
  })
  afterAll(async () => ssh?.stop())

  it(`never answers kept, on a warm connection to a host, for a path its running collection then deletes (${nixLabel()})`, async () => {
    const host = ssh.hosts[0]!
    const env = ssh.clientEnv(nix.env)
    const store = `ssh-ng://${host.name}`
    // something held there already: the connection is open when the window comes
    const warm = join(nix.root, unique('warm'))
    writeFileSync(warm, 'warm')
    const own = (await execa('nix-store', ['--add', warm], { env: host.env, extendEnv: false, stdin: 'ignore' })).stdout.trim()
    const hold = await holdPaths([own], { env, store })
    try {
      // Nix 2.8 keeps a chroot store's files in R/nix/store whatever the store directory is called
      const realStoreDir = [join(host.root, nix.storeDir), join(host.root, 'nix', 'store')].find((d) => existsSync(join(d, basename(own))))!
      const keep = (p: string) => hold.keep([p], { store }).then(() => ({ release: async () => undefined }), notValid)
      const raced = await race(host.env, realStoreDir, (p) => host.isValid(p), keep)
      expect(raced).toBeGreaterThan(0)
    } finally {
      await hold.release()
    }
  })
})

// A collection that runs long enough to act while it runs, once it has begun deleting. (Watching
// the store rather than connecting to the collector's socket: Nix 2.35.2's collector has been
// seen to die, "Nix daemon disconnected unexpectedly", while a test probed that socket.)
// (In an object: an async function would wait for a promise it returns.)
async function runningCollection(): Promise<{ gc: Promise<unknown> }> {
  const { referrers, file } = await fixture(nix.env, nix.storeDir) // garbage enough for a while
  const gc = execa('nix-store', ['--gc'], { env: nix.env, extendEnv: false, stdin: 'ignore' })
  let gcDone = false
  void gc.finally(() => (gcDone = true)).catch(() => undefined)
  while (!gcDone && referrers.every((r) => existsSync(file(r)))) await turn()
  return { gc }
}

const fixed = hasRaceFix(nixVersions().daemon.text)

// Nix 2.3 has no collector socket to wait on. On Nix 2.35 the socket is asked all the same: the
// process collecting need not be the daemon.
it.skipIf(nixVersions().daemon.legacy)(`ends a keep that waits for a running collection when the hold is released, without a crash (${nixLabel()})`, async () => {
  const [held, extra] = await nix.addFiles(unique('released-wait'), 2)
  let waiting!: () => void
  const waits = new Promise<void>((resolve) => (waiting = resolve))
  const log = (m: string) => /garbage collection is running/.test(m) && waiting()
  const hold = await holdPaths([held!], { env: nix.env, log })
  const { gc } = await runningCollection()
  const keeping = hold.keep([extra!]).then(() => 'kept', (err: unknown) => err)
  // the keep says it waits for the collection to end, and does
  expect(await Promise.race([waits.then(() => 'waiting'), keeping])).toBe('waiting')
  await hold.release()
  expect(await keeping).toMatchObject({ kind: 'usage', message: 'this hold was released' })
  await gc
})

it.runIf(fixed)(`answers a keep at once through a daemon with Nix 2.35's fix whose collector socket it cannot see, while a collection runs (${nixLabel()})`, async () => {
  const [held, extra] = await nix.addFiles(unique('no-wait'), 2)
  // the same store, through a socket whose state directory is not known: no daemon wait
  const link = join(nix.root, unique('daemon.sock'))
  symlinkSync(nix.socketPath, link)
  const messages: string[] = []
  const elsewhere = await holdPaths([held!], { env: { ...nix.env, NIX_REMOTE: `unix://${link}` }, log: (m) => messages.push(m) })
  const { gc } = await runningCollection()
  const answered = (p: Promise<unknown>) => p.then(() => 'answered', () => 'answered')
  const first = await Promise.race([answered(elsewhere.keep([extra!])), gc.then(() => 'collection ended')])
  expect(first).toBe('answered')
  expect(messages).toEqual([])
  await elsewhere.release()
  await gc
})

// Root's nix-collect-garbage of an older Nix collects in its own process, serving the collector
// socket itself, while the daemon (the one nix-hold asks) has the fix: the race is the collector's.
const olderCollector = process.env.NIX_HOLD_TEST_OLDER_COLLECTOR
describe.runIf(fixed)(`a collection by an older Nix in its own process, beside a daemon with the fix (${nixLabel()})`, () => {
  it.skipIf(!olderCollector)('never reports a path held that it then deletes (NIX_HOLD_TEST_OLDER_COLLECTOR names the bin dir of a Nix with the race; scripts/test.sh sets it)', async () => {
    const gcEnv = { ...nix.env, NIX_REMOTE: 'local', PATH: `${olderCollector}:${nix.env.PATH}` }
    const raced = await race(nix.env, nix.storeDir, (p) => nix.isValid(p), (p) => holdPaths([p], { env: nix.env }).catch(notValid), gcEnv)
    expect(raced).toBeGreaterThan(0)
  })
})
