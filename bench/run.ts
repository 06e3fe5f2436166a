// npm run bench: what nix-hold costs, side by side with what a user would do without it.
// Starts its own isolated Nix instance; runs each comparison in alternating rounds; prints a table.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { execa } from 'execa'
import { waitForCollections } from '../src/store/collector.js'
import { DaemonConnection } from '../src/store/daemon.js'
import { resolveStore } from '../src/store/resolve.js'
import { startNix, type NixInstance } from '../test/helpers/nix-instance.js'
import { childrenOf, processesWith } from '../test/helpers/proc.js'
import { startSshHosts } from '../test/helpers/ssh-host.js'
import { alternate, differences, firstLine, now, rssKiB, spawnWithChannel, summarize, timeCommand, type Summary } from './measure.js'

const ROOT = new URL('../..', import.meta.url).pathname // dist/bench/ -> the repository
const CLI = join(ROOT, 'dist', 'nix-hold.js')
const NODE = process.execPath
const rounds = Number(process.env.BENCH_ROUNDS ?? 20)

const ms = (s: Summary) => `${s.median.toFixed(1)} ms (${s.min.toFixed(1)}–${s.max.toFixed(1)})`
const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`
const rows: string[][] = []
const row = (figure: string, measured: string, compared: string, result: string, target: string, ok: boolean) => {
  rows.push([figure, measured, compared, result, target, ok ? 'yes' : 'NO'])
  process.stderr.write(`  ${figure}: ${result} (${ok ? 'meets' : 'misses'} ${target})\n`)
}

function derivationFile(nix: NixInstance, name: string, evalWork: number): string {
  const file = join(nix.root, `${name}.nix`)
  // evalWork list elements, each turned into JSON and measured: pure evaluation, no I/O
  writeFileSync(
    file,
    `let work = builtins.foldl' (acc: i: acc + builtins.stringLength (builtins.toJSON { inherit i; s = toString (i * i); })) 0 (builtins.genList (x: x) ${evalWork});
