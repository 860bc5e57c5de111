/**
 * Section 8 of `npm run bench` (BENCH_ONLY=8): sessions one node sustains
 * with 1 worker and with 2 workers (server.workers) on this machine's cores,
 * side by side in one run, on the overhead engine (no decoding: the
 * gateway's own cost, with a final every 3 s of audio into the caption
 * store, as continuous speech gives).
 *
 * A step of N real-time sessions is sustained when, over its steady window:
 * none was refused, no session got a lagging warning or dropped audio, the
 * node's event-loop lag p99 (the worst worker's) is within LOOP_P99_MS and
 * ingest→submit p99 within INGEST_P99_MS. The ladder climbs (1 and 2
 * workers interleaved at each step) until a step fails; the figure is the
 * last step that held. A step where the load
 * generators themselves fell behind (their send lateness p99 beyond
 * LOADGEN_LATE_MS) says nothing about the gateway and ends the climb as
 * "load-generator bound".
 */
import { cacheDir, librivoxClips } from '../../eval/corpus.js';
import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { histogramQuantile, runLoadProcesses, sleep } from './measure.js';
import { INFO, metricValue, startServer } from './server.js';

type Row = (section: string, metric: string, value: string, budget?: string, ok?: boolean | null) => void;

const LOOP_P99_MS = 20;
const INGEST_P99_MS = 10;
const LOADGEN_LATE_MS = 100;

interface Step {
  workers: number;
  n: number;
  refused: number;
  lagWarnings: number;
  droppedSamples: number;
  loopP99Ms: number;
  ingestP99Ms: number;
  cpuCores: number;
  rssMb: number;
  loadgenLateP99Ms: number;
  held: boolean;
  why: string;
}

function libriFile(): string {
  const file = path.join(cacheDir(), 'bench-workers-librivox.s16');
  const parts = librivoxClips().map((c) => wavToInt16(readWav(c.file)));
  const pcm = new Int16Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    pcm.set(p, o);
    o += p.length;
  }
  writeFileSync(file, Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength));
  return file;
}

async function step(workers: number, n: number, file: string, steadySeconds: number): Promise<Step> {
  // Each worker can take 60% of the sessions: the kernel's SO_REUSEPORT hash does not split them exactly.
  const slabs = workers === 1 ? n + 50 : Math.ceil(n * 0.6 * workers) + 50;
  const server = await startServer({
    ...INFO,
    CAPTIONGATE_SERVER_WORKERS: String(workers),
    CAPTIONGATE_REDIS_URL: 'redis://127.0.0.1:6379', // required for workers > 1; this branch only checks it is set
    CAPTIONGATE_ENGINE_KIND: 'overhead',
    CAPTIONGATE_ALLOW_OVERHEAD_ENGINE: '1',
    CAPTIONGATE_OVERHEAD_FINAL_SECONDS: '3',
    CAPTIONGATE_SERVER_TRANSPORT: 'uws',
    // A 3 s ring keeps the pool small at thousands of sessions (the lag bound fits inside it).
    CAPTIONGATE_POOL_SLAB_SECONDS: '3',
    CAPTIONGATE_LIMITS_LAG_MAX_SECONDS: '2.5',
    CAPTIONGATE_LIMITS_LAG_WARN_SECONDS: '1',
    CAPTIONGATE_POOL_SLABS: String(slabs),
    CAPTIONGATE_LIMITS_MAX_PARKED_SESSIONS: '0',
    CAPTIONGATE_LIMITS_MAX_SESSIONS_PER_ADDRESS: String(n + 50),
    CAPTIONGATE_LIMITS_MAX_CONNECTIONS_PER_ADDRESS: String(n + 50),
    CAPTIONGATE_RATE_LIMITS_OPENS_PER_MINUTE_PER_ADDRESS: '1000000',
    CAPTIONGATE_ADMISSION_MAX_ENGINE_LAG_SECONDS: '600',
  });
  const ramp = Math.min(8000, n * 2);
  const url = `ws://127.0.0.1:${server.port}/v1/listen`;
  const loadP = runLoadProcesses({ url, sessions: n, seconds: steadySeconds + 4, files: [file], offsetStepSeconds: 0.37, rampMs: ramp }, n >= 500 ? 2 : 1);
  await sleep(ramp + 2500);
  const t0text = await server.metricsText(); // also opens the event-loop window
  const warn0 = metricValue(t0text, 'captiongate_lag_warnings_total');
  const c0 = server.cpuSeconds();
  const w0 = performance.now();
  await sleep(steadySeconds * 1000);
  const cpuCores = (server.cpuSeconds() - c0) / ((performance.now() - w0) / 1000);
  const text = await server.metricsText();
  const rssMb = server.rssMb();
  const load = await loadP;
  await server.stop();
  const s: Step = {
    workers,
    n,
    refused: load.refused,
    lagWarnings: metricValue(text, 'captiongate_lag_warnings_total') - warn0,
    droppedSamples: load.traces.reduce((a, t) => a + (t.end?.audio.droppedSamples ?? 0), 0),
    loopP99Ms: metricValue(text, 'captiongate_event_loop_lag_p99_seconds') * 1000,
    ingestP99Ms: histogramQuantile(text, 'captiongate_ingest_to_submit_seconds', 0.99) * 1000,
    cpuCores,
    rssMb,
    loadgenLateP99Ms: load.sendLateMsP99,
    held: false,
    why: '',
  };
  const fails = [
    s.refused > 0 && `${s.refused} refused`,
    s.lagWarnings > 0 && `${s.lagWarnings} lagging warnings`,
    s.droppedSamples > 0 && `${s.droppedSamples} samples dropped`,
    s.loopP99Ms > LOOP_P99_MS && `loop lag p99 ${s.loopP99Ms.toFixed(1)} ms`,
    s.ingestP99Ms > INGEST_P99_MS && `ingest→submit p99 ${s.ingestP99Ms.toFixed(1)} ms`,
  ].filter((x): x is string => typeof x === 'string');
  s.held = fails.length === 0;
  s.why = s.loadgenLateP99Ms > LOADGEN_LATE_MS ? `load-generator bound (its sends ${s.loadgenLateP99Ms.toFixed(0)} ms late p99)` : fails.join(', ');
  return s;
}

