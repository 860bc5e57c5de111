import { describe, expect, it } from 'vitest';

import { AudioConverter, floatToS16 } from '../../src/audio/converter.js';

/** Power of a single frequency (Goertzel), normalized by length. */
function power(x: Float32Array, freq: number, rate: number): number {
  const w = (2 * Math.PI * freq) / rate;
  const c = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  for (const v of x) {
    const s0 = v + c * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.length * x.length);
}

function tone(freq: number, rate: number, seconds: number, amp = 0.5): Float32Array {
  const n = Math.round(rate * seconds);
  return Float32Array.from({ length: n }, (_, i) => amp * Math.sin((2 * Math.PI * freq * i) / rate));
}

/** Converts in frames (as a session does) and returns the 16-bit output as floats for analysis. */
function convertAll(conv: AudioConverter, bytes: Uint8Array, frameBytes: number): Float32Array {
  const out: number[] = [];
  const scratch = new Int16Array(conv.maxOutput(frameBytes) + 2048);
  for (let off = 0; off < bytes.length; off += frameBytes) {
    const n = conv.convert(bytes.subarray(off, Math.min(bytes.length, off + frameBytes)), scratch);
    out.push(...scratch.subarray(0, n));
  }
  const n = conv.flush(scratch);
  out.push(...scratch.subarray(0, n));
  return Float32Array.from(out, (v) => v / 32768);
}

const f32bytes = (x: Float32Array) => new Uint8Array(x.buffer);
const s16bytes = (x: Float32Array) => new Uint8Array(Int16Array.from(x, (v) => Math.round(v * 32767)).buffer);
const db = (p: number) => 10 * Math.log10(p);

describe('AudioConverter (Speex resampler)', () => {
  it('keeps a 1 kHz tone at 1 kHz from 48 kHz, streaming in 100 ms frames', () => {
    const conv = new AudioConverter({ sampleRate: 48000, channels: 1, encoding: 'f32le' });
    const out = convertAll(conv, f32bytes(tone(1000, 48000, 2)), 4800 * 4);
    expect(out.length).toBe(32000);
    const body = out.subarray(1600, 30400);
    const at = power(body, 1000, 16000);
    for (const f of [500, 900, 1100, 2000, 3000]) expect(db(at) - db(power(body, f, 16000))).toBeGreaterThan(40);
  });

  it('attenuates content above the new Nyquist (aliasing) by more than 40 dB', () => {
    // 10 kHz at 48 kHz would alias to 6 kHz after a naive decimation to 16 kHz.
    const inPower = power(tone(10000, 48000, 2), 10000, 48000);
    const conv = new AudioConverter({ sampleRate: 48000, channels: 1, encoding: 'f32le' });
    const out = convertAll(conv, f32bytes(tone(10000, 48000, 2)), 4800 * 4);
    const alias = power(out.subarray(1600, 30400), 6000, 16000);
    expect(db(inPower) - db(alias)).toBeGreaterThan(40);
    // And total energy left is tiny compared with the input.
    const rms = Math.sqrt(out.subarray(1600, 30400).reduce((s, v) => s + v * v, 0) / 28800);
    expect(rms).toBeLessThan(0.005);
  });

  it('downmixes stereo s16le and upsamples 8 kHz, with exact output length', () => {
    const left = tone(440, 8000, 1);
    const inter = new Float32Array(left.length * 2);
    left.forEach((v, i) => {
      inter[2 * i] = v;
      inter[2 * i + 1] = v;
    });
    const conv = new AudioConverter({ sampleRate: 8000, channels: 2, encoding: 's16le' });
    const out = convertAll(conv, s16bytes(inter), 800 * 4);
    expect(out.length).toBe(16000);
    const body = out.subarray(800, 15200);
    expect(db(power(body, 440, 16000)) - db(power(body, 1000, 16000))).toBeGreaterThan(40);
  });

  it('passes 16 kHz mono s16le straight through', () => {
    const conv = new AudioConverter({ sampleRate: 16000, channels: 1, encoding: 's16le' });
    const x = Int16Array.from([0, 16384, -16384, 32767, -32768]);
    const out = new Int16Array(8);
    expect(conv.convert(new Uint8Array(x.buffer), out)).toBe(5);
    expect(Array.from(out.subarray(0, 5))).toEqual([0, 16384, -16384, 32767, -32768]);
  });

  it('refuses unsupported formats and partial sample frames', () => {
    expect(() => new AudioConverter({ sampleRate: 7999, channels: 1, encoding: 's16le' })).toThrow(RangeError);
    expect(() => new AudioConverter({ sampleRate: 16000, channels: 3, encoding: 's16le' })).toThrow(RangeError);
    expect(() => new AudioConverter({ sampleRate: 16000, channels: 1, encoding: 'mulaw' as never })).toThrow(RangeError);
    const conv = new AudioConverter({ sampleRate: 16000, channels: 2, encoding: 's16le' });
    expect(() => conv.convert(new Uint8Array(6), new Int16Array(16))).toThrow(/whole sample frames of 4 bytes/);
  });
});

describe('AudioConverter at 16 kHz s16le (converted in JS, no native call)', () => {
  it("gives exactly the native converter's output, mono and stereo (ties to even), aligned and not", async () => {
    const { loadAddon } = await import('../../src/engine/addon.js');
    const { NativeAudioConverter } = loadAddon();
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    for (const channels of [1, 2]) {
      const format = { sampleRate: 16000, channels, encoding: 's16le' } as const;
      const frames = 1600;
      const bytes = new Uint8Array(frames * channels * 2 + 1);
      const view = new DataView(bytes.buffer);
      // Extremes and odd sums (ties) included.
      const edge = [32767, 32767, -32768, -32768, 1, 0, -1, 0, 3, 0, -3, 0];
      for (let i = 0; i < frames * channels; i++) view.setInt16(1 + 2 * i, i < edge.length ? edge[i]! : Math.round(rnd() * 32767), true);
      const unaligned = bytes.subarray(1);
      const aligned = new Uint8Array(unaligned); // a copy at offset 0
      const native = new NativeAudioConverter({ ...format, quality: 5 });
      const want = new Int16Array(frames);
      expect(native.convert(aligned, want)).toBe(frames);
      for (const input of [aligned, unaligned]) {
        const got = new Int16Array(frames);
        expect(new AudioConverter(format).convert(input, got)).toBe(frames);
        expect(Array.from(got)).toEqual(Array.from(want));
      }
    }
  });

  it('floatToS16 quantizes float audio exactly as the native side does (lrintf, ties to even, clamped)', async () => {
    const { loadAddon } = await import('../../src/engine/addon.js');
    const native = new (loadAddon().NativeAudioConverter)({ sampleRate: 16000, channels: 1, encoding: 'f32le', quality: 5 });
    const x = Float32Array.from([0, 0.5, -0.5, 1, -1, 1.5, 2.5 / 32768, -2.5 / 32768, 3.5 / 32768, -0.5 / 32768, 0.3, -0.7, 0.123456]);
    const want = new Int16Array(x.length);
    expect(native.convert(new Uint8Array(x.buffer), want)).toBe(x.length);
    expect(Array.from(floatToS16(x))).toEqual(Array.from(want));
  });
});
