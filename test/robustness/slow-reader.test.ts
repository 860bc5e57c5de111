/**
 * Readers that stop reading. A meeting viewer joining a meeting with a large
 * replay gets megabytes at once; with its receive buffer shrunk to 2 KB and
 * nothing read, the server's side backs up for real. Its memory on the
 * server stays bounded, it is dropped with CAP_ERR_SLOW_READER / 4008, and
 * speakers and other viewers carry on.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { transcribePcm } from '../../src/scheduler/transcribe.js';
import { librivoxClips } from '../../eval/corpus.js';
import { metric, RawClient, settled, startGateway, streamPcm, type Harness } from '../helpers/gateway.js';

const clips = librivoxClips().map((c) => wavToInt16(readWav(c.file)));
const BOUND = 65_536;

describe.each(['uws', 'ws'] as const)('stalled reader over %s', (transport) => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway(transport, {
      engine: { decoders: 2, threads: 2 },
      server: { maxBackpressureBytes: BOUND, stalledReaderSeconds: 1 },
      meetings: { maxReplayBytes: 32 * 1024 * 1024 },
    });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('is dropped with bounded memory while a speaker and a reading viewer are served normally', async () => {
    // A meeting with ~12 MB of finals so far (injected straight into the hub).
    const words = Array.from({ length: 60 }, (_, i) => ({ word: `word${i}`, start: i * 0.1, end: i * 0.1 + 0.1, confidence: 0.9 }));
    h.gw.hub.joined('big', { sessionId: 'earlier', speaker: 'earlier', startedAt: Date.now(), owner: null });
    for (let i = 0; i < 4000; i++) {
      h.gw.hub.publish('big', 'earlier', { type: 'final', segment: i, text: words.map((w) => w.word).join(' '), start: i * 6, end: i * 6 + 6, words });
    }
    const port = Number(new URL(h.base).port);
    const py = spawn('python3', [path.resolve('test/helpers/stalled_reader.py'), String(port), '/v1/meetings/big/captions', '-', '60']);
    try {
      // A viewer that reads, and a speaker, side by side with the stalled one.
      const reader = new RawClient(`${h.base}/v1/meetings/big/captions`);
      const speaker = streamPcm(`${h.base}/v1/listen`, clips[2]!, { realtime: true, meta: { meetingId: 'big', speaker: 'live' } });
      let maxQueued = 0;
      const watch = setInterval(() => {
        maxQueued = Math.max(maxQueued, h.gw.hub.totals().maxViewerQueuedBytes);
      }, 10);
      const t0 = Date.now();
      while ((await metric(h.http, 'captiongate_errors_total', 'code="CAP_ERR_SLOW_READER"')) < 1) {
        if (Date.now() - t0 > 20_000) throw new Error('the stalled viewer was never dropped');
        await new Promise((r) => setTimeout(r, 50));
      }
      clearInterval(watch);
      expect(h.gw.hub.slowViewersDropped).toBe(1);
      // Per-socket memory stayed within the bound (plus one message).
      expect(maxQueued).toBeLessThanOrEqual(BOUND + 8192);
      const r = await speaker;
      expect(r.end.reason).toBe('client_stop');
      expect(r.finals.filter((f) => f.text).map((f) => f.text)).toEqual(
        (await transcribePcm(h.gw.engine, clips[2]!)).finals.filter((f) => f.text).map((f) => f.text),
      );
      // The reading viewer got the whole replay and the live speaker.
      await reader.waitFor((m) => m.type === 'final' && m.speaker === 'live', 30_000);
      expect(reader.messages.filter((m) => m.type === 'final' && m.speaker === 'earlier')).toHaveLength(4000);
      reader.ws.close();
      h.gw.hub.left('big', 'earlier');
      await settled(h.gw);
    } finally {
      py.kill('SIGKILL');
    }
  });
});
