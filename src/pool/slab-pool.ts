/**
 * A fixed number of fixed-size slabs of 16-bit samples, allocated (and
 * touched) once at startup, as one array. Acquire and release are O(1) (a free-index stack). The pool
 * never grows: when it is empty a new session is refused up front.
 */

export interface Slab {
  readonly index: number;
  /** This slab's samples: memory[offset, offset + slabSamples). */
  readonly samples: Int16Array;
  /**
   * The pool's one array, shared by every slab, and where this slab starts
   * in it. The per-frame path indexes this array: it is touched by every
   * session, so it stays in cache, where a view per slab would be a cache
   * miss (the view, then its buffer) on every frame of every session.
   */
  readonly memory: Int16Array;
  readonly offset: number;
}

/** A slab of its own, outside any pool (file transcription, tests). */
export function standaloneSlab(samples: number): Slab {
  const memory = new Int16Array(samples);
  return { index: -1, samples: memory, memory, offset: 0 };
}

export interface SlabPoolStats {
  readonly slabs: number;
  readonly inUse: number;
  readonly highWater: number;
  readonly refusals: number;
  readonly slabBytes: number;
  readonly totalBytes: number;
}

export class SlabPool {
  readonly slabSamples: number;
  readonly slabBytes: number;
  readonly totalBytes: number;
  #slabs: Slab[];
  #free: Int32Array;
  #freeTop: number;
  #inUse: Uint8Array;
  #highWater = 0;
  #refusals = 0;

  constructor(options: { slabs: number; slabSamples: number }) {
    const { slabs, slabSamples } = options;
    if (!Number.isInteger(slabs) || slabs < 1) throw new RangeError(`Expected slabs >= 1 but received ${slabs}`);
    if (!Number.isInteger(slabSamples) || slabSamples < 1) {
      throw new RangeError(`Expected slabSamples >= 1 but received ${slabSamples}`);
    }
    this.slabSamples = slabSamples;
    this.slabBytes = slabSamples * Int16Array.BYTES_PER_ELEMENT;
    this.totalBytes = this.slabBytes * slabs;
    this.#slabs = [];
    const memory = new Int16Array(slabs * slabSamples);
    // Touch every page now so the budget is resident from startup, not
    // discovered under load.
    memory.fill(0);
    for (let i = 0; i < slabs; i++) {
      const offset = i * slabSamples;
      this.#slabs.push(Object.freeze({ index: i, samples: memory.subarray(offset, offset + slabSamples), memory, offset }));
    }
    this.#free = new Int32Array(slabs);
    for (let i = 0; i < slabs; i++) this.#free[i] = slabs - 1 - i;
    this.#freeTop = slabs;
    this.#inUse = new Uint8Array(slabs);
  }

  /** A free slab, or null (counted as a refusal) when none is left. */
  acquire(): Slab | null {
    if (this.#freeTop === 0) {
      this.#refusals++;
      return null;
    }
    const idx = this.#free[--this.#freeTop]!;
    this.#inUse[idx] = 1;
    const used = this.#slabs.length - this.#freeTop;
    if (used > this.#highWater) this.#highWater = used;
    return this.#slabs[idx]!;
  }

  /** Returns a slab. Releasing twice, or a foreign slab, is a bug and throws. */
  release(slab: Slab): void {
    const idx = slab.index;
    if (this.#slabs[idx] !== slab) throw new Error('release of a slab that does not belong to this pool');
    if (this.#inUse[idx] !== 1) throw new Error(`slab ${idx} released twice`);
    this.#inUse[idx] = 0;
    this.#free[this.#freeTop++] = idx;
  }

  get inUse(): number {
    return this.#slabs.length - this.#freeTop;
  }

  get available(): number {
    return this.#freeTop;
  }

  stats(): SlabPoolStats {
    return {
      slabs: this.#slabs.length,
      inUse: this.inUse,
      highWater: this.#highWater,
      refusals: this.#refusals,
      slabBytes: this.slabBytes,
      totalBytes: this.totalBytes,
    };
  }
}
