/**
 * Every engine side by side (bench/run.ts section "engines", and
 * bench:moonshine): accuracy, capacity on continuous real speech and on
 * flite speech, latency alone, and model memory. The gateway runs as its
 * own process with the engine chosen by environment (CAPTIONGATE_ENGINE_*),
 * the load generators are separate processes, as in the rest of the suite.
 *
 * Continuous real speech: the five LibriVox clips back to back, each
 * followed by 1 s of silence (enough for the 500 ms endpoint), looped.
 * Sessions all start at once (no ramp); each starts at its own offset into
 * the loop, spread evenly, so speech overlaps as independent talkers' does.
 * Onsets and offsets of each clip's speech are read from its energy (6 dB
 * over the clip's noise floor, its 10th-percentile 10 ms frame).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { loadConfig } from '../../src/config/load.js';
import { createMoonshineEngine } from '../../src/engine/moonshine.js';
import { createPocketSphinxEngine } from '../../src/engine/pocketsphinx.js';
import type { Engine } from '../../src/engine/types.js';
import { createWhisperEngine } from '../../src/engine/whisper.js';
import { transcribePcm } from '../../src/scheduler/transcribe.js';
import { cacheDir, fliteSession, librivoxClips } from '../../eval/corpus.js';
import { STORY } from '../../eval/texts.js';
import { wer, type WerResult } from '../../eval/wer.js';
import type { SessionTrace } from './loadgen.js';
import { percentile, runLoadProcesses } from './measure.js';
import { INFO, startServer } from './server.js';
import { storyBench } from './story.js';

const RATE = 16000;

export interface EngineSpec {
  readonly name: string;
  /** Environment for a gateway process running this engine. */
  readonly env: Record<string, string>;
  /** The engine in this process, for accuracy runs. */
  create(): Promise<Engine>;
  /** Capacity steps to try, in order (the search stops at the first that fails). */
  readonly steps: readonly number[];
}

export function engineSpecs(cores: number): EngineSpec[] {
  const c = loadConfig({ ignoreEnv: true }).engine;
  const threads = String(cores);
  return [
    {
      name: 'pocketsphinx',
      env: { CAPTIONGATE_ENGINE_KIND: 'pocketsphinx', CAPTIONGATE_ENGINE_THREADS: threads },
      create: () => createPocketSphinxEngine({ ...c, decoders: 1, threads: 1 }),
      steps: [4, 6, 8, 10, 12, 14, 16],
    },
    {
      name: 'whisper base',
      env: { CAPTIONGATE_ENGINE_KIND: 'whisper', CAPTIONGATE_ENGINE_THREADS: threads },
      create: () => createWhisperEngine({ ...c, threads: cores }),
      steps: [1, 2, 3, 4, 5],
    },
    {
      name: 'moonshine tiny',
      env: { CAPTIONGATE_ENGINE_KIND: 'moonshine', CAPTIONGATE_ENGINE_MOONSHINE_MODEL: 'tiny', CAPTIONGATE_ENGINE_THREADS: threads },
      create: () => createMoonshineEngine({ ...c, threads: cores, moonshine: { ...c.moonshine, model: 'tiny' } }),
      steps: [8, 12, 16, 20, 24, 28, 32],
    },
    {
      name: 'moonshine base',
      env: { CAPTIONGATE_ENGINE_KIND: 'moonshine', CAPTIONGATE_ENGINE_MOONSHINE_MODEL: 'base', CAPTIONGATE_ENGINE_THREADS: threads },
      create: () => createMoonshineEngine({ ...c, threads: cores, moonshine: { ...c.moonshine, model: 'base' } }),
      steps: [2, 3, 4, 5, 6, 8, 10],
    },
  ];
}

// ------------------------------------------------------------------ audio

interface Segment {
  text: string;
  speechStart: number;
  speechEnd: number;
}

/** First and last 10 ms frame 6 dB over the clip's noise floor (its 10th-percentile frame), in seconds. */
export function speechBounds(pcm: Int16Array): [number, number] {
  const db: number[] = [];
  for (let i = 0; i + 160 <= pcm.length; i += 160) {
    let e = 0;
    for (let k = i; k < i + 160; k++) e += pcm[k]! * pcm[k]!;
    db.push(10 * Math.log10(e / 160 / 32768 / 32768 + 1e-12));
  }
  const floor = [...db].sort((a, b) => a - b)[Math.floor(db.length / 10)]!;
  const loud = db.map((d) => d > floor + 6);
  return [loud.indexOf(true) / 100, (loud.lastIndexOf(true) + 1) / 100];
}

