/**
 * The soak's short variant (the full hour is `npm run bench:soak`): a minute
 * of mixed sessions against the real server process, then exact accounting.
 */
import { describe, expect, it } from 'vitest';

import { soak } from '../../bench/soak.js';

describe('soak (short)', () => {
  it('a minute of mixed sessions: received = decoded + dropped exactly, nothing held at the end', async () => {
    const r = await soak({ minutes: 1, sessions: 6, seed: 7, log: () => {} });
    console.log(`soak: ${JSON.stringify({ ...r, rss: { ...r.rss, samples: r.rss.samples.length } })}`);
    expect(r.sessionsRun).toBeGreaterThan(6);
    expect(r.ends.client_stop ?? 0).toBeGreaterThan(0);
    expect(r.mismatches).toBe(0);
    expect(r.serverTotals.received).toBeGreaterThan(0);
    expect(r.serverTotals.received).toBe(r.serverTotals.decoded + r.serverTotals.dropped);
    expect(r.slabsInUseAtEnd).toBe(0);
    expect(r.decodersInUseAtEnd).toBe(0);
  });
});
