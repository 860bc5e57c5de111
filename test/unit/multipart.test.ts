/**
 * The multipart/form-data parser, driven with bytes: what undici's FormData
 * (the openai client's transport) writes, boundaries inside the data,
 * binary files, and the malformed bodies it must refuse.
 */
import { describe, expect, it } from 'vitest';

import { boundaryOf, fieldText, MultipartError, parseMultipart } from '../../src/files/multipart.js';

const enc = new TextEncoder();

describe('multipart/form-data', () => {
  it('parses what fetch writes for a FormData (fields and a binary file)', async () => {
    const audio = new Uint8Array(4096).map((_, i) => (i * 37) & 0xff);
    audio.set(enc.encode('\r\n--'), 100); // a delimiter prefix inside the data
    const fd = new FormData();
    fd.append('model', 'whisper-1');
    fd.append('file', new Blob([audio], { type: 'audio/wav' }), 'speech.wav');
    fd.append('timestamp_granularities[]', 'word');
    fd.append('timestamp_granularities[]', 'segment');
    const req = new Request('http://x/', { method: 'POST', body: fd });
    const type = req.headers.get('content-type')!;
    const body = new Uint8Array(await req.arrayBuffer());
    const parts = parseMultipart(body, boundaryOf(type)!);
    expect(parts.map((p) => p.name)).toEqual(['model', 'file', 'timestamp_granularities[]', 'timestamp_granularities[]']);
    expect(fieldText(parts[0]!)).toBe('whisper-1');
    expect(parts[1]!.filename).toBe('speech.wav');
    expect(parts[1]!.contentType).toBe('audio/wav');
    expect(Buffer.from(parts[1]!.data).equals(Buffer.from(audio))).toBe(true);
    expect(parts.slice(2).map(fieldText)).toEqual(['word', 'segment']);
  });

  it('takes a preamble, quoted and bare boundaries, and UTF-8 names', () => {
    expect(boundaryOf('multipart/form-data; boundary="a b"')).toBe('a b');
    expect(boundaryOf('Multipart/Form-Data;boundary=xyz')).toBe('xyz');
    expect(boundaryOf('application/json')).toBeNull();
    expect(boundaryOf(undefined)).toBeNull();
    const body = enc.encode('preamble\r\n--xyz\r\nContent-Disposition: form-data; name="l\u00e4nge"\r\n\r\nen\r\n--xyz--\r\nepilogue');
    const [p] = parseMultipart(body, 'xyz');
    expect(p!.name).toBe('l\u00e4nge');
    expect(fieldText(p!)).toBe('en');
  });

  it('refuses malformed bodies (1/4): no closing boundary', () => {
    expect(() => parseMultipart(enc.encode('--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue'), 'xyz')).toThrow(MultipartError);
  });
  it('refuses malformed bodies (2/4): no boundary at all, or none declared', () => {
    expect(() => parseMultipart(enc.encode('hello'), 'xyz')).toThrow(/no multipart boundary/);
    expect(() => boundaryOf('multipart/form-data')).toThrow(/without a boundary/);
  });
  it('refuses malformed bodies (3/4): a part without a name or a disposition', () => {
    expect(() => parseMultipart(enc.encode('--xyz\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xyz--'), 'xyz')).toThrow(/no name/);
    expect(() => parseMultipart(enc.encode('--xyz\r\nContent-Type: text/plain\r\n\r\nv\r\n--xyz--'), 'xyz')).toThrow(/Content-Disposition/);
  });
  it('refuses malformed bodies (4/4): too many parts', () => {
    const many = Array.from({ length: 5 }, (_, i) => `--b\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\nv\r\n`).join('') + '--b--';
    expect(parseMultipart(enc.encode(many), 'b')).toHaveLength(5);
    expect(() => parseMultipart(enc.encode(many), 'b', { maxParts: 4 })).toThrow(/more than 4/);
  });
});
