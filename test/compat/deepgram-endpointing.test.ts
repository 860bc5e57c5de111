/**
 * Deepgram's `endpointing`, per session, through Deepgram's JS SDK: the
 * session's engine stream gets its own endpoint silence (the engine
 * contract's StreamOptions.endpointMs). Two LibriVox clips with 0.6 s of
 * silence between them: endpointing=1500 keeps them in one utterance,
 * endpointing=200 splits them there, endpointing=false gives finals only at
 * CloseStream; two sessions with different values run at the same time on
 * one engine. Out of range is refused at upgrade naming the parameter.
 */
import { DeepgramClient } from '@deepgram/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { librivoxClips } from '../../eval/corpus.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';

const KEY = 'dg-test-key-0123456789abcdef';
const [a, b] = librivoxClips()
  .slice(0, 2)
  .map((c) => wavToInt16(readWav(c.file)));
const GAP = 9600; // 0.6 s
const pcm = new Int16Array(a!.length + GAP + b!.length);
pcm.set(a!, 0);
pcm.set(b!, a!.length + GAP);
const bytes = new Uint8Array(pcm.buffer);
const gapStart = a!.length / 16000;
const gapEnd = (a!.length + GAP) / 16000;

interface Final {
  start: number;
  duration: number;
  from_finalize: boolean;
  transcript: string;
}

async function session(h: Harness, endpointing: string | undefined): Promise<{ finals: Final[]; ignored: string[]; code: number }> {
  const dg = new DeepgramClient({ apiKey: KEY, baseUrl: h.base });
  const conn = await dg.listen.v1.connect({
    model: 'nova-3',
    encoding: 'linear16',
    sample_rate: 16000,
    reconnectAttempts: 0,
    ...(endpointing !== undefined ? { endpointing } : {}),
  } as Parameters<typeof dg.listen.v1.connect>[0]);
  const msgs: Record<string, unknown>[] = [];
  let code = -1;
  const closed = new Promise<void>((resolve) =>
    conn.on('close', (e: { code?: number }) => {
      code = e.code ?? -1;
      resolve();
    }),
  );
  conn.on('message', (m: unknown) => msgs.push(m as Record<string, unknown>));
  conn.connect();
  await conn.waitForOpen();
  for (let off = 0; off < bytes.length; off += 6400) conn.sendMedia(bytes.slice(off, off + 6400));
  conn.sendCloseStream({ type: 'CloseStream' });
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('no close')), 120_000))]);
  const finals = msgs
    .filter((m) => m.type === 'Results' && m.is_final === true)
    .map((m) => {
      const r = m as unknown as { start: number; duration: number; from_finalize: boolean; channel: { alternatives: { transcript: string }[] } };
      return { start: r.start, duration: r.duration, from_finalize: r.from_finalize, transcript: r.channel.alternatives[0]!.transcript };
    })
    .filter((f) => f.transcript);
  return { finals, ignored: (msgs[0] as { ignored_params: string[] }).ignored_params, code };
}

const spans = (fs: Final[]) => fs.some((f) => f.start < gapStart && f.start + f.duration > gapEnd);
const splits = (fs: Final[]) => fs.some((f, i) => i + 1 < fs.length && f.start + f.duration <= gapEnd + 0.001 && fs[i + 1]!.start >= gapStart - 0.001);
const show = (fs: Final[]) => JSON.stringify(fs.map((f) => [f.start, f.duration, f.transcript]));

describe('Deepgram live dialect: per-session endpointing', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { auth: { apiKeys: [KEY] }, engine: { decoders: 2, threads: 2 }, pool: { slabSeconds: 40 }, limits: { lagMaxSeconds: 30 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('endpointing=1500 and endpointing=200 at the same time on one engine: the first keeps the pause inside an utterance, the second splits there', async () => {
    const [long, short] = await Promise.all([session(h, '1500'), session(h, '200')]);
    expect(long.code).toBe(1000);
    expect(short.code).toBe(1000);
    expect(spans(long.finals), show(long.finals)).toBe(true);
    expect(splits(long.finals), show(long.finals)).toBe(false);
    expect(splits(short.finals), show(short.finals)).toBe(true);
    expect(short.finals.length).toBeGreaterThan(long.finals.length);
    // Honoured, so not listed as ignored.
    expect(long.ignored.some((p) => p.startsWith('endpointing'))).toBe(false);
    await settled(h.gw);
  }, 240_000);

  it('endpointing=false: no endpoint, so the only final is the one CloseStream brings', async () => {
    const r = await session(h, 'false');
    expect(r.code).toBe(1000);
    expect(r.finals, show(r.finals)).toHaveLength(1);
    expect(r.finals[0]!.start).toBeLessThan(gapStart);
    expect(r.finals[0]!.start + r.finals[0]!.duration).toBeGreaterThan(gapEnd);
    await settled(h.gw);
  }, 240_000);

  it('refuses endpointing out of range at upgrade (400 CAP_ERR_BAD_PARAMETER naming endpointing), allocating nothing', async () => {
    for (const v of ['0', '5', '10001', '2.5', 'soon']) {
      const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const ws = new WebSocket(`${h.base}/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&endpointing=${v}`, { headers: { authorization: `Token ${KEY}` } });
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        ws.on('open', () => reject(new Error(`endpointing=${v} opened`)));
        ws.on('error', () => {});
      });
      expect(r.status, v).toBe(400);
      const e = JSON.parse(r.body).error as { code: string; message: string };
      expect(e.code).toBe('CAP_ERR_BAD_PARAMETER');
      expect(e.message).toMatch(/^Deepgram parameter endpointing: endpointing must be an integer from 10 to 10000/);
    }
    expect(h.gw.pool.inUse).toBe(0);
  });
});
