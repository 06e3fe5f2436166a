import { readFileSync } from 'node:fs'
import { expect, it } from 'vitest'
// @ts-expect-error: a plain .mjs build script without type declarations
import { compileSchemas, OUTPUT, TYPES } from '../../scripts/compile-schemas.mjs'

it('the committed validators match schema/ (run npm run schemas after editing a schema)', () => {
  const { code, types } = compileSchemas() as { code: string; types: string }
  expect(readFileSync(OUTPUT as string, 'utf8')).toBe(code)
  expect(readFileSync(TYPES as string, 'utf8')).toBe(types)
})