/** The LibriVox loop: clips back to back, 1 s of silence after each. */
export function librivoxLoop(gapSeconds = 1) {
  const parts: Int16Array[] = [];
  const segments: Segment[] = [];
  let pos = 0;
  for (const c of librivoxClips()) {
    const pcm = wavToInt16(readWav(c.file));
    const [a, b] = speechBounds(pcm);
    segments.push({ text: c.text, speechStart: pos / RATE + a, speechEnd: pos / RATE + b });
    parts.push(pcm, new Int16Array(Math.round(gapSeconds * RATE)));
    pos += pcm.length + Math.round(gapSeconds * RATE);
  }
  const pcm = new Int16Array(pos);
  let o = 0;
  for (const p of parts) {
    pcm.set(p, o);
    o += p.length;
  }
  const file = path.join(cacheDir(), 'bench-librivox-loop.s16');
  writeFileSync(file, Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength));
  return { pcm, file, segments, seconds: pcm.length / RATE };
}

// ------------------------------------------------------------------ analysis

export interface LatencyAnalysis {
  /** Final after the end of speech (speech offset from the reference). */
  finalLat: number[];
  /** Final after the endpoint decision (the final's own end time). */
  endpointLat: number[];
  /** First partial with a word after speech onset. */
  firstPartialLat: number[];
  wer: WerResult;
}

/** Captions of looped sessions against the loop's reference segments (as bench/lib/story.ts does for the story). */
export function analyzeLoop(traces: SessionTrace[], segs: readonly Segment[], loopSeconds: number, offsetStep: number, seconds: number, frameMs = 100): LatencyAnalysis {
  const FPS = 1000 / frameMs;
  const finalLat: number[] = [];
  const endpointLat: number[] = [];
  const firstPartialLat: number[] = [];
  const pairs: [string, string][] = [];
  for (const t of traces) {
    const offsetFrames = Math.floor((offsetStep * t.index * FPS) % Math.max(1, Math.floor(loopSeconds * FPS)));
    const offset = offsetFrames / FPS;
    for (let cycle = -1; cycle <= Math.ceil(seconds / loopSeconds) + 1; cycle++) {
      for (const s of segs) {
        const a = s.speechStart + cycle * loopSeconds - offset;
        const b = s.speechEnd + cycle * loopSeconds - offset;
        if (a < 0.5 || b > seconds - 1) continue;
        const mine = t.finals.filter((f) => f.text && Math.min(f.end, b) - Math.max(f.start, a) > 0.1);
        pairs.push([s.text, mine.map((f) => f.text).join(' ')]);
        const last = mine.filter((f) => f.end >= b - 0.3).sort((x, y) => x.at - y.at)[0];
        if (last) {
          finalLat.push(last.at - (t.t0 + b * 1000));
          endpointLat.push(last.at - (t.t0 + last.end * 1000));
        }
        const fp = t.partials.filter((p) => p.text && p.end >= a && p.start <= b && p.at >= t.t0 + a * 1000).sort((x, y) => x.at - y.at)[0];
        if (fp) firstPartialLat.push(fp.at - (t.t0 + a * 1000));
      }
    }
  }
  return { finalLat, endpointLat, firstPartialLat, wer: wer(pairs) };
}

// ------------------------------------------------------------------ runs

export interface LoadRun {
  n: number;
  p95FinalMs: number;
  p95EndpointMs: number;
  p50FirstPartialMs: number;
  cpu: number;
  dropped: number;
  warnings: number;
  refused: number;
  wer: number;
  holds: boolean;
}