in derivation {
  name = "${name}-\${toString (if work > 0 then 1 else 0)}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo ${name} > $out" ];
}
`,
  )
  return file
}

/**
 * Waits until the daemon has no more workers than it has now. A client's worker winds down after
 * the client has gone (it drops its temp roots and exits), and without this wait that work lands
 * on whichever sample comes next: in the order bare, nix-hold, node, it slowed nix-hold by about
 * 10 ms here. The wait is outside the timing; it gives up after two seconds.
 */
function settleTo(nix: NixInstance): () => Promise<void> {
  const baseline = nix.workerPids().length
  return async () => {
    const deadline = now() + 2000
    while (nix.workerPids().length > baseline && now() < deadline) await new Promise((r) => setTimeout(r, 1))
  }
}

/** Spawn nix-hold, wait for its first event, release, wait for exit: the wall time a caller sees. */
async function timeWrapped(args: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const start = now()
  const { child, channel } = spawnWithChannel(NODE, [CLI, '--fd', '3', ...args], env)
  const line = await firstLine(channel)
  if (!line.startsWith('{"built"') && !line.startsWith('{"kept"')) throw new Error(`nix-hold said ${line}`)
  channel.end('{"release":true}\n')
  await once(child, 'exit')
  return now() - start
}

async function buildOverhead(nix: NixInstance, env: NodeJS.ProcessEnv): Promise<{ trivial: number }> {
  const trivial = derivationFile(nix, 'trivial', 1)
  const bare = (file: string) => ['build', '--no-link', '--json', '-f', file]
  await timeCommand('nix', bare(trivial), env) // build once: every timed run is a cached no-op

  const t = await alternate(
    rounds,
    {
      bare: () => timeCommand('nix', bare(trivial), env),
      wrapped: () => timeWrapped(['--', 'nix', 'build', '-f', trivial], env),
      node: () => timeCommand(NODE, ['-e', '0'], env),
    },
    settleTo(nix),
  )
  // within each round: nix-hold's run less the bare build beside it, and less node -e 0 as well
  const overhead = summarize(differences(t.wrapped, t.bare)).median
  const beyondNode = summarize(differences(t.wrapped, t.bare, t.node)).median
  row(
    'cached trivial build',
    ms(summarize(t.wrapped)),
    `bare ${ms(summarize(t.bare))}; node -e 0 ${ms(summarize(t.node))}`,
    `+${overhead.toFixed(1)} ms: node start-up + ${beyondNode.toFixed(1)}`,
    '≤ node start-up + 40 ms',
    beyondNode <= 40,
  )

  // nix-build runs as nix-instantiate + nix-store --realise (README, "nix-build"): one more Nix
  // process and one more round trip (rooting the derivations) than a wrapped nix build
  const legacyBare = ['--no-out-link', trivial]
  const l = await alternate(
    rounds,
    {
      bare: () => timeCommand('nix-build', legacyBare, env),
      wrapped: () => timeWrapped(['--', 'nix-build', trivial], env),
      node: () => timeCommand(NODE, ['-e', '0'], env),
    },
    settleTo(nix),
  )
  const legacyBeyondNode = summarize(differences(l.wrapped, l.bare, l.node)).median
  row(
    'cached trivial nix-build',
    ms(summarize(l.wrapped)),
    `bare ${ms(summarize(l.bare))}; node -e 0 ${ms(summarize(l.node))}`,
    `+${summarize(differences(l.wrapped, l.bare)).median.toFixed(1)} ms: node start-up + ${legacyBeyondNode.toFixed(1)}`,
    '≤ node start-up + 40 ms',
    legacyBeyondNode <= 40,
  )

  // an expression that takes about half a second to evaluate: calibrate the work once
  let work = 100_000
  const probe = derivationFile(nix, 'heavy', work)
  await timeCommand('nix', bare(probe), env)
  const evalMs = await timeCommand('nix', bare(probe), env)
  work = Math.max(1000, Math.round((work * 500) / Math.max(evalMs, 1)))
  const heavy = derivationFile(nix, 'heavy', work)
  await timeCommand('nix', bare(heavy), env)
  const h = await alternate(
    rounds,
    {
      bare: () => timeCommand('nix', bare(heavy), env),
      wrapped: () => timeWrapped(['--', 'nix', 'build', '-f', heavy], env),
    },
    settleTo(nix),
  )
  const heavyOverhead = summarize(differences(h.wrapped, h.bare)).median
  row(
    'cached evaluation-heavy build',
    ms(summarize(h.wrapped)),
    `bare ${ms(summarize(h.bare))}`,
    `+${heavyOverhead.toFixed(1)} ms`,
    `≤ trivial overhead + 20 = ${(overhead + 20).toFixed(0)} ms`,
    heavyOverhead <= overhead + 20,
  )
  return { trivial: overhead }
}

async function closeLatency(env: NodeJS.ProcessEnv, path: string): Promise<void> {
  const samples: number[] = []
  for (let i = 0; i < Math.max(rounds, 20); i++) {
    const { child, channel } = spawnWithChannel(NODE, [CLI, '--fd', '3', '--keep', path], env)
    await firstLine(channel)
    const exited = once(child, 'exit')
    const start = now()
    channel.destroy()
    await exited
    samples.push(now() - start)
  }
  const s = summarize(samples)
  row('channel closed → exit', ms(s), '—', `${s.median.toFixed(1)} ms median`, '≤ 20 ms', s.median <= 20)
}

// resident memory once the process has settled: sampled a fixed time after it is ready
async function settledRss(pid: number): Promise<number> {
  await new Promise((r) => setTimeout(r, 300))
  return rssKiB(pid)
}

async function memory(env: NodeJS.ProcessEnv, buildFile: string, path: string): Promise<void> {
  const idle = async () => {
    const { child, channel } = spawnWithChannel(NODE, ['-e', "require('fs').writeSync(3, 'ready\\n'); setInterval(() => {}, 1 << 30)"], env)
    await firstLine(channel)
    const kib = await settledRss(child.pid!)
    child.kill()
    await once(child, 'exit')
    return kib
  }
  const holding = (args: string[]) => async () => {
    const { child, channel } = spawnWithChannel(NODE, [CLI, '--fd', '3', ...args], env)
    await firstLine(channel)
    const kib = await settledRss(child.pid!)
    channel.end('{"release":true}\n')
    await once(child, 'exit')
    return kib
  }
  const m = await alternate(5, {
    idle,
    build: holding(['--', 'nix', 'build', '-f', buildFile]),
    keep: holding(['--keep', path]),
  })
  const [idleKiB, buildKiB, keepKiB] = [m.idle, m.build, m.keep].map((v) => summarize(v).median) as [number, number, number]
  const b = buildKiB / idleKiB
  const k = keepKiB / idleKiB
  row('RSS holding a build', mib(buildKiB), `idle node ${mib(idleKiB)}`, `${b.toFixed(2)}×`, '≤ 1.3×', b <= 1.3)
  row('RSS holding in --keep mode', mib(keepKiB), `idle node ${mib(idleKiB)}`, `${k.toFixed(2)}×`, '≤ 1.1×', k <= 1.1)
}

async function keepMany(nix: NixInstance, env: NodeJS.ProcessEnv): Promise<void> {
  // 10,000 valid paths from one nix-store --add, held by this connection meanwhile
  const conn = await DaemonConnection.open({ type: 'socket', path: nix.socketPath })
  const made = now()
  const paths = await nix.addFiles('bench', 10_000)
  await conn.addTempRoots(paths)
  process.stderr.write(`  (made 10,000 store paths in ${(now() - made).toFixed(0)} ms)\n`)

  const settle = settleTo(nix)
  const t = await alternate(
    Math.max(4, Math.ceil(rounds / 2)),
    {
      one: () => timeWrapped(['--keep', paths[0]!], env),
      many: () => timeWrapped(['--keep', ...paths], env),
    },
    settle,
  )

  // What --keep sends, done in-process: roots and a validity query in one pipelined write, against
  // the same done one round trip at a time. The first is also the daemon's own share of the above.
  const r = await alternate(3, {
    pipelined: async () => {
      const c = await DaemonConnection.open({ type: 'socket', path: nix.socketPath })
      const start = now()
      await Promise.all([c.addTempRoots(paths), c.queryValidPaths(paths)])
      const took = now() - start
      await c.close()
      return took
    },
    sequential: async () => {
      const c = await DaemonConnection.open({ type: 'socket', path: nix.socketPath })
      const start = now()
      for (const p of paths) {
        await c.addTempRoot(p)
        await c.isValidPath(p)
      }
      const took = now() - start
      await c.close()
      return took
    },
  }, settle)
  const perPath = (summarize(differences(t.many, t.one)).median / 9999) * 1000
  const pipelined = summarize(r.pipelined)
  const sequential = summarize(r.sequential)
  const daemonPerPath = (pipelined.median / 10_000) * 1000
  row(
    '--keep of 10,000 paths, spawn → kept → exit',
    ms(summarize(t.many)),
    `1 path ${ms(summarize(t.one))}`,
    `${perPath.toFixed(1)} µs per extra path (the daemon's own work: ${daemonPerPath.toFixed(1)} µs)`,
    '≤ 10 µs',
    perPath <= 10,
  )
  const speedup = sequential.median / pipelined.median
  row('registering 10,000 roots', ms(pipelined), `one round trip at a time ${ms(sequential)}`, `${speedup.toFixed(1)}× faster`, '≥ 5×', speedup >= 5)
  await conn.close()
}

