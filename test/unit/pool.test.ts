import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { RingBuffer } from '../../src/pool/ring-buffer.js';
import { SlabPool } from '../../src/pool/slab-pool.js';

describe('SlabPool', () => {
  it('hands out a fixed number of slabs, refuses when empty, and counts high water and refusals', () => {
    const pool = new SlabPool({ slabs: 3, slabSamples: 100 });
    expect(pool.totalBytes).toBe(3 * 100 * 2); // 16-bit samples
    const a = pool.acquire()!;
    const b = pool.acquire()!;
    const c = pool.acquire()!;
    expect(new Set([a.index, b.index, c.index]).size).toBe(3);
    expect(pool.acquire()).toBeNull();
    expect(pool.acquire()).toBeNull();
    expect(pool.stats()).toMatchObject({ slabs: 3, inUse: 3, highWater: 3, refusals: 2 });
    pool.release(b);
    expect(pool.inUse).toBe(2);
    const d = pool.acquire()!;
    expect(d).toBe(b); // same memory, reused: nothing is allocated after startup
    pool.release(a);
    pool.release(c);
    pool.release(d);
    expect(pool.stats()).toMatchObject({ inUse: 0, highWater: 3 });
  });

  it('throws on a double release or a foreign slab (bugs, not runtime conditions)', () => {
    const pool = new SlabPool({ slabs: 2, slabSamples: 10 });
    const other = new SlabPool({ slabs: 2, slabSamples: 10 });
    const a = pool.acquire()!;
    pool.release(a);
    expect(() => pool.release(a)).toThrow(/released twice/);
    expect(() => pool.release(other.acquire()!)).toThrow(/does not belong/);
  });

  it('acquire and release are O(1): a million of each on a large pool is flat', () => {
    const pool = new SlabPool({ slabs: 4096, slabSamples: 1 });
    const held = [];
    for (let i = 0; i < 4096; i++) held.push(pool.acquire()!);
    for (let round = 0; round < 250; round++) {
      for (const s of held) pool.release(s);
      for (let i = 0; i < held.length; i++) held[i] = pool.acquire()!;
    }
    expect(pool.inUse).toBe(4096);
  });

  it('rejects nonsense shapes', () => {
    expect(() => new SlabPool({ slabs: 0, slabSamples: 10 })).toThrow(RangeError);
    expect(() => new SlabPool({ slabs: 1, slabSamples: 1.5 })).toThrow(RangeError);
  });
});

describe('RingBuffer', () => {
  // The ring on the middle slab of three: its neighbours must never be written.
  let neighbours: Int16Array[] = [];
  const make = (cap: number, mirror: number) => {
    const pool = new SlabPool({ slabs: 3, slabSamples: cap + mirror });
    const [a, b, c] = [pool.acquire()!, pool.acquire()!, pool.acquire()!];
    a.samples.fill(-7);
    c.samples.fill(-7);
    neighbours = [a.samples, c.samples];
    return new RingBuffer(b, cap, mirror);
  };
  const neighboursUntouched = () => neighbours.every((x) => x.every((v) => v === -7));

  it('views are contiguous across the wrap thanks to the mirror', () => {
    const r = make(10, 4);
    r.write(Int16Array.from([0, 1, 2, 3, 4, 5, 6, 7]));
    r.consume(7);
    r.write(Int16Array.from([8, 9, 10, 11, 12]));
    // Positions 7..12 live at indices 7,8,9,0,1,2.
    expect(Array.from(r.view(9, 4))).toEqual([9, 10, 11, 12]);
    expect(neighboursUntouched()).toBe(true);
    expect(r.available).toBe(6);
    expect(r.free).toBe(4);
  });

  it('refuses overflow, reads outside the backlog, and over-consumption', () => {
    const r = make(8, 4);
    r.write(new Int16Array(8));
    expect(() => r.write(new Int16Array(1))).toThrow(/overflow/);
    expect(() => r.view(0, 5)).toThrow(/mirror/);
    expect(() => r.view(6, 3)).toThrow(/outside/);
    expect(() => r.consume(9)).toThrow(RangeError);
    expect(r.discard()).toBe(8);
    expect(r.available).toBe(0);
  });

  it('matches a plain array model under random writes, views and consumes (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 4, max: 64 }),
        fc.array(fc.tuple(fc.nat(40), fc.nat(40), fc.nat(40)), { minLength: 1, maxLength: 60 }),
        (cap, ops) => {
          const mirror = Math.max(1, Math.floor(cap / 2));
          const r = make(cap, mirror);
          const model: number[] = [];
          let next = 0;
          let readPos = 0;
          for (const [w, v, c] of ops) {
            const n = Math.min(w, r.free);
            const chunk = Int16Array.from({ length: n }, () => next++);
            r.write(chunk);
            model.push(...chunk);
            const len = Math.min(v % (mirror + 1), r.available);
            const view = r.view(r.readPos, len);
            expect(Array.from(view)).toEqual(model.slice(readPos, readPos + len));
            const k = Math.min(c, r.available);
            r.consume(k);
            readPos += k;
            expect(r.readPos).toBe(readPos);
          }
          expect(neighboursUntouched()).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
