/**
 * Fair decoders (issue 13): more continuous real-time talkers than
 * PocketSphinx decoders. engine.decoders = 2, six talkers reading LibriVox
 * back to back for 60 s through a real gateway. Every talker gets finals
 * with words, promptly; nobody is ended for engine_overload; a new session
 * is admitted mid-run; accounting is exact.
 *
 * Before the hand-over (engine.pocketsphinx.maxHoldMs), a talker at the
 * back of the queue waited whole utterances (up to 15 s), admission
 * refused every new session once a stream had waited 2 s, and the waiting
 * stream was ended for engine_overload at 8 s of backlog.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { CaptionClientError } from '../../src/client/client.js';
import { librivoxClips } from '../../eval/corpus.js';
import { continuousTalk, longestWithoutFinal, percentile, talkRealtime } from '../../eval/talkers.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';

const TALKERS = 6;
const SECONDS = 60;
// The bar is p95 <= 3 s "while the CPU has headroom"; this test
// allows more for a shared machine (docs/benchmarks.md, "Fair decoders",
// has the bench's numbers). Without the hand-over the back of the queue
// waits whole utterances and is ended at 8 s of backlog.
const P95_DELAY_MS = 5_000;
// "While the CPU has headroom": the engine's workers were busy less than
// this share of every 5 s of the run. When they saturate, falling behind
// (lagging, engine_overload, admission refusing) is the right answer, not
// a failure of fairness, and only accounting is checked. NOTE: this
// LibriVox talk costs about 0.36 CPU s per audio s, so six continuous
// talkers need about 2.2 cores: on a 2-core machine the workers saturate
// and the timing checks are skipped (the run says so on stderr). They
// apply on a machine with about 3 free cores.
const HEADROOM_BUSY = 0.85;

describe('fair decoders: 6 continuous real-time talkers on 2 PocketSphinx decoders', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { engine: { kind: 'pocketsphinx', decoders: 2 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('all get prompt finals, nobody is ended for overload, a newcomer is admitted, accounting is exact', async () => {
    const url = `${h.base}/v1/listen`;
    const talks = Array.from({ length: TALKERS }, (_, i) => continuousTalk(i, SECONDS));
    const threads = h.gw.config.engine.threads;
    // Worker busy share over sliding 5 s windows, sampled each second.
    const samples: { at: number; busyMs: number }[] = [];
    let maxBusy = 0;
    const sampler = setInterval(() => {
      const now = { at: performance.now(), busyMs: h.gw.engine.stats().busyMs };
      samples.push(now);
      const past = samples.find((x) => now.at - x.at <= 5_000)!;
      if (now.at - past.at >= 4_000) maxBusy = Math.max(maxBusy, (now.busyMs - past.busyMs) / (now.at - past.at) / threads);
    }, 1000);
    const runs = Promise.all(talks.map((t) => talkRealtime(url, t.pcm, SECONDS)));

    // Halfway, with every decoder taken and talkers waiting: a new session
    // is admitted, and /readyz says ready.
    await new Promise((r) => setTimeout(r, (SECONDS / 2) * 1000));
    const waiting = h.gw.engine.stats().streamsWaiting;
    const readyz = (await fetch(`${h.http}/readyz`)).status;
    const clip = wavToInt16(readWav(librivoxClips()[0]!.file));
    let newcomer: Awaited<ReturnType<typeof talkRealtime>> | CaptionClientError;
    try {
      newcomer = await talkRealtime(url, clip, 4);
    } catch (err) {
      newcomer = err as CaptionClientError;
    }
    const done = await runs.finally(() => clearInterval(sampler));
    const headroom = maxBusy < HEADROOM_BUSY;

    const delays = done.flatMap((r) => r.finalDelaysMs);
    const p95 = percentile(delays, 95);
    const silent = done.map((r) => longestWithoutFinal(r));
    console.log(
      `fair decoders: ${done.map((r) => r.finals.filter((f) => f.text).length).join('/')} finals with words; ` +
        `final delay p50 ${percentile(delays, 50).toFixed(0)} ms, p95 ${p95.toFixed(0)} ms, max ${Math.max(...delays).toFixed(0)} ms; ` +
        `longest without a final ${Math.max(...silent).toFixed(0)} ms; lagging warnings ${done.map((r) => r.lagWarnings).join('/')}; ` +
        `${waiting} waiting at half time, /readyz ${readyz}, newcomer ${newcomer instanceof Error ? newcomer.code : 'admitted'}; ` +
        `ends ${done.map((r) => r.end.reason).join('/')}; engine workers busy at most ${(maxBusy * 100).toFixed(0)}% of 5 s; ` +
        `engine ${JSON.stringify(h.gw.engine.stats())}`,
    );
    // Accounting is exact whatever the load.
    for (const r of done) expect(r.end.audio.receivedSamples).toBe(r.end.audio.decodedSamples + r.end.audio.droppedSamples);
    if (!headroom) {
      console.warn(
        `fair decoders: the engine's workers were ${(maxBusy * 100).toFixed(0)}% busy (other work took the CPU): ` +
          'no headroom, so delays, overload and admission are not asserted in this run',
      );
      await settled(h.gw);
      return;
    }

    // The newcomer was admitted while the others waited for decoders.
    expect(newcomer instanceof Error ? `${newcomer.code}: ${newcomer.message}` : 'admitted').toBe('admitted');
    expect(readyz).toBe(200);
    // The test did what it says: talkers waited for decoders, again and again.
    expect(h.gw.engine.stats().decoderWaits).toBeGreaterThan(2 * TALKERS);
    if (!(newcomer instanceof Error)) {
      expect(newcomer.end.reason).toBe('client_stop');
      expect(newcomer.end.audio.droppedSamples).toBe(0);
    }

    for (const [i, r] of done.entries()) {
      const why = `talker ${i}: ${r.end.reason} ${r.end.message} errors ${r.errors.join(',')}`;
      expect(r.end.reason, why).toBe('client_stop');
      expect(r.errors, why).toEqual([]);
      expect(r.end.audio.droppedSamples, why).toBe(0);
      expect(r.end.audio.receivedSamples, why).toBe(r.end.audio.decodedSamples + r.end.audio.droppedSamples);
      expect(r.end.audio.receivedSamples, why).toBe(SECONDS * 16000);
      // Finals with words all along: at least one per ~10 s, never 15 s without one.
      expect(r.finals.filter((f) => f.words.length > 0).length, why).toBeGreaterThanOrEqual(SECONDS / 10);
      expect(silent[i], why).toBeLessThan(15_000);
    }
    expect(p95).toBeLessThanOrEqual(P95_DELAY_MS);
    await settled(h.gw);
  }, 180_000);
});
