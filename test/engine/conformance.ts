/**
 * The engine contract's conformance suite (src/engine/types.ts;
 * docs/architecture.md §3). The same cases run against every engine at
 * the TypeScript interface, whatever runs its inference: the overhead
 * engine and PocketSphinx (conformance.test.ts), Whisper
 * (whisper-conformance.test.ts), and any engine added later.
 *
 * The driver here speaks the raw contract (windows, consumed, waiting,
 * onReady, flush), not the gateway's scheduler, so it tests the engine and
 * nothing else.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { ENGINE_SAMPLE_RATE, type Engine, type EngineResult, type EngineWindow, type StreamId, type StreamOptions, type Utterance } from '../../src/engine/types.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';

export interface ConformanceCase {
  readonly name: string;
  /** A fresh engine; `decoders` asks for a small decoder pool where the engine has one. */
  create(opts: { decoders?: number }): Promise<Engine>;
  /** Recognizes speech (the overhead engine does not). */
  readonly recognizes: boolean;
  /** Highest acceptable WER on the LibriVox clips, streamed, in percent. */
  readonly maxWer?: number;
  /** Has a decoder pool that streams can wait for (PocketSphinx). */
  readonly parks?: boolean;
  /** Test-hook fault injection on a stream's next window. */
  readonly injectFault?: (engine: Engine, stream: StreamId) => void;
}

const clips = librivoxClips();
const pcmOf = (i: number) => wavToInt16(readWav(clips[i]!.file));
const silence = (seconds: number) => new Int16Array(Math.round(seconds * ENGINE_SAMPLE_RATE));
const joined = (fs: readonly Utterance[]) => fs.map((f) => f.text).filter(Boolean).join(' ');

/** One stream driven by the raw contract; checks every invariant on every result. */
class Driver {
  readonly id: StreamId;
  finals: Utterance[] = [];
  results: EngineResult[] = [];
  position = 0;
  /** A partial with words was shown and its utterance has not had its final yet. */
  partialOpen = false;
  #ready: Set<StreamId>;
  #readyWaiters: Map<StreamId, () => void>;

  constructor(
    readonly engine: Engine,
    ready: { fired: Set<StreamId>; waiters: Map<StreamId, () => void> },
    options?: StreamOptions,
  ) {
    this.id = engine.openStream(options);
    this.#ready = ready.fired;
    this.#readyWaiters = ready.waiters;
  }

  window(pcm: Int16Array, from: number, to: number, flush = false): EngineWindow {
    return { stream: this.id, start: this.position, pcm: pcm.subarray(from, to), flush };
  }

  /** Checks a result against the window it answers and the stream's history. */
  accept(w: EngineWindow, r: EngineResult): void {
    const len = w.pcm.length;
    expect(r.stream).toBe(w.stream);
    expect(r.error).toBeNull();
    expect(Number.isInteger(r.consumed)).toBe(true);
    expect(r.consumed).toBeGreaterThanOrEqual(0);
    expect(r.consumed).toBeLessThanOrEqual(len);
    // The whole window, unless parked.
    if (!r.waiting) expect(r.consumed).toBe(len);
    if (r.waiting) expect(r.flushed).toBe(false);
    let lastEnd = this.finals.at(-1)?.end ?? -Infinity;
    for (const f of r.finals) {
      // In time order, inside the audio taken so far, words inside their utterance.
      expect(f.start).toBeGreaterThanOrEqual(lastEnd - 1e-6);
      expect(f.end).toBeGreaterThanOrEqual(f.start);
      expect(f.end).toBeLessThanOrEqual((this.position + r.consumed) / ENGINE_SAMPLE_RATE + 1e-6);
      for (const word of f.words) {
        expect(word.start).toBeGreaterThanOrEqual(f.start - 1e-6);
        expect(word.end).toBeLessThanOrEqual(f.end + 0.011);
        expect(word.confidence).toBeGreaterThanOrEqual(0);
        expect(word.confidence).toBeLessThanOrEqual(1);
      }
      lastEnd = f.end;
      this.partialOpen = false;
      this.finals.push(f);
    }
    if (r.partial && r.partial.text.trim() !== '') this.partialOpen = true;
    this.position += r.consumed;
    this.results.push(r);
  }

