/**
 * Containerized live audio in Deepgram's dialect: a live connection with no
 * `encoding` (WebM/Opus or Ogg/Opus, as a browser's MediaRecorder sends it)
 * is decoded by a long-lived ffmpeg per session (src/files/live-decoder.ts),
 * driven by Deepgram's own JS SDK. The containers are made from LibriVox
 * speech by ffmpeg at test time and sent in frames of arbitrary sizes, as
 * fast as the socket takes them. The transcript must be the linear16 path's
 * for the same decoded audio, and close to the reference; the decoder child
 * must be gone (reaped, no zombie) after every way a session ends; and the
 * decoders are bounded by files.maxLiveDecoders.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { DeepgramClient } from '@deepgram/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

import { encodeWav, readWav, wavToInt16 } from '../../src/audio/wav.js';
import { CloseCode } from '../../src/errors.js';
import { decodeAudio } from '../../src/files/decode.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { childProcesses, childrenGone } from '../helpers/child-processes.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';

const KEY = 'dg-test-key-0123456789abcdef';
const clips = librivoxClips().slice(0, 3);
const reference = clips.map((c) => c.text).join(' ');

type Msg = Record<string, unknown> & { type: string };
interface Alt {
  transcript: string;
}
interface Results {
  type: 'Results';
  is_final: boolean;
  from_finalize: boolean;
  channel: { alternatives: Alt[] };
}

/** Arbitrary frame sizes, a single byte included. */
const SIZES = [1, 513, 4096, 37, 9000, 777, 2048, 15_000];

function chunks(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = SIZES[i % SIZES.length]!;
    out.push(data.slice(off, off + n));
    off += n;
  }
  return out;
}

const finalText = (msgs: Msg[]) =>
  (msgs.filter((m) => m.type === 'Results' && (m as unknown as Results).is_final) as unknown as Results[])
    .map((r) => r.channel.alternatives[0]!.transcript)
    .filter(Boolean)
    .join(' ');

/**
 * One live session through the SDK: `frames`, then (optionally) Finalize
 * mid-way, then CloseStream; resolves with every message and the close code.
 * `during` runs after the frames are sent, before CloseStream.
 */
async function dgSession(
  h: Harness,
  params: Record<string, unknown>,
  frames: Uint8Array[],
  opts: { finalizeAfter?: number; during?: () => Promise<void> } = {},
): Promise<{ msgs: Msg[]; code: number }> {
  const dg = new DeepgramClient({ apiKey: KEY, baseUrl: h.base });
  const conn = await dg.listen.v1.connect({ model: 'nova-3', interim_results: 'true', reconnectAttempts: 0, ...params } as Parameters<typeof dg.listen.v1.connect>[0]);
  const msgs: Msg[] = [];
  let code = -1;
  const closed = new Promise<void>((resolve) => {
    conn.on('close', (e: { code?: number }) => {
      if (code === -1) code = e.code ?? -1;
      resolve();
    });
  });
  conn.on('message', (m: unknown) => msgs.push(m as Msg));
  conn.connect();
  await conn.waitForOpen();
  for (const [i, f] of frames.entries()) {
    conn.sendMedia(f);
    if (opts.finalizeAfter === i) conn.sendFinalize({ type: 'Finalize' });
  }
  await opts.during?.();
  conn.sendCloseStream({ type: 'CloseStream' });
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error(`no close; got ${JSON.stringify(msgs).slice(0, 400)}`)), 120_000))]);
  return { msgs, code };
}

/** An upgrade's HTTP refusal, or 'open'. */
function upgradeStatus(url: string): Promise<{ status: number; body: string } | 'open'> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers: { authorization: `Token ${KEY}` } });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('error', () => {});
  });
}

