/**
 * `npm run bench:moonshine`: the Moonshine engine, measured side by side.
 *   - model: load time, RSS growth, for tiny and base
 *   - runtime: ONNX Runtime's C API (the addon) vs onnxruntime-node's JS API,
 *     the same greedy decode of tiny on the same library, interleaved: ms per
 *     decoder step and end-to-end real-time factor on the LibriVox clips
 *   - batching: encoder and decoder ms per row at batch 1, 2, 4, 8 (rows of
 *     equal length), and whether each row keeps its batch-1 tokens
 *   - threads: two windows at once on one ORT thread each, vs one at a time
 *     on two ORT threads (what workers vs intra-op threads trade)
 *   - engine: real-time factor and CPU per audio second, streaming
 *   - BENCH_ONLY=onset: the first text each model gives as a LibriVox clip's
 *     speech grows, 100 ms at a time (what bounds the first partial)
 *   - BENCH_ONLY=boundaries: WER as the pre-roll and the final's tail move,
 *     and the upstream runtime with its own VAD on the same audio (when
 *     `scripts/setup.sh --test` installed it into build/pyref)
 *   - BENCH_ONLY=engines adds the engines table of `npm run bench`
 * BENCH_QUICK=1 for a short run. Raw results: build/bench/moonshine.json.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

import { readWav, wavToInt16 } from '../src/audio/wav.js';
import { loadConfig } from '../src/config/load.js';
import type { NativeMoonshine } from '../src/engine/addon.js';
import { checkMoonshineModel, createMoonshineEngine, loadMoonshineModel, onnxRuntimeLibrary } from '../src/engine/moonshine.js';
import { transcribePcm } from '../src/scheduler/transcribe.js';
import { fliteSession, librivoxClips } from '../eval/corpus.js';
import { STORY } from '../eval/texts.js';
import { wer, type WerResult } from '../eval/wer.js';
import { packageRoot } from '../src/util/paths.js';
import { accuracy, speechBounds } from './lib/engines.js';
import { percentile } from './lib/measure.js';

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
const med = (xs: number[]) => percentile(xs, 50);
const config = loadConfig({ ignoreEnv: true });
const clips = librivoxClips();
const clipPcm = clips.map((c) => wavToInt16(readWav(c.file)));
const clipF32 = clipPcm.map((p) => Float32Array.from(p, (v) => v / 32768));
const audioSeconds = clipF32.reduce((n, a) => n + a.length, 0) / RATE;
const MODELS = ['tiny', 'base'] as const;
const modelsDir = config.engine.moonshine.modelsDir;

async function sectionModel(): Promise<Record<'tiny' | 'base', NativeMoonshine>> {
  console.log('\nmodel');
  const out = {} as Record<'tiny' | 'base', NativeMoonshine>;
  for (const model of MODELS) {
    const r0 = rssMb();
    const t0 = performance.now();
    const m = await loadMoonshineModel({ model, modelsDir });
    const ms = performance.now() - t0;
    // One run, so the arena and kernels are in the figure too.
    await m.transcribe([clipF32[0]!]);
    const info = m.info();
    row('model', `${model}: load (${model === 'base' ? 'through ONNX, constant folding' : 'ORT format as shipped'})`, `${ms.toFixed(0)} ms`);
    row('model', `${model}: files / RSS growth after load and one run`, `${(info.fileBytes / 2 ** 20).toFixed(0)} MiB / ${(rssMb() - r0).toFixed(0)} MB`);
    out[model] = m;
  }
  return out;
}

// ------------------------------------------------------------------ C vs JS

interface OrtTensor {
  dims: readonly number[];
  data: Float32Array | BigInt64Array;
}
interface OrtSession {
  inputNames: readonly string[];
  outputNames: readonly string[];
  run(feeds: Record<string, unknown>, fetches?: string[]): Promise<Record<string, OrtTensor>>;
}
interface OrtModule {
  InferenceSession: { create(path: string, o: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: string, data: unknown, dims: number[]) => OrtTensor;
}

/** Tiny's greedy decode through onnxruntime-node's JS API (the same loop as native/src/moonshine/model.cc). */
async function jsTranscriber(dir: string) {
  const require = createRequire(import.meta.url);
  const ort = require(require.resolve('onnxruntime-node', { paths: [packageRoot()] })) as OrtModule;
  const opts = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };
  const enc = await ort.InferenceSession.create(path.join(dir, 'encoder_model.ort'), opts);
  const dec = await ort.InferenceSession.create(path.join(dir, 'decoder_model_merged.ort'), opts);
  const pastNames = dec.inputNames.filter((n) => n.startsWith('past_key_values.'));
  const stepOutputs = dec.outputNames.filter((n) => n === 'logits' || n.includes('.decoder.'));
  const argmaxLast = (t: OrtTensor) => {
    const [, S, V] = t.dims as [number, number, number];
    const d = t.data as Float32Array;
    const off = (S - 1) * V;
    let best = 0;
    for (let v = 1; v < V; v++) if (d[off + v]! > d[off + best]!) best = v;
    return best;
  };
  return async (audio: Float32Array) => {
    const T = audio.length;
    const t0 = performance.now();
    const mask = new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]);
    const e = await enc.run({ input_values: new ort.Tensor('float32', audio, [1, T]), attention_mask: mask });
    const encodeMs = performance.now() - t0;
    const t1 = performance.now();
    const feeds: Record<string, unknown> = { encoder_attention_mask: mask, encoder_hidden_states: e.last_hidden_state };
    for (const n of pastNames) feeds[n] = new ort.Tensor('float32', new Float32Array(0), [1, 8, 0, 36]);
    feeds.use_cache_branch = new ort.Tensor('bool', [false], [1]);
    feeds.input_ids = new ort.Tensor('int64', BigInt64Array.from([1n]), [1, 1]);
    let out = await dec.run(feeds);
    const encKv: Record<string, OrtTensor> = {};
    for (const n of pastNames) if (n.includes('.encoder.')) encKv[n] = out[n.replace('past_key_values.', 'present.')]!;
    const tokens: number[] = [];
    const maxLen = Math.ceil((T / RATE) * 6.5);
    let steps = 1;
    for (;;) {
      const tok = argmaxLast(out.logits!);
      tokens.push(tok);
      if (tok === 2 || tokens.length >= maxLen) break;
      for (const n of pastNames) feeds[n] = n.includes('.encoder.') ? encKv[n] : out[n.replace('past_key_values.', 'present.')];
      feeds.use_cache_branch = new ort.Tensor('bool', [true], [1]);
      feeds.input_ids = new ort.Tensor('int64', BigInt64Array.from([BigInt(tok)]), [1, 1]);
      const r = await dec.run(feeds, stepOutputs);
      // onnxruntime-node 1.22.0 keys a fetch subset's results by the session's
      // output order, with the values in fetch order: name them by position.
      const vals = Object.values(r);
      const named: Record<string, OrtTensor> = {};
      stepOutputs.forEach((n, i) => (named[n] = vals[i]!));
      out = named;
      steps++;
    }
    return { tokens, steps, encodeMs, decodeMs: performance.now() - t1 };
  };
}