  /** Feeds `pcm` in windows of `size`, resubmitting after parking, then flushes. */
  async run(pcm: Int16Array, size: number, opts: { flush?: boolean } = {}): Promise<void> {
    let from = 0;
    for (;;) {
      const to = Math.min(pcm.length, from + size);
      const flush = opts.flush !== false && to === pcm.length;
      const w = this.window(pcm, from, to, flush);
      const [r] = await this.engine.submit([w]);
      this.accept(w, r!);
      from += r!.consumed;
      if (r!.waiting) {
        await this.waitReady();
        continue;
      }
      if (to === pcm.length && (!flush || r!.flushed)) break;
    }
    if (opts.flush !== false) expect(this.partialOpen, 'a shown partial was never closed by a final').toBe(false);
  }

  waitReady(): Promise<void> {
    if (this.#ready.delete(this.id)) return Promise.resolve();
    return new Promise((r) => this.#readyWaiters.set(this.id, r));
  }

  close(): void {
    this.engine.closeStream(this.id);
  }
}

function readyRouter(engine: Engine) {
  const fired = new Set<StreamId>();
  const waiters = new Map<StreamId, () => void>();
  engine.onReady((ids) => {
    for (const id of ids) {
      const w = waiters.get(id);
      if (w) {
        waiters.delete(id);
        w();
      } else fired.add(id);
    }
  });
  return { fired, waiters };
}

async function settledStats(engine: Engine): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const s = engine.stats();
    if (s.streams === 0 && s.decodersInUse === 0 && s.streamsWaiting === 0 && s.queuedWindows === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(engine.stats()).toMatchObject({ streams: 0, decodersInUse: 0, streamsWaiting: 0, queuedWindows: 0 });
}

export function conformance(c: ConformanceCase): void {
  describe(`engine contract: ${c.name}`, () => {
    let engine: Engine;
    let ready: ReturnType<typeof readyRouter>;
    const driver = () => new Driver(engine, ready);

    beforeAll(async () => {
      engine = await c.create({});
      ready = readyRouter(engine);
    }, 180_000);
    afterAll(async () => {
      await engine?.shutdown();
    });

    it('declares a usable window policy and its identity', () => {
      const { info } = engine;
      expect(info.sampleRate).toBe(ENGINE_SAMPLE_RATE);
      expect(info.name).toMatch(/\S/);
      expect(info.policy.minSamples).toBeGreaterThan(0);
      expect(info.policy.maxSamples).toBeGreaterThanOrEqual(info.policy.minSamples);
      expect(info.policy.maxBatch).toBeGreaterThanOrEqual(1);
      expect(engine.stats().decodersInUse).toBe(0);
    });

    it('opens distinct streams; close is idempotent; a closed stream takes no windows; nothing is left behind', async () => {
      const a = engine.openStream();
      const b = engine.openStream();
      expect(a).not.toBe(b);
      expect(engine.stats().streams).toBeGreaterThanOrEqual(2);
      engine.closeStream(a);
      engine.closeStream(a);
      expect(() => engine.submit([{ stream: a, start: 0, pcm: silence(0.1) }])).toThrow(TypeError);
      engine.closeStream(b);
      await settledStats(engine);
    });

    it('answers a batch of windows from many streams with one result each, in order; windows of one stream in one batch run in order', async () => {
      const ds = [driver(), driver(), driver()];
      const pcm = pcmOf(0).subarray(0, 16_000);
      // Two windows of the first stream in the same batch, then one each of the others.
      const w0 = ds[0]!.window(pcm, 0, 1600);
      const w1 = { stream: ds[0]!.id, start: 1600, pcm: pcm.subarray(1600, 3200) };
      const rest = ds.slice(1).map((d) => d.window(pcm, 0, 1600));
      const rs = await engine.submit([w0, w1, ...rest]);
      expect(rs.map((r) => r.stream)).toEqual([w0, w1, ...rest].map((w) => w.stream));
      if (!rs[0]!.waiting) {
        ds[0]!.accept(w0, rs[0]!);
        ds[0]!.accept(w1, rs[1]!);
      }
      for (const d of ds) d.close();
      await settledStats(engine);
    });

    it('refuses a window that does not start where its stream stands (ENGINE_BAD_WINDOW), and only that one', async () => {
      const [bad, good] = [driver(), driver()];
      const pcm = pcmOf(1).subarray(0, 3200);
      const rs = await engine.submit([
        { stream: bad.id, start: 800, pcm: pcm.subarray(0, 1600) },
        good.window(pcm, 0, 1600),
      ]);
      expect(rs[0]!.error?.code).toBe('ENGINE_BAD_WINDOW');
      good.accept(good.window(pcm, 0, 1600), rs[1]!);
      // Nor may a window go back over audio already taken.
      const back = await engine.submit([{ stream: good.id, start: good.position - 800, pcm: pcm.subarray(800, 2400) }]);
      expect(back[0]!.error?.code).toBe('ENGINE_BAD_WINDOW');
      bad.close();
      good.close();
      await settledStats(engine);
    });

    it('refuses a per-stream endpoint silence out of range (RangeError) and opens nothing for it', () => {
      const before = engine.stats().streams;
      for (const endpointMs of [0, 9, 10_001, 12.5, Number.NaN]) {
        expect(() => engine.openStream({ endpointMs }), String(endpointMs)).toThrow(RangeError);
      }
      expect(engine.stats().streams).toBe(before);
      for (const endpointMs of [10, 10_000, false] as const) engine.closeStream(engine.openStream({ endpointMs }));
    });

    if (c.recognizes) {
      it('a per-stream endpoint silence longer than a pause merges the speech around it into one utterance; a shorter one splits it there', async () => {
        // Two clips with 0.6 s of silence between them (plus the clips' own quiet edges).
        const a = pcmOf(0);
        const b = pcmOf(1);
        const gap = silence(0.6).length;
        const pcm = new Int16Array(a.length + gap + b.length);
        pcm.set(a, 0);
        pcm.set(b, a.length + gap);
        const gapStart = a.length / ENGINE_SAMPLE_RATE;
        const gapEnd = (a.length + gap) / ENGINE_SAMPLE_RATE;
        const run = async (endpointMs: number) => {
          const d = new Driver(engine, ready, { endpointMs });
          await d.run(pcm, 1600);
          d.close();
          return d.finals;
        };
        const spans = (fs: Utterance[]) => fs.some((f) => f.start < gapStart && f.end > gapEnd);
        const splits = (fs: Utterance[]) => fs.some((f, i) => i + 1 < fs.length && f.end <= gapEnd + 1e-6 && fs[i + 1]!.start >= gapStart - 1e-6);
        const merged = await run(1500);
        const split = await run(200);
        expect(spans(merged), JSON.stringify(merged.map((f) => [f.start, f.end, f.text]))).toBe(true);
        expect(splits(merged)).toBe(false);
        expect(splits(split), JSON.stringify(split.map((f) => [f.start, f.end, f.text]))).toBe(true);
        expect(split.length).toBeGreaterThan(merged.length);
        await settledStats(engine);
      });

      it(`streams real speech: every utterance ends with one final, in time order, and the words are right (WER ≤ ${c.maxWer}%)`, async () => {
        const pairs: [string, string][] = [];
        for (let i = 0; i < clips.length; i++) {
          const d = driver();
          // Silence around the speech, so utterances open and close inside the stream.
          const pcm = new Int16Array(silence(0.5).length * 2 + pcmOf(i).length);
          pcm.set(pcmOf(i), silence(0.5).length);
          await d.run(pcm, 1600);
          pairs.push([clips[i]!.text, joined(d.finals)]);
          d.close();
        }
        const w = wer(pairs);
        console.log(`[${c.name}] conformance WER ${w.wer.toFixed(1)}% (${w.errors}/${w.words})`);
        expect(w.wer).toBeLessThanOrEqual(c.maxWer!);
        await settledStats(engine);
      });

      it('flush ends the open utterance there: its final comes in the flushed window, and the next audio starts a new one', async () => {
        const d = driver();
        const pcm = pcmOf(2);
        const half = Math.floor(pcm.length / 2 / 1600) * 1600;
        await d.run(pcm.subarray(0, half), 1600);
        const before = d.finals.length;
        expect(before).toBeGreaterThan(0);
        expect(d.finals.at(-1)!.end).toBeLessThanOrEqual(half / ENGINE_SAMPLE_RATE + 1e-6);
        await d.run(pcm.subarray(half), 1600);
        expect(d.finals.length).toBeGreaterThan(before);
        expect(d.finals[before]!.start).toBeGreaterThanOrEqual(d.finals[before - 1]!.end - 1e-6);
        d.close();
        await settledStats(engine);
      });

      it("a stream's finals do not depend on what it was batched with", async () => {
        const pcmA = pcmOf(3);
        const alone = driver();
        await alone.run(pcmA, 1600);
        alone.close();
        // Now the same audio in lockstep with two other streams, one window each per batch.
        const ds = [driver(), driver(), driver()];
        const pcms = [pcmA, pcmOf(4), pcmOf(0)];
        const pos = [0, 0, 0];
        const done = [false, false, false];
        while (done.some((x) => !x)) {
          const batch: { d: Driver; w: EngineWindow; i: number }[] = [];
          ds.forEach((d, i) => {
            if (done[i]) return;
            const to = Math.min(pcms[i]!.length, pos[i]! + 1600);
            batch.push({ d, w: d.window(pcms[i]!, pos[i]!, to, to === pcms[i]!.length), i });
          });
          const rs = await engine.submit(batch.map((b) => b.w));
          for (const [k, { d, w, i }] of batch.entries()) {
            const r = rs[k]!;
            d.accept(w, r);
            pos[i]! += r.consumed;
            if (r.waiting) await d.waitReady();
            else if (w.flush && r.flushed) done[i] = true;
          }
        }
        for (const d of ds) d.close();
        const shape = (fs: Utterance[]) => fs.map((f) => ({ text: f.text, start: f.start, end: f.end, words: f.words.map((w) => [w.word, w.start, w.end]) }));
        expect(shape(ds[0]!.finals)).toEqual(shape(alone.finals));
        await settledStats(engine);
      });
    }

    if (c.injectFault) {
      it("a window's error fails its own stream only; batch-mates are decoded normally", async () => {
        const [bad, good] = [driver(), driver()];
        const pcm = pcmOf(0);
        c.injectFault!(engine, bad.id);
        const rs = await engine.submit([bad.window(pcm, 0, 1600), good.window(pcm, 0, 1600)]);
        expect(rs[0]!.error?.code).toBe('ENGINE_DECODE_FAILED');
        good.accept(good.window(pcm, 0, 1600), rs[1]!);
        await good.run(pcm.subarray(rs[1]!.consumed), 1600);
        bad.close();
        good.close();
        await settledStats(engine);
      });
    }

    it('closing a stream with windows in flight completes them (normally or ENGINE_STREAM_CLOSED); others carry on', async () => {
      const [gone, stays] = [driver(), driver()];
      const pcm = pcmOf(1);
      const inFlight = engine.submit([gone.window(pcm, 0, 16_000), stays.window(pcm, 0, 1600)]);
      gone.close();
      const rs = await inFlight;
      expect(rs[0]!.error === null || rs[0]!.error.code === 'ENGINE_STREAM_CLOSED').toBe(true);
      stays.accept(stays.window(pcm, 0, 1600), rs[1]!);
      await stays.run(pcm.subarray(rs[1]!.consumed), 1600);
      stays.close();
      await settledStats(engine);
    });

    if (c.parks) {
      it('with more talkers than decoders, waiting streams are named by onReady and every talker gets its words', async () => {
        const small = await c.create({ decoders: 1 });
        try {
          const r = readyRouter(small);
          const ds = [new Driver(small, r), new Driver(small, r)];
          await Promise.all(ds.map((d, i) => d.run(pcmOf(i), 1600)));
          expect(ds.some((d) => d.results.some((x) => x.waiting))).toBe(true);
          for (const [i, d] of ds.entries()) {
            expect(joined(d.finals).split(' ').length).toBeGreaterThan(clips[i]!.text.split(' ').length / 2);
            d.close();
          }
          await settledStats(small);
        } finally {
          await small.shutdown();
        }
      });
    }

    it('shutdown with work in flight completes every window (normally or ENGINE_SHUTDOWN), then refuses new work and holds no model; twice is fine', async () => {
      const e = await c.create({});
      const d = [e.openStream(), e.openStream(), e.openStream()];
      const pcm = pcmOf(2);
      const inFlight = e.submit(d.map((stream) => ({ stream, start: 0, pcm: pcm.subarray(0, 16_000) })));
      await Promise.all([e.shutdown(), e.shutdown()]);
      const rs = await inFlight;
      expect(rs).toHaveLength(3);
      for (const r of rs) expect(r.error === null || r.error.code === 'ENGINE_SHUTDOWN').toBe(true);
      await expect(
        (async () => {
          await e.submit([{ stream: d[0]!, start: 16_000, pcm: pcm.subarray(0, 1600) }]);
        })(),
      ).rejects.toMatchObject({ code: 'ENGINE_SHUTDOWN' });
      expect(() => e.openStream()).toThrow();
      // The weights and decoders go at shutdown, not when the engine object is collected.
      expect(e.stats()).toMatchObject({ decoders: 0, decodersInUse: 0, modelBytes: 0 });
    });
  });
}
