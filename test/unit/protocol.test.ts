import { describe, expect, it } from 'vitest';

import { decodeClientFrame, decodeServerMessage, encodeClientMessage, encodeServerMessage } from '../../src/protocol/codec.js';
import type { ServerMessage } from '../../src/protocol/messages.js';
import { startFromQuery } from '../../src/protocol/query.js';

const limits = { maxControlBytes: 1024 };
const text = (s: string) => new TextEncoder().encode(s);
const json = (o: unknown) => text(JSON.stringify(o));
const start = { type: 'start', sampleRate: 16000, channels: 1, encoding: 's16le' };

describe('protocol codec: JSON mode', () => {
  it('binary frames are audio, aliasing the input (no copy)', () => {
    const b = new Uint8Array(320);
    const ev = decodeClientFrame(b, true, 'json', limits);
    expect(ev.kind).toBe('audio');
    expect(ev.kind === 'audio' && ev.data).toBe(b);
  });

  it.each([
    ['{not json', 'CAP_ERR_INVALID_JSON'],
    ['', 'CAP_ERR_INVALID_JSON'],
    ['null', 'CAP_ERR_INVALID_MESSAGE'],
    ['"start"', 'CAP_ERR_INVALID_MESSAGE'],
    ['[{"type":"start"}]', 'CAP_ERR_INVALID_MESSAGE'],
    ['{"type":5}', 'CAP_ERR_INVALID_MESSAGE'],
    ['{}', 'CAP_ERR_INVALID_MESSAGE'],
    ['{"type":"bogus"}', 'CAP_ERR_UNKNOWN_TYPE'],
    ['{"type":"__proto__"}', 'CAP_ERR_UNKNOWN_TYPE'],
    ['{"type":"toString"}', 'CAP_ERR_UNKNOWN_TYPE'],
    ['{"type":"flush","x":1}', 'CAP_ERR_INVALID_MESSAGE'],
    ['{"type":"stop","now":true}', 'CAP_ERR_INVALID_MESSAGE'],
  ])('text %j -> %s', (input, code) => {
    const ev = decodeClientFrame(text(input), false, 'json', limits);
    expect(ev).toMatchObject({ kind: 'error', code });
  });

  it('rejects invalid UTF-8 as invalid JSON', () => {
    expect(decodeClientFrame(new Uint8Array([0x7b, 0xff, 0x7d]), false, 'json', limits)).toMatchObject({ code: 'CAP_ERR_INVALID_JSON' });
  });

  it('rejects control messages over maxControlBytes before parsing them', () => {
    expect(decodeClientFrame(text(' '.repeat(1025)), false, 'json', limits)).toMatchObject({ code: 'CAP_ERR_CONTROL_TOO_LARGE' });
    expect(decodeClientFrame(text(' '.repeat(1023) + '1'), false, 'json', limits)).toMatchObject({ code: 'CAP_ERR_INVALID_MESSAGE' });
  });

  it.each([
    [{ sampleRate: 7999 }, 'sampleRate'],
    [{ sampleRate: 48001 }, 'sampleRate'],
    [{ sampleRate: 16000.5 }, 'sampleRate'],
    [{ sampleRate: '16000' }, 'sampleRate'],
    [{ channels: 0 }, 'channels'],
    [{ channels: 3 }, 'channels'],
    [{ encoding: 'mulaw' }, 'encoding'],
    [{ language: 'fr' }, 'language'],
    [{ interim: 'yes' }, 'interim'],
    [{ sessionId: 'has space' }, 'sessionId'],
    [{ sessionId: 'x'.repeat(129) }, 'sessionId'],
    [{ meta: { meetingId: 'a/b' } }, 'meetingId'],
    [{ meta: { speaker: 'x'.repeat(129) } }, 'speaker'],
    [{ meta: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, i])) }, '16 keys'],
    [{ bogus: 1 }, 'unknown field'],
  ])('start with %j -> CAP_ERR_BAD_PARAMETER naming %s', (patch, needle) => {
    const ev = decodeClientFrame(json({ ...start, ...patch }), false, 'json', limits);
    expect(ev).toMatchObject({ kind: 'error', code: 'CAP_ERR_BAD_PARAMETER' });
    expect(ev.kind === 'error' && ev.message).toContain(needle);
  });

  it('accepts valid control messages, typed', () => {
    expect(decodeClientFrame(json({ ...start, meta: { meetingId: 'm-1', speaker: 'Alice', seat: 3 } }), false, 'json', limits)).toMatchObject({
      kind: 'control',
      message: { type: 'start', meta: { meetingId: 'm-1', speaker: 'Alice', seat: 3 } },
    });
    for (const type of ['flush', 'stop', 'keepalive']) {
      expect(decodeClientFrame(json({ type }), false, 'json', limits)).toEqual({ kind: 'control', message: { type } });
    }
  });
});

