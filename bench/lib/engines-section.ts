/**
 * The "engines" section of `npm run bench` (and of bench:moonshine with
 * BENCH_ONLY=engines): every engine side by side in one run, against the
 * targets of the Moonshine issue (docs/benchmarks.md, "Engines").
 */
import { percentile } from './measure.js';
import { INFO } from './server.js';
import { accuracy, capacity, engineMemory, engineSpecs, fliteLoad, librivoxLoad, librivoxLoop } from './engines.js';

type Row = (section: string, metric: string, value: string, budget?: string, ok?: boolean | null) => void;

/** The targets; engines without one are measured only. */
const TARGETS: Record<string, { libri: number; flite: number; sessions: number; firstPartialMs: number; finalMs: number }> = {
  'moonshine tiny': { libri: 6, flite: 5, sessions: 12, firstPartialMs: 400, finalMs: 250 },
  'moonshine base': { libri: 3.5, flite: 5, sessions: 5, firstPartialMs: 600, finalMs: 400 },
};

export async function sectionEngines(row: Row, raw: Record<string, unknown>, o: { quick: boolean; cores: number }): Promise<void> {
  console.log('\n7. engines side by side (accuracy, capacity on LibriVox and on flite, latency alone, memory)');
  const S = '7 engines';
  const seconds = o.quick ? 20 : 60;
  const loop = librivoxLoop();
  const voices = o.quick ? (['slt'] as const) : (['slt', 'awb', 'rms'] as const);
  const out: Record<string, unknown> = {};
  const overhead = await engineMemory({ CAPTIONGATE_ENGINE_KIND: 'overhead', CAPTIONGATE_ALLOW_OVERHEAD_ENGINE: '1' });
  const only = process.env.BENCH_ENGINES ? new Set(process.env.BENCH_ENGINES.split(',')) : null;
  for (const spec of engineSpecs(o.cores)) {
    if (only && !only.has(spec.name)) continue;
    const t = TARGETS[spec.name];
    console.log(`   ${spec.name}`);
    const e = await spec.create();
    const acc = await accuracy(e, voices);
    await e.shutdown();
    row(S, `${spec.name}: WER LibriVox (${acc.libri.words} words)`, `${acc.libri.wer.toFixed(1)}%`, t ? `≤ ${t.libri}%` : '', t ? acc.libri.wer <= t.libri : null);
    row(S, `${spec.name}: WER flite story (${acc.flite.words} words; ${voices.join(', ')})`, `${acc.flite.wer.toFixed(1)}%`, t ? `≤ ${t.flite}%` : '', t ? acc.flite.wer <= t.flite : null);

    const mem = await engineMemory(spec.env);
    row(S, `${spec.name}: server RSS idle, engine loaded (overhead engine: ${overhead.rssMb.toFixed(0)} MB)`, `${mem.rssMb.toFixed(0)} MB (+${(mem.rssMb - overhead.rssMb).toFixed(0)} MB; model ${mem.modelMb.toFixed(0)} MiB by the engine's own count)`);

    const aloneFlite = await fliteLoad(spec.env, 1, seconds);
    const aloneLibri = await librivoxLoad(spec.env, 1, seconds, loop);
    const fp = [...aloneFlite.a.firstPartialLat, ...aloneLibri.a.firstPartialLat];
    const ep = [...aloneFlite.a.endpointLat, ...aloneLibri.a.endpointLat];
    const q = (xs: number[]) => `${percentile(xs, 50).toFixed(0)} / ${percentile(xs, 95).toFixed(0)} ms`;
    row(S, `${spec.name}: first partial after speech onset, alone, p50 / p95 (flite + LibriVox, ${fp.length} sentences)`, q(fp), t ? `p95 ≤ ${t.firstPartialMs} ms` : '', t ? percentile(fp, 95) <= t.firstPartialMs : null);
    row(S, `${spec.name}: final after the endpoint decision, alone, p50 / p95`, q(ep), t ? `p95 ≤ ${t.finalMs} ms` : '', t ? percentile(ep, 95) <= t.finalMs : null);
    const fl = [...aloneFlite.a.finalLat, ...aloneLibri.a.finalLat];
    row(S, `${spec.name}: final after the end of speech, alone, p50 / p95`, q(fl), '(includes the 500 ms endpoint silence)');

    const steps = o.quick ? spec.steps.slice(0, 1) : spec.steps;
    const log = (m: string) => console.log(m);
    console.log('    LibriVox loop:');
    const libri = await capacity(steps, async (n) => (await librivoxLoad(spec.env, n, seconds, loop)).run, log);
    console.log('    flite story:');
    const flite = await capacity(steps, async (n) => (await fliteLoad(spec.env, n, seconds)).run, log);
    const rule = 'p95 final ≤ 1 s after speech, none dropped, no lagging warning';
    row(S, `${spec.name}: concurrent real-time sessions, LibriVox loop (${rule})`, `${libri.best}${o.quick ? ' (quick: one step)' : ''}`, t ? `≥ ${t.sessions}` : '', t && !o.quick ? libri.best >= t.sessions : null);
    row(S, `${spec.name}: concurrent real-time sessions, flite story (same rule)`, `${flite.best}${o.quick ? ' (quick: one step)' : ''}`);
    out[spec.name] = { accuracy: acc, memory: mem, alone: { flite: aloneFlite.run, libri: aloneLibri.run, firstPartial: fp, endpoint: ep, final: fl }, capacity: { libri, flite } };
  }
  raw.engines = { overhead, ...out, info: INFO.CAPTIONGATE_LOG_LEVEL };
}
