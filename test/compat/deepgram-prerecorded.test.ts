/**
 * Deepgram's pre-recorded POST /v1/listen, driven by Deepgram's own JS SDK
 * (@deepgram/sdk, listen.v1.media.transcribeFile) against a real gateway:
 * real speech as an MP3 and as raw linear16, answered in Deepgram's shape
 * through the same decoder and engine as OpenAI's route; a URL body is
 * refused (no outbound fetches), as are a refused parameter and a bad key.
 */
import { execFileSync } from 'node:child_process';

import { DeepgramClient } from '@deepgram/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { encodeWav, readWav, wavToInt16 } from '../../src/audio/wav.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';

const KEY = 'dg-files-key-0123456789abcdef';
const clips = librivoxClips().slice(2, 5);
const parts = clips.map((c) => wavToInt16(readWav(c.file)));
const pcm = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
parts.reduce((off, p) => (pcm.set(p, off), off + p.length), 0);
const reference = clips.map((c) => c.text).join(' ');
const seconds = pcm.length / 16000;

/** ffmpeg makes the MP3 from the WAV, stdin to stdout. */
const mp3 = execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'wav', '-i', 'pipe:0', '-c:a', 'libmp3lame', '-b:a', '64k', '-f', 'mp3', 'pipe:1'], {
  input: encodeWav(pcm, 16000),
  maxBuffer: 64 << 20,
});

interface DgResponse {
  metadata: { request_id: string; duration: number; channels: number; models: string[]; model_info: Record<string, { name: string; arch: string }>; requested_model: string; ignored_params: string[] };
  results: {
    channels: { alternatives: { transcript: string; confidence: number; words: { word: string; start: number; end: number; confidence: number; punctuated_word: string }[] }[] }[];
    utterances?: { start: number; end: number; transcript: string; words: unknown[] }[];
  };
}

describe('Deepgram pre-recorded: the official JS SDK as the client', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { auth: { apiKeys: [`dg-files:${KEY}`] } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('transcribes an MP3 body: Deepgram response shape, words, close to the reference', async () => {
    const dg = new DeepgramClient({ apiKey: KEY, baseUrl: h.http });
    const r = (await dg.listen.v1.media.transcribeFile(mp3, { model: 'nova-3', smart_format: false, punctuate: true, utterances: true })) as unknown as DgResponse;
    const alt = r.results.channels[0]!.alternatives[0]!;
    const score = wer([[reference, alt.transcript]]).wer;
    console.log(`deepgram prerecorded mp3: WER ${score.toFixed(1)} % — ${alt.transcript}`);
    expect(score).toBeLessThan(40);
    expect(r.metadata.duration).toBeGreaterThan(seconds - 0.1);
    expect(r.metadata.duration).toBeLessThan(seconds + 0.2);
    expect(r.metadata.channels).toBe(1);
    expect(r.metadata.requested_model).toBe('nova-3');
    expect(r.metadata.model_info[r.metadata.models[0]!]!.arch).toBe('pocketsphinx');
    expect(r.metadata.ignored_params).toContain('punctuate=true');
    expect(alt.words.length).toBeGreaterThan(10);
    expect(alt.words.map((w) => w.punctuated_word).join(' ')).toBe(alt.transcript);
    for (const w of alt.words) {
      expect(w.confidence).toBeGreaterThanOrEqual(0);
      expect(w.confidence).toBeLessThanOrEqual(1);
      expect(w.end).toBeGreaterThanOrEqual(w.start);
    }
    expect(alt.confidence).toBeGreaterThan(0);
    expect(r.results.utterances!.map((u) => u.transcript).join(' ')).toBe(alt.transcript);
  }, 300_000);

  it('raw linear16 with encoding and sample_rate gives the same transcript as the WAV', async () => {
    const dg = new DeepgramClient({ apiKey: KEY, baseUrl: h.http });
    const raw = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    const a = (await dg.listen.v1.media.transcribeFile(raw, { model: 'nova-3', encoding: 'linear16' }, { queryParams: { sample_rate: 16000 } })) as unknown as DgResponse;
    const b = (await dg.listen.v1.media.transcribeFile(encodeWav(pcm, 16000), { model: 'nova-3' })) as unknown as DgResponse;
    expect(a.results.channels[0]!.alternatives[0]!.transcript).toBe(b.results.channels[0]!.alternatives[0]!.transcript);
    expect(wer([[reference, a.results.channels[0]!.alternatives[0]!.transcript]]).wer).toBeLessThan(40);
  }, 300_000);

  it('refuses a URL body, a refused parameter, another language and a bad key; GET stays the WebSocket route', async () => {
    const dg = new DeepgramClient({ apiKey: KEY, baseUrl: h.http });
    const statusOf = async (p: Promise<unknown>) => {
      try {
        await p;
        return 200;
      } catch (e) {
        return (e as { statusCode?: number }).statusCode;
      }
    };
    expect(await statusOf(dg.listen.v1.media.transcribeUrl({ url: 'https://dpgr.am/spacewalk.wav', model: 'nova-3' }))).toBe(400);
    const url = await fetch(`${h.http}/v1/listen?model=nova-3`, {
      method: 'POST',
      headers: { authorization: `Token ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ url: 'http://169.254.169.254/latest' }),
    });
    expect(url.status).toBe(400);
    expect(((await url.json()) as { err_msg: string }).err_msg).toMatch(/no outbound requests/);
    expect(await statusOf(dg.listen.v1.media.transcribeFile(mp3, { model: 'nova-3', diarize: true }))).toBe(400);
    expect(await statusOf(dg.listen.v1.media.transcribeFile(mp3, { model: 'nova-3', language: 'de' }))).toBe(400);
    const bad = new DeepgramClient({ apiKey: 'not-the-key-0123456789', baseUrl: h.http });
    expect(await statusOf(bad.listen.v1.media.transcribeFile(mp3, { model: 'nova-3' }))).toBe(401);
    const get = await fetch(`${h.http}/v1/listen`, { headers: { authorization: `Token ${KEY}` } });
    expect(get.status).toBe(426);
    await settled(h.gw);
  }, 300_000);
});

describe('Deepgram pre-recorded: shutdown with no grace left', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { auth: { apiKeys: [`dg-files:${KEY}`] }, files: { maxConcurrentJobs: 1 }, server: { shutdownGraceSeconds: 0 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('a job stopped mid-transcription by shutdown is answered 503 SERVICE_UNAVAILABLE with Retry-After, on uWS too', async () => {
    // No retries: the SDK retries a 503, and the gateway is gone by then.
    const dg = new DeepgramClient({ apiKey: KEY, baseUrl: h.http, maxRetries: 0 });
    const cut = dg.listen.v1.media.transcribeFile(encodeWav(pcm, 16000), { model: 'nova-3' }).then(
      () => null,
      (e: unknown) => e as { statusCode?: number; body?: { err_code?: string }; rawResponse?: { headers: Headers } },
    );
    // Past decoding: its audio is in the engine.
    const t0 = Date.now();
    while (h.gw.diagnostics().engineStreams === 0) {
      if (Date.now() - t0 > 60_000) throw new Error('the job never reached the engine');
      await new Promise((r) => setTimeout(r, 5));
    }
    await h.gw.shutdown();
    const e = await cut;
    expect(e?.statusCode).toBe(503);
    expect(e?.body?.err_code).toBe('SERVICE_UNAVAILABLE');
    expect(Number(e?.rawResponse?.headers.get('retry-after'))).toBeGreaterThan(0);
  }, 300_000);
});
