import { describe, expect, it } from 'vitest'
import { ERROR_TAIL_BYTES, MAX_ERROR_LINES, nixErrorOf, OutputTail } from '../../src/runner/nix-error.js'

// Each output below was captured from the Nix named, building test/fixtures/fail.nix (a builder
// that prints "failing on purpose" and exits 3) or evaluating a bad expression, stderr not a terminal.
const DRV = '/nix/store/5szysznq955529zimz3y8xi8ir0dflkj-fail-p1.drv'
// Nix 2.8's message for that builder (Nix 2.24's is the same)
const BUILDER_FAILED = `error: builder for '${DRV}' failed with exit code 3;
       last 1 log lines:
       > failing on purpose
       For full logs, run 'nix log ${DRV}'.`

describe('nixErrorOf', () => {
  it("takes Nix 2.8's nix build message whole, from its error: line, with the builder's log lines", () => {
    expect(nixErrorOf(`building '${DRV}'...\n${BUILDER_FAILED}\n`)).toBe(BUILDER_FAILED)
  })

  it("leaves out the log nix-store --realise (Nix 2.8, 2.24) printed before its own message", () => {
    const output = `this derivation will be built:
  ${DRV}
building '${DRV}'...
failing on purpose
${BUILDER_FAILED}
`
    expect(nixErrorOf(output)).toBe(BUILDER_FAILED)
  })

  it("takes Nix 2.3's builder line, the log lines before it and the error after it", () => {
    const output = `these derivations will be built:
  ${DRV}
building '${DRV}'...
failing on purpose
builder for '${DRV}' failed with exit code 3
error: build of '${DRV}' failed
`
    expect(nixErrorOf(output)).toBe(`failing on purpose
builder for '${DRV}' failed with exit code 3
error: build of '${DRV}' failed`)
  })

  it('keeps an evaluation error with its blank and indented lines (Nix 2.8)', () => {
    const output = "error: undefined variable 'syntax'\n\n       at «string»:1:1:\n\n            1| syntax error here\n             | ^\n"
    expect(nixErrorOf(output)).toBe(output.trimEnd())
  })

  it('takes the whole run of messages at the end: a failed dependency, then what it failed', () => {
    const output = `building '${DRV}'...
${BUILDER_FAILED}
error: 1 dependencies of derivation '/nix/store/0y2a4yr9dj68j2wcshx34r16s7plrhrr-top.drv' failed to build
`
    expect(nixErrorOf(output).split('\n')).toEqual([expect.stringMatching(/^error: builder for/), expect.anything(), expect.anything(), expect.anything(), expect.stringMatching(/^error: 1 dependencies/)])
  })

  it("starts at a message that something follows, as nix's usage hint", () => {
    const output = "error: unrecognised flag '--no-such-flag'\nTry 'nix-instantiate --help' for more information.\n"
    expect(nixErrorOf(output)).toBe(output.trimEnd())
  })

  it('gives the last lines of output with no message in it, and nothing for none', () => {
    expect(nixErrorOf('a\nb\nc\nd\ne\nf\ng\n')).toBe('c\nd\ne\nf\ng')
    expect(nixErrorOf('')).toBe('')
  })

  it('ignores an error: line in the log that the log goes on after', () => {
    const output = `building '${DRV}'...\nerror: foo.c:3: no such file\nmake: *** [all] Error 1\nerror: builder for '${DRV}' failed with exit code 2;\n`
    expect(nixErrorOf(output)).toBe(`error: builder for '${DRV}' failed with exit code 2;`)
  })

  it(`keeps at most ${MAX_ERROR_LINES} lines: the first, then the last`, () => {
    const log = Array.from({ length: 50 }, (_, i) => `       > line ${i}`)
    const lines = nixErrorOf(`error: builder for '${DRV}' failed with exit code 3;\n       last 50 log lines:\n${log.join('\n')}\n`).split('\n')
    expect(lines).toHaveLength(MAX_ERROR_LINES)
    expect(lines.slice(0, 2)).toEqual([`error: builder for '${DRV}' failed with exit code 3;`, '…'])
    expect(lines.at(-1)).toBe('       > line 49')
  })

  it('drops colours and keeps the last drawing of a line redrawn with carriage returns', () => {
    expect(nixErrorOf("\x1b[31;1merror:\x1b[0m undefined variable '\x1b[35;1mx\x1b[0m'\n")).toBe("error: undefined variable 'x'")
    expect(nixErrorOf('[1/2 built] copying\r[2/2 built] done\rerror: out of disk space\n')).toBe('error: out of disk space')
  })
})

describe('OutputTail', () => {
  it('keeps only the last bytes of what is written, however much that is', async () => {
    const tail = new OutputTail()
    const chunks = Array.from({ length: 100 }, (_, i) => `${String(i).padStart(3)} ${'x'.repeat(16 * 1024)}\n`)
    chunks.push('error: the end\n')
    for (const chunk of chunks) tail.write(chunk)
    await new Promise((resolve) => tail.end(resolve))
    expect(tail.text).toBe(chunks.join('').slice(-ERROR_TAIL_BYTES))
    expect(nixErrorOf(tail.text)).toBe('error: the end')
  })
})
