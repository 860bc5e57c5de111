import v8 from 'node:v8';
import vm from 'node:vm';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { loadAddon, type NativeEngine, type NativeFaultKind } from '../../src/engine/addon.js';
import { createPocketSphinxEngine, pocketSphinxNativeOptions } from '../../src/engine/pocketsphinx.js';
import { transcribePcm } from '../../src/scheduler/transcribe.js';
import { EngineError, type Engine, type Utterance } from '../../src/engine/types.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { testConfig } from '../helpers/config.js';

const clips = librivoxClips();
const audio = new Map(clips.map((c) => [c.id, wavToInt16(readWav(c.file))]));
const text = (fs: readonly Utterance[]) => fs.map((f) => f.text).filter(Boolean).join(' ');

/**
 * Words and times must be identical. Confidences may differ in the 3rd-4th
 * digit: a pooled decoder keeps PocketSphinx's PTM top-N Gaussian history
 * from its previous utterance (not exposed by the API), which nudges
 * acoustic scores slightly. See docs/architecture.md, "Decoder pool".
 */
function expectSameResults(a: readonly (readonly Utterance[])[], b: readonly (readonly Utterance[])[]) {
  const strip = (x: readonly (readonly Utterance[])[]) =>
    x.map((fs) => fs.map((f) => ({ ...f, words: f.words.map((w) => ({ ...w, confidence: 0 })) })));
  expect(strip(a)).toEqual(strip(b));
  const ca = a.flat().flatMap((f) => f.words.map((w) => w.confidence));
  const cb = b.flat().flatMap((f) => f.words.map((w) => w.confidence));
  ca.forEach((c, i) => expect(Math.abs(c - cb[i]!)).toBeLessThan(0.02));
}

function engineOptions(over: { decoders?: number; threads?: number; vad?: boolean; maxHoldMs?: number } = {}) {
  const c = testConfig().engine;
  return {
    ...c,
    threads: over.threads ?? c.threads,
    decoders: over.decoders ?? c.decoders,
    pocketsphinx: { ...c.pocketsphinx, maxHoldMs: over.maxHoldMs ?? c.pocketsphinx.maxHoldMs },
    vad: { ...c.vad, enabled: over.vad ?? true },
  };
}

