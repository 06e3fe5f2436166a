import { describe, expect, it } from 'vitest'
import { type Arity, scanNixBuildArgs, splitNixBuild } from '../../src/runner/nix-build-args.js'

const DRV = '/nix/store/00000000000000000000000000000000-x.drv'

// Splits as runNixBuild does, with arities and derivations supplied by the test.
function split(args: string[], arities: Record<string, Arity> = {}, derivations: Record<string, string> = {}) {
  const scan = scanNixBuildArgs(args, (option) => arities[option] ?? 0)
  return splitNixBuild(scan, (target) => derivations[target])
}

describe('splitting nix-build between nix-instantiate and nix-store --realise', () => {
  it('gives the evaluation its files, attributes and arguments, and the build none of them', () => {
    expect(split(['default.nix', '-A', 'x', '--argstr', 'n', '1', '--arg', 'f', 'true', '-I', 'p=/q'])).toEqual({
      instantiate: ['default.nix', '-A', 'x', '--argstr', 'n', '1', '--arg', 'f', 'true', '-I', 'p=/q'],
      realise: [],
      derivations: [],
    })
  })

  it('gives settings and logging options to both, in the order written', () => {
    const s = split(['-j', '4', 'x.nix', '--option', 'sandbox', 'false', '-K', '--show-trace', '--cores', '2', '-v'])
    expect(s.instantiate).toEqual(['-j', '4', 'x.nix', '--option', 'sandbox', 'false', '-K', '--show-trace', '--cores', '2', '-v'])
    expect(s.realise).toEqual(['-j', '4', '--option', 'sandbox', 'false', '-K', '--show-trace', '--cores', '2', '-v'])
  })

  it('gives --check to the build only, and --repair to both', () => {
    expect(split(['x.nix', '--check', '--repair'])).toMatchObject({ instantiate: ['x.nix', '--repair'], realise: ['--check', '--repair'] })
  })

  it('splits compound short flags as Nix does, a trailing number being the last flag\'s value', () => {
    expect(split(['-Kj4', 'x.nix', '-vvk'])).toMatchObject({ instantiate: ['-K', '-j', '4', 'x.nix', '-v', '-v', '-k'], realise: ['-K', '-j', '4', '-v', '-v', '-k'] })
  })

  it('takes as many values for an unknown option as this Nix says it has', () => {
    expect(split(['--post-build-hook', '/hook', 'x.nix'], { '--post-build-hook': 1 })).toMatchObject({
      instantiate: ['--post-build-hook', '/hook', 'x.nix'],
      realise: ['--post-build-hook', '/hook'],
    })
    expect(split(['--keep-outputs', 'x.nix'], { '--keep-outputs': 0 })).toMatchObject({ instantiate: ['--keep-outputs', 'x.nix'], realise: ['--keep-outputs'] })
  })

  it('asks about each unknown option once it is reached as an option, never about a value', () => {
    const asked: string[] = []
    scanNixBuildArgs(['--argstr', 'n', '--not-an-option', '--weird', 'v', '-Zq', 'x.nix'], (option) => {
      asked.push(option)
      return option === '--weird' ? 1 : 0
    })
    expect(asked).toEqual(['--weird', '-Z', '-q'])
  })

  it('passes an option this Nix does not know to both, so that Nix itself refuses it', () => {
    expect(split(['x.nix', '--bogus'], { '--bogus': 'unrecognised' })).toMatchObject({ instantiate: ['x.nix', '--bogus'], realise: ['--bogus'] })
  })

  it('passes --impure to the evaluation where nix-instantiate has it, and drops it where only nix-build does (2.3)', () => {
    expect(split(['x.nix', '--impure'], { '--impure': 0 }).instantiate).toEqual(['x.nix', '--impure'])
    expect(split(['x.nix', '--impure'], { '--impure': 'unrecognised' }).instantiate).toEqual(['x.nix'])
  })

  it('drops what nix-build ignores and the out-link choice nix-hold makes itself', () => {
    const s = split(['x.nix', '--no-out-link', '--no-link', '--drv-link', 'd', '--add-drv-link', '--indirect', '--pure', '--exclude', 'e', '--keep', 'K', '--run', 'r'])
    expect(s).toEqual({ instantiate: ['x.nix'], realise: [], derivations: [] })
  })

  it.each([
    [['x.nix', '--dry-run'], /--dry-run .*nothing to hold/],
    [['x.nix', '--run-env'], /--run-env .*nix-shell/],
    [['-p', 'hello'], /-p .*nix-shell/],
    [['x.nix', '-'], /- in the build command: .*no standard input/],
    [['x.nix', '--arg-from-stdin', 'a'], /--arg-from-stdin .*no standard input/],
    [['x.nix', '--eval-store', 'auto'], /--eval-store .*another store/],
    [['x.nix', '--out-link', 'r'], /--out-link .*not allowed/],
    [['x.nix', '-Ko', 'r'], /-o .*not allowed/],
    [['x.nix', '--add-root', 'r'], /--add-root .*not allowed/],
  ])('refuses what it cannot honour: %j', (args, message) => {
    expect(() => split(args)).toThrow(expect.objectContaining({ kind: 'usage', message: expect.stringMatching(message) }))
  })

  it('does not mistake an option\'s value for an option', () => {
    expect(split(['x.nix', '--argstr', 'name', '--dry-run', '-A', '-o'])).toMatchObject({ instantiate: ['x.nix', '--argstr', 'name', '--dry-run', '-A', '-o'] })
  })

  it('builds store derivations named as targets directly, ahead of the evaluated ones', () => {
    expect(split(['x.nix', 'link', '-A', 'a'], {}, { link: `${DRV}!out` })).toEqual({ instantiate: ['x.nix', '-A', 'a'], realise: [], derivations: [`${DRV}!out`] })
  })

  it('evaluates nothing when every target is a store derivation, as nix-build does', () => {
    expect(split([DRV, '-A', 'a', '-j', '2'], {}, { [DRV]: `${DRV}!out` })).toEqual({ instantiate: undefined, realise: ['-j', '2'], derivations: [`${DRV}!out`] })
  })

  it('evaluates default.nix when there is no target at all', () => {
    expect(split(['-A', 'a']).instantiate).toEqual(['-A', 'a'])
  })

  it('takes every target as an expression after -E, wherever -E stands', () => {
    const derivations = { [DRV]: `${DRV}!out` }
    expect(split([DRV, '-E'], {}, derivations)).toMatchObject({ instantiate: [DRV, '-E'], derivations: [] })
    expect(split(['-E', DRV], {}, derivations)).toMatchObject({ instantiate: ['-E', DRV], derivations: [] })
  })

  it('takes every word after -- as a target, and keeps the -- for nix-instantiate', () => {
    expect(split(['-A', 'a', '--', '-j', 'x.nix'])).toMatchObject({ instantiate: ['-A', 'a', '--', '-j', 'x.nix'], realise: [] })
  })
})
