/**
 * Per-session input conversion: s16le/f32le, 8-48 kHz, mono/stereo in,
 * 16 kHz mono 16-bit samples out (what the session's ring holds and every
 * recognizer decodes). Conversion runs on the main thread, per frame:
 * - 16 kHz s16le needs no resampling: mono is copied as it is, stereo
 *   averaged, here in JS, with the native path's exact arithmetic (tested),
 *   saving a native call per frame;
 * - everything else goes through the native Speex resampler, whose float
 *   output is quantized the way the engines always quantized float input
 *   (round to nearest, ties to even, of x × 32768, clamped).
 */
import { loadAddon, type NativeAudioConverter } from '../engine/addon.js';
import { ENGINE_SAMPLE_RATE } from '../engine/types.js';
import type { PcmEncoding } from './wav.js';

export interface AudioFormat {
  readonly sampleRate: number;
  readonly channels: number;
  readonly encoding: PcmEncoding;
}

export const MIN_SAMPLE_RATE = 8000;
export const MAX_SAMPLE_RATE = 48000;

export function bytesPerFrame(f: AudioFormat): number {
  return f.channels * (f.encoding === 's16le' ? 2 : 4);
}

/** Float samples in [-1, 1] to 16 bits, as the native side does: lrintf(x × 32768) clamped (ties to even). */
export function floatToS16(src: Float32Array, out: Int16Array = new Int16Array(src.length)): Int16Array {
  for (let i = 0; i < src.length; i++) {
    const x = Math.max(-32768, Math.min(32767, src[i]! * 32768));
    let r = Math.round(x);
    if (r - x === 0.5 && (r & 1) !== 0) r -= 1; // Math.round sends ties up; lrintf sends them to even
    out[i] = r;
  }
  return out;
}

/** Audio in this format is already what the ring holds (16 kHz mono s16le): no converter, no copy but into the ring. */
export function needsNoConversion(f: AudioFormat): boolean {
  return f.sampleRate === ENGINE_SAMPLE_RATE && f.channels === 1 && f.encoding === 's16le';
}

/** The message's bytes as samples, without a copy; null when unaligned (then convert() copies them). */
export function samplesOf(bytes: Uint8Array): Int16Array | null {
  return bytes.byteOffset % 2 === 0 && bytes.byteLength % 2 === 0 ? new Int16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2) : null;
}

export class AudioConverter {
  readonly format: AudioFormat;
  readonly bytesPerFrame: number;
  #native: NativeAudioConverter | null = null;

  constructor(format: AudioFormat, quality = 5) {
    if (!Number.isInteger(format.sampleRate) || format.sampleRate < MIN_SAMPLE_RATE || format.sampleRate > MAX_SAMPLE_RATE) {
      throw new RangeError(`Expected sampleRate ${MIN_SAMPLE_RATE}-${MAX_SAMPLE_RATE} but received ${format.sampleRate}`);
    }
    if (format.channels !== 1 && format.channels !== 2) {
      throw new RangeError(`Expected channels 1 or 2 but received ${format.channels}`);
    }
    if (format.encoding !== 's16le' && format.encoding !== 'f32le') {
      throw new RangeError(`Expected encoding s16le or f32le but received ${String(format.encoding)}`);
    }
    this.format = format;
    this.bytesPerFrame = bytesPerFrame(format);
    if (format.sampleRate !== ENGINE_SAMPLE_RATE || format.encoding !== 's16le') {
      const { NativeAudioConverter } = loadAddon();
      this.#native = new NativeAudioConverter({ ...format, quality });
    }
  }

  /** Most output samples `bytes` more input bytes can produce. */
  maxOutput(bytes: number): number {
    return this.#native ? this.#native.maxOutput(bytes) : bytes / this.bytesPerFrame;
  }

  /** Converts whole frames into `out`; returns the number of samples written. */
  convert(bytes: Uint8Array, out: Int16Array): number {
    if (this.#native) return this.#native.convert(bytes, out);
    const frames = bytes.byteLength / this.bytesPerFrame;
    if (!Number.isInteger(frames)) throw new RangeError(`Expected whole sample frames of ${this.bytesPerFrame} bytes but received ${bytes.byteLength} bytes`);
    if (frames > out.length) throw new RangeError('output buffer too small');
    const mono = this.format.channels === 1;
    if (bytes.byteOffset % 2 === 0) {
      // Every WebSocket message is aligned; read it through a 16-bit view.
      const s = new Int16Array(bytes.buffer, bytes.byteOffset, frames * this.format.channels);
      if (mono) out.set(s);
      else for (let i = 0; i < frames; i++) out[i] = halfToEven(s[2 * i]! + s[2 * i + 1]!);
    } else {
      const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      if (mono) for (let i = 0; i < frames; i++) out[i] = d.getInt16(2 * i, true);
      else for (let i = 0; i < frames; i++) out[i] = halfToEven(d.getInt16(4 * i, true) + d.getInt16(4 * i + 2, true));
    }
    return frames;
  }

  /** Drains the resampler so total output matches total input duration. */
  flush(out: Int16Array): number {
    return this.#native ? this.#native.flush(out) : 0;
  }
}

/** (l + r) / 2 rounded to nearest, ties to even: the native path's lrintf of the float average. */
function halfToEven(sum: number): number {
  const q = sum >> 1; // floor
  return q + (sum & 1 & q);
}
