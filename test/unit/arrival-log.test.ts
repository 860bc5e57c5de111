import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { ArrivalTable } from '../../src/session/arrival-log.js';

/** The log's rules, written plainly: every entry kept, coalescing within the resolution, the newest `capacity` searched. */
function model(capacity: number, resolutionMs: number) {
  const entries: { pos: number; t: number }[] = [];
  return {
    record(pos: number, t: number) {
      const last = entries.at(-1);
      if (last && t - last.t < resolutionMs) last.pos = pos;
      else entries.push({ pos, t });
    },
    newest: () => entries.at(-1)?.t ?? NaN,
    timeOf(pos: number): number {
      const kept = entries.slice(-capacity);
      if (!kept.length) return NaN;
      return (kept.find((e) => e.pos > pos) ?? kept.at(-1)!).t;
    },
  };
}

describe('ArrivalLog', () => {
  it('answers as the plain model does, across wraps and coalesced frames', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 4000 }), fc.integer({ min: 0, max: 120 })), { maxLength: 400 }), fc.array(fc.nat(), { maxLength: 30 }), (frames, probes) => {
        // 14 entries a row at 50 ms, so 400 frames wrap a row many times; three
        // rows of one table, each fed its own times, must not see each other's.
        const table = new ArrivalTable(3, 14, 50);
        const logs = [0, 1, 2].map((row) => table.log(row));
        const refs = [0, 1, 2].map(() => model(14, 50));
        let pos = 0;
        let t = 0;
        for (const [samples, dt] of frames) {
          pos += samples;
          t += dt;
          logs.forEach((log, k) => log.record(pos, t + 1000 * k));
          refs.forEach((ref, k) => ref.record(pos, t + 1000 * k));
        }
        logs.forEach((log, k) => {
          for (const p of [0, pos, pos + 1, ...probes.map((x) => x % (pos + 1))]) expect(log.timeOf(p)).toBe(refs[k]!.timeOf(p));
          expect(log.newestTime).toBe(refs[k]!.newest());
        });
      }),
    );
  });

  it('is NaN before anything arrived', () => {
    const table = new ArrivalTable(2, 4, 50);
    table.log(1).record(100, 5);
    // A row handed to a new holder starts empty, whatever it held.
    expect(table.log(1).timeOf(0)).toBeNaN();
    expect(table.log(0).newestTime).toBeNaN();
    expect(() => table.log(2)).toThrow(RangeError);
  });
});
