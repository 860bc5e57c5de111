import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { fliteSession } from '../../eval/corpus.js';
import { MEETING } from '../../eval/texts.js';
import { wer } from '../../eval/wer.js';
import type { FinalMessage, WireMessage } from '../../src/protocol/messages.js';
import { RawClient, settled, startGateway, streamPcm, type Harness } from '../helpers/gateway.js';

const voices = { alice: 'slt', bob: 'rms', carol: 'awb' } as const;
const speakers = Object.keys(voices) as (keyof typeof voices)[];
const audio = Object.fromEntries(
  speakers.map((s) => {
    const fs = fliteSession(MEETING[s], { voice: voices[s], gapSeconds: 0.7 });
    return [s, { text: fs.text, pcm: wavToInt16(readWav(fs.file)) }];
  }),
) as Record<(typeof speakers)[number], { text: string; pcm: Int16Array }>;

const finalsOf = (msgs: WireMessage[]) => msgs.filter((m): m is FinalMessage => m.type === 'final');

describe('meetings: three speakers, two viewers', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { engine: { decoders: 3, threads: 2 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('every viewer gets every speaker, correctly attributed, on the meeting timeline; a late viewer gets the replay', async () => {
    const m = 'standup-42';
    const early = [new RawClient(`${h.base}/v1/meetings/${m}/captions`), new RawClient(`${h.base}/v1/meetings/${m}/captions`)];
    for (const v of early) await v.waitFor((x) => x.type === 'viewer_ready');
    // Three bots, one stream per participant, sent faster than real time.
    const runs = await Promise.all(
      speakers.map((s) => streamPcm(`${h.base}/v1/listen`, audio[s].pcm, { meta: { meetingId: m, speaker: s } })),
    );
    const late = new RawClient(`${h.base}/v1/meetings/${m}/captions`);
    const ready = await late.waitFor((x) => x.type === 'viewer_ready');
    const expectedFinals = runs.reduce((n, r) => n + r.finals.filter((f) => f.text).length, 0);
    expect(ready).toMatchObject({ meetingId: m, replay: expectedFinals, truncated: 0 });
    await late.waitFor(() => finalsOf(late.messages).length === expectedFinals);

    for (const v of [...early, late]) {
      await v.waitFor(() => finalsOf(v.messages).length >= expectedFinals);
      const finals = finalsOf(v.messages);
      expect(finals).toHaveLength(expectedFinals);
      for (const s of speakers) {
        const mine = finals.filter((f) => f.speaker === s);
        expect(mine.length).toBeGreaterThan(0);
        expect(new Set(mine.map((f) => f.sessionId)).size).toBe(1);
        // The words under each name are that speaker's words.
        const w = wer([[audio[s].text, mine.map((f) => f.text).join(' ')]]);
        expect(w.wer).toBeLessThan(25);
      }
      // Replay comes sorted by meeting time.
      if (v === late) {
        const starts = finals.map((f) => f.start);
        expect(starts).toEqual([...starts].sort((a, b) => a - b));
      }
    }
    // Partials reached the live viewers, tagged too.
    const partials = early[0]!.messages.filter((x) => x.type === 'partial');
    expect(partials.length).toBeGreaterThan(0);
    expect(partials.every((p) => p.type === 'partial' && speakers.includes(p.speaker as never))).toBe(true);
    for (const v of [...early, late]) v.ws.close();
    await settled(h.gw);
  });

  it('viewers are read-only: anything but keepalive is an error; unknown meeting ids are created empty', async () => {
    const v = new RawClient(`${h.base}/v1/meetings/empty-1/captions`);
    await v.waitFor((x) => x.type === 'viewer_ready');
    v.sendJson({ type: 'keepalive' });
    v.sendJson({ type: 'start', sampleRate: 16000, channels: 1, encoding: 's16le' });
    v.ws.send(new Uint8Array(320));
    await v.waitFor(() => v.errorCodes().length === 2);
    expect(v.errorCodes()).toEqual(['CAP_ERR_INVALID_MESSAGE', 'CAP_ERR_INVALID_MESSAGE']);
    v.ws.close();
  });
});