async function fiftyUnderGc(nix: NixInstance, env: NodeJS.ProcessEnv): Promise<void> {
  const files = Array.from({ length: 50 }, (_, i) => derivationFile(nix, `fifty-${i}`, 1))
  let collecting = true
  let collections = 0
  const gc = (async () => {
    while (collecting) {
      await execa('nix-store', ['--gc'], { env, extendEnv: false, stdin: 'ignore' })
      collections++
    }
  })()
  const wrappers = files.map((f) => spawnWithChannel(NODE, [CLI, '--fd', '3', '--', 'nix', 'build', '-f', f], env))
  const built = await Promise.all(wrappers.map(async (w) => (JSON.parse(await firstLine(w.channel)) as { built: string[] }).built[0]!))
  const total = wrappers.reduce((sum, w) => sum + rssKiB(w.child.pid!), 0)
  const target = collections + 2
  while (collections < target) await new Promise((r) => setTimeout(r, 10))
  collecting = false
  await gc
  const valid = await execa('nix-store', ['--check-validity', ...built], { env, extendEnv: false, reject: false, stdin: 'ignore' })
  for (const w of wrappers) w.channel.end('{"release":true}\n')
  await Promise.all(wrappers.map((w) => once(w.child, 'exit')))
  row('50 wrappers holding while GC runs', mib(total), `${collections} collections`, valid.exitCode === 0 ? '50 of 50 survived' : 'paths LOST', 'all survive; report RSS', valid.exitCode === 0)
}