describe('PocketSphinx engine: real speech', () => {
  let streaming: Engine;
  let wholeFile: Engine;

  beforeAll(async () => {
    [streaming, wholeFile] = await Promise.all([
      createPocketSphinxEngine(engineOptions({ decoders: 4, threads: 4 })),
      createPocketSphinxEngine(engineOptions({ decoders: 1, threads: 1, vad: false })),
    ]);
  });
  afterAll(async () => {
    await Promise.all([streaming?.shutdown(), wholeFile?.shutdown()]);
  });

  it('streams the LibriVox clips in 100 ms windows within 1 WER point of whole-file decoding', async () => {
    const streamed: [string, string][] = [];
    const whole: [string, string][] = [];
    for (const c of clips) {
      const pcm = audio.get(c.id)!;
      const s = await transcribePcm(streaming, pcm, { windowSamples: 1600 });
      // Whole-file reference: same decoder settings, no segmentation, one utterance.
      const w = await transcribePcm(wholeFile, pcm, { windowSamples: wholeFile.info.policy.maxSamples });
      expect(s.windows).toBeGreaterThanOrEqual(Math.ceil(pcm.length / 1600));
      streamed.push([c.text, text(s.finals)]);
      whole.push([c.text, text(w.finals)]);
    }
    const sw = wer(streamed);
    const ww = wer(whole);
    console.log(`WER streaming ${sw.wer.toFixed(1)}% (${sw.errors}/${sw.words}), whole-file ${ww.wer.toFixed(1)}%`);
    expect(sw.words).toBeGreaterThan(60);
    // Real speech must come out as mostly the right words.
    expect(sw.wer).toBeLessThan(45);
    expect(sw.wer).toBeLessThanOrEqual(ww.wer + 1);
  });

  it('reports word times inside the utterance and confidences in [0, 1]', async () => {
    const c = clips[0]!;
    const pcm = audio.get(c.id)!;
    const r = await transcribePcm(streaming, pcm);
    const words = r.finals.flatMap((f) => f.words);
    expect(words.length).toBeGreaterThan(10);
    const duration = pcm.length / 16000;
    let last = 0;
    for (const f of r.finals) {
      for (const w of f.words) {
        expect(w.start).toBeGreaterThanOrEqual(f.start - 1e-9);
        expect(w.end).toBeLessThanOrEqual(f.end + 1e-9);
        expect(w.end).toBeGreaterThan(w.start);
        expect(w.start).toBeGreaterThanOrEqual(last - 1e-9);
        expect(w.confidence).toBeGreaterThanOrEqual(0);
        expect(w.confidence).toBeLessThanOrEqual(1);
        last = w.end;
      }
    }
    expect(last).toBeLessThanOrEqual(duration + 1e-9);
    // Not all 1.0: the confidences come from lattice posteriors.
    expect(new Set(words.map((w) => w.confidence.toFixed(2))).size).toBeGreaterThan(3);
  });

  it('decodes four streams in parallel with results identical to sequential decoding', async () => {
    const four = clips.slice(0, 4);
    const sequential: Utterance[][] = [];
    for (const c of four) sequential.push((await transcribePcm(streaming, audio.get(c.id)!)).finals);
    const before = streaming.stats().busyMs;
    const t0 = performance.now();
    const parallel = await Promise.all(four.map((c) => transcribePcm(streaming, audio.get(c.id)!)));
    const wall = performance.now() - t0;
    const busy = streaming.stats().busyMs - before;
    expectSameResults(parallel.map((p) => p.finals), sequential);
    // Work overlapped: total worker time exceeds the wall time it took.
    expect(busy).toBeGreaterThan(wall);
  });

  it('shares one decoder between three streams in order, with the wait reported', async () => {
    // No hand-over: parking alone must not change any result. (Handing a
    // decoder on ends utterances early by design: the next test.)
    const one = await createPocketSphinxEngine(engineOptions({ decoders: 1, threads: 2, maxHoldMs: 0 }));
    try {
      const three = clips.slice(0, 3);
      const sequential: Utterance[][] = [];
      for (const c of three) sequential.push((await transcribePcm(one, audio.get(c.id)!)).finals);
      const parallel = await Promise.all(three.map((c) => transcribePcm(one, audio.get(c.id)!)));
      expectSameResults(parallel.map((p) => p.finals), sequential);
      expect(parallel.reduce((n, p) => n + p.parks, 0)).toBeGreaterThan(0);
      expect(parallel.reduce((n, p) => n + p.decoderWaitMs, 0)).toBeGreaterThan(0);
      const st = one.stats();
      expect(st.decoderWaits).toBeGreaterThan(0);
      expect(st.decodersInUse).toBe(0);
      expect(st.streamsWaiting).toBe(0);
    } finally {
      await one.shutdown();
    }
  });
});

