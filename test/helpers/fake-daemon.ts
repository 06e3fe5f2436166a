// A scripted peer on a Unix socket: checks each write the client makes and supplies each read.

import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export class ScriptedPeer {
  #buf = Buffer.alloc(0)
  #wake: (() => void) | undefined
  #ended = false

  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, c])
      this.#wake?.()
    })
    socket.on('end', () => {
      this.#ended = true
      this.#wake?.()
    })
  }

  /** Waits for exactly `bytes` from the client and fails on anything else. */
  async expect(bytes: Buffer): Promise<void> {
    while (this.#buf.length < bytes.length) {
      if (this.#ended) throw new Error(`client closed; expected ${bytes.toString('hex')}, got ${this.#buf.toString('hex')}`)
      await new Promise<void>((r) => (this.#wake = r))
    }
    const got = this.#buf.subarray(0, bytes.length)
    this.#buf = this.#buf.subarray(bytes.length)
    if (!got.equals(bytes)) throw new Error(`expected ${bytes.toString('hex')}, got ${got.toString('hex')}`)
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes)
  }

  /** Resolves once the client has closed its end. */
  async closed(): Promise<void> {
    while (!this.#ended) await new Promise<void>((r) => (this.#wake = r))
  }
}

/** Serves one connection with `script`; `result` settles with the script's outcome. */
export function fakeDaemon(script: (peer: ScriptedPeer) => Promise<void>): { path: string; result: Promise<void>; close(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'nix-hold-fake-'))
  const path = join(dir, 'socket')
  let settle!: (p: Promise<void>) => void
  const result = new Promise<void>((resolve, reject) => (settle = (p) => p.then(resolve, reject)))
  const server = createServer((socket) => {
    const peer = new ScriptedPeer(socket)
    settle(script(peer).finally(() => socket.end()))
  })
  server.listen(path)
  return {
    path,
    result,
    close() {
      server.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