describe('Deepgram live dialect: containerized audio (no encoding) through the live decoder', () => {
  let h: Harness;
  let dir: string;
  const files: Record<'webm' | 'ogg', Uint8Array> = { webm: new Uint8Array(), ogg: new Uint8Array() };
  const decoded: Record<'webm' | 'ogg', Int16Array> = { webm: new Int16Array(), ogg: new Int16Array() };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-dg-container-'));
    const parts = clips.map((c) => wavToInt16(readWav(c.file)));
    const pcm = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((off, p) => (pcm.set(p, off), off + p.length), 0);
    const wav = path.join(dir, 'speech.wav');
    writeFileSync(wav, encodeWav(pcm, 16000, 1));
    for (const fmt of ['webm', 'ogg'] as const) {
      const out = path.join(dir, `speech.${fmt}`);
      // MediaRecorder's codec and a browser-like bitrate; 48 kHz inside, as Opus always is.
      execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-i', wav, '-c:a', 'libopus', '-b:a', '32k', out], { stdio: ['ignore', 'ignore', 'pipe'] });
      files[fmt] = new Uint8Array(readFileSync(out));
      decoded[fmt] = (await decodeAudio(files[fmt], { maxDurationSeconds: 600, timeoutMs: 60_000 })).pcm;
    }
    // A fast sender is paused, not ended; but once the engine itself falls behind real time (this 2-core
    // machine shared with other work), the hard bound would end the session: this test is not about lag.
    h = await startGateway('ws', {
      auth: { apiKeys: [`dg-bot:${KEY}`] },
      engine: { decoders: 2, threads: 2 },
      files: { maxLiveDecoders: 2 },
      pool: { slabSeconds: 40 },
      limits: { lagMaxSeconds: 30 },
    });
  });
  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const fmt of ['webm', 'ogg'] as const) {
    it(`${fmt}: streamed in arbitrary frames through the JS SDK with no encoding; the transcript is the linear16 path's for the same audio`, async () => {
      // The linear16 path: the same audio, decoded by the same ffmpeg ahead of time.
      const lin = await dgSession(h, { encoding: 'linear16', sample_rate: 16000 }, chunks(new Uint8Array(decoded[fmt].buffer)));
      expect(lin.code, JSON.stringify(lin.msgs.filter((m) => m.type !== "Results")).slice(0, 1500)).toBe(1000);
      const expected = finalText(lin.msgs);
      expect(expected.length).toBeGreaterThan(20);
      await settled(h.gw);

      const t0 = performance.now();
      const r = await dgSession(h, {}, chunks(files[fmt]), {
        during: async () => {
          // The decoder is one ffmpeg child of this process, bounded by files.maxLiveDecoders.
          const kids = childProcesses(process.pid, 'ffmpeg');
          expect(kids).toHaveLength(1);
          expect(h.gw.diagnostics().liveDecoders).toBe(1);
        },
      });
      const wall = (performance.now() - t0) / 1000;
      expect(r.code).toBe(1000);
      expect(r.msgs[0]!.type).toBe('Metadata');
      expect(r.msgs.at(-1)!.type).toBe('Metadata');
      const text = finalText(r.msgs);
      expect(text).toBe(expected);
      const w = wer([[reference, text]]).wer;
      // PocketSphinx reads LibriVox at about 32%; Opus at 32 kbit/s changes little.
      expect(w).toBeLessThan(50);
      expect(r.msgs.some((m) => m.type === 'Results' && !(m as unknown as Results).is_final && (m as unknown as Results).channel.alternatives[0]!.transcript)).toBe(true);
      const meta = r.msgs.at(-1)! as unknown as { duration: number; channels: number };
      expect(meta.duration).toBeCloseTo(decoded[fmt].length / 16000, 1);
      expect(meta.channels).toBe(1);
      const seconds = decoded[fmt].length / 16000;
      console.log(`[${fmt}] WER ${w.toFixed(1)}% (linear16 path: the same text) over ${seconds.toFixed(1)} s of audio in ${wall.toFixed(1)} s`);
      expect(await childrenGone('ffmpeg')).toEqual([]);
      expect(h.gw.diagnostics().liveDecoders).toBe(0);
      await settled(h.gw);
    }, 240_000);
  }

  it('Finalize mid-stream waits for the decoder: one from_finalize final, and every word still arrives', async () => {
    const frames = chunks(files.webm);
    const r = await dgSession(h, {}, frames, { finalizeAfter: Math.floor(frames.length / 2) });
    expect(r.code).toBe(1000);
    const finals = r.msgs.filter((m) => m.type === 'Results' && (m as unknown as Results).is_final) as unknown as Results[];
    expect(finals.filter((f) => f.from_finalize)).toHaveLength(1);
    expect(wer([[reference, finalText(r.msgs)]]).wer).toBeLessThan(55);
    expect(await childrenGone('ffmpeg')).toEqual([]);
    await settled(h.gw);
  }, 240_000);

  it('kills the decoder on every other end: the client vanishing, a server-side end (as the idle timeout ends one), undecodable bytes; files.maxLiveDecoders refuses with CAP_ERR_CAPACITY (503)', async () => {
    const url = `${h.base}/v1/listen?model=nova-3`;
    const open = () =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(url, { headers: { authorization: `Token ${KEY}` } });
        ws.on('open', () => resolve(ws));
        ws.on('error', reject);
      });
    const closeOf = (ws: WebSocket) => new Promise<{ code: number; msgs: Msg[] }>((resolve) => {
      const msgs: Msg[] = [];
      ws.on('message', (d: Buffer) => msgs.push(JSON.parse(d.toString()) as Msg));
      ws.on('close', (code) => resolve({ code, msgs }));
    });

    // Two decoders at most: a third containerized connection is refused at upgrade; raw audio is not.
    const a = await open();
    const b = await open();
    const aClosed = closeOf(a);
    const bClosed = closeOf(b);
    a.send(files.webm.subarray(0, 20_000));
    b.send(files.ogg.subarray(0, 20_000));
    for (let t = 0; childProcesses(process.pid, 'ffmpeg').length < 2 && t < 200; t++) await new Promise((r) => setTimeout(r, 25));
    expect(childProcesses(process.pid, 'ffmpeg')).toHaveLength(2);
    const third = await upgradeStatus(url);
    expect(third).not.toBe('open');
    expect((third as { status: number }).status).toBe(503);
    expect(JSON.parse((third as { body: string }).body).error).toMatchObject({ code: 'CAP_ERR_CAPACITY', message: expect.stringMatching(/files\.maxLiveDecoders/) });
    expect(await upgradeStatus(`${url}&encoding=linear16&sample_rate=16000`)).toBe('open');

    // The client vanishes mid-stream (no close frame).
    a.terminate();
    await aClosed;
    // Undecodable bytes: CAP_ERR_AUDIO_DECODE, close 4000.
    const c = await (async () => {
      for (let t = 0; (h.gw.diagnostics().liveDecoders ?? 0) > 1 && t < 400; t++) await new Promise((r) => setTimeout(r, 25));
      return open();
    })();
    const cClosed = closeOf(c);
    c.send(new TextEncoder().encode('this is not a container '.repeat(400)));
    c.send(new Uint8Array(0)); // CloseStream: ffmpeg sees the end of its input
    const cEnd = await cClosed;
    expect(cEnd.code).toBe(4000);
    expect(cEnd.msgs.some((m) => m.type === 'Error' && m.code === 'CAP_ERR_AUDIO_DECODE')).toBe(true);

    // The server ends the other session, as the idle timeout does (SessionManager's sweep): its decoder goes too.
    const s = h.gw.manager.list().find((x) => !x.ended);
    expect(s).toBeDefined();
    s!.finish('idle_timeout', CloseCode.IDLE_TIMEOUT, 'test: no message', { code: 'CAP_ERR_IDLE_TIMEOUT', message: 'test: no message' });
    const bEnd = await bClosed;
    expect(bEnd.code).not.toBe(1000);

    expect(await childrenGone('ffmpeg')).toEqual([]);
    expect(h.gw.diagnostics().liveDecoders).toBe(0);
    await settled(h.gw);
  }, 120_000);

  it('a Deepgram connection with encoding=opus is still refused naming encoding; containerized audio needs no sample_rate (listed as ignored when given)', async () => {
    const r = await upgradeStatus(`${h.base}/v1/listen?model=nova-3&encoding=opus&sample_rate=48000`);
    expect(r).not.toBe('open');
    expect(JSON.parse((r as { body: string }).body).error.message).toMatch(/encoding/);
    const ok = await dgSession(h, { sample_rate: 48000 }, chunks(files.ogg.subarray(0, 30_000)));
    expect(ok.code).toBe(1000);
    expect((ok.msgs[0] as unknown as { ignored_params: string[] }).ignored_params).toContain('sample_rate=48000');
    expect(await childrenGone('ffmpeg')).toEqual([]);
    await settled(h.gw);
  }, 120_000);
});