export async function sectionWorkers(row: Row, raw: Record<string, unknown>, o: { quick: boolean; cores: number }): Promise<void> {
  console.log(`\n8. workers: sessions sustained by 1 worker vs 2 workers (server.workers) on ${o.cores} cores, overhead engine, finals into the store`);
  const S = '8 workers';
  const file = libriFile();
  const ladder = o.quick ? [200] : (process.env.BENCH_WORKERS_LADDER ?? '1000,2000,3000,4000,5000,6000').split(',').map(Number);
  const steady = o.quick ? 5 : 15;
  const out: Step[] = [];
  const best: Record<number, { n: number; why: string }> = {};
  // Interleaved (1 worker at N, 2 workers at N, then the next N), so that a machine
  // whose load changes during the run disturbs both sides alike.
  const climbing = new Set([1, 2]);
  for (const w of climbing) best[w] = { n: 0, why: 'the top of the ladder held' };
  for (const n of ladder) {
    for (const workers of [...climbing]) {
      const s = await step(workers, n, file, steady);
      out.push(s);
      console.log(
        `    ${workers} worker(s), N=${n}: ${s.held ? 'held' : 'NOT held'}; loop p99 ${s.loopP99Ms.toFixed(1)} ms, ingest→submit p99 ${s.ingestP99Ms.toFixed(2)} ms, ` +
          `CPU ${s.cpuCores.toFixed(2)} cores, RSS ${s.rssMb.toFixed(0)} MB, warnings ${s.lagWarnings}, dropped ${s.droppedSamples}, refused ${s.refused}, loadgen late p99 ${s.loadgenLateP99Ms.toFixed(0)} ms${s.why ? ` (${s.why})` : ''}`,
      );
      if (!s.held || s.why.startsWith('load-generator')) {
        best[workers] = { n: best[workers]!.n, why: s.why };
        climbing.delete(workers);
      } else {
        best[workers] = { n, why: 'the top of the ladder held' };
      }
    }
    if (climbing.size === 0) break;
  }
  raw.workers = { ladder, steadySeconds: steady, bounds: { LOOP_P99_MS, INGEST_P99_MS, LOADGEN_LATE_MS }, steps: out, best };
  const b1 = best[1]!;
  const b2 = best[2]!;
  row(S, `sessions sustained, 1 worker vs 2 workers (${o.cores} cores)`, `${b1.n} vs ${b2.n}${b1.n > 0 ? ` (${(b2.n / b1.n).toFixed(2)}×)` : ''}`);
  row(S, '1 worker: what stopped the climb', b1.why);
  row(S, '2 workers: what stopped the climb', b2.why);
}
