/**
 * Flow control for faster-than-real-time senders: `write()` waits on acks,
 * so the server must never leave a waiting sender without one. (Found by the
 * soak: a throttled ack plus an undecoded tail shorter than one window
 * stalled fast uploads forever.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect } from '../../src/client/client.js';
import { librivoxClips } from '../../eval/corpus.js';
import { prng } from '../../eval/fuzz.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';

const clip = wavToInt16(readWav(librivoxClips()[0]!.file));

describe('flow-controlled uploads always finish', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { engine: { decoders: 2, threads: 2 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('odd lengths, 48 kHz stereo, small backlog windows: every upload completes with all audio decoded', async () => {
    const rand = prng(31);
    // Sequential uploads: the engine answers each window quickly, so acks
    // fall inside the throttle interval, which is where the stall lived.
    const upload = async (i: number) => {
      const stereo = i % 2 === 0;
      const rate = stereo ? 48000 : 16000;
      const seconds = 1 + rand() * 3;
      const n = Math.floor(seconds * 16000);
      const pcm = stereo ? new Int16Array(n * 6) : clip.slice(0, n);
      if (stereo) for (let k = 0; k < n * 3; k++) pcm[2 * k] = pcm[2 * k + 1] = clip[Math.floor(k / 3) % clip.length]!;
      const c = await connect(`${h.base}/v1/listen`, {
        sampleRate: rate,
        channels: stereo ? 2 : 1,
        maxBacklogSeconds: i % 3 === 0 ? 1.0 : 0.15 + rand() * 0.3,
        frameMs: 13 + Math.floor(rand() * 90),
      });
      await c.write(pcm);
      const end = await c.stop();
      expect(end.reason).toBe('client_stop');
      expect(end.audio.droppedSamples).toBe(0);
      expect(Math.abs(end.audio.receivedSeconds - seconds)).toBeLessThan(0.05);
    };
    for (let i = 0; i < 16; i++) {
      await Promise.race([upload(i), new Promise((_, reject) => setTimeout(() => reject(new Error(`upload ${i} stalled`)), 20_000))]);
    }
    await settled(h.gw);
  });
});
