/**
 * The gateway test suite, run once per transport (gateway.test.ts; Whisper's
 * in whisper.test.ts).
 * Real sockets, real speech, the real engine.
 */
import http from 'node:http';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { CaptionClientError, connect } from '../../src/client/client.js';
import { createPocketSphinxEngine } from '../../src/engine/pocketsphinx.js';
import { createWhisperEngine } from '../../src/engine/whisper.js';
import { transcribePcm } from '../../src/scheduler/transcribe.js';
import type { Engine, Utterance } from '../../src/engine/types.js';
import { ERRORS } from '../../src/errors.js';
import { fliteSession, librivoxClips } from '../../eval/corpus.js';
import { STORY } from '../../eval/texts.js';
import { wer } from '../../eval/wer.js';
import type { FinalMessage } from '../../src/protocol/messages.js';
import { testConfig } from '../helpers/config.js';
import { metric, RawClient, settled, startGateway, streamPcm, type Harness, type TransportKind } from '../helpers/gateway.js';
import { StalledClient } from '../helpers/raw-socket.js';
import { slowEngine } from '../helpers/slow-engine.js';
import { createOverheadEngine } from '../../src/engine/overhead.js';

const clips = librivoxClips();
const clipPcm = clips.map((c) => wavToInt16(readWav(c.file)));
/** The flite story: all 25 sentences (2 minutes), or the first 10 (Whisper, to keep CI time). */
const stories = new Map<number, { story: ReturnType<typeof fliteSession>; storyPcm: Int16Array }>();
function makeStory(sentences: number) {
  let made = stories.get(sentences);
  if (!made) {
    const story = fliteSession(STORY.slice(0, sentences), { voice: 'slt', gapSeconds: 0.8 });
    made = { story, storyPcm: wavToInt16(readWav(story.file)) };
    stories.set(sentences, made);
  }
  return made;
}

/**
 * The references (the engine's own streaming result, and whole-file
 * decoding) depend on the engine and the audio only, so the suite's runs
 * in one process (one per transport) compute each once: about 85 s of
 * CI time per run.
 */
const references = new Map<string, WeakMap<Int16Array, Promise<unknown>>>();
function reference<T>(kind: string, pcm: Int16Array, make: () => Promise<T>): Promise<T> {
  let byPcm = references.get(kind);
  if (!byPcm) references.set(kind, (byPcm = new WeakMap()));
  let r = byPcm.get(pcm) as Promise<T> | undefined;
  if (!r) byPcm.set(pcm, (r = make()));
  return r;
}

const joined = (fs: readonly { text: string }[]) => fs.map((f) => f.text).filter(Boolean).join(' ');
/** Finals as the engine gives them, rounded like the wire. */
const shape = (fs: readonly (Utterance | FinalMessage)[]) =>
  fs
    .filter((f) => f.text !== '')
    .map((f) => ({ text: f.text, start: Math.round(f.start * 1000), end: Math.round(f.end * 1000), words: f.words.map((w) => [w.word, Math.round(w.start * 1000), Math.round(w.end * 1000)]) }));

const healthyClip = () => clipPcm[1]!;

export type EngineKind = 'pocketsphinx' | 'whisper';

/**
 * `engine` picks the engine. With PocketSphinx every test runs; with
 * another engine, the tests where its own results and timing matter (the
 * paced run, flow control, maximum duration, idle timeout and shutdown
 * finals). The rest (`itEveryEngine` below, and the decoder-parking lag
 * scenario, which Whisper has no decoder pool for) test the gateway and run
 * once, with PocketSphinx.
 */
