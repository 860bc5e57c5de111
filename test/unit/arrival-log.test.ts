import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { ArrivalLog } from '../../src/session/arrival-log.js';

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
        // span 0.5 s at 50 ms: capacity 14 entries, so 400 frames wrap it many times.
        const log = new ArrivalLog(0.5, 50);
        const ref = model(14, 50);
        let pos = 0;
        let t = 0;
        for (const [samples, dt] of frames) {
          pos += samples;
          t += dt;
          log.record(pos, t);
          ref.record(pos, t);
        }
        for (const p of [0, pos, pos + 1, ...probes.map((x) => x % (pos + 1))]) expect(log.timeOf(p)).toBe(ref.timeOf(p));
        expect(log.newestTime).toBe(ref.newest());
      }),
    );
  });

  it('is NaN before anything arrived', () => {
    expect(new ArrivalLog(1).timeOf(0)).toBeNaN();
    expect(new ArrivalLog(1).newestTime).toBeNaN();
  });
});