// What the running-collection check (src/store/collector.ts) costs when no collection runs: a
// root and a validity query in one pipelined write (no check), against root, check, query.
async function collectorCheck(nix: NixInstance, path: string): Promise<void> {
  const c = await DaemonConnection.open({ type: 'socket', path: nix.socketPath })
  const N = 500
  const r = await alternate(rounds, {
    unchecked: async () => {
      const start = now()
      for (let i = 0; i < N; i++) await Promise.all([c.addTempRoots([path]), c.queryValidPaths([path])])
      return (now() - start) / N
    },
    checked: async () => {
      const start = now()
      for (let i = 0; i < N; i++) {
        await c.addTempRoots([path])
        await waitForCollections(nix.stateDir)
        await c.queryValidPaths([path])
      }
      return (now() - start) / N
    },
  })
  await c.close()
  const extra = summarize(differences(r.checked, r.unchecked)).median * 1000
  row('rooting one path, no collection running', `${(summarize(r.checked).median * 1000).toFixed(0)} µs`, `without the collection check ${(summarize(r.unchecked).median * 1000).toFixed(0)} µs`, `+${extra.toFixed(0)} µs per hold or keep`, 'report', true)
}

// Holding on other machines: spawn → kept for one path on one loopback host, against a bare
// `ssh host true` (what ssh itself costs); and one nix-hold holding on 50 stores (aliases of 5
// loopback hosts), its own RSS against holding on one, the ssh children's apart.
async function remote(nix: NixInstance, path: string): Promise<void> {
  const aliases = Object.fromEntries(Array.from({ length: 45 }, (_, i) => [`alias${i + 1}`, i % 5]))
  const ssh = await startSshHosts(nix, 5, { aliases })
  try {
    const env = ssh.clientEnv(nix.env)
    await execa('nix', ['copy', '--no-check-sigs', '--to', 'ssh-ng://host1', path], { env, extendEnv: false, stdin: 'ignore' })
    for (let i = 2; i <= 5; i++) await execa('nix', ['copy', '--no-check-sigs', '--to', `ssh-ng://host${i}`, path], { env, extendEnv: false, stdin: 'ignore' })
    const sshOpts = env.NIX_SSHOPTS!.split(/\s+/)
    const t = await alternate(Math.max(4, Math.ceil(rounds / 2)), {
      bare: () => timeCommand('ssh', [...sshOpts, 'host1', 'true'], env),
      kept: () => timeWrapped(['--store', 'ssh-ng://host1', '--keep', path], env),
    })
    const extra = summarize(differences(t.kept, t.bare))
    row('--keep of one path on one host, spawn → kept → exit', ms(summarize(t.kept)), `ssh host true ${ms(summarize(t.bare))}`, `+${extra.median.toFixed(1)} ms over ssh's own`, 'report', true)

    const stores = ['host1', 'host2', 'host3', 'host4', 'host5', ...Object.keys(aliases)].map((h) => `ssh-ng://${h}`)
    const holdOn = async (count: number) => {
      const { child, channel } = spawnWithChannel(NODE, [CLI, '--fd', '3', '--keep', path], env)
      await firstLine(channel)
      const lines = createInterface({ input: channel })[Symbol.asyncIterator]()
      for (const s of stores.slice(0, count)) channel.write(`${JSON.stringify({ keep: [path], store: s })}\n`)
      for (let i = 0; i < count; i++) await lines.next()
      const own = await settledRss(child.pid!)
      const sshKiB = childrenOf(child.pid!).reduce((sum, pid) => sum + rssKiB(pid), 0)
      channel.end('{"release":true}\n')
      await once(child, 'exit')
      return { own, sshKiB }
    }
    const one = await holdOn(1)
    const fifty = await holdOn(50)
    const ratio = fifty.own / one.own
    row('RSS holding on 50 stores', mib(fifty.own), `on 1 store ${mib(one.own)}`, `${ratio.toFixed(2)}× (50 ssh children: ${mib(fifty.sshKiB)} more)`, '≤ 1.3×', ratio <= 1.3)
  } finally {
    await ssh.stop()
  }
}