export function gatewaySuite(transport: TransportKind, engine: EngineKind = 'pocketsphinx'): void {
  const { story, storyPcm } = makeStory(engine === 'whisper' ? 10 : STORY.length);
  // The paced test's story: its first twelve sentences (a minute) on the
  // default transport, six on the other (what the long paced run adds,
  // partials all through a long session, is the session's, not the
  // socket's, and paced minutes cost CI time); Whisper's ten. Both
  // transports get the whole story at full speed in the flow-control case.
  const pacedSentences = engine === 'whisper' ? 10 : transport === 'uws' ? 12 : 6;
  const paced = pacedSentences === story.segments.length ? { story, storyPcm } : makeStory(pacedSentences);
  // Each startGateway override gets the engine kind.
  const startGw: typeof startGateway = (t, overrides = {}, e) => {
    const o = overrides as { engine?: Record<string, unknown> };
    return startGateway(t, { ...overrides, engine: { ...(o.engine ?? {}), kind: engine } }, e);
  };
  // What does not depend on the engine (conversion, framing, the pool,
  // abrupt closes, malformed input, slow readers, a failing engine stub)
  // runs with PocketSphinx only; another engine gets the cases where its own
  // results and timing matter.
  const itEveryEngine = it.skipIf(engine !== 'pocketsphinx');
  describe(`gateway over ${transport}${engine === 'pocketsphinx' ? '' : ` with ${engine}`}`, () => {
    let h: Harness;
    /** The engine's own streaming result for each clip, for comparison. */
    const directFinals = (pcm: Int16Array): Promise<Utterance[]> =>
      reference(`${engine} streaming`, pcm, async () => (await transcribePcm(h.gw.engine, pcm, { windowSamples: 1600 })).finals);

    /** Whole-file decoding of the LibriVox clips and the story: the accuracy reference. */
    let wholeLibri: string[] = [];
    let wholeStory = '';

    beforeAll(async () => {
      // Six decoders: the real-time test has six sessions talking at once.
      // A generous lag bound: on a loaded 2-core CI machine the engine can fall
      // seconds behind for a while, and this suite tests correctness, not the
      // bound (the lag test below has its own gateway with the default).
      h = await startGw(transport, {
        pool: { slabs: 32, slabSeconds: 70 },
        // A dropped session parks for a resume (test/gateway/resume.test.ts);
        // here a cut client never comes back, so a short grace.
        limits: { lagWarnSeconds: 30, lagMaxSeconds: 60, resumeGraceSeconds: 1 },
        admission: { maxEngineLagSeconds: 60 },
        engine: { decoders: 6, threads: 2 },
      });
      // References are computed up front, so the paced test's time is the
      // audio's own plus the gateway's, not also the references' (on a loaded
      // 2-core CI machine, the sum once passed the test's timeout).
      // At most six streams at once (the engine's six decoders): a seventh
      // would wait for one, and the hand-over (engine.pocketsphinx.maxHoldMs)
      // would cut a reference's utterance where the gateway's is not cut.
      await Promise.all([...clipPcm, paced.storyPcm].map((pcm) => directFinals(pcm)));
      await directFinals(storyPcm);
      // Whole-file: no VAD. PocketSphinx takes a file as one utterance;
      // Whisper in its longest windows (28 s).
      const whole: { engine?: Promise<Engine> } = {};
      const wholeText = (pcm: Int16Array): Promise<string> =>
        reference(`${engine} whole-file`, pcm, async () => {
          const c = testConfig().engine;
          whole.engine ??=
            engine === 'whisper'
              ? createWhisperEngine({ ...c, threads: 2, vad: { ...c.vad, enabled: false } })
              : createPocketSphinxEngine({ ...c, decoders: 1, threads: 1, vad: { ...c.vad, enabled: false, maxUtteranceSeconds: 600 } });
          return joined((await transcribePcm(await whole.engine, pcm, { windowSamples: 16000 })).finals);
        });
      try {
        wholeLibri = [];
        for (const pcm of clipPcm) wholeLibri.push(await wholeText(pcm));
        wholeStory = await wholeText(paced.storyPcm);
      } finally {
        await (await whole.engine)?.shutdown();
      }
    }, 300_000);
    afterAll(async () => {
      await h?.stop();
    });
    afterEach(async () => {
      // Every path returns every slab and decoder.
      await settled(h.gw);
    });

    it('streams real speech at real-time pace: partials while audio flows, finals equal the engine, WER within 1 point of whole-file', async () => {
      // Five LibriVox clips and the flite story, all at once, paced.
      const t0 = performance.now();
      const runs = await Promise.all([
        ...clipPcm.map((pcm) => streamPcm(`${h.base}/v1/listen`, pcm, { realtime: true })),
        streamPcm(`${h.base}/v1/listen`, paced.storyPcm, { realtime: true }),
      ]);
      const storyRun = runs.at(-1)!;
      console.log(`[${transport}] paced run: ${((performance.now() - t0) / 1000).toFixed(1)} s for ${(paced.storyPcm.length / 16000).toFixed(1)} s of story audio`);
      for (const r of runs) {
        expect(r.end.reason).toBe('client_stop');
        expect(r.end.audio.droppedSamples).toBe(0);
        expect(r.end.audio.receivedSamples).toBe(r.end.audio.decodedSamples);
        expect(r.messages.some((m) => m.type === 'partial' && m.text !== '')).toBe(true);
      }
      // Captions are live: partials arrive while audio is still flowing. Not
      // most of them on a loaded machine: partials give way first, so a 3 s
      // clip may see its partials only at its end (Whisper base, 6 sessions
      // beside a busy core: 14 of 24 early, against 70% or more idle). The
      // story's check below is the one that shows them flowing throughout.
      const partials = runs.reduce((n, r) => n + r.messages.filter((m) => m.type === 'partial').length, 0);
      const early = runs.reduce((n, r) => n + r.partialsBeforeLastFrame, 0);
      expect(early).toBeGreaterThanOrEqual(partials / 3);
      // Partials arrived throughout the story, not only at the end.
      const storyPartials = storyRun.messages.filter((m) => m.type === 'partial').length;
      expect(storyRun.partialsBeforeLastFrame).toBeGreaterThan(storyPartials * 0.8);
      expect(storyRun.finals.length).toBeGreaterThan(paced.story.segments.length * 0.4);

      // The gateway adds nothing and loses nothing: finals equal the engine's own streaming result.
      for (let i = 0; i < clipPcm.length; i++) {
        expect(shape(runs[i]!.finals)).toEqual(shape(await directFinals(clipPcm[i]!)));
      }
      expect(shape(storyRun.finals)).toEqual(shape(await directFinals(paced.storyPcm)));

      // Accuracy: streaming WER within 1 point of whole-file decoding with the same settings.
      const gl = wer(clips.map((cl, i) => [cl.text, joined(runs[i]!.finals)]));
      const wl = wer(clips.map((cl, i) => [cl.text, wholeLibri[i]!]));
      const gs = wer([[paced.story.text, joined(storyRun.finals)]]);
      const ws = wer([[paced.story.text, wholeStory]]);
      console.log(`[${transport}] WER LibriVox gateway ${gl.wer.toFixed(1)}% vs whole-file ${wl.wer.toFixed(1)}%; flite story gateway ${gs.wer.toFixed(1)}% vs whole-file ${ws.wer.toFixed(1)}%`);
      expect(gl.wer).toBeLessThanOrEqual(wl.wer + 1);
      expect(gs.wer).toBeLessThanOrEqual(ws.wer + 1);
      expect(gs.wer).toBeLessThan(20);
      // Paced: the floor is the story's length (2 minutes); the rest is margin
      // for a CI machine whose two cores also run another test file.
    }, 360_000);

    it('gives the same finals to a bot uploading faster than real time (flow control)', async () => {
      const r = await streamPcm(`${h.base}/v1/listen`, storyPcm, { realtime: false, frameMs: 250 });
      expect(r.end.audio.droppedSamples).toBe(0);
      expect(r.messages.filter((m) => m.type === 'warning')).toEqual([]);
      expect(shape(r.finals)).toEqual(shape(await directFinals(storyPcm)));
    });

    itEveryEngine('converts 48 kHz stereo s16le and f32le without client-side resampling', async () => {
      // Upsample a clip to 48 kHz stereo (linear is fine for making test input).
      const src = clipPcm[0]!;
      const n = src.length * 3;
      const s16 = new Int16Array(n * 2);
      const f32 = new Float32Array(n * 2);
      for (let i = 0; i < n; i++) {
        const x = i / 3;
        const a = src[Math.floor(x)] ?? 0;
        const b = src[Math.min(src.length - 1, Math.floor(x) + 1)] ?? 0;
        const v = a + (b - a) * (x - Math.floor(x));
        s16[2 * i] = s16[2 * i + 1] = Math.round(v);
        f32[2 * i] = f32[2 * i + 1] = v / 32768;
      }
      const [a, b] = await Promise.all([
        streamPcm(`${h.base}/v1/listen`, s16, { sampleRate: 48000, channels: 2, encoding: 's16le' }),
        streamPcm(`${h.base}/v1/listen`, new Uint8Array(f32.buffer), { sampleRate: 48000, channels: 2, encoding: 'f32le' }),
      ]);
      const expected = wer([[clips[0]!.text, joined(await directFinals(src))]]).wer;
      for (const r of [a, b]) {
        expect(Math.abs(r.end.audio.receivedSeconds - src.length / 16000)).toBeLessThan(0.01);
        expect(wer([[clips[0]!.text, joined(r.finals)]]).wer).toBeLessThanOrEqual(expected + 10);
      }
    });

    itEveryEngine('speaks the msgpack subprotocol', async () => {
      const r = await streamPcm(`${h.base}/v1/listen`, healthyClip(), { protocol: 'msgpack' });
      expect(r.end.reason).toBe('client_stop');
      expect(shape(r.finals)).toEqual(shape(await directFinals(healthyClip())));
    });

    it('ends at maxSessionSeconds with the finals delivered, then a clean close', async () => {
      const h2 = await startGw(transport, { limits: { maxSessionSeconds: 3 }, engine: { decoders: 1, threads: 1 } });
      try {
        const client = await connect(`${h2.base}/v1/listen`, { sampleRate: 16000 });
        const msgs: { type: string; code?: string }[] = [];
        client.on('message', (m) => msgs.push(m));
        const closed = new Promise<number>((r) => client.on('close', (code) => r(code)));
        const pcm = clipPcm[0]!; // 7.1 s
        for (let off = 0; off < pcm.length && !client.ended; off += 1600) {
          await client.write(pcm.subarray(off, off + 1600));
        }
        expect(await closed).toBe(4003);
        const end = msgs.find((m) => m.type === 'end') as unknown as { reason: string; audio: { receivedSeconds: number; droppedSamples: number } };
        expect(end.reason).toBe('max_duration');
        expect(end.audio.receivedSeconds).toBeCloseTo(3, 2);
        expect(end.audio.droppedSamples).toBe(0);
        const err = msgs.find((m) => m.type === 'error');
        expect(err?.code).toBe('CAP_ERR_MAX_DURATION');
        // The finals for the accepted 3 s came before the end.
        const finals = msgs.filter((m) => m.type === 'final') as unknown as FinalMessage[];
        expect(joined(finals).split(' ').length).toBeGreaterThan(3);
        expect(msgs.findIndex((m) => m.type === 'end')).toBeGreaterThan(msgs.findIndex((m) => m.type === 'final'));
        await settled(h2.gw);
      } finally {
        await h2.stop();
      }
    });

    itEveryEngine('refuses a session when the pool is empty, with a retry hint, before it starts', async () => {
      const h2 = await startGw(transport, { pool: { slabs: 2 }, engine: { decoders: 1, threads: 1 } });
      try {
        const a = await connect(`${h2.base}/v1/listen`, { sampleRate: 16000 });
        const b = await connect(`${h2.base}/v1/listen`, { sampleRate: 16000 });
        const err = await connect(`${h2.base}/v1/listen`, { sampleRate: 16000 }).then(
          () => null,
          (e: unknown) => e as CaptionClientError,
        );
        expect(err).toBeInstanceOf(CaptionClientError);
        expect(err!.code).toBe('CAP_ERR_CAPACITY');
        expect(err!.retryAfterMs).toBeGreaterThan(0);
        expect(err!.closeCode).toBe(4002);
        expect(h2.gw.pool.stats().refusals).toBeGreaterThan(0);
        expect(await metric(h2.http, 'captiongate_sessions_refused_total', 'code="CAP_ERR_CAPACITY"')).toBe(1);
        // The two accepted sessions are unaffected and finish normally.
        for (const c of [a, b]) {
          await c.write(clipPcm[4]!);
          expect((await c.stop()).reason).toBe('client_stop');
        }
        await settled(h2.gw);
        // A slab is free again: a new session is accepted.
        const c = await connect(`${h2.base}/v1/listen`, { sampleRate: 16000 });
        expect((await c.stop()).reason).toBe('client_stop');
        await settled(h2.gw);
      } finally {
        await h2.stop();
      }
    });

    itEveryEngine('returns every slab and decoder when 20 sessions are cut abruptly mid-utterance', async () => {
      // resume: false, so the SDK does not come back: the sessions park, and end after the grace.
      const clients = await Promise.all(Array.from({ length: 20 }, () => connect(`${h.base}/v1/listen`, { sampleRate: 16000, resume: false })));
      const pcm = clipPcm[0]!;
      // Send 1.5-2.5 s of speech each (well inside the first utterance), then cut.
      await Promise.all(
        clients.map(async (c, i) => {
          const n = 24000 + (i % 5) * 3200;
          for (let off = 0; off < n; off += 1600) c.send(pcm.subarray(off, off + 1600));
          await new Promise((r) => setTimeout(r, 200 + (i % 7) * 50));
          c.terminate();
        }),
      );
      // A vanished client's audio is still decoded (40 s of speech here, 6 decoders):
      // that takes a while on a loaded machine, and then everything goes back.
      await settled(h.gw, 120_000);
      expect(await metric(h.http, 'captiongate_slabs_in_use')).toBe(0);
      expect(await metric(h.http, 'captiongate_decoders_in_use')).toBe(0);
      expect(await metric(h.http, 'captiongate_sessions_active')).toBe(0);
    });

    itEveryEngine('answers each malformed input with its documented code; a concurrent healthy session is unaffected', async () => {
      const healthy = streamPcm(`${h.base}/v1/listen`, healthyClip(), { realtime: true });
      const url = `${h.base}/v1/listen`;
      const startMsg = { type: 'start', sampleRate: 16000, channels: 1, encoding: 's16le' };

      // Before start.
      const pre = new RawClient(url);
      await pre.opened;
      pre.ws.send('{not json');
      pre.ws.send('[1,2]');
      pre.sendJson({ type: 'bogus' });
      pre.ws.send(new Uint8Array(3200));
      pre.sendJson({ ...startMsg, sampleRate: 7999 });
      pre.sendJson({ ...startMsg, encoding: 'mulaw' });
      pre.sendJson({ ...startMsg, channels: 3 });
      pre.sendJson({ ...startMsg, extra: true });
      await pre.waitFor((m) => m.type === 'error' && m.message.includes('unknown field'));
      expect(pre.errorCodes()).toEqual([
        'CAP_ERR_INVALID_JSON',
        'CAP_ERR_INVALID_MESSAGE',
        'CAP_ERR_UNKNOWN_TYPE',
        'CAP_ERR_AUDIO_BEFORE_START',
        'CAP_ERR_BAD_PARAMETER',
        'CAP_ERR_BAD_PARAMETER',
        'CAP_ERR_BAD_PARAMETER',
        'CAP_ERR_BAD_PARAMETER',
      ]);
      // The connection survived all of that and can still start.
      pre.sendJson(startMsg);
      await pre.waitFor((m) => m.type === 'ready');

      // During a session.
      pre.sendJson(startMsg);
      pre.ws.send(new Uint8Array(3201)); // not whole samples
      pre.ws.send(new Uint8Array(80)); // 2.5 ms
      pre.ws.send(new Uint8Array(testConfig().limits.maxFrameBytes + 2)); // > maxFrameBytes, < transport ceiling
      pre.ws.send('x'.repeat(testConfig().limits.maxControlBytes + 1));
      pre.sendJson({ type: 'flush', now: true });
      pre.ws.send(new Uint8Array(3200)); // valid: accepted
      await pre.waitFor((m) => m.type === 'error' && m.code === 'CAP_ERR_INVALID_MESSAGE' && m.message.includes('flush'));
      expect(pre.errorCodes().slice(8)).toEqual([
        'CAP_ERR_ALREADY_STARTED',
        'CAP_ERR_PARTIAL_SAMPLE',
        'CAP_ERR_FRAME_DURATION',
        'CAP_ERR_FRAME_TOO_LARGE',
        'CAP_ERR_CONTROL_TOO_LARGE',
        'CAP_ERR_INVALID_MESSAGE',
      ]);
      pre.sendJson({ type: 'stop' });
      pre.ws.send(new Uint8Array(3200)); // after stop
      const end = await pre.waitFor((m) => m.type === 'end');
      await pre.closed;
      expect(pre.closeCode).toBe(1000);
      // Only the one valid frame was accepted; nothing else counted.
      expect((end as { audio: { receivedSamples: number } }).audio.receivedSamples).toBe(1600);
      for (const m of pre.messages) {
        if (m.type === 'error') expect(Object.keys(ERRORS)).toContain(m.code);
      }

      // A frame beyond the transport ceiling drops the connection: ws sends
      // 1009 (message too big); uWS closes the socket at once (1006).
      const big = new RawClient(url);
      await big.opened;
      big.sendJson(startMsg);
      await big.waitFor((m) => m.type === 'ready');
      big.ws.send(new Uint8Array(testConfig().limits.maxFrameBytes * 2 + 4096));
      await big.closed;
      expect(transport === 'ws' ? [1009] : [1006, 1009]).toContain(big.closeCode);

      // Bad query parameters: error then close 4000.
      const q = new RawClient(`${url}?sampleRate=123&channels=1&encoding=s16le`);
      await q.closed;
      expect(q.errorCodes()).toEqual(['CAP_ERR_BAD_PARAMETER']);
      expect(q.closeCode).toBe(4000);

      // Too many errors: protocol violation.
      const noisy = new RawClient(url);
      await noisy.opened;
      for (let i = 0; i < testConfig().limits.maxErrorsPerSession + 1; i++) noisy.ws.send('nope');
      await noisy.closed;
      expect(noisy.closeCode).toBe(4005);
      expect(noisy.errorCodes().at(-1)).toBe('CAP_ERR_PROTOCOL_VIOLATION');

      // Unsupported subprotocol and unknown route are refused at upgrade.
      const badProto = await fetchUpgrade(h.http, '/v1/listen', 'chat.v2');
      expect(badProto.status).toBe(400);
      expect(badProto.code).toBe('CAP_ERR_UNSUPPORTED_PROTOCOL');
      const notFound = await fetchUpgrade(h.http, '/v1/nope');
      expect(notFound.status).toBe(404);
      expect(notFound.code).toBe('CAP_ERR_NOT_FOUND');

      const r = await healthy;
      expect(r.end.reason).toBe('client_stop');
      expect(shape(r.finals)).toEqual(shape(await directFinals(healthyClip())));
    });

    itEveryEngine("a client that never reads does not hold up another session's captions", async () => {
      const port = Number(new URL(h.base).port);
      const stalled = new StalledClient(port, '/v1/listen?sampleRate=16000&channels=1&encoding=s16le&ack=true');
      await stalled.upgraded;
      const pcm = storyPcm;
      let stop = false;
      const pump = (async () => {
        for (let off = 0; !stop && off < pcm.length; off += 1600) {
          stalled.send(new Uint8Array(pcm.buffer, pcm.byteOffset + off * 2, Math.min(1600, pcm.length - off) * 2));
          // Real-time pace: at 4× an engine slower than PocketSphinx would end
          // it for lag (correctly), which is not what this test is about.
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const r = await streamPcm(`${h.base}/v1/listen`, healthyClip(), { realtime: true });
      expect(r.end.reason).toBe('client_stop');
      expect(shape(r.finals)).toEqual(shape(await directFinals(healthyClip())));
      // The stalled session was still being served the whole time.
      expect(h.gw.manager.size).toBe(1);
      stop = true;
      await pump;
      stalled.destroy();
    });

    it.skipIf(engine !== 'pocketsphinx')('warns a session the engine cannot keep up with, ends it past the hard bound with exact counts, and refuses new sessions meanwhile', async () => {
      // An engine that decodes at half real-time speed: two talkers fall behind, steadily.
      const h2 = await startGw(
        transport,
        { limits: { lagWarnSeconds: 0.5, lagMaxSeconds: 2 }, admission: { maxEngineLagSeconds: 0.4 } },
        slowEngine(createOverheadEngine({ windowMs: 100 }), 1),
      );
      try {
        const talkers = [0, 2].map((i) => {
          const c = new RawClient(`${h2.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
          const pcm = clipPcm[i]!;
          const done = (async () => {
            await c.waitFor((m) => m.type === 'ready');
            const t0 = performance.now();
            for (let off = 0; off < pcm.length && c.closeCode === undefined; off += 1600) {
              const wait = t0 + off / 16 - performance.now();
              if (wait > 0) await new Promise((r) => setTimeout(r, wait));
              if (c.ws.readyState === 1) c.ws.send(pcm.subarray(off, Math.min(pcm.length, off + 1600)));
            }
            if (c.ws.readyState === 1) c.sendJson({ type: 'stop' });
            await c.closed;
          })();
          return { c, done };
        });
        // While the engine is behind, admission refuses with a retry hint.
        await new Promise((r) => setTimeout(r, 1200));
        h2.gw.manager.refreshLag();
        const refused = await connect(`${h2.base}/v1/listen`, { sampleRate: 16000 }).then(
          () => null,
          (e: unknown) => e as CaptionClientError,
        );
        expect(refused?.code).toBe('CAP_ERR_CAPACITY');
        expect(refused?.message).toMatch(/behind/);
        expect(refused?.retryAfterMs).toBeGreaterThan(0);
        await Promise.all(talkers.map((t) => t.done));
        const overloaded = talkers.filter((t) => t.c.closeCode === 4007);
        expect(overloaded.length).toBeGreaterThanOrEqual(1);
        for (const { c } of overloaded) {
          expect(c.messages.some((m) => m.type === 'warning' && m.code === 'lagging')).toBe(true);
          expect(c.errorCodes()).toContain('CAP_ERR_ENGINE_OVERLOAD');
          const end = c.messages.find((m) => m.type === 'end') as { reason: string; audio: { receivedSamples: number; decodedSamples: number; droppedSamples: number } };
          expect(end.reason).toBe('engine_overload');
          expect(end.audio.droppedSamples).toBeGreaterThan(16000);
          // Exact: everything accepted is either decoded or reported dropped.
          expect(end.audio.receivedSamples).toBe(end.audio.decodedSamples + end.audio.droppedSamples);
        }
        expect(await metric(h2.http, 'captiongate_samples_dropped_total')).toBeGreaterThan(0);
        await settled(h2.gw);
      } finally {
        await h2.stop();
      }
    });

    itEveryEngine('an engine failure ends only that session (error, end, 4009); others carry on', async () => {
      const healthy = streamPcm(`${h.base}/v1/listen`, healthyClip(), { realtime: true });
      const bad = new RawClient(`${h.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
      const ready = (await bad.waitFor((m) => m.type === 'ready')) as { sessionId: string };
      const session = h.gw.manager.get(ready.sessionId)!;
      (h.gw.engine as unknown as { injectFault(id: number): void }).injectFault(session.streamId);
      const pcm = clipPcm[0]!;
      for (let off = 0; off < 16000; off += 1600) bad.ws.send(pcm.subarray(off, off + 1600));
      await bad.closed;
      expect(bad.closeCode).toBe(4009);
      expect(bad.errorCodes()).toEqual(['CAP_ERR_ENGINE_FAILURE']);
      const end = bad.messages.find((m) => m.type === 'end') as { reason: string; audio: { receivedSamples: number; decodedSamples: number; droppedSamples: number } };
      expect(end.reason).toBe('engine_error');
      expect(end.audio.receivedSamples).toBe(end.audio.decodedSamples + end.audio.droppedSamples);
      const r = await healthy;
      expect(r.end.reason).toBe('client_stop');
      expect(shape(r.finals)).toEqual(shape(await directFinals(healthyClip())));
    });

    it('finishes idle sessions with their finals (idle timeout)', async () => {
      const h2 = await startGw(transport, { limits: { idleTimeoutSeconds: 1 }, engine: { decoders: 1, threads: 1 } });
      try {
        const c = new RawClient(`${h2.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
        await c.waitFor((m) => m.type === 'ready');
        const pcm = clipPcm[4]!;
        for (let off = 0; off < pcm.length; off += 1600) c.ws.send(pcm.subarray(off, Math.min(pcm.length, off + 1600)));
        await c.closed;
        expect(c.closeCode).toBe(4004);
        expect(c.errorCodes()).toEqual(['CAP_ERR_IDLE_TIMEOUT']);
        const end = c.messages.find((m) => m.type === 'end') as { reason: string; audio: { droppedSamples: number } };
        expect(end.reason).toBe('idle_timeout');
        expect(end.audio.droppedSamples).toBe(0);
        expect(c.messages.some((m) => m.type === 'final')).toBe(true);
        await settled(h2.gw);
      } finally {
        await h2.stop();
      }
    });

    it('shuts down gracefully: live sessions get their finals and end with server_shutdown', async () => {
      // A grace period no loaded CI machine runs out of: this tests that
      // everything is finished, not how fast (sigterm.test.ts checks the deadline).
      const h2 = await startGw(transport, { engine: { decoders: 2, threads: 2 }, server: { shutdownGraceSeconds: 120 } });
      const clients = await Promise.all(
        [0, 2, 3].map(async (i) => {
          const c = new RawClient(`${h2.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
          await c.waitFor((m) => m.type === 'ready');
          const pcm = clipPcm[i]!;
          for (let off = 0; off < pcm.length; off += 1600) c.ws.send(pcm.subarray(off, Math.min(pcm.length, off + 1600)));
          return c;
        }),
      );
      await new Promise((r) => setTimeout(r, 300));
      await h2.stop();
      for (const c of clients) {
        await c.closed;
        expect(c.closeCode).toBe(4006);
        const end = c.messages.find((m) => m.type === 'end') as { reason: string; audio: { receivedSamples: number; decodedSamples: number } };
        expect(end.reason).toBe('server_shutdown');
        expect(end.audio.decodedSamples).toBe(end.audio.receivedSamples);
        expect(c.messages.some((m) => m.type === 'final')).toBe(true);
      }
      expect(h2.gw.pool.inUse).toBe(0);
      // New connections are refused while and after shutting down.
      const late = await fetch(`${h2.http}/healthz`).then(
        () => 'served',
        () => 'refused',
      );
      expect(late).toBe('refused');
    });

    it('serves health, readiness, metrics and the demo page', async () => {
      expect((await fetch(`${h.http}/healthz`)).status).toBe(200);
      const ready = await fetch(`${h.http}/readyz`);
      expect(ready.status).toBe(200);
      const text = await (await fetch(`${h.http}/metrics`)).text();
      for (const name of [
        'captiongate_sessions_active',
        'captiongate_slabs_in_use',
        'captiongate_decoders_in_use',
        'captiongate_samples_received_total',
        'captiongate_samples_decoded_total',
        'captiongate_samples_dropped_total',
        'captiongate_first_partial_latency_seconds_bucket',
        'captiongate_final_latency_seconds_bucket',
        'captiongate_event_loop_lag_p99_seconds',
        'captiongate_errors_total',
      ]) {
        expect(text).toContain(name);
      }
      // Real observations, not empty histograms.
      expect(await metric(h.http, 'captiongate_final_latency_seconds_count')).toBeGreaterThan(0);
      expect(await metric(h.http, 'captiongate_first_partial_latency_seconds_count')).toBeGreaterThan(0);
      const page = await fetch(`${h.http}/`);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-type')).toContain('text/html');
      expect((await fetch(`${h.http}/../package.json`)).status).toBe(404);
      expect((await fetch(`${h.http}/v1/listen`)).status).toBe(426);
    });
  });
}

/** Attempts a WebSocket upgrade over plain HTTP and returns the refusal. */
function fetchUpgrade(httpBase: string, path: string, protocol?: string): Promise<{ status: number; code: string | undefined }> {
  const u = new URL(httpBase);
  return new Promise((resolve) => {
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-version': '13',
        ...(protocol ? { 'sec-websocket-protocol': protocol } : {}),
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 101, code: undefined });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        let code: string | undefined;
        try {
          code = (JSON.parse(body) as { error?: { code?: string } }).error?.code;
        } catch {}
        resolve({ status: res.statusCode ?? 0, code });
      });
    });
    req.on('error', () => resolve({ status: 0, code: undefined }));
    req.end();
  });
}