describe('PocketSphinx engine: bad use gets a clear error, never a crash', () => {
  it('names the apt package when the model is missing', async () => {
    const o = engineOptions();
    const err = await createPocketSphinxEngine({ ...o, pocketsphinx: { ...o.pocketsphinx, modelDir: '/nonexistent/model' } }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('ENGINE_MODEL_MISSING');
    expect((err as Error).message).toMatch(/apt-get install -y pocketsphinx-en-us/);
  });

  it('rejects a buffer that is not whole samples', async () => {
    const e = await createPocketSphinxEngine(engineOptions({ decoders: 1, threads: 1 }));
    try {
      const id = e.openStream();
      expect(() => e.submit([{ stream: id, start: 0, pcm: new Uint8Array(3201) }])).toThrow(/whole 16-bit samples.*3201 bytes/);
      // The stream is still usable afterwards.
      const [r] = await e.submit([{ stream: id, start: 0, pcm: new Uint8Array(3200), flush: true }]);
      expect(r!.error).toBeNull();
      expect(r!.consumed).toBe(1600);
    } finally {
      await e.shutdown();
    }
  });

  it('rejects a closed stream used again', async () => {
    const e = await createPocketSphinxEngine(engineOptions({ decoders: 1, threads: 1 }));
    try {
      const id = e.openStream();
      e.closeStream(id);
      e.closeStream(id); // idempotent
      expect(() => e.submit([{ stream: id, start: 0, pcm: new Int16Array(1600) }])).toThrow(TypeError);
      expect(() => e.submit([{ stream: id, start: 0, pcm: new Int16Array(1600) }])).toThrow(/closed or unknown/);
    } finally {
      await e.shutdown();
    }
  });

  it('shuts down with work in flight: every window settles, later use is refused', async () => {
    const e = await createPocketSphinxEngine(engineOptions({ decoders: 2, threads: 1 }));
    const pcm = audio.get(clips[0]!.id)!;
    const ids = [e.openStream(), e.openStream(), e.openStream()];
    const pending = [];
    for (let start = 0; start + 16000 <= pcm.length; start += 16000) {
      pending.push(e.submit(ids.map((id) => ({ stream: id, start, pcm: pcm.subarray(start, start + 16000) }))));
    }
    const down = e.shutdown();
    const results = (await Promise.all(pending)).flat();
    await down;
    expect(results.length).toBe(pending.length * ids.length);
    for (const r of results) {
      if (r.error) expect(r.error.code).toBe('ENGINE_SHUTDOWN');
    }
    expect(results.some((r) => r.error?.code === 'ENGINE_SHUTDOWN')).toBe(true);
    await expect(e.submit([{ stream: ids[0]!, start: 0, pcm: new Int16Array(160) }])).rejects.toThrow(/shut down/);
    expect(() => e.openStream()).toThrow(/shut down/);
    await e.shutdown(); // idempotent
  });

  it('reports a decode failure in that window only', async () => {
    const e = await createPocketSphinxEngine(engineOptions({ decoders: 1, threads: 1 }));
    try {
      const a = e.openStream();
      const b = e.openStream();
      (e as unknown as { injectFault(id: number): void }).injectFault(a);
      const [ra, rb] = await e.submit([
        { stream: a, start: 0, pcm: new Int16Array(1600) },
        { stream: b, start: 0, pcm: new Int16Array(1600) },
      ]);
      expect(ra!.error?.code).toBe('ENGINE_DECODE_FAILED');
      expect(rb!.error).toBeNull();
    } finally {
      await e.shutdown();
    }
  });
});

/**
 * The addon's NativeEngine itself, below src/engine's checks: what C++ must
 * refuse on its own (NaN, Infinity, huge or fractional numbers, unknown
 * kinds), the result shape, the test fault kinds, and lifetimes.
 */
describe('Native engine boundary', () => {
  const { NativeEngine } = loadAddon();
  const noop = () => {};
  const psOptions = (over: Record<string, unknown> = {}) => ({
    ...pocketSphinxNativeOptions(engineOptions({ decoders: 1, threads: 1 })),
    ...over,
  });
  async function nullEngine(): Promise<NativeEngine> {
    const e = new NativeEngine({ kind: 'null' }, noop);
    await e.load();
    return e;
  }

  it('null engine: consumes every window whole; results carry exactly the contract fields', async () => {
    const e = await nullEngine();
    const id = e.openStream();
    const rs = await e.submit([
      { stream: id, start: 0, pcm: new Float32Array(1600), flush: false },
      { stream: id, start: 1600, pcm: new Int16Array(800), flush: false },
      { stream: id, start: 2400, pcm: new Uint8Array(320), flush: true },
    ]);
    expect(rs.map((r) => r.consumed)).toEqual([1600, 800, 160]);
    expect(rs.map((r) => r.flushed)).toEqual([false, false, true]);
    for (const r of rs) {
      expect(Object.keys(r).sort()).toEqual(['consumed', 'decoderWaitMs', 'error', 'finals', 'flushed', 'partial', 'stream', 'waiting']);
      expect(r).toMatchObject({ stream: id, partial: null, finals: [], waiting: false, error: null });
    }
    expect(e.stats()).toMatchObject({ windowsProcessed: 3, samplesProcessed: 2560, streams: 1, queuedWindows: 0 });
    // A window that does not start at the stream's consumption fails it.
    const [bad] = await e.submit([{ stream: id, start: 0, pcm: new Int16Array(160), flush: false }]);
    expect(bad!.error?.code).toBe('ENGINE_BAD_WINDOW');
    expect(bad!.error?.message).toMatch(/has consumed 2560/);
    const [again] = await e.submit([{ stream: id, start: 2560, pcm: new Int16Array(160), flush: false }]);
    expect(again!.error?.code).toBe('ENGINE_BAD_WINDOW');
    expect(e.closeStream(id)).toBe(true);
    expect(e.closeStream(id)).toBe(false);
    await e.shutdown();
  });

  it('range-checks numbers before any cast: NaN, Infinity, huge and fractional values are RangeErrors naming the key', async () => {
    for (const threads of [NaN, Infinity, 1e300, 1.5, 0, -1]) {
      expect(() => new NativeEngine({ kind: 'null', threads }, noop)).toThrow(RangeError);
    }
    expect(() => new NativeEngine({ kind: 'null', threads: NaN }, noop)).toThrow(/integer in \[1, 256\] for threads but received NaN/);
    expect(() => new NativeEngine({ kind: 'null', threads: '2' } as never, noop)).toThrow(TypeError);
    expect(() => new NativeEngine({ kind: 'bogus' } as never, noop)).toThrow(/'pocketsphinx', 'whisper', 'moonshine' or 'null' for kind/);
    expect(() => new NativeEngine(psOptions({ decoders: Infinity }), noop)).toThrow(/\[1, 1024\] for decoders but received Infinity/);
    expect(() => new NativeEngine(psOptions({ maxUtteranceSamples: 2 ** 40 }), noop)).toThrow(RangeError);
    for (const holdSamples of [-1, 0.5, NaN, 16000 * 3600 + 1]) {
      expect(() => new NativeEngine(psOptions({ holdSamples }), noop)).toThrow(RangeError);
    }
    expect(() => new NativeEngine(psOptions({ holdSamples: -1 }), noop)).toThrow(/\[0, 57600000\] for holdSamples but received -1/);
    expect(() => new NativeEngine(psOptions({ beam: NaN }), noop)).toThrow(/number in \[0, 1\] for beam but received NaN/);
    expect(() => new NativeEngine(psOptions({ vadThreshold: -Infinity }), noop)).toThrow(RangeError);
    const e = await nullEngine();
    const id = e.openStream();
    const w = (over: Record<string, unknown>) => [{ stream: id, start: 0, pcm: new Int16Array(16), flush: false, ...over }];
    for (const stream of [NaN, -1, 2 ** 32, 1.5, Infinity]) {
      expect(() => e.submit(w({ stream }) as never)).toThrow(RangeError);
    }
    expect(() => e.submit(w({ stream: NaN }) as never)).toThrow(/\[0, 4294967295\] for window.stream but received NaN/);
    for (const start of [NaN, -1, 0.5, 2 ** 60]) expect(() => e.submit(w({ start }) as never)).toThrow(RangeError);
    expect(() => e.submit(w({ stream: 'x' }) as never)).toThrow(TypeError);
    expect(() => e.submit(w({ flush: 1 }) as never)).toThrow(/boolean for flush/);
    expect(() => e.submit(w({ pcm: [1, 2] }) as never)).toThrow(TypeError);
    expect(() => e.closeStream(NaN)).toThrow(RangeError);
    expect(() => e.injectFault(-5)).toThrow(RangeError);
    // Still usable after all that.
    const [r] = await e.submit(w({}) as never);
    expect(r!.error).toBeNull();
    await e.shutdown();
  });

  it('fault kinds: throw and bad_alloc inside the worker fail the window; napi throws inside submit as a JS Error', async () => {
    const e = new NativeEngine(psOptions(), noop);
    await e.load();
    try {
      const pcm = audio.get(clips[0]!.id)!.subarray(0, 1600);
      const expectFault = async (kind: NativeFaultKind, message: RegExp) => {
        const a = e.openStream();
        const b = e.openStream();
        expect(e.injectFault(a, kind)).toBe(true);
        const [ra, rb] = await e.submit([
          { stream: a, start: 0, pcm, flush: false },
          { stream: b, start: 0, pcm, flush: false },
        ]);
        expect(ra!.error?.code).toBe('ENGINE_DECODE_FAILED');
        expect(ra!.error?.message).toMatch(message);
        expect(rb!.error).toBeNull(); // PocketSphinx decodes one stream per call
        // The stream is failed: its next window fails the same way.
        const [again] = await e.submit([{ stream: a, start: 1600, pcm, flush: false }]);
        expect(again!.error?.code).toBe('ENGINE_DECODE_FAILED');
        e.closeStream(a);
        e.closeStream(b);
      };
      await expectFault('fail', /injected fault/);
      await expectFault('throw', /decoding failed: injected fault \(std::runtime_error/);
      await expectFault('bad_alloc', /decoding failed: std::bad_alloc/);

      const s = e.openStream();
      expect(e.injectFault(s, 'napi')).toBe(true);
      expect(() => e.submit([{ stream: s, start: 0, pcm, flush: false }])).toThrow(/submit: out of memory \(std::bad_alloc\)/);
      const [ok] = await e.submit([{ stream: s, start: 0, pcm, flush: false }]);
      expect(ok!.error).toBeNull();
      expect(() => e.injectFault(s, 'segfault' as never)).toThrow(TypeError);
      expect(e.injectFault(12345, 'throw')).toBe(false);
      e.closeStream(s);
      expect(e.stats()).toMatchObject({ streams: 0, queuedWindows: 0 });
    } finally {
      await e.shutdown();
    }
  });

  it('load and shutdown: twice concurrently is one shutdown; load after shutdown is refused', async () => {
    const e = new NativeEngine({ kind: 'null', threads: 2 }, noop);
    const loading = e.load();
    await expect(e.load()).rejects.toThrow(/loading/);
    await loading;
    await expect(e.load()).rejects.toThrow(/already loaded/);
    const id = e.openStream();
    const inFlight = e.submit([{ stream: id, start: 0, pcm: new Int16Array(1600), flush: false }]);
    await Promise.all([e.shutdown(), e.shutdown()]);
    const [r] = await inFlight;
    expect(r!.error === null || r!.error.code === 'ENGINE_SHUTDOWN').toBe(true);
    let err: unknown;
    try {
      e.submit([{ stream: id, start: 1600, pcm: new Int16Array(1), flush: false }]);
    } catch (x) {
      err = x;
    }
    expect((err as { code?: string }).code).toBe('ENGINE_SHUTDOWN');
    expect(() => e.openStream()).toThrow(/shut down/);
    const never = new NativeEngine({ kind: 'null' }, noop);
    await never.shutdown();
    await expect(never.load()).rejects.toThrow(/shut down/);
  });

  it('engines dropped with batches in flight stay alive until the batches settle (collected after)', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      const e = await nullEngine();
      const id = e.openStream();
      pending.push(e.submit([{ stream: id, start: 0, pcm: new Int16Array(16_000), flush: true }]));
      // No reference to e is kept past this iteration.
    }
    gc();
    const results = (await Promise.all(pending)) as { consumed: number; flushed: boolean }[][];
    for (const [r] of results) expect(r).toMatchObject({ consumed: 16_000, flushed: true });
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
  });
});
