/**
 * A session's audio backlog in one slab: a ring of `capacity` samples plus a
 * mirror of its first `mirror` samples after the end, so any read of up to
 * `mirror` samples is one contiguous view (no copy, no wrap handling at the
 * engine boundary). Positions are absolute sample counts since session
 * start; `readPos` advances only when the engine reports what it consumed.
 */
import type { Slab } from './slab-pool.js';

export class RingBuffer {
  readonly capacity: number;
  readonly mirror: number;
  /** The slab's pool memory (shared, see Slab.memory) and where the slab starts in it. */
  #data: Int16Array;
  #base: number;
  #readPos = 0;
  #writePos = 0;

  constructor(slab: Slab, capacity: number, mirror: number) {
    if (capacity + mirror !== slab.samples.length) {
      throw new RangeError(`slab holds ${slab.samples.length} samples, ring needs ${capacity} + mirror ${mirror}`);
    }
    if (mirror > capacity) throw new RangeError('mirror cannot exceed capacity');
    this.capacity = capacity;
    this.mirror = mirror;
    this.#data = slab.memory;
    this.#base = slab.offset;
  }

  get readPos(): number {
    return this.#readPos;
  }
  get writePos(): number {
    return this.#writePos;
  }
  /** Samples written but not yet consumed (the backlog). */
  get available(): number {
    return this.#writePos - this.#readPos;
  }
  get free(): number {
    return this.capacity - this.available;
  }

  /** Appends the first `n` samples of `src`; the caller checks `free` first. */
  write(src: Int16Array, n = src.length): void {
    if (n > this.free) throw new RangeError(`ring overflow: ${n} samples into ${this.free} free`);
    const cap = this.capacity;
    const base = this.#base;
    let idx = this.#writePos % cap;
    // Fast path (nearly always): no wrap, nothing in the mirrored head.
    if (idx >= this.mirror && idx + n <= cap) {
      this.#data.set(n === src.length ? src : src.subarray(0, n), base + idx);
      this.#writePos += n;
      return;
    }
    let off = 0;
    while (off < n) {
      const run = Math.min(n - off, cap - idx);
      const part = src.subarray(off, off + run);
      this.#data.set(part, base + idx);
      // Keep the mirror in step with the ring's head.
      if (idx < this.mirror) {
        const m = Math.min(run, this.mirror - idx);
        this.#data.set(part.subarray(0, m), base + cap + idx);
      }
      off += run;
      idx = 0;
    }
    this.#writePos += n;
  }

  /** Contiguous view of [start, start + length); valid until the next write. */
  view(start: number, length: number): Int16Array {
    if (start < this.#readPos || start + length > this.#writePos) {
      throw new RangeError(`view [${start}, ${start + length}) outside backlog [${this.#readPos}, ${this.#writePos})`);
    }
    if (length > this.mirror) throw new RangeError(`view of ${length} samples exceeds mirror ${this.mirror}`);
    const idx = this.#base + (start % this.capacity);
    return this.#data.subarray(idx, idx + length);
  }

  consume(n: number): void {
    if (n < 0 || n > this.available) throw new RangeError(`cannot consume ${n} of ${this.available} samples`);
    this.#readPos += n;
  }

  /** Drops the whole backlog (counted as not decoded by the caller). */
  discard(): number {
    const n = this.available;
    this.#readPos = this.#writePos;
    return n;
  }
}
