import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { ERRORS } from '../../src/errors.js';
import { decodeClientFrame, encodeClientMessage } from '../../src/protocol/codec.js';
import { startFromQuery } from '../../src/protocol/query.js';

const limits = { maxControlBytes: 4096 };
const codes = new Set(Object.keys(ERRORS));
const enc = new TextEncoder();

function wellFormed(ev: ReturnType<typeof decodeClientFrame>): void {
  expect(['control', 'audio', 'error']).toContain(ev.kind);
  if (ev.kind === 'error') {
    expect(codes.has(ev.code)).toBe(true);
    expect(typeof ev.message).toBe('string');
  }
  if (ev.kind === 'control') expect(['start', 'flush', 'stop', 'keepalive']).toContain(ev.message.type);
  if (ev.kind === 'audio') expect(ev.data).toBeInstanceOf(Uint8Array);
}

describe('protocol decoder fuzz (JSON and msgpack)', () => {
  it('never throws on arbitrary bytes, and every error is documented', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6000 }), fc.boolean(), fc.constantFrom<'json' | 'msgpack'>('json', 'msgpack'), (bytes, isBinary, mode) => {
        wellFormed(decodeClientFrame(bytes, isBinary, mode, limits));
      }),
      { numRuns: 20_000, seed: 20261127 },
    );
  });

  it('never throws on arbitrary JSON values and objects, as text or msgpack', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.constantFrom<'json' | 'msgpack'>('json', 'msgpack'), (value, mode) => {
        const bytes = mode === 'json' ? enc.encode(JSON.stringify(value)) : (encodeClientMessage(value as never, 'msgpack') as Uint8Array);
        wellFormed(decodeClientFrame(bytes, mode === 'msgpack', mode, limits));
      }),
      { numRuns: 10_000, seed: 7 },
    );
  });

  it('accepts a start only when every field is in range', () => {
    const field = fc.oneof(fc.integer({ min: -1e6, max: 1e6 }), fc.double(), fc.string(), fc.boolean(), fc.constant(null), fc.constantFrom(8000, 16000, 48000, 1, 2, 's16le', 'f32le', 'en'));
    fc.assert(
      fc.property(fc.record({ sampleRate: field, channels: field, encoding: field, language: fc.option(field), interim: fc.option(field) }), (r) => {
        const o: Record<string, unknown> = { type: 'start', sampleRate: r.sampleRate, channels: r.channels, encoding: r.encoding };
        if (r.language !== null) o.language = r.language;
        if (r.interim !== null) o.interim = r.interim;
        const ev = decodeClientFrame(enc.encode(JSON.stringify(o)), false, 'json', limits);
        wellFormed(ev);
        const valid =
          Number.isInteger(o.sampleRate) &&
          (o.sampleRate as number) >= 8000 &&
          (o.sampleRate as number) <= 48000 &&
          (o.channels === 1 || o.channels === 2) &&
          (o.encoding === 's16le' || o.encoding === 'f32le') &&
          (o.language === undefined || o.language === 'en') &&
          (o.interim === undefined || typeof o.interim === 'boolean');
        expect(ev.kind === 'control').toBe(valid);
      }),
      { numRuns: 10_000, seed: 11 },
    );
  });

  it('never throws on arbitrary query strings', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom('sampleRate', 'channels', 'encoding', 'interim', 'meetingId', 'speaker', 'meta.x', 'token', 'x'), fc.string()), (d) => {
        const ev = startFromQuery(new URLSearchParams(d));
        if (ev) wellFormed(ev);
      }),
      { numRuns: 5_000, seed: 3 },
    );
  });

  // Regression cases found while fuzzing (and classic traps).
  it.each([
    ['{"type":"__proto__"}', 'CAP_ERR_UNKNOWN_TYPE'],
    ['{"type":"constructor"}', 'CAP_ERR_UNKNOWN_TYPE'],
    ['{"__proto__":{"type":"stop"}}', 'CAP_ERR_INVALID_MESSAGE'],
    ['{"type":"start","sampleRate":16000,"channels":1,"encoding":"s16le","meta":{"__proto__":{"x":1}}}', 'control'],
  ])('%s', (text, expected) => {
    const ev = decodeClientFrame(enc.encode(text), false, 'json', limits);
    wellFormed(ev);
    expect(ev.kind === 'error' ? ev.code : ev.kind).toBe(expected);
  });
});
