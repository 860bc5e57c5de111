/**
 * Per-session input conversion: s16le/f32le, 8-48 kHz, mono/stereo in,
 * 16 kHz mono float out, via the native Speex resampler. Conversion runs on
 * the main thread: it is a few microseconds per 100 ms frame.
 */
import { loadAddon, type NativeAudioConverter } from '../engine/addon.js';
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

export class AudioConverter {
  readonly format: AudioFormat;
  readonly bytesPerFrame: number;
  #native: NativeAudioConverter;

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
    const { NativeAudioConverter } = loadAddon();
    this.#native = new NativeAudioConverter({ ...format, quality });
  }

  /** Most output samples `bytes` more input bytes can produce. */
  maxOutput(bytes: number): number {
    return this.#native.maxOutput(bytes);
  }

  /** Converts whole frames into `out`; returns the number of samples written. */
  convert(bytes: Uint8Array, out: Float32Array): number {
    return this.#native.convert(bytes, out);
  }

  /** Drains the resampler so total output matches total input duration. */
  flush(out: Float32Array): number {
    return this.#native.flush(out);
  }
}