async function sectionRuntime(models: Record<'tiny' | 'base', NativeMoonshine>) {
  console.log('\nruntime: ONNX Runtime C API (addon) vs onnxruntime-node JS API, tiny, 1 thread, interleaved');
  const js = await jsTranscriber(checkMoonshineModel({ model: 'tiny', modelsDir }));
  const reps = QUICK ? 1 : 3;
  const c: { step: number[]; total: number } = { step: [], total: 0 };
  const j: { step: number[]; total: number } = { step: [], total: 0 };
  let same = true;
  const cTotals: number[] = [];
  const jTotals: number[] = [];
  for (let r = 0; r < reps; r++) {
    let ct = 0;
    let jt = 0;
    for (const a of clipF32) {
      let t = performance.now();
      const [x] = await models.tiny.transcribe([a]);
      ct += performance.now() - t;
      c.step.push(x!.decodeMs / x!.steps);
      t = performance.now();
      const y = await js(a);
      jt += performance.now() - t;
      j.step.push(y.decodeMs / y.steps);
      same &&= JSON.stringify(y.tokens) === JSON.stringify(x!.tokens);
    }
    cTotals.push(ct);
    jTotals.push(jt);
  }
  const cs = med(c.step);
  const jsStep = med(j.step);
  row('runtime', 'decoder step (median over clips; C API / JS API)', `${cs.toFixed(2)} / ${jsStep.toFixed(2)} ms (JS +${(jsStep - cs).toFixed(2)} ms, +${((jsStep / cs - 1) * 100).toFixed(0)}%)`);
  row('runtime', `real-time factor, LibriVox clips whole (${audioSeconds.toFixed(1)} s; C API / JS API)`, `${(med(cTotals) / 1000 / audioSeconds).toFixed(4)} / ${(med(jTotals) / 1000 / audioSeconds).toFixed(4)}`);
  row('runtime', 'same tokens through both APIs', same ? 'yes' : '**no**');
  raw.runtime = { cStep: c.step, jsStep: j.step, cTotals, jTotals, same };
}