// The wait a store on another machine gets (issue: a collection already running there): a
// CollectGarbage that frees nothing, pipelined between the roots and the check. What it costs per
// keep over ssh, and what the daemon's roots scan behind it costs on a host with many processes
// and roots (it reads every process's fds, maps and environment, and every root).
async function daemonWait(nix: NixInstance, path: string): Promise<void> {
  const keepOnce = (c: DaemonConnection, wait: boolean) => async () => {
    const start = now()
    await Promise.all([c.addTempRoots([path]), wait ? c.waitForCollector() : undefined, c.queryValidPaths([path])])
    return now() - start
  }
  const ssh = await startSshHosts(nix, 1)
  try {
    const env = ssh.clientEnv(nix.env)
    await execa('nix', ['copy', '--no-check-sigs', '--to', 'ssh-ng://host1', path], { env, extendEnv: false, stdin: 'ignore' })
    const remoteConn = await DaemonConnection.open(resolveStore('ssh-ng://host1', env))
    const r = await alternate(rounds, { plain: keepOnce(remoteConn, false), waited: keepOnce(remoteConn, true) })
    await remoteConn.close()
    const extra = summarize(differences(r.waited, r.plain))
    row('a keep on a host over ssh, with the daemon wait', ms(summarize(r.waited)), `without it ${ms(summarize(r.plain))}`, `+${extra.median.toFixed(1)} ms`, 'report', true)
  } finally {
    await ssh.stop()
  }

  // the same, on this machine's daemon: idle, then with 500 more processes (each a shell with a
  // few open files) and 2,000 more roots for the scan to read
  const local = await DaemonConnection.open({ type: 'socket', path: nix.socketPath })
  const measure = async () => summarize(differences(...Object.values(await alternate(rounds, { waited: keepOnce(local, true), plain: keepOnce(local, false) })) as [number[], number[]]))
  const quiet = await measure()
  const roots = join(nix.stateDir, 'gcroots', 'bench-many')
  mkdirSync(roots, { recursive: true })
  for (let i = 0; i < 2000; i++) symlinkSync(path, join(roots, `r${i}`))
  const crowd = Array.from({ length: 500 }, () => spawn('sh', ['-c', 'exec sleep 1000 3</etc/passwd 4</etc/hostname'], { stdio: 'ignore' }))
  try {
    const busy = await measure()
    row('the daemon wait on this machine, idle', `+${quiet.median.toFixed(1)} ms`, '—', `+${quiet.median.toFixed(1)} ms`, 'report', true)
    row('… with 500 more processes and 2,000 more roots', `+${busy.median.toFixed(1)} ms`, `idle +${quiet.median.toFixed(1)} ms`, `+${busy.median.toFixed(1)} ms`, 'report', true)
  } finally {
    for (const c of crowd) c.kill('SIGKILL')
    rmSync(roots, { recursive: true, force: true })
    await local.close()
  }
}

