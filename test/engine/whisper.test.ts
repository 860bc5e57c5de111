/**
 * The Whisper-base backend against a reference: CTranslate2 (the runtime
 * this model file was made for) on the same weights and audio, and
 * faster-whisper's numpy log-mel as an independent front end. Then the
 * streaming engine: accuracy next to PocketSphinx, batching, the silence
 * guard and the device self-test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { loadAddon, type NativeWhisper } from '../../src/engine/addon.js';
import { createPocketSphinxEngine } from '../../src/engine/pocketsphinx.js';
import { transcribePcm } from '../../src/scheduler/transcribe.js';
import type { Engine, Hypothesis, Utterance } from '../../src/engine/types.js';
import { checkWhisperModel, createWhisperEngine, loadWhisperModel } from '../../src/engine/whisper.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { testConfig } from '../helpers/config.js';
import { cosine, whisperReference, type ReferenceResult } from '../helpers/whisper-reference.js';

const clips = librivoxClips();
const pcm16 = clips.map((c) => wavToInt16(readWav(c.file)));
const pcmF32 = pcm16.map((p) => Float32Array.from(p, (v) => v / 32768));
const joined = (fs: readonly { text: string }[]) => fs.map((f) => f.text).filter(Boolean).join(' ');
const FRAMES = 3000;

function whisperOptions(over: Partial<ReturnType<typeof testConfig>['engine']['whisper']> = {}, vad = true) {
  const c = testConfig().engine;
  return { ...c, whisper: { ...c.whisper, ...over }, vad: { ...c.vad, enabled: vad } };
}

describe('Whisper base: the model against CTranslate2', () => {
  let model: NativeWhisper;
  let mels: Float32Array[];
  let ref: ReferenceResult[];

  beforeAll(async () => {
    model = await loadWhisperModel(testConfig().engine.whisper);
    mels = [];
    for (const a of pcmF32) mels.push(await model.logMel(a, FRAMES));
    ref = whisperReference(checkWhisperModel(testConfig().engine.whisper), pcmF32.map((audio, i) => ({ audio, mel: mels[i]! })));
  }, 300_000);

  it('computes the log-mel of faster-whisper\'s independent numpy front end', () => {
    for (let i = 0; i < clips.length; i++) {
      const a = mels[i]!;
      const b = ref[i]!.mel;
      expect(a.length).toBe(80 * FRAMES);
      let max = 0;
      for (let k = 0; k < a.length; k++) max = Math.max(max, Math.abs(a[k]! - b[k]!));
      // Values span about [-1, 2]; float32 DFT vs numpy's float64 FFT.
      expect(max).toBeLessThan(1e-4);
    }
  });

  it('encodes like CTranslate2: cosine similarity >= 0.999 on every clip', async () => {
    for (let i = 0; i < clips.length; i++) {
      const enc = await model.encode([mels[i]!], FRAMES);
      const c = cosine(enc, ref[i]!.encoder);
      console.log(`encoder cosine ${clips[i]!.id}: ${c.toFixed(7)}`);
      expect(c).toBeGreaterThanOrEqual(0.999);
    }
  });

  it('decodes the same tokens as CTranslate2 greedy (timestamps on), and the same no-speech probability', async () => {
    for (let i = 0; i < clips.length; i++) {
      const enc = await model.encode([mels[i]!], FRAMES);
      const [r] = await model.decode(enc, 1, FRAMES / 2);
      expect(r!.tokens).toEqual(ref[i]!.tokens);
      expect(r!.noSpeechProb).toBeCloseTo(ref[i]!.noSpeechProb, 3);
    }
  });

  it('runs B windows of different sessions as one batch with the results of B single runs', async () => {
    const frames = 1500;
    const batchMels: Float32Array[] = [];
    for (const a of pcmF32.slice(0, 3)) batchMels.push(await model.logMel(a, frames));
    const batched = await model.encode(batchMels, frames);
    const per = 750 * 512;
    expect(batched.length).toBe(3 * per);
    const results = await model.decode(batched, 3, 750);
    for (let b = 0; b < 3; b++) {
      const single = await model.encode([batchMels[b]!], frames);
      expect(cosine(batched.subarray(b * per, (b + 1) * per), single)).toBeGreaterThan(0.99999);
      const [s] = await model.decode(single, 1, 750);
      expect(results[b]!.tokens).toEqual(s!.tokens);
    }
  });

  it('cuts repetition loops but keeps short repeats that are speech', () => {
    const { whisperRepeatedTail } = loadAddon();
    const loop = [1, 2, 3, 4, 5, ...Array.from({ length: 6 }, () => [10, 11, 12]).flat()];
    expect(whisperRepeatedTail(loop, 4)).toBe(15); // five of the six copies go
    expect(whisperRepeatedTail([7, 8, 9, 9, 9, 9], 4)).toBe(0); // "no, no, no, no"
    expect(whisperRepeatedTail(Array.from({ length: 16 }, () => 9), 4)).toBe(15);
    expect(whisperRepeatedTail([1, 2, 3, 4, 5, 6, 7, 8], 4)).toBe(0);
  });
});

describe('Whisper base: streaming engine', () => {
  let engine: Engine;

  beforeAll(async () => {
    engine = await createWhisperEngine(whisperOptions());
  }, 120_000);
  afterAll(async () => {
    await engine?.shutdown();
  });

  it('reads the LibriVox clips far better than PocketSphinx, streaming, with partials and word times', async () => {
    const c = testConfig().engine;
    const ps = await createPocketSphinxEngine({ ...c, decoders: 1, threads: 1 });
    const whisperFinals: Utterance[][] = [];
    const psFinals: Utterance[][] = [];
    const partials: Hypothesis[][] = [];
    try {
      // Five live sessions at once, paced like real time: their jobs share
      // encoder batches, and partials come while the audio flows.
      const runs = await Promise.all(
        pcm16.map(async (p) => {
          const seen: Hypothesis[] = [];
          const r = await transcribePcm(engine, p, { windowSamples: 1600, realtime: true, onPartial: (h) => seen.push(h) });
          return { finals: r.finals, seen };
        }),
      );
      for (const r of runs) {
        whisperFinals.push(r.finals);
        partials.push(r.seen);
      }
      for (const p of pcm16) psFinals.push((await transcribePcm(ps, p, { windowSamples: 1600 })).finals);
    } finally {
      await ps.shutdown();
    }
    const w = wer(clips.map((cl, i) => [cl.text, joined(whisperFinals[i]!)]));
    const p = wer(clips.map((cl, i) => [cl.text, joined(psFinals[i]!)]));
    console.log(`LibriVox WER (${w.words} words): whisper-base ${w.wer.toFixed(1)}%, pocketsphinx ${p.wer.toFixed(1)}%`);
    expect(w.wer).toBeLessThan(10);
    expect(w.wer).toBeLessThan(p.wer / 2);
    for (let i = 0; i < clips.length; i++) {
      const seconds = pcm16[i]!.length / 16000;
      // Clips of a few seconds get live partials before the final.
      if (seconds > 2.5) expect(partials[i]!.some((h) => h.text !== '')).toBe(true);
      for (const f of whisperFinals[i]!) {
        expect(f.start).toBeGreaterThanOrEqual(0);
        expect(f.end).toBeLessThanOrEqual(seconds + 0.01);
        let t = f.start;
        for (const wd of f.words) {
          expect(wd.start).toBeGreaterThanOrEqual(t - 1e-6);
          expect(wd.end).toBeGreaterThanOrEqual(wd.start);
          expect(wd.end).toBeLessThanOrEqual(f.end + 0.011);
          t = wd.start;
        }
        expect(f.words.map((x) => x.word).join(' ')).toBe(f.text);
      }
    }
  });

  it('gives the same text streamed as decoding each clip whole (within 0.5 WER points)', async () => {
    const model = await loadWhisperModel(testConfig().engine.whisper);
    const whole = await model.transcribe(pcmF32, FRAMES);
    const streamed: string[] = [];
    for (const p of pcm16) streamed.push(joined((await transcribePcm(engine, p, { windowSamples: 3200 })).finals));
    const ws = wer(clips.map((cl, i) => [cl.text, streamed[i]!]));
    const ww = wer(clips.map((cl, i) => [cl.text, whole[i]!.text]));
    console.log(`LibriVox WER streamed ${ws.wer.toFixed(1)}% vs whole-clip ${ww.wer.toFixed(1)}%`);
    expect(ws.wer).toBeLessThanOrEqual(ww.wer + 0.5);
  });

  it('captions nothing from 60 s of silence or of noise', async () => {
    const n = 60 * 16000;
    const silence = new Int16Array(n);
    const noise = new Int16Array(n);
    let s = 42;
    for (let i = 0; i < n; i++) {
      // Bursts of white noise (about -16 dBFS RMS) with a hum: on for 1.5 s,
      // off for 1 s, so the VAD opens utterances and Whisper must decode them.
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      const on = i % 40000 < 24000 ? 1 : 0.02;
      noise[i] = Math.round(on * (((s / 0x7fffffff) * 2 - 1) * 8000 + 1500 * Math.sin((2 * Math.PI * 50 * i) / 16000)));
    }
    for (const [name, pcm] of [['silence', silence], ['noise', noise]] as const) {
      const texts: string[] = [];
      const before = engine.stats().samplesDecoded;
      const r = await transcribePcm(engine, pcm, { windowSamples: 16000, onPartial: (h) => h.text && texts.push(h.text) });
      const decoded = engine.stats().samplesDecoded - before;
      console.log(`${name}: ${(decoded / 16000).toFixed(1)} s decoded by Whisper`);
      // The noise reaches the model (the VAD opens on it), so the guard is exercised.
      if (name === 'noise') expect(decoded).toBeGreaterThan(10 * 16000);
      // Every utterance the VAD opened still ends with its final, empty here
      // (the silence rule), so a partial already shown would be closed.
      if (name === 'noise') expect(r.finals.length).toBeGreaterThan(0);
      for (const f of r.finals) {
        expect(f.end).toBeGreaterThanOrEqual(f.start);
        if (f.text === '') expect(f.words).toEqual([]);
      }
      const finals = r.finals.filter((f) => f.text !== '');
      console.log(`${name}: ${finals.length} finals, ${texts.length} non-empty partials ${JSON.stringify([...finals.map((f) => f.text), ...texts].slice(0, 5))}`);
      expect(finals).toEqual([]);
      expect(texts).toEqual([]);
    }
  });

  it('gives no text, not even punctuation, from 30 s of white noise at ±1000', async () => {
    const pcm = new Int16Array(30 * 16000);
    let s = 7;
    for (let i = 0; i < pcm.length; i++) {
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      pcm[i] = Math.round(((s / 0x7fffffff) * 2 - 1) * 1000);
    }
    const r = await transcribePcm(engine, pcm, { windowSamples: 16000 });
    expect(r.finals.filter((f) => f.text !== '')).toEqual([]);
  });

  it('fails closed when the device disagrees with the CPU reference, and passes the same check on CPU', async () => {
    await expect(createWhisperEngine(whisperOptions({ device: 'perturbed' }))).rejects.toThrow(/self-test failed.*cosine similarity/);
    const checked = await createWhisperEngine(whisperOptions({ selfTest: true }));
    await checked.shutdown();
  });

  it('says how to install a missing model', async () => {
    await expect(createWhisperEngine(whisperOptions({ modelDir: '/nonexistent/whisper' }))).rejects.toThrow(
      /fetch-whisper-model\.mjs/,
    );
  });
});
