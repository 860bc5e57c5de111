/**
 * Deepgram's live dialect, driven by Deepgram's own JS SDK (@deepgram/sdk,
 * its listen.v1 live client) against a real gateway: real speech, frames
 * of odd sizes sent faster than real time without any flow control,
 * interim results, Finalize at the end of a turn (the next turn's audio
 * follows its answer) and CloseStream. Its transcript must
 * be what the native protocol gives for the same audio cut at the same
 * point, and close to the reference.
 */
import { DeepgramClient } from '@deepgram/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect } from '../../src/client/client.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';

const KEY = 'dg-test-key-0123456789abcdef';
const clips = librivoxClips().slice(0, 3);
const parts = clips.map((c) => wavToInt16(readWav(c.file)));
const pcm = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
parts.reduce((off, p) => (pcm.set(p, off), off + p.length), 0);
const reference = clips.map((c) => c.text).join(' ');
const bytes = new Uint8Array(pcm.buffer);
// Finalize at the boundary of the first clip (whole samples).
const cut = parts[0]!.length * 2;

type Msg = Record<string, unknown> & { type: string };

async function native(h: Harness): Promise<string> {
  const c = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: KEY });
  const finals: string[] = [];
  c.on('message', (m) => {
    if (m.type === 'final' && m.text) finals.push(m.text);
  });
  await c.write(bytes.subarray(0, cut));
  c.flush();
  // The rest only after the flush's final (as the Deepgram client below waits for from_finalize).
  const at = cut / 2 / 16000;
  await new Promise<void>((resolve) => c.on('message', (m) => m.type === 'final' && m.end >= at - 0.05 && resolve()));
  await c.write(bytes.subarray(cut));
  await c.stop();
  return finals.join(' ');
}

describe('Deepgram live dialect: the official JS SDK as the client', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { auth: { apiKeys: [`dg-bot:${KEY}`] }, engine: { decoders: 2, threads: 2 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('streams real speech with interim_results, Finalize and CloseStream; the transcript is the native one', async () => {
    const expected = await native(h);
    expect(expected.length).toBeGreaterThan(20);

    const dg = new DeepgramClient({ apiKey: KEY, baseUrl: h.base });
    const conn = await dg.listen.v1.connect({
      model: 'nova-3',
      encoding: 'linear16',
      sample_rate: 16000,
      channels: 1,
      interim_results: 'true',
      punctuate: 'true',
      smart_format: 'false',
      utterance_end_ms: 1000,
      vad_events: 'true',
      reconnectAttempts: 0,
    } as Parameters<typeof dg.listen.v1.connect>[0]);
    const msgs: Msg[] = [];
    let closeCode = -1;
    const closed = new Promise<void>((resolve) => {
      conn.on('close', (e: { code?: number }) => {
        if (closeCode === -1) closeCode = e.code ?? -1;
        resolve();
      });
    });
    conn.on('message', (m: unknown) => msgs.push(m as Msg));
    conn.connect();
    await conn.waitForOpen();
    // Odd-sized frames (a partial sample included), as fast as the socket takes them, no acks read.
    const send = (from: number, to: number) => {
      for (let off = from; off < to; off += 3001) conn.sendMedia(bytes.slice(off, Math.min(to, off + 3001)));
    };
    send(0, cut);
    conn.sendFinalize({ type: 'Finalize' });
    // A turn ends with Finalize; the next turn's audio follows its answer.
    for (let t = 0; !msgs.some((m) => m.type === 'Results' && m.from_finalize === true); t++) {
      if (t > 6000) throw new Error('no from_finalize result');
      await new Promise((r) => setTimeout(r, 10));
    }
    send(cut, bytes.length);
    conn.sendCloseStream({ type: 'CloseStream' });
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error(`no close; got ${JSON.stringify(msgs).slice(0, 400)}`)), 90_000))]);

    expect(closeCode).toBe(1000);
    expect(msgs[0]!.type).toBe('Metadata');
    expect(msgs.at(-1)!.type).toBe('Metadata');
    const results = msgs.filter((m) => m.type === 'Results') as unknown as {
      is_final: boolean;
      speech_final: boolean;
      from_finalize: boolean;
      start: number;
      duration: number;
      channel: { alternatives: { transcript: string; confidence: number; words: { word: string; start: number; end: number; confidence: number; punctuated_word: string }[] }[] };
    }[];
    const finals = results.filter((r) => r.is_final);
    const text = finals
      .map((r) => r.channel.alternatives[0]!.transcript)
      .filter(Boolean)
      .join(' ');
    expect(text).toBe(expected);
    // PocketSphinx scores about 32% on LibriVox (docs/architecture.md); the same engine here.
    expect(wer([[reference, text]]).wer).toBeLessThan(50);
    // Interim results flowed, and exactly one final answered the Finalize.
    expect(results.some((r) => !r.is_final && r.channel.alternatives[0]!.transcript)).toBe(true);
    expect(finals.filter((r) => r.from_finalize)).toHaveLength(1);
    for (const r of finals) {
      const alt = r.channel.alternatives[0]!;
      expect(r.duration).toBeGreaterThanOrEqual(0);
      for (const w of alt.words) {
        expect(w.confidence).toBeGreaterThanOrEqual(0);
        expect(w.confidence).toBeLessThanOrEqual(1);
        expect(w.end).toBeGreaterThanOrEqual(w.start);
        expect(w.punctuated_word.toLowerCase()).toContain(w.word);
      }
      if (alt.transcript) expect(alt.words.length).toBeGreaterThan(0);
    }
    expect(msgs.some((m) => m.type === 'SpeechStarted')).toBe(true);
    const meta = msgs.at(-1)! as unknown as { duration: number; channels: number; model_info: Record<string, { name: string }>; request_id: string };
    expect(meta.duration).toBeCloseTo(pcm.length / 16000, 1);
    expect(meta.channels).toBe(1);
    expect(Object.values(meta.model_info)[0]!.name).toBe(h.gw.engine.info.name);
    await settled(h.gw);
  }, 180_000);

  it('refuses a wrong key (401) and an unsupported parameter (400, named), allocating nothing', async () => {
    const status = (url: string, headers: Record<string, string>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const ws = new WebSocket(url, { headers });
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        ws.on('open', () => reject(new Error('opened')));
        ws.on('error', () => {});
      });
    const base = `${h.base}/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000`;
    const wrong = await status(base, { authorization: 'Token not-the-key-0123456789' });
    expect(wrong.status).toBe(401);
    expect(wrong.body).not.toContain('not-the-key');
    const diarize = await status(`${base}&diarize=true`, { authorization: `Token ${KEY}` });
    expect(diarize.status).toBe(400);
    expect(JSON.parse(diarize.body).error.message).toMatch(/diarize/);
    const lang = await status(`${base}&language=fr`, { authorization: `Token ${KEY}` });
    expect(JSON.parse(lang.body).error.message).toMatch(/language/);
    expect(h.gw.pool.inUse).toBe(0);
  });
});
