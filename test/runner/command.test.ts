import { describe, expect, it } from 'vitest'
import { prepareBuild } from '../../src/runner/command.js'

describe('prepareBuild', () => {
  it('adds --no-link --json right after "build", before any "--"', () => {
    expect(prepareBuild(['nix', 'build', '.#a', '--', '--not-a-flag']).args).toEqual(['build', '--no-link', '--json', '.#a', '--', '--not-a-flag'])
  })

  it('finds the build subcommand behind global options with values', () => {
    const p = prepareBuild(['/usr/bin/nix', '--extra-experimental-features', 'nix-command', 'build', '-f', 'x.nix'])
    expect(p.flavor).toBe('nix build')
    expect(p.args.slice(0, 5)).toEqual(['--extra-experimental-features', 'nix-command', 'build', '--no-link', '--json'])
  })

  it('keeps nix-build\'s arguments as given, to be split between nix-instantiate and nix-store', () => {
    expect(prepareBuild(['nix-build', 'default.nix', '-A', 'x'])).toMatchObject({ flavor: 'nix-build', args: ['default.nix', '-A', 'x'] })
    expect(prepareBuild(['nix-build', 'default.nix'], 'unix:///s').args).toEqual(['--store', 'unix:///s', 'default.nix'])
  })

  it.each([
    [['nix', 'build', '.#a', '--out-link', 'r']],
    [['nix', 'build', '.#a', '-o', 'r']],
    [['nix', 'build', '.#a', '-Lo', 'r']],
    [['nix-build', 'x.nix', '-o', 'r']],
    [['nix-build', 'x.nix', '-Ko', 'r']],
    [['nix-build', 'x.nix', '--add-root', 'r']],
  ])('refuses an out-link: %j', (command) => {
    expect(() => prepareBuild(command)).toThrow(expect.objectContaining({ kind: 'usage', message: expect.stringMatching(/out-link is not allowed/) }))
  })

  it('does not mistake an option value for an out-link', () => {
    expect(() => prepareBuild(['nix-build', 'x.nix', '--argstr', 'name', '-o'])).not.toThrow()
  })

  it.each([[['nix', 'develop']], [['nix']], [['ls', '-l']], [[]]])('refuses what is not a build: %j', (command) => {
    expect(() => prepareBuild(command)).toThrow(expect.objectContaining({ kind: 'usage' }))
  })

  it('reads the store from --store or --option store in the command', () => {
    expect(prepareBuild(['nix', 'build', '--store', 'unix:///s', '.#a']).store).toBe('unix:///s')
    expect(prepareBuild(['nix-build', '--option', 'store', 'daemon', 'x.nix']).store).toBe('daemon')
  })

  it('reads nix-build\'s store as nix-build does: -E takes no value, so a --store after it is still the store', () => {
    // the expression is a later word: -E only says the words are expressions
    expect(prepareBuild(['nix-build', '-E', '--store', 'unix:///s', '(import ./x.nix)']).store).toBe('unix:///s')
    expect(prepareBuild(['nix-build', '--expr', '--option', 'store', 'daemon', 'x']).store).toBe('daemon')
    expect(prepareBuild(['nix-build', '-E', 'x', '--store', 'unix:///s']).store).toBe('unix:///s')
    // a value that looks like --store is a value
    expect(prepareBuild(['nix-build', '-A', '--store', 'x.nix']).store).toBeUndefined()
    expect(() => prepareBuild(['nix-build', '-E', '--store', 'unix:///s', 'x'], 'daemon')).toThrow(expect.objectContaining({ kind: 'usage', message: expect.stringMatching(/disagrees/) }))
  })

  it('passes nix-hold\'s own --store on to the build so that both use one store', () => {
    const p = prepareBuild(['nix', 'build', '.#a'], 'unix:///s')
    expect(p.store).toBe('unix:///s')
    expect(p.args).toEqual(['build', '--no-link', '--json', '--store', 'unix:///s', '.#a'])
  })

  it('refuses two different stores', () => {
    expect(() => prepareBuild(['nix', 'build', '--store', 'daemon', '.#a'], 'local')).toThrow(expect.objectContaining({ kind: 'usage' }))
  })
})
