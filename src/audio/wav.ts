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

export interface WavHeader {
  readonly sampleRate: number;
  readonly channels: number;
  readonly encoding: PcmEncoding;
  /** Where the sample bytes start. */
  readonly dataOffset: number;
  /** Sample bytes the header declares; null when unknown (a stream written before its length was). */
  readonly dataBytes: number | null;
}

/** True when the bytes start like a RIFF/WAVE file. */
export function isWav(buf: Uint8Array): boolean {
  return buf.byteLength >= 12 && tag(buf, 0) === 'RIFF' && tag(buf, 8) === 'WAVE';
}

function tag(buf: Uint8Array, o: number): string {
  return String.fromCharCode(buf[o]!, buf[o + 1]!, buf[o + 2]!, buf[o + 3]!);
}

/**
 * Parses a WAV header from the file's first bytes: PCM 16-bit or IEEE
 * float 32-bit, 1-2 channels. Returns null while more bytes are needed to
 * reach the data chunk; throws RangeError for anything else.
 */
export function parseWavHeader(buf: Uint8Array): WavHeader | null {
  if (buf.byteLength < 12) return null;
  if (!isWav(buf)) throw new RangeError('not a RIFF/WAVE file');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = 12;
  let fmt: { format: number; channels: number; rate: number; bits: number } | undefined;
  while (off + 8 <= buf.byteLength) {
    const id = tag(buf, off);
    const size = dv.getUint32(off + 4, true);
    const body = off + 8;
    if (id === 'fmt ') {
      if (body + 16 > buf.byteLength) return null;
      let format = dv.getUint16(body, true);
      if (format === 0xfffe && size >= 26) {
        if (body + 26 > buf.byteLength) return null;
        format = dv.getUint16(body + 24, true); // WAVE_FORMAT_EXTENSIBLE
      }
      fmt = { format, channels: dv.getUint16(body + 2, true), rate: dv.getUint32(body + 4, true), bits: dv.getUint16(body + 14, true) };
    } else if (id === 'data') {
      if (!fmt) throw new RangeError('WAV data chunk before fmt chunk');
      let encoding: PcmEncoding;
      if (fmt.format === 1 && fmt.bits === 16) encoding = 's16le';
      else if (fmt.format === 3 && fmt.bits === 32) encoding = 'f32le';
      else throw new RangeError(`unsupported WAV format ${fmt.format} with ${fmt.bits} bits (need PCM16 or float32)`);
      if (fmt.channels !== 1 && fmt.channels !== 2) throw new RangeError(`unsupported WAV channel count ${fmt.channels} (need 1 or 2)`);
      return { sampleRate: fmt.rate, channels: fmt.channels, encoding, dataOffset: body, dataBytes: size === 0xffffffff || size === 0 ? null : size };
    }
    off = body + size + (size % 2);
  }
  return null;
}

export function parseWav(buf: Uint8Array): Wav {
  const h = parseWavHeader(buf);
  if (!h) throw new RangeError('WAV file has no data chunk');
  const len = Math.min(h.dataBytes ?? Infinity, buf.byteLength - h.dataOffset);
  const bytesPerFrame = h.channels * (h.encoding === 's16le' ? 2 : 4);
  const whole = len - (len % bytesPerFrame);
  const frames = whole / bytesPerFrame;
  return {
    sampleRate: h.sampleRate,
    channels: h.channels,
    encoding: h.encoding,
    data: buf.subarray(h.dataOffset, h.dataOffset + whole),
    frames,
    durationSeconds: frames / h.sampleRate,
  };
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
