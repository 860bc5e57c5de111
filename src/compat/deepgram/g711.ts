/**
 * G.711 µ-law and A-law to 16-bit linear PCM (ITU-T G.711), by table: one
 * lookup per byte.
 */

function ulawToLinear(u: number): number {
  const x = ~u & 0xff;
  const sign = x & 0x80;
  const exponent = (x >> 4) & 0x07;
  const mantissa = x & 0x0f;
  const magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
  return sign ? -magnitude : magnitude;
}

function alawToLinear(a: number): number {
  const x = a ^ 0x55;
  const sign = x & 0x80;
  const exponent = (x >> 4) & 0x07;
  const mantissa = x & 0x0f;
  let magnitude = exponent === 0 ? (mantissa << 4) + 8 : ((mantissa << 4) + 0x108) << (exponent - 1);
  if (magnitude > 32767) magnitude = 32767;
  return sign ? magnitude : -magnitude;
}

export const ULAW_TABLE: Int16Array = Int16Array.from({ length: 256 }, (_, i) => ulawToLinear(i));
export const ALAW_TABLE: Int16Array = Int16Array.from({ length: 256 }, (_, i) => alawToLinear(i));

/** Expands `src` (one byte per sample) into `dst` (little-endian 16-bit); returns the bytes written. */
export function expandG711(table: Int16Array, src: Uint8Array, dst: Uint8Array): number {
  const n = src.byteLength;
  if (dst.byteLength < n * 2) throw new RangeError('expandG711: destination too small');
  for (let i = 0; i < n; i++) {
    const v = table[src[i]!]!;
    dst[2 * i] = v & 0xff;
    dst[2 * i + 1] = (v >> 8) & 0xff;
  }
  return n * 2;
}