// ------------------------------------------------------------------ batching and threads

async function sectionBatching(models: Record<'tiny' | 'base', NativeMoonshine>) {
  console.log('\nbatching: rows of equal length (3 s of different clips), 1 thread');
  const n = 3 * RATE;
  const cut = (a: Float32Array, from: number) => {
    const r = new Float32Array(n); // silence where a clip is shorter
    r.set(a.subarray(from, from + n));
    return r;
  };
  // Eight different rows: the five clips, then three of them from 0.5 s in.
  const base8 = Array.from({ length: 8 }, (_, i) => (i < 5 ? cut(clipF32[i]!, 0) : cut(clipF32[i - 5]!, RATE / 2)));
  const reps = QUICK ? 1 : 3;
  const out: Record<string, unknown> = {};
  for (const model of MODELS) {
    const m = models[model];
    const singles: number[][] = [];
    for (const r of base8) singles.push((await m.transcribe([r]))[0]!.tokens);
    const enc: Record<number, number[]> = {};
    const dec: Record<number, number[]> = {};
    const same: Record<number, number> = {};
    for (let k = 0; k < reps; k++) {
      for (const B of [1, 2, 4, 8]) {
        const rs = await m.transcribe(base8.slice(0, B));
        (enc[B] ??= []).push(rs[0]!.encodeMs / B);
        (dec[B] ??= []).push(rs[0]!.decodeMs / B);
        same[B] = rs.filter((x, i) => JSON.stringify(x.tokens) === JSON.stringify(singles[i])).length;
      }
    }
    for (const B of [1, 2, 4, 8]) {
      row('batching', `${model} batch ${B}: encoder / decoder ms per row`, `${med(enc[B]!).toFixed(1)} / ${med(dec[B]!).toFixed(1)} ms (${(med(enc[1]!) / med(enc[B]!)).toFixed(2)}× / ${(med(dec[1]!) / med(dec[B]!)).toFixed(2)}× batch 1); rows with their batch-1 tokens ${same[B]}/${B}`);
    }
    out[model] = { enc, dec, same };
  }
  raw.batching = out;
}

async function sectionThreads() {
  console.log(`\nthreads: LibriVox clips ×2, two at once on 1 ORT thread each vs one at a time on ${CORES} ORT threads`);
  const out: Record<string, unknown> = {};
  for (const model of MODELS) {
    const one = await loadMoonshineModel({ model, modelsDir }, { intraOpThreads: 1 });
    const two = await loadMoonshineModel({ model, modelsDir }, { intraOpThreads: CORES });
    await two.transcribe([clipF32[0]!]);
    await one.transcribe([clipF32[0]!]);
    const work = QUICK ? clipF32.slice(0, 2) : clipF32;
    const reps = QUICK ? 1 : 2;
    const par: number[] = [];
    const seq: number[] = [];
    const lat1: number[] = [];
    const lat2: number[] = [];
    for (let r = 0; r < reps; r++) {
      let t = performance.now();
      await Promise.all([0, 1].map(async () => {
        for (const a of work) await one.transcribe([a]);
      }));
      par.push(performance.now() - t);
      t = performance.now();
      for (let k = 0; k < 2; k++) for (const a of work) await two.transcribe([a]);
      seq.push(performance.now() - t);
      for (const a of work) {
        let s = performance.now();
        await one.transcribe([a]);
        lat1.push(performance.now() - s);
        s = performance.now();
        await two.transcribe([a]);
        lat2.push(performance.now() - s);
      }
    }
    const secs = (2 * work.reduce((n, a) => n + a.length, 0)) / RATE;
    row('threads', `${model}: throughput, 2 × 1 thread at once / 1 × ${CORES} threads`, `${(secs / (med(par) / 1000)).toFixed(1)} / ${(secs / (med(seq) / 1000)).toFixed(1)} audio s per s`);
    row('threads', `${model}: one clip alone, 1 / ${CORES} ORT threads`, `${med(lat1).toFixed(0)} / ${med(lat2).toFixed(0)} ms`);
    out[model] = { par, seq, lat1, lat2, secs };
  }
  raw.threads = out;
}

