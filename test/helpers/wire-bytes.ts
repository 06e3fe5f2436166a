// Worker-protocol bytes written out by hand from the protocol's layout (../shared/nix-worker-protocol.md),
// for tests of what reads them: never made by nix-hold's own client.

export const STORE = '/nix/store'
export const path = (name: string): string => `${STORE}/${'a'.repeat(32)}-${name}`

/** A little-endian word. */
export const word = (n: number): Buffer => {
  const b = Buffer.alloc(8)
  b.writeUInt32LE(n % 2 ** 32, 0)
  b.writeUInt32LE(Math.floor(n / 2 ** 32), 4)
  return b
}
/** A string: its length, its bytes, zero padding to a word. */
export const str = (s: string | Buffer): Buffer => {
  const body = Buffer.from(s)
  return Buffer.concat([word(body.length), body, Buffer.alloc((8 - (body.length % 8)) % 8)])
}
export const list = (items: string[]): Buffer => Buffer.concat([word(items.length), ...items.map(str)])
export const bytes = (...parts: Buffer[]): Buffer => Buffer.concat(parts)

export const LAST = word(0x616c7473)
export const NEXT = (text: string): Buffer => bytes(word(0x6f6c6d67), str(text))
export const START = bytes(word(0x53545254), word(2 ** 40 + 7), word(3), word(105), str('building x'), word(2), word(0), word(5), word(1), str('field'), word(0))
export const STOP = bytes(word(0x53544f50), word(2 ** 40 + 7))
/** The structured error of 1.26 and later. */
export const ERROR = bytes(word(0x63787470), str('Error'), word(0), str('Error'), str('build of x failed'), word(0), word(0))

/** A 2.8 daemon's handshake (1.34) with a client offering 1.38: the client's bytes, then the daemon's. */
export const HELLO_1_34 = {
  client: bytes(word(0x6e697863), word(0x126), word(0), word(0)),
  daemon: bytes(word(0x6478696f), word(0x122), str('2.8.0'), LAST),
}
