/**
 * Engine benchmark: `npm run bench:engine` (after `npm run build`).
 *
 * Prints, from one run on this machine:
 *   1. decoder load time and RSS per decoder (separate child processes);
 *   2. search-setting tuning: RTF, WER (LibriVox + flite) and end-of-utterance time;
 *   3. throughput with 1, 2, 4 and 8 parallel streams.
 * Raw results go to build/bench/engine.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { readWav, wavToInt16 } from '../src/audio/wav.js';
import { loadConfig } from '../src/config/load.js';
import { createPocketSphinxEngine, type PocketSphinxOptions } from '../src/engine/pocketsphinx.js';
import { transcribePcm } from '../src/scheduler/transcribe.js';
import type { Engine } from '../src/engine/types.js';
import { fliteSession, librivoxClips } from '../eval/corpus.js';
import { STORY } from '../eval/texts.js';
import { wer } from '../eval/wer.js';
import { packageRoot } from '../src/util/paths.js';

const QUICK = process.env.BENCH_QUICK === '1';
const base = loadConfig({ ignoreEnv: true }).engine;
const clips = librivoxClips().map((c) => ({ ...c, pcm: wavToInt16(readWav(c.file)) }));
const story = fliteSession(QUICK ? STORY.slice(0, 6) : STORY, { voice: 'rms', gapSeconds: 0.8 });
const storyPcm = wavToInt16(readWav(story.file));
const joined = (fs: readonly { text: string }[]) => fs.map((f) => f.text).filter(Boolean).join(' ');

function options(over: Partial<PocketSphinxOptions['pocketsphinx']> & { decoders?: number; threads?: number; extra?: Record<string, string> } = {}): PocketSphinxOptions {
  const { decoders, threads, extra, ...ps } = over;
  return {
    ...base,
    decoders: decoders ?? 1,
    threads: threads ?? 1,
    pocketsphinx: { ...base.pocketsphinx, ...ps },
    ...(extra ? { extra } : {}),
  };
}

/** Decodes all test audio on one stream at a time; returns RTF and WER. */
async function accuracy(engine: Engine) {
  const t0 = engine.stats().busyMs;
  let audio = 0;
  const libri: [string, string][] = [];
  for (const c of clips) {
    libri.push([c.text, joined((await transcribePcm(engine, c.pcm)).finals)]);
    audio += c.pcm.length / 16000;
  }
  const flite = joined((await transcribePcm(engine, storyPcm)).finals);
  audio += storyPcm.length / 16000;
  const busy = (engine.stats().busyMs - t0) / 1000;
  return { rtf: busy / audio, librivox: wer(libri), flite: wer([[story.text, flite]]) };
}

/** Cost of ending an utterance: feed a clip without flush, then time an empty flush window. */
async function endOfUtterance(engine: Engine): Promise<number> {
  const costs: number[] = [];
  for (const c of clips) {
    const id = engine.openStream();
    for (let pos = 0; pos < c.pcm.length; pos += 16000) {
      await engine.submit([{ stream: id, start: pos, pcm: c.pcm.subarray(pos, Math.min(c.pcm.length, pos + 16000)) }]);
    }
    const b0 = engine.stats().busyMs;
    await engine.submit([{ stream: id, start: c.pcm.length, pcm: new Int16Array(0), flush: true }]);
    costs.push(engine.stats().busyMs - b0);
    engine.closeStream(id);
  }
  return costs.reduce((a, b) => a + b, 0) / costs.length;
}

/** Parallel streams, fast (not paced): audio seconds decoded per wall second. */
async function throughput(parallel: number): Promise<{ parallel: number; audioPerWall: number; rtfPerStream: number }> {
  const threads = Math.min(parallel, os.cpus().length);
  const engine = await createPocketSphinxEngine(options({ decoders: parallel, threads }));
  // Equal work per stream: every stream decodes the same story.
  const work = Array.from({ length: parallel }, () => storyPcm);
  const t0 = performance.now();
  const b0 = engine.stats().busyMs;
  await Promise.all(work.map((pcm) => transcribePcm(engine, pcm, { windowSamples: 16000 })));
  const wall = (performance.now() - t0) / 1000;
  const busy = (engine.stats().busyMs - b0) / 1000;
  const audio = work.reduce((s, p) => s + p.length / 16000, 0);
  await engine.shutdown();
  return { parallel, audioPerWall: audio / wall, rtfPerStream: busy / audio };
}