// ------------------------------------------------------------------ engine

async function sectionEngine() {
  console.log('\nstreaming engine: speed (as fast as it goes, 100 ms windows)');
  const voices = QUICK ? (['slt'] as const) : (['slt', 'awb', 'rms'] as const);
  const stories = voices.map((voice) => wavToInt16(readWav(fliteSession(STORY, { voice, gapSeconds: 0.8 }).file)));
  const all = [...clipPcm, ...stories];
  const secs = all.reduce((n, p) => n + p.length, 0) / RATE;
  const out: Record<string, unknown> = {};
  for (const model of MODELS) {
    const e = await createMoonshineEngine({ ...config.engine, threads: CORES, moonshine: { ...config.engine.moonshine, model } });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (const p of all) await transcribePcm(e, p, { windowSamples: 1600 });
    const wall = (performance.now() - t0) / 1000;
    const cu = process.cpuUsage(c0);
    const decoded = e.stats().samplesDecoded / RATE;
    await e.shutdown();
    const cpu = (cu.user + cu.system) / 1e6;
    row('engine', `${model}: ${secs.toFixed(0)} s of speech, one stream`, `RTF ${(wall / secs).toFixed(3)} (${(secs / wall).toFixed(1)}× real time); ${(cpu / secs).toFixed(3)} CPU s per audio s; ${(decoded / secs).toFixed(1)} s decoded per audio s (partials, speculative and final decodes)`);
    out[model] = { wall, cpu, secs, decoded };
  }
  raw.engine = out;
}

// ------------------------------------------------------------------ onset and boundaries

/**
 * What bounds the first partial: each clip decoded from `prerollMs` before
 * its speech onset (energy, as the engines section measures latency from)
 * to 100 ms, 200 ms, … after it, until the model gives any text. The
 * engine's noise guard then still judges that text by its mean token
 * probability (docs/moonshine.md, Guards).
 */
async function sectionOnset(models: Record<'tiny' | 'base', NativeMoonshine>) {
  console.log('\nonset: the first decode with any text (before the noise guard) as each LibriVox clip grows past its speech onset, 100 ms at a time');
  const preroll = config.engine.vad.prerollMs / 1000;
  const out: Record<string, unknown[]> = {};
  for (const model of MODELS) {
    out[model] = [];
    for (const [i, pcm] of clipF32.entries()) {
      const onset = speechBounds(clipPcm[i]!)[0];
      const from = Math.max(0, Math.round((onset - preroll) * RATE));
      const eos: number[] = [];
      let first: { ms: number; text: string; meanProb: number } | null = null;
      for (let ms = 100; ms <= 1500 && !first; ms += 100) {
        const [t] = await models[model].transcribe([pcm.subarray(from, Math.min(pcm.length, Math.round((onset + ms / 1000) * RATE)))]);
        if (t!.text.trim()) first = { ms, text: t!.text, meanProb: t!.meanProb };
        else eos.push(t!.firstEosProb);
      }
      const name = path.basename(clips[i]!.file, '.wav').replace(/^.*-/, '');
      const before = eos.length ? `; EOS at once before it (p ${Math.min(...eos).toFixed(2)}-${Math.max(...eos).toFixed(2)})` : '';
      row('onset', `${model}, clip ${name} ("${clips[i]!.text.split(' ').slice(0, 4).join(' ')}…")`, first ? `+${first.ms} ms: "${first.text}" (mean token p ${first.meanProb.toFixed(2)})${before}` : `no text by +1500 ms${before}`);
      out[model]!.push({ clip: name, onset, first, eos });
    }
  }
  raw.onset = out;
}

const pct = (r: WerResult) => `${r.wer.toFixed(1)}% (${r.errors})`;

/**
 * How much of a WER figure is where the utterance's edges fall: the engine
 * with the pre-roll and the final's tail moved in 100 ms steps, then the
 * upstream runtime with its own VAD and segmentation on the same files.
 */