// --for: one holder per owner. The first hold for an owner starts it; every later one joins it
// and exits, so twenty holds cost one holder's memory, not twenty processes'.
async function forOwner(nix: NixInstance, env: NodeJS.ProcessEnv): Promise<void> {
  const paths = await nix.addFiles('for-bench', 20)
  const owner = spawn(NODE, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' })
  const holders = () => processesWith((arg) => arg === '--serve-holder').filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`\0${owner.pid}\0`))
  try {
    const hold = (path: string) => timeCommand(NODE, [CLI, '--for', String(owner.pid), '--keep', path], env)
    const first = await hold(paths[0]!)
    const [holder] = holders()
    const one = await settledRss(holder!)
    const joins: number[] = []
    for (const path of paths.slice(1)) joins.push(await hold(path))
    const twenty = await settledRss(holder!)
    const ratio = twenty / one
    row('--for: first hold (starts the holder), spawn → exit', `${first.toFixed(1)} ms`, '—', 'report', 'report', true)
    row('--for: a hold joining the holder, spawn → exit', ms(summarize(joins)), '—', 'report', 'report', true)
    row('RSS of 20 --for holds for one owner', mib(twenty), `1 hold ${mib(one)}`, `${ratio.toFixed(2)}× (${holders().length} holder)`, '≤ 1.3×', ratio <= 1.3 && holders().length === 1)
  } finally {
    owner.kill('SIGKILL')
    await once(owner, 'exit')
  }
}

// The proxy (--for PID --proxy): what a Nix command pays for going through it. An owner per
// measurement, killed after it, so that what it held can go.
async function proxy(nix: NixInstance, env: NodeJS.ProcessEnv, path: string): Promise<void> {
  const owners: ReturnType<typeof spawn>[] = []
  const newOwner = () => {
    const owner = spawn(NODE, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' })
    owners.push(owner)
    return owner
  }
  const proxyOf = async (owner: ReturnType<typeof spawn>) => (await execa(NODE, [CLI, '--for', String(owner.pid), '--proxy'], { env, extendEnv: false })).stdout.trim()
  try {
    // until the URI is printed, against a first --for hold (both start the holder)
    const firstProxy: number[] = []
    const firstHold: number[] = []
    for (let i = 0; i < 5; i++) {
      firstProxy.push(await timeCommand(NODE, [CLI, '--for', String(newOwner().pid), '--proxy'], env))
      firstHold.push(await timeCommand(NODE, [CLI, '--for', String(newOwner().pid), '--keep', path], env))
    }
    const [p, h] = [summarize(firstProxy), summarize(firstHold)]
    row('--proxy: until the URI is printed (starts the holder)', ms(p), `first --for hold ${ms(h)}`, `${(p.median / h.median).toFixed(2)}×`, '≤ 1×', p.median <= h.median)

    // 1,000 small queries on one connection, through the proxy and straight to the daemon
    const uri = await proxyOf(newOwner())
    const queries = async (socket: string) => {
      const conn = await DaemonConnection.open({ type: 'socket', path: socket })
      try {
        const start = now()
        for (let i = 0; i < 1000; i++) await conn.isValidPath(path)
        return (now() - start) / 1000
      } finally {
        await conn.close()
      }
    }
    const perOp = await alternate(5, { direct: () => queries(nix.socketPath), proxied: () => queries(uri.slice('unix://'.length)) })
    const [d, x] = [summarize(perOp.direct), summarize(perOp.proxied)]
    row('--proxy: latency per query (1,000 on one connection)', `${(x.median * 1000).toFixed(0)} µs`, `direct ${(d.median * 1000).toFixed(0)} µs`, `${(x.median / d.median).toFixed(2)}×`, '≤ 1.2×', x.median <= 1.2 * d.median)

    // nix copy of a 256 MiB path from another store on this machine into the daemon's
    const other = join(nix.root, 'bench-copy')
    const big = join(nix.root, 'big')
    writeFileSync(big, Buffer.alloc(256 * 1024 * 1024, 'nix-hold '))
    const added = (await execa('nix-store', ['--store', `local?root=${other}`, '--add', big], { env, extendEnv: false })).stdout.trim()
    rmSync(big)
    const copyInto = async (store: string) => {
      const start = now()
      await execa('nix', ['copy', '--no-check-sigs', '--from', `local?root=${other}`, added], { env: { ...env, NIX_REMOTE: store }, extendEnv: false, stdin: 'ignore' })
      return now() - start
    }
    const copies = await alternate(3, {
      direct: async () => {
        const t = await copyInto('daemon')
        await execa('nix-store', ['--delete', added], { env, extendEnv: false })
        return t
      },
      proxied: async () => {
        const owner = newOwner()
        const t = await copyInto(await proxyOf(owner))
        owner.kill('SIGKILL')
        await once(owner, 'exit')
        // its holder lets go within a second of the owner's exit
        for (let tries = 0; tries < 40; tries++) {
          const r = await execa('nix-store', ['--delete', added], { env, extendEnv: false, reject: false })
          if (r.exitCode === 0) break
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
        return t
      },
    })
    const [cd, cx] = [summarize(copies.direct), summarize(copies.proxied)]
    row('--proxy: nix copy of a 256 MiB path into the store', ms(cx), `direct ${ms(cd)}`, `${(cx.median / cd.median).toFixed(2)}×`, '≤ 1.2×', cx.median <= 1.2 * cd.median)

    // what thirty commands through one proxy leave: daemon workers, and the holder's memory
    // against a holder of one --for hold
    const holderOf = (owner: ReturnType<typeof spawn>) => processesWith((arg) => arg === '--serve-holder').find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`\0${owner.pid}\0`))!
    const single = newOwner()
    await timeCommand(NODE, [CLI, '--for', String(single.pid), '--keep', path], env)
    const oneHold = await settledRss(holderOf(single))
    // the daemon's workers for every other client now (the run's keeper, the holders above)
    const baseline = nix.workerPids().length
    const busy = newOwner()
    const through = await proxyOf(busy)
    const files = join(nix.root, 'bench-thirty')
    mkdirSync(files, { recursive: true })
    for (let i = 0; i < 30; i++) {
      writeFileSync(join(files, `f${i}`), `${i}\n`)
      await execa('nix-store', ['--add', join(files, `f${i}`)], { env: { ...env, NIX_REMOTE: through }, extendEnv: false, stdin: 'ignore' })
    }
    // a finished command's worker winds down once the holder has taken its roots over
    const settled = Date.now() + 5000
    while (nix.workerPids().length - baseline > 1 && Date.now() < settled) await new Promise((resolve) => setTimeout(resolve, 20))
    const workers = nix.workerPids().length - baseline
    const thirty = await settledRss(holderOf(busy))
    row('--proxy: after 30 commands, daemon workers and holder RSS', `${workers} workers, ${mib(thirty)}`, `1 --for hold ${mib(oneHold)}`, `${(thirty / oneHold).toFixed(2)}×`, '≤ 2 workers, ≤ 1.3×', workers <= 2 && thirty <= 1.3 * oneHold)
  } finally {
    for (const owner of owners) owner.kill('SIGKILL')
  }
}