describe('protocol codec: msgpack mode', () => {
  it('carries audio as {type:"audio", data:<bin>}', () => {
    const pcm = new Uint8Array([1, 2, 3, 4]);
    const ev = decodeClientFrame(encodeClientMessage({ type: 'audio', data: pcm }, 'msgpack') as Uint8Array, true, 'msgpack', limits);
    expect(ev.kind).toBe('audio');
    expect(ev.kind === 'audio' && Array.from(ev.data)).toEqual([1, 2, 3, 4]);
  });

  it('validates control messages the same way', () => {
    const ev = decodeClientFrame(encodeClientMessage({ ...start, sampleRate: 5 } as never, 'msgpack') as Uint8Array, true, 'msgpack', limits);
    expect(ev).toMatchObject({ code: 'CAP_ERR_BAD_PARAMETER' });
  });

  it.each([
    [new Uint8Array([0xc1]), 'CAP_ERR_INVALID_MESSAGE'], // never-used byte
    [new Uint8Array([0x92, 0x01, 0x02]), 'CAP_ERR_INVALID_MESSAGE'], // array
    [new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]), 'CAP_ERR_INVALID_MESSAGE'], // truncated huge array
  ])('rejects malformed msgpack %#', (bytes, code) => {
    expect(decodeClientFrame(bytes, true, 'msgpack', limits)).toMatchObject({ kind: 'error', code });
  });

  it('rejects audio without bytes', () => {
    const ev = decodeClientFrame(encodeClientMessage({ type: 'audio', data: 'nope' } as never, 'msgpack') as Uint8Array, true, 'msgpack', limits);
    expect(ev).toMatchObject({ code: 'CAP_ERR_INVALID_MESSAGE' });
  });

  it('round-trips server messages', () => {
    const m: ServerMessage = { type: "final", seq: 3, segment: 1, text: "hi", start: 0, end: 1, words: [{ word: "hi", start: 0, end: 1, confidence: 1 }] };
    expect(decodeServerMessage(encodeServerMessage(m, 'msgpack'))).toEqual(m);
    expect(decodeServerMessage(encodeServerMessage(m, 'json'))).toEqual(m);
  });
});

describe('start from the query string', () => {
  it('is absent without session parameters', () => {
    expect(startFromQuery(new URLSearchParams('token=abc'))).toBeNull();
  });
  it('types numbers, booleans and meta', () => {
    expect(startFromQuery(new URLSearchParams('sampleRate=48000&channels=2&encoding=s16le&interim=false&meetingId=m1&speaker=bob&token=x'))).toEqual({
      kind: 'control',
      message: { type: 'start', sampleRate: 48000, channels: 2, encoding: 's16le', interim: false, meta: { meetingId: 'm1', speaker: 'bob' } },
    });
  });
  it('reports bad values', () => {
    expect(startFromQuery(new URLSearchParams('sampleRate=abc&channels=1&encoding=s16le'))).toMatchObject({ code: 'CAP_ERR_BAD_PARAMETER' });
  });
});
