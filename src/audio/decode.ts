import { AudioConverter } from './converter.js';
import type { Wav } from './wav.js';

/** Whole-file conversion to 16 kHz mono float (tests, demo, benches). */
export function wavTo16kFloat(wav: Wav, quality = 5): Float32Array {
  const conv = new AudioConverter({ sampleRate: wav.sampleRate, channels: wav.channels, encoding: wav.encoding }, quality);
  const out = new Float32Array(conv.maxOutput(wav.data.byteLength) + 1024);
  let n = conv.convert(wav.data, out);
  n += conv.flush(out.subarray(n));
  return out.slice(0, n);
}
