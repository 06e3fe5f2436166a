// PROTOCOL.md's examples are real messages: each validates against its schema.

import { readFileSync } from 'node:fs'
import { expect, it } from 'vitest'
import { checkEvent, parseRequest, type ChannelEvent } from '../src/channel/messages.js'

const doc = readFileSync(new URL('../PROTOCOL.md', import.meta.url), 'utf8')
const examples = [...doc.matchAll(/```json\n(.*?)\n```/gs)].map((m) => m[1]!)
const REQUESTS = new Set(['release', 'keep', 'expect'])

it('has an example of every message', () => {
  const keys = new Set(examples.map((e) => Object.keys(JSON.parse(e))[0]))
  expect([...keys].sort()).toEqual(['built', 'error', 'expect', 'expected', 'expired', 'keep', 'kept', 'lost', 'release', 'released'])
})

it.each(examples)('%s validates against its schema', (text) => {
  expect(text).not.toContain('\n') // one message per line
  const message = JSON.parse(text) as Record<string, unknown>
  const key = Object.keys(message)[0]!
  if (REQUESTS.has(key)) expect(() => parseRequest(message)).not.toThrow()
  else expect(() => checkEvent(message as unknown as ChannelEvent)).not.toThrow()
})

it('links every schema file', () => {
  for (const name of ['built', 'kept', 'expected', 'error', 'released', 'lost', 'expired', 'release', 'keep', 'expect']) {
    expect(doc).toContain(`(schema/${name}.json)`)
  }
})
