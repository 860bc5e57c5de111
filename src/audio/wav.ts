/**
 * Minimal RIFF/WAVE reader and writer: PCM 16-bit and IEEE float 32-bit,
 * any rate, 1-2 channels. Enough for test fixtures, the CLI and benches.
 */
import { readFileSync } from 'node:fs';

export type PcmEncoding = 's16le' | 'f32le';

export interface Wav {
  readonly sampleRate: number;
  readonly channels: number;
  readonly encoding: PcmEncoding;
  /** Raw interleaved little-endian sample bytes. */
  readonly data: Uint8Array;
  readonly frames: number;
  readonly durationSeconds: number;
}

export function parseWav(buf: Uint8Array): Wav {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const tag = (o: number) => String.fromCharCode(buf[o]!, buf[o + 1]!, buf[o + 2]!, buf[o + 3]!);
  if (buf.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new RangeError('not a RIFF/WAVE file');
  let off = 12;
  let fmt: { format: number; channels: number; rate: number; bits: number } | undefined;
  while (off + 8 <= buf.byteLength) {
    const id = tag(off);
    const size = dv.getUint32(off + 4, true);
    const body = off + 8;
    if (id === 'fmt ') {
      let format = dv.getUint16(body, true);
      const channels = dv.getUint16(body + 2, true);
      const rate = dv.getUint32(body + 4, true);
      const bits = dv.getUint16(body + 14, true);
      if (format === 0xfffe && size >= 26) format = dv.getUint16(body + 24, true); // WAVE_FORMAT_EXTENSIBLE
      fmt = { format, channels, rate, bits };
    } else if (id === 'data') {
      if (!fmt) throw new RangeError('WAV data chunk before fmt chunk');
      let encoding: PcmEncoding;
      if (fmt.format === 1 && fmt.bits === 16) encoding = 's16le';
      else if (fmt.format === 3 && fmt.bits === 32) encoding = 'f32le';
      else throw new RangeError(`unsupported WAV format ${fmt.format} with ${fmt.bits} bits (need PCM16 or float32)`);
      const len = Math.min(size, buf.byteLength - body);
      const bytesPerFrame = fmt.channels * (fmt.bits / 8);
      const whole = len - (len % bytesPerFrame);
      const data = buf.subarray(body, body + whole);
      const frames = whole / bytesPerFrame;
      return { sampleRate: fmt.rate, channels: fmt.channels, encoding, data, frames, durationSeconds: frames / fmt.rate };
    }
    off = body + size + (size % 2);
  }
  throw new RangeError('WAV file has no data chunk');
}

export function readWav(file: string): Wav {
  return parseWav(readFileSync(file));
}

/** 16-bit PCM WAV from Int16 samples (interleaved if channels > 1). */
export function encodeWav(samples: Int16Array, sampleRate: number, channels = 1): Buffer {
  const data = Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVE', 8);
  h.write('fmt ', 12);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20);
  h.writeUInt16LE(channels, 22);
  h.writeUInt32LE(sampleRate, 24);
  h.writeUInt32LE(sampleRate * channels * 2, 28);
  h.writeUInt16LE(channels * 2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

/** Int16 view of 16 kHz mono s16le WAV data (copies to guarantee alignment). */
export function wavToInt16(wav: Wav): Int16Array {
  if (wav.encoding !== 's16le') throw new RangeError('expected 16-bit PCM');
  const out = new Int16Array(wav.data.byteLength / 2);
  new Uint8Array(out.buffer).set(wav.data);
  return out;
}
