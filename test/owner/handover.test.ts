import { expect, it } from 'vitest'
import { MAX_FIRST_LINE, MAX_LINE, requestLines } from '../../src/owner/handover.js'

it('sends any number of paths in lines that each fit the line limit, header first', () => {
  // more than one line of 4 MiB could carry: the hand-over that used to fail with ECONNRESET
  const paths = Array.from({ length: 70_000 }, (_, i) => `/nix/store/${String(i).padStart(32, 'a')}-some-package-name-1.2.3`)
  const lines = requestLines({ paths, store: 'unix:///nix/var/nix/daemon-socket/socket', storeDir: '/nix/store' })
  expect(lines[0]).toEqual({ hold: { paths: 70_000, store: 'unix:///nix/var/nix/daemon-socket/socket', storeDir: '/nix/store' } })
  expect(JSON.stringify(lines[0]).length).toBeLessThan(MAX_FIRST_LINE)
  const sent = lines.slice(1).flatMap((l) => (l as { paths: string[] }).paths)
  expect(sent).toEqual(paths)
  for (const l of lines) expect(JSON.stringify(l).length + 1).toBeLessThanOrEqual(MAX_LINE)
})
