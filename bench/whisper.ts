/**
 * `npm run bench:whisper`: the Whisper-base backend, measured side by side.
 *   - model: load time, weight RAM, RSS
 *   - encoder: windows per second at batch 1, 2, 4, 8 (one run, interleaved),
 *     and the cost of a stock 30 s window vs the 15 s minimum context
 *   - decoder: ms per window at batch 1, 2, 4, 8
 *   - engine: real-time factor and CPU per audio second, streaming
 *   - accuracy: WER on LibriVox and flite speech, Whisper vs PocketSphinx,
 *     and the accuracy cost of shorter encoder windows
 *   - capacity: concurrent real-time sessions through the gateway on this
 *     machine with p95 final latency (after the end of speech) ≤ 2 s
 * BENCH_QUICK=1 for a short run. Raw results: build/bench/whisper.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { readWav, wavToInt16 } from '../src/audio/wav.js';
import { loadConfig } from '../src/config/load.js';
import { createPocketSphinxEngine } from '../src/engine/pocketsphinx.js';
import { transcribePcm } from '../src/scheduler/transcribe.js';
import type { Engine } from '../src/engine/types.js';
import { createWhisperEngine, loadWhisperModel } from '../src/engine/whisper.js';
import { fliteSession, librivoxClips } from '../eval/corpus.js';
import { STORY } from '../eval/texts.js';
import { wer } from '../eval/wer.js';
import { packageRoot } from '../src/util/paths.js';
import { percentile } from './lib/measure.js';
import { storyBench } from './lib/story.js';

const QUICK = process.env.BENCH_QUICK === '1';
const CORES = os.cpus().length;
const RATE = 16000;
const rows: { section: string; metric: string; value: string }[] = [];
const raw: Record<string, unknown> = {};
const row = (section: string, metric: string, value: string) => {
  rows.push({ section, metric, value });
  console.log(`  ${section} | ${metric}: ${value}`);
};
const rssMb = () => process.memoryUsage().rss / 2 ** 20;
const joined = (fs: readonly { text: string }[]) => fs.map((f) => f.text).filter(Boolean).join(' ');

const config = loadConfig({ ignoreEnv: true });
const clips = librivoxClips();
const clipPcm = clips.map((c) => wavToInt16(readWav(c.file)));
const clipF32 = clipPcm.map((p) => Float32Array.from(p, (v) => v / 32768));
const voices = QUICK ? (['slt'] as const) : (['slt', 'awb', 'rms'] as const);
const stories = voices.map((voice) => {
  const s = fliteSession(STORY, { voice, gapSeconds: 0.8 });
  return { voice, text: s.text, pcm: wavToInt16(readWav(s.file)) };
});

function whisperOptions(over: Partial<typeof config.engine.whisper> = {}) {
  return { ...config.engine, threads: CORES, whisper: { ...config.engine.whisper, ...over } };
}

async function sectionModel() {
  console.log('\nmodel');
  const r0 = rssMb();
  const t0 = performance.now();
  const m = await loadWhisperModel(config.engine.whisper, { threads: CORES });
  const ms = performance.now() - t0;
  const info = m.info();
  row('model', 'load (read, widen float16 → float32, check shapes)', `${ms.toFixed(0)} ms`);
  row('model', 'weights in RAM (encoder float32; decoder steps float16)', `${(info.weightBytes / 2 ** 20).toFixed(0)} MiB (file: 138 MiB float16)`);
  row('model', 'RSS growth on load', `${(rssMb() - r0).toFixed(0)} MB`);
  // The same model with the decoder's float16 step path off (all float32 BLAS), for comparison.
  process.env.CAPTIONGATE_WHISPER_F16 = '0';
  const m32 = await loadWhisperModel(config.engine.whisper, { threads: CORES });
  delete process.env.CAPTIONGATE_WHISPER_F16;
  return { m, m32 };
}

async function sectionEncoder({ m, m32 }: Awaited<ReturnType<typeof sectionModel>>) {
  console.log(`\nencoder and decoder (${CORES} BLAS threads)`);
  const frames = Math.round(config.engine.whisper.minContextSeconds * 100);
  const sizes = [1, 2, 4, 8];
  const reps = QUICK ? 1 : 3;
  const mels: Float32Array[] = [];
  for (let i = 0; i < 8; i++) mels.push(await m.logMel(clipF32[i % clipF32.length]!, frames));
  await m.encode([mels[0]!], frames); // warm up
  const enc: Record<number, number[]> = {};
  const dec: Record<number, number[]> = {};
  const dec32: Record<number, number[]> = {};
  let sameTokens = true;
  for (let r = 0; r < reps; r++) {
    for (const b of sizes) {
      let t = performance.now();
      const out = await m.encode(mels.slice(0, b), frames);
      (enc[b] ??= []).push(performance.now() - t);
      t = performance.now();
      const a = await m.decode(out, b, frames / 2);
      (dec[b] ??= []).push(performance.now() - t);
      t = performance.now();
      const c = await m32.decode(out, b, frames / 2);
      (dec32[b] ??= []).push(performance.now() - t);
      sameTokens &&= JSON.stringify(a.map((x) => x.tokens)) === JSON.stringify(c.map((x) => x.tokens));
    }
  }
  const med = (xs: number[]) => percentile(xs, 50);
  const wps = (b: number) => (b * 1000) / med(enc[b]!);
  for (const b of sizes) {
    row('encoder', `batch ${b} × ${frames / 100} s windows`, `${med(enc[b]!).toFixed(0)} ms → ${wps(b).toFixed(2)} windows/s (${(wps(b) / wps(1)).toFixed(2)}× batch 1)`);
  }
  for (const b of sizes) {
    row('decoder', `batch ${b}, greedy with KV cache`, `${(med(dec[b]!) / b).toFixed(0)} ms per window (${(med(dec[1]!) / (med(dec[b]!) / b)).toFixed(2)}× batch 1); all-float32 BLAS: ${(med(dec32[b]!) / b).toFixed(0)} ms (float16 step path ${(med(dec32[b]!) / med(dec[b]!)).toFixed(2)}× faster)`);
  }
  row('decoder', 'float16 step path gives the same tokens as float32 BLAS', sameTokens ? 'yes' : '**no**');
  // Stock Whisper pads every window to 30 s.
  const full = await m.logMel(clipF32[0]!, 3000);
  const t30: number[] = [];
  const tMin: number[] = [];
  for (let r = 0; r < reps; r++) {
    let t = performance.now();
    await m.encode([full], 3000);
    t30.push(performance.now() - t);
    t = performance.now();
    await m.encode([mels[0]!], frames);
    tMin.push(performance.now() - t);
  }
  row('encoder', `30 s window vs ${frames / 100} s window (batch 1)`, `${med(t30).toFixed(0)} vs ${med(tMin).toFixed(0)} ms (${(med(t30) / med(tMin)).toFixed(2)}×)`);
  raw.encoder = { frames, enc, dec, dec32, sameTokens, t30, tMin };
}

async function streamAll(engine: Engine, pcms: Int16Array[]) {
  const out: string[] = [];
  for (const p of pcms) out.push(joined((await transcribePcm(engine, p, { windowSamples: 1600 })).finals));
  return out;
}

async function sectionEngineAndAccuracy() {
  console.log('\nstreaming engine: speed and accuracy');
  const all = [...clipPcm, ...stories.map((s) => s.pcm)];
  const audioSeconds = all.reduce((n, p) => n + p.length, 0) / RATE;
  const score = (texts: string[]) => ({
    libri: wer(clips.map((c, i) => [c.text, texts[i]!])),
    flite: wer(stories.map((s, i) => [s.text, texts[clips.length + i]!])),
  });
  const whisper = await createWhisperEngine(whisperOptions());
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const wt = await streamAll(whisper, all);
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  await whisper.shutdown();
  const cpuS = (cpu.user + cpu.system) / 1e6;
  row('engine', `real-time factor, ${audioSeconds.toFixed(0)} s of speech streamed in 100 ms windows`, `${(wall / audioSeconds).toFixed(3)} (${(audioSeconds / wall).toFixed(1)}× real time; ${(cpuS / audioSeconds).toFixed(3)} CPU s per audio s)`);
  const ps = await createPocketSphinxEngine({ ...config.engine, decoders: 1, threads: 1 });
  const pt = await streamAll(ps, all);
  await ps.shutdown();
  const w = score(wt);
  const p = score(pt);
  row('accuracy', `WER LibriVox (${w.libri.words} words, real speech)`, `whisper-base ${w.libri.wer.toFixed(1)}% · pocketsphinx ${p.libri.wer.toFixed(1)}%`);
  row('accuracy', `WER flite story (${w.flite.words} words, voices ${voices.join(', ')})`, `whisper-base ${w.flite.wer.toFixed(1)}% · pocketsphinx ${p.flite.wer.toFixed(1)}%`);
  raw.accuracy = { whisper: w, pocketsphinx: p, rtf: wall / audioSeconds, cpuPerAudioSecond: cpuS / audioSeconds };
  // The accuracy cost of shorter encoder windows (finals' minimum context).
  const contexts = QUICK ? [30, 15] : [30, 15, 10, 5];
  const byContext: Record<number, { libri: number; flite: number; cpuPerAudio: number }> = {};
  for (const sec of contexts) {
    const e = await createWhisperEngine(whisperOptions({ minContextSeconds: sec }));
    const cc = process.cpuUsage();
    const t = score(await streamAll(e, all));
    const cu = process.cpuUsage(cc);
    await e.shutdown();
    byContext[sec] = { libri: t.libri.wer, flite: t.flite.wer, cpuPerAudio: (cu.user + cu.system) / 1e6 / audioSeconds };
    row('accuracy', `finals' minimum encoder window ${sec} s`, `WER LibriVox ${t.libri.wer.toFixed(1)}%, flite ${t.flite.wer.toFixed(1)}%; ${byContext[sec]!.cpuPerAudio.toFixed(3)} CPU s per audio s`);
  }
  raw.contexts = byContext;
}

async function sectionCapacity() {
  console.log('\ncapacity through the gateway (real-time flite story sessions, engine.kind whisper)');
  const { storyLoad } = storyBench(100);
  const seconds = QUICK ? 30 : 90;
  const steps = QUICK ? [2] : [1, 2, 3, 4, 5, 6, 8];
  let best = 0;
  const runs: unknown[] = [];
  for (const n of steps) {
    const r = await storyLoad(n, seconds, { CAPTIONGATE_ENGINE_KIND: 'whisper', CAPTIONGATE_ENGINE_THREADS: String(CORES) });
    const p95 = percentile(r.a.finalLat, 95);
    const fp = percentile(r.a.firstPartialLat, 50);
    runs.push({ n, p95FinalMs: p95, firstPartialP50Ms: fp, cpu: r.cpu, dropped: r.dropped, warnings: r.warnings, wer: r.a.wer.wer });
    console.log(`    N=${n}: p95 final ${p95.toFixed(0)} ms after the end of speech, first partial p50 ${fp.toFixed(0)} ms, CPU ${(r.cpu * 100).toFixed(0)}%, dropped ${r.dropped}, WER ${r.a.wer.wer.toFixed(1)}%`);
    if (!(p95 <= 2000) || r.dropped !== 0 || r.load.refused !== 0) break;
    best = n;
  }
  row('capacity', `concurrent real-time sessions on ${CORES} cores with p95 final ≤ 2 s after the end of speech`, `${best}${QUICK ? ' (quick: one step)' : ''}`);
  raw.capacity = { runs, best };
}

async function main() {
  const started = Date.now();
  console.log(`captiongate whisper bench (${QUICK ? 'quick' : 'full'}) on ${CORES} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
  const only = new Set((process.env.BENCH_ONLY ?? 'model,encoder,engine,capacity').split(','));
  if (only.has('model') || only.has('encoder')) {
    const models = await sectionModel();
    if (only.has('encoder')) await sectionEncoder(models);
  }
  if (only.has('engine')) await sectionEngineAndAccuracy();
  if (only.has('capacity')) await sectionCapacity();
  const minutes = (Date.now() - started) / 60000;
  console.log(`\nResults (${QUICK ? 'BENCH_QUICK=1 ' : ''}npm run bench:whisper, ${minutes.toFixed(1)} min)\n`);
  console.log('| section | metric | value |');
  console.log('|---|---|---|');
  for (const r of rows) console.log(`| ${r.section} | ${r.metric} | ${r.value} |`);
  const dir = path.join(packageRoot(), 'build', 'bench');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, QUICK ? 'whisper-quick.json' : 'whisper.json'), JSON.stringify({ date: new Date().toISOString(), machine: { cores: CORES, node: process.version, cpu: os.cpus()[0]?.model }, minutes, rows, raw }, null, 2));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
