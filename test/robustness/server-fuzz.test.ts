/**
 * Seeded fuzz of the real server: 10,000+ random valid and invalid messages
 * over many connections, with a healthy control session alongside.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { transcribePcm } from '../../src/scheduler/transcribe.js';
import { librivoxClips } from '../../eval/corpus.js';
import { DOCUMENTED_CLOSE_CODES, fuzzScript, playScript, prng } from '../../eval/fuzz.js';
import { metric, settled, startGateway, streamPcm, type Harness } from '../helpers/gateway.js';

const clips = librivoxClips().map((c) => wavToInt16(readWav(c.file)));
const speech = new Int16Array(clips.reduce((n, c) => n + c.length, 0));
clips.reduce((o, c) => (speech.set(c, o), o + c.length), 0);

describe.each(['uws', 'ws'] as const)('server fuzz over %s', (transport) => {
  let h: Harness;
  beforeAll(async () => {
    // Abrupt closes park their sessions for a resume: a short grace, so the
    // fuzz goes through parking too and every slot is free again at the end.
    // maxHoldMs 0: no decoder hand-over. With fuzz sessions waiting for one of
    // the 2 decoders, the hand-over (fair decoders, test/gateway/fair-decoders.test.ts)
    // would end the control's utterances early, and here the control must
    // equal the engine's own result word for word.
    h = await startGateway(transport, {
      engine: { decoders: 2, threads: 2, pocketsphinx: { maxHoldMs: 0 } },
      pool: { slabs: 48 },
      limits: { resumeGraceSeconds: 1 },
    });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('survives 10,000+ random messages: documented errors only, nothing leaked, the control session unharmed', async () => {
    const rand = prng(transport === 'uws' ? 1127 : 2026);
    const limits = h.gw.config.limits;
    const control = streamPcm(`${h.base}/v1/listen`, clips[3]!, { realtime: true });
    let sent = 0;
    const closeCodes = new Map<number, number>();
    const undocumented: string[] = [];
    const errorCodes = new Map<string, number>();
    const concurrency = 10;
    let connections = 0;
    // Scripts end early (stop, abrupt close, a frame past the ceiling): keep going to 10,000+.
    while (sent < 10_500 && connections < 1000) {
      connections += concurrency;
      const results = await Promise.all(
        Array.from({ length: concurrency }, () => playScript(`${h.base}/v1/listen`, fuzzScript(rand, 110, limits, speech))),
      );
      for (const r of results) {
        sent += r.sent;
        undocumented.push(...r.undocumentedErrors);
        if (r.closeCode !== undefined) closeCodes.set(r.closeCode, (closeCodes.get(r.closeCode) ?? 0) + 1);
        for (const m of r.received) if (m.type === 'error') errorCodes.set(m.code, (errorCodes.get(m.code) ?? 0) + 1);
      }
    }
    console.log(`[${transport}] fuzz: ${sent} messages over ${connections} connections; close codes ${JSON.stringify(Object.fromEntries(closeCodes))}; errors ${JSON.stringify(Object.fromEntries(errorCodes))}`);
    expect(sent).toBeGreaterThanOrEqual(10_000);
    expect(undocumented).toEqual([]);
    for (const code of closeCodes.keys()) expect(DOCUMENTED_CLOSE_CODES.has(code), `close code ${code}`).toBe(true);
    // The fuzz really exercised the error paths.
    expect(errorCodes.size).toBeGreaterThanOrEqual(8);

    // The process is alive and serving; every slab, decoder and stream came back.
    expect((await fetch(`${h.http}/healthz`)).status).toBe(200);
    await settled(h.gw);
    expect(await metric(h.http, 'captiongate_slabs_in_use')).toBe(0);
    expect(await metric(h.http, 'captiongate_decoders_in_use')).toBe(0);

    // The control session, running through all of it, got exactly the engine's own result.
    const r = await control;
    const direct = await transcribePcm(h.gw.engine, clips[3]!);
    expect(r.end.reason).toBe('client_stop');
    expect(r.finals.filter((f) => f.text).map((f) => f.text)).toEqual(direct.finals.filter((f) => f.text).map((f) => f.text));
  });
});