async function sectionBoundaries() {
  console.log('\nboundaries: WER as the utterance edges move (flite story in three voices; LibriVox)');
  const c = config.engine;
  const voices = ['slt', 'awb', 'rms'] as const;
  const variants: { name: string; vad: Partial<typeof c.vad>; moonshine: Partial<typeof c.moonshine> }[] = [
    { name: `defaults (prerollMs ${c.vad.prerollMs}, tailMs ${c.moonshine.tailMs})`, vad: {}, moonshine: {} },
    ...[100, 200, 400, 500].filter((ms) => ms !== c.vad.prerollMs).map((ms) => ({ name: `engine.vad.prerollMs ${ms}`, vad: { prerollMs: ms }, moonshine: {} })),
    ...[100, 200, 300, 400, 500].filter((ms) => ms !== c.moonshine.tailMs).map((ms) => ({ name: `engine.moonshine.tailMs ${ms}`, vad: {}, moonshine: { tailMs: ms } })),
  ];
  const python = path.join(packageRoot(), 'build', 'pyref', 'bin', 'python');
  const stories = voices.map((voice) => fliteSession(STORY, { voice, gapSeconds: 0.8 }));
  const out: Record<string, unknown> = {};
  for (const model of MODELS) {
    const runs: Record<string, { flite: WerResult; libri: WerResult }> = {};
    for (const v of variants) {
      const e = await createMoonshineEngine({ ...c, threads: CORES, vad: { ...c.vad, ...v.vad }, moonshine: { ...c.moonshine, ...v.moonshine, model } });
      const acc = await accuracy(e, voices);
      await e.shutdown();
      runs[v.name] = acc;
      row('boundaries', `${model}, ${v.name}: WER flite (errors) / LibriVox`, `${pct(acc.flite)} / ${pct(acc.libri)}`);
    }
    if (existsSync(python)) {
      const input = JSON.stringify({ model, modelDir: checkMoonshineModel({ model, modelsDir }), files: [...stories.map((s) => s.file), ...clips.map((k) => k.file)] });
      const texts = JSON.parse(execFileSync(python, [path.join(packageRoot(), 'bench', 'moonshine_upstream.py')], { input, encoding: 'utf8', maxBuffer: 1 << 24 })) as string[];
      const flite = wer(stories.map((s, i) => [s.text, texts[i]!]));
      const libri = wer(clips.map((k, i) => [k.text, texts[stories.length + i]!]));
      runs.upstream = { flite, libri };
      row('boundaries', `${model}, upstream runtime (moonshine-voice 0.1.0, its own VAD): WER flite (errors) / LibriVox`, `${pct(flite)} / ${pct(libri)}`);
    } else {
      row('boundaries', `${model}, upstream runtime`, 'not installed (scripts/setup.sh --test installs it into build/pyref)');
    }
    out[model] = runs;
  }
  raw.boundaries = out;
}

async function main() {
  const started = Date.now();
  console.log(`captiongate moonshine bench (${QUICK ? 'quick' : 'full'}) on ${CORES} cores, Node ${process.version}, onnxruntime ${onnxRuntimeLibrary().version}`);
  const only = new Set((process.env.BENCH_ONLY ?? 'model,runtime,batching,threads,engine').split(','));
  const models = await sectionModel();
  if (only.has('runtime')) await sectionRuntime(models);
  if (only.has('batching')) await sectionBatching(models);
  if (only.has('threads')) await sectionThreads();
  if (only.has('engine')) await sectionEngine();
  if (only.has('onset')) await sectionOnset(models);
  if (only.has('boundaries')) await sectionBoundaries();
  if (only.has('engines')) {
    const { sectionEngines } = await import('./lib/engines-section.js');
    await sectionEngines(row, raw, { quick: QUICK, cores: CORES });
  }
  const minutes = (Date.now() - started) / 60000;
  console.log(`\nResults (${QUICK ? 'BENCH_QUICK=1 ' : ''}npm run bench:moonshine, ${minutes.toFixed(1)} min)\n`);
  console.log('| section | metric | value |');
  console.log('|---|---|---|');
  for (const r of rows) console.log(`| ${r.section} | ${r.metric} | ${r.value} |`);
  const dir = path.join(packageRoot(), 'build', 'bench');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, QUICK ? 'moonshine-quick.json' : 'moonshine.json'), JSON.stringify({ date: new Date().toISOString(), machine: { cores: CORES, node: process.version, cpu: os.cpus()[0]?.model }, minutes, rows, raw }, null, 2));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
