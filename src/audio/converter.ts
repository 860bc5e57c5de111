/**
 * Per-session input conversion: s16le/f32le, 8-48 kHz, mono/stereo in,
 * 16 kHz mono float out. Conversion runs on the main thread, per frame:
 * - 16 kHz input needs no resampling, so it is converted here in JS, with
 *   the same arithmetic as the native path (every result is exact in
 *   float32), saving a native call per frame;
 * - everything else goes through the native Speex resampler.
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

/** 16 kHz s16le (mono or stereo) or f32le mono: a plain loop gives the native path's exact output. */
function convertsInJs(f: AudioFormat): boolean {
  return f.sampleRate === ENGINE_SAMPLE_RATE && (f.encoding === 's16le' || f.channels === 1);
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
    if (!convertsInJs(format)) {
      const { NativeAudioConverter } = loadAddon();
      this.#native = new NativeAudioConverter({ ...format, quality });
    }
  }

  /** Most output samples `bytes` more input bytes can produce. */
  maxOutput(bytes: number): number {
    return this.#native ? this.#native.maxOutput(bytes) : bytes / this.bytesPerFrame;
  }

  /** Converts whole frames into `out`; returns the number of samples written. */
  convert(bytes: Uint8Array, out: Float32Array): number {
    if (this.#native) return this.#native.convert(bytes, out);
    const frames = bytes.byteLength / this.bytesPerFrame;
    if (!Number.isInteger(frames)) throw new RangeError(`Expected whole sample frames of ${this.bytesPerFrame} bytes but received ${bytes.byteLength} bytes`);
    if (frames > out.length) throw new RangeError('output buffer too small');
    const { encoding, channels } = this.format;
    // Aligned input (every WebSocket message is) is read through a typed view; otherwise through a DataView.
    if (encoding === 's16le') {
      if (bytes.byteOffset % 2 === 0) {
        const s = new Int16Array(bytes.buffer, bytes.byteOffset, frames * channels);
        if (channels === 1) for (let i = 0; i < frames; i++) out[i] = s[i]! * (1 / 32768);
        else for (let i = 0; i < frames; i++) out[i] = (s[2 * i]! + s[2 * i + 1]!) * (0.5 / 32768);
      } else {
        const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        if (channels === 1) for (let i = 0; i < frames; i++) out[i] = d.getInt16(2 * i, true) * (1 / 32768);
        else for (let i = 0; i < frames; i++) out[i] = (d.getInt16(4 * i, true) + d.getInt16(4 * i + 2, true)) * (0.5 / 32768);
      }
    } else if (bytes.byteOffset % 4 === 0) {
      out.set(new Float32Array(bytes.buffer, bytes.byteOffset, frames));
    } else {
      const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < frames; i++) out[i] = d.getFloat32(4 * i, true);
    }
    return frames;
  }

  /** Drains the resampler so total output matches total input duration. */
  flush(out: Float32Array): number {
    return this.#native ? this.#native.flush(out) : 0;
  }
}