function probe(decoders: number): { rssMb: number; loadMs: number } {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'rss-probe.js');
  const out = execFileSync(process.execPath, [script, String(decoders)], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!) as { rssMb: number; loadMs: number };
}

async function main() {
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGb: Math.round(os.totalmem() / 2 ** 30), node: process.version },
    quick: QUICK,
    audioSeconds: { librivox: clips.reduce((s, c) => s + c.pcm.length / 16000, 0), flite: storyPcm.length / 16000 },
  };
  console.log(`captiongate engine bench (${QUICK ? 'quick' : 'full'}) on ${os.cpus().length} cores, Node ${process.version}`);

  // 1. Load time and RSS per decoder.
  const p1 = probe(1);
  const p5 = probe(5);
  const perDecoder = (p5.rssMb - p1.rssMb) / 4;
  results.memory = { rss1: p1.rssMb, rss5: p5.rssMb, rssPerDecoderMb: perDecoder, loadMsPerDecoder: p5.loadMs / 5 };
  console.log(`\nload: ${(p5.loadMs / 5).toFixed(0)} ms per decoder; RSS ${p1.rssMb.toFixed(0)} MB with 1 decoder, ${p5.rssMb.toFixed(0)} MB with 5 -> ${perDecoder.toFixed(1)} MB per decoder`);

  // 2. Tuning.
  const variants: [string, Parameters<typeof options>[0]][] = [
    ['defaults (fwdflat, bestpath)', { fwdflat: true, bestpath: true }],
    ['fwdflat=no bestpath=no', {}],
    ['  + no word confidence', { wordConfidence: false }],
    ['  + no CMN updates (stock live CMN)', { cmnUpdateMs: 0 }],
    ['  + beam 1e-40 wbeam 1e-24', { beam: 1e-40, wbeam: 1e-24 }],
    ['  + maxhmmpf 10000', { maxhmmpf: 10000 }],
    ['  + pl_window 0', { plWindow: 0 }],
  ];
  // Two interleaved rounds (A B C ... A B C): the machine is noisy, so each
  // variant's RTF is the mean of two runs taken far apart in time.
  const chosen = QUICK ? variants.slice(0, 2) : variants;
  const rounds = QUICK ? 1 : 2;
  const acc = new Map<string, { rtf: number[]; eou: number[]; a?: Awaited<ReturnType<typeof accuracy>> }>();
  for (let round = 0; round < rounds; round++) {
    for (const [name, over] of chosen) {
      const engine = await createPocketSphinxEngine(options(over));
      const a = await accuracy(engine);
      const eou = await endOfUtterance(engine);
      await engine.shutdown();
      const e = acc.get(name) ?? { rtf: [], eou: [] };
      e.rtf.push(a.rtf);
      e.eou.push(eou);
      e.a = a;
      acc.set(name, e);
    }
  }
  const mean = (x: number[]) => x.reduce((p, q) => p + q, 0) / x.length;
  const tuning = [];
  console.log('\n| settings | RTF (1 core) | WER LibriVox | WER flite | end-of-utterance call |');
  console.log('|---|---|---|---|---|');
  for (const [name, over] of chosen) {
    const e = acc.get(name)!;
    const a = e.a!;
    tuning.push({ name, ...over, rtfRuns: e.rtf, rtf: mean(e.rtf), werLibrivox: a.librivox.wer, werFlite: a.flite.wer, endOfUtteranceMs: mean(e.eou) });
    console.log(
      `| ${name} | ${mean(e.rtf).toFixed(3)} | ${a.librivox.wer.toFixed(1)}% (${a.librivox.errors}/${a.librivox.words}) | ${a.flite.wer.toFixed(1)}% (${a.flite.errors}/${a.flite.words}) | ${mean(e.eou).toFixed(1)} ms |`,
    );
  }
  results.tuning = tuning;

  // 3. Throughput.
  const tp = [];
  console.log('\n| parallel streams | audio s per wall s | worker RTF per stream |');
  console.log('|---|---|---|');
  for (const n of QUICK ? [1, 2] : [1, 2, 4, 8]) {
    const t = await throughput(n);
    tp.push(t);
    console.log(`| ${n} | ${t.audioPerWall.toFixed(2)} | ${t.rtfPerStream.toFixed(3)} |`);
  }
  results.throughput = tp;

  const dir = path.join(packageRoot(), 'build', 'bench');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'engine.json'), JSON.stringify(results, null, 2));
  console.log(`\nraw results: ${path.join(dir, 'engine.json')}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