/** N real-time sessions of the LibriVox loop through a gateway running `env`'s engine. */
export async function librivoxLoad(env: Record<string, string>, n: number, seconds: number, loop = librivoxLoop()): Promise<{ run: LoadRun; a: LatencyAnalysis }> {
  const server = await startServer({
    ...INFO,
    CAPTIONGATE_ENGINE_DECODERS: String(Math.max(2, n)),
    CAPTIONGATE_POOL_SLABS: String(n + 10),
    ...env,
  });
  const offsetStep = loop.seconds / Math.max(1, n);
  const c0 = server.cpuSeconds();
  const t0 = performance.now();
  const load = await runLoadProcesses(
    { url: `ws://127.0.0.1:${server.port}/v1/listen`, sessions: n, seconds, files: [loop.file], offsetStepSeconds: offsetStep, detail: true, rampMs: 0 },
    1,
  );
  const cpu = (server.cpuSeconds() - c0) / ((performance.now() - t0) / 1000);
  const dropped = await server.metric('captiongate_samples_dropped_total');
  const warnings = await server.metric('captiongate_lag_warnings_total');
  await server.stop();
  const a = analyzeLoop(load.traces, loop.segments, loop.seconds, offsetStep, seconds);
  return { run: summarize(n, a, cpu, dropped, warnings, load.refused), a };
}

function summarize(n: number, a: LatencyAnalysis, cpu: number, dropped: number, warnings: number, refused: number): LoadRun {
  const p95FinalMs = percentile(a.finalLat, 95);
  return {
    n,
    p95FinalMs,
    p95EndpointMs: percentile(a.endpointLat, 95),
    p50FirstPartialMs: percentile(a.firstPartialLat, 50),
    cpu,
    dropped,
    warnings,
    refused,
    wer: a.wer.wer,
    holds: p95FinalMs <= 1000 && dropped === 0 && warnings === 0 && refused === 0,
  };
}

/** N real-time sessions of the flite story (bench/lib/story.ts) through a gateway running `env`'s engine. */
export async function fliteLoad(env: Record<string, string>, n: number, seconds: number): Promise<{ run: LoadRun; a: LatencyAnalysis }> {
  const { storyLoad } = storyBench(100);
  const r = await storyLoad(n, seconds, env);
  const a: LatencyAnalysis = { finalLat: r.a.finalLat, endpointLat: r.a.endpointLat, firstPartialLat: r.a.firstPartialLat, wer: r.a.wer };
  return { run: summarize(n, a, r.cpu, r.dropped, r.warnings, r.load.refused), a };
}

/** Searches the steps; returns the largest N that holds and every run. */
export async function capacity(
  steps: readonly number[],
  run: (n: number) => Promise<LoadRun>,
  log: (m: string) => void,
): Promise<{ best: number; runs: LoadRun[] }> {
  const runs: LoadRun[] = [];
  let best = 0;
  for (const n of steps) {
    const r = await run(n);
    runs.push(r);
    log(`    N=${n}: p95 final ${r.p95FinalMs.toFixed(0)} ms after speech (endpoint +${r.p95EndpointMs.toFixed(0)} ms), first partial p50 ${r.p50FirstPartialMs.toFixed(0)} ms, CPU ${(r.cpu * 100).toFixed(0)}%, dropped ${r.dropped}, lagging ${r.warnings}, refused ${r.refused}, WER ${r.wer.toFixed(1)}%`);
    if (!r.holds) break;
    best = n;
  }
  return { best, runs };
}

/** Server RSS with the engine loaded and idle, and the engine's own modelBytes. */
export async function engineMemory(env: Record<string, string>): Promise<{ rssMb: number; modelMb: number }> {
  const server = await startServer({ ...INFO, CAPTIONGATE_POOL_SLABS: '16', ...env });
  await new Promise((r) => setTimeout(r, 1500));
  const rssMb = server.rssMb();
  const modelMb = (await server.metric('captiongate_engine_model_bytes')) / 2 ** 20;
  await server.stop();
  return { rssMb, modelMb };
}

// ------------------------------------------------------------------ accuracy

const joined = (fs: readonly { text: string }[]) => fs.map((f) => f.text).filter(Boolean).join(' ');

export async function accuracy(e: Engine, voices: readonly ('slt' | 'awb' | 'rms')[]): Promise<{ libri: WerResult; flite: WerResult }> {
  const clips = librivoxClips();
  const texts: string[] = [];
  for (const c of clips) texts.push(joined((await transcribePcm(e, wavToInt16(readWav(c.file)), { windowSamples: 1600 })).finals));
  const stories: [string, string][] = [];
  for (const voice of voices) {
    const s = fliteSession(STORY, { voice, gapSeconds: 0.8 });
    stories.push([s.text, joined((await transcribePcm(e, wavToInt16(readWav(s.file)), { windowSamples: 1600 })).finals)]);
  }
  return { libri: wer(clips.map((c, i) => [c.text, texts[i]!])), flite: wer(stories) };
}