async function main(): Promise<void> {
  // BENCH_ONLY=remote,collector runs just those parts (names as below); unset, all of them
  const only = process.env.BENCH_ONLY?.split(',')
  const part = (name: string) => only === undefined || only.includes(name)
  const nix = await startNix()
  try {
    const env = nix.env
    process.stderr.write(`nix-hold benchmarks (Node ${process.version}, ${rounds} rounds; store on ${nix.root})\n`)
    if (part('build')) await buildOverhead(nix, env)
    const held = await execa('nix-build', [derivationFile(nix, 'latency', 1), '--no-out-link'], { env, extendEnv: false, stdin: 'ignore' })
    const path = held.stdout.trim()
    // keep the path alive for the whole run with a hold of our own
    const keeper = spawnWithChannel(NODE, [CLI, '--fd', '3', '--keep', path], env)
    await firstLine(keeper.channel)
    if (part('close')) await closeLatency(env, path)
    // its own file: BENCH_ONLY=memory runs without the build part that writes trivial.nix
    if (part('memory')) await memory(env, derivationFile(nix, 'memory', 1), path)
    if (part('collector')) await collectorCheck(nix, path)
    if (part('remote')) await remote(nix, path)
    if (part('wait')) await daemonWait(nix, path)
    if (part('keep')) await keepMany(nix, env)
    if (part('gc')) await fiftyUnderGc(nix, env)
    if (part('for')) await forOwner(nix, env)
    if (part('proxy')) await proxy(nix, env, path)
    keeper.channel.end()
    await once(keeper.child, 'exit')
  } finally {
    await nix.stop()
  }
  const header = ['figure', 'nix-hold', 'compared with', 'result', 'target', 'met']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`
  console.log([line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'))
}

await main()
