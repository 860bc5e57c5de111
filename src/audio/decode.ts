import { AudioConverter } from './converter.js';
import type { Wav } from './wav.js';

/** Whole-file conversion to 16 kHz mono 16-bit samples, as a session's ring holds them (the CLI demo). */
export function wavTo16k(wav: Wav, quality = 5): Int16Array {
  const conv = new AudioConverter({ sampleRate: wav.sampleRate, channels: wav.channels, encoding: wav.encoding }, quality);
  const out = new Int16Array(conv.maxOutput(wav.data.byteLength) + 1024);
  let n = conv.convert(wav.data, out);
  n += conv.flush(out.subarray(n));
  return out.slice(0, n);
}
