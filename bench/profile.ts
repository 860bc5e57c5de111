/**
 * Where the gateway's CPU goes above the bare uWS floor: the load of bench
 * section 1 (STREAMS sessions of LibriVox at real time, the overhead
 * engine), once against the gateway and once against the bare uWS server,
 * each under `perf record` (Linux perf, Debian package linux-perf) with
 * V8's perf map. Prints, side by side, each server's CPU per 100 streams
 * and where it went (kernel, V8 and Node, JIT-compiled JS, libc, uWS), in
 * microseconds of CPU per received frame, then the gateway's heaviest JS
 * functions (their own time and their callees').
 *
 *   npm run build && STREAMS=100 SECONDS=15 node dist/bench/profile.js
 *
 * Recording starts after WARM_SECONDS (default 30) under load, as section 1
 * measures: the gateway's warm-up (JIT, the first major GCs) is not
 * per-frame cost.
 *
 * perf's own sampling costs CPU: compare the two columns, not the totals
 * with section 1.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { librivoxLoop } from './lib/engines.js';
import { runLoadProcesses, sleep } from './lib/measure.js';
import { overheadEnv, startServer } from './lib/server.js';

const STREAMS = Number(process.env.STREAMS ?? 100);
const SECONDS = Number(process.env.SECONDS ?? 15);
const FREQ = process.env.FREQ ?? '999';
const FRAME_MS = 100;
const WARM_SECONDS = Number(process.env.WARM_SECONDS ?? 30);

interface Profile {
  readonly name: string;
  readonly cpuPer100: number;
  /** CPU µs per received frame, by where perf found it. */
  readonly byPlace: Map<string, number>;
  readonly data: string;
}

/** perf's DSO names, grouped. */
function place(dso: string): string {
  if (dso.includes('kernel')) return 'kernel';
  if (dso.startsWith('[JIT]')) return 'JS (JIT-compiled)';
  if (dso === 'node') return 'V8 and Node (builtins, GC, bindings)';
  if (dso.startsWith('uws_')) return 'uWS';
  if (dso.startsWith('libc')) return 'libc';
  return 'other';
}

async function profile(name: 'gateway' | 'bare uWS', dir: string, file: string): Promise<Profile> {
  const perfMap = { NODE_OPTIONS: '--perf-basic-prof' };
  const server =
    name === 'bare uWS' ? await startServer(perfMap, 'dist/bench/lib/bare-uws.js') : await startServer({ ...overheadEnv(STREAMS, 'uws'), ...perfMap });
  // Past the warm-up (JIT, the first major GCs) before recording, as section 1 measures.
  const load = runLoadProcesses({ url: `ws://127.0.0.1:${server.port}/v1/listen`, sessions: STREAMS, seconds: WARM_SECONDS + SECONDS + 8, files: [file], offsetStepSeconds: 0.37, rampMs: 500 }, 1);
  await sleep((WARM_SECONDS + 4) * 1000);
  const data = path.join(dir, `${name.replace(/\W/g, '')}.perf`);
  const c0 = server.cpuSeconds();
  const t0 = performance.now();
  const rec = spawnSync('perf', ['record', '-F', FREQ, '-g', '-p', String(server.pid), '-o', data, '--', 'sleep', String(SECONDS)], { encoding: 'utf8' });
  const cpu = (server.cpuSeconds() - c0) / ((performance.now() - t0) / 1000);
  if (rec.status !== 0) throw new Error(`perf record failed: ${rec.stderr || rec.error?.message}`);
  const refused = (await load).refused;
  await server.stop();
  if (refused) throw new Error(`${refused} sessions refused: the figures would not compare`);
  const framesPerSecond = (STREAMS * 1000) / FRAME_MS;
  const byPlace = new Map<string, number>();
  const report = execFileSync('perf', ['report', '-i', data, '--no-children', '--sort', 'dso', '-g', 'none', '--stdio'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  for (const m of report.matchAll(/^\s+([\d.]+)%\s+(.+?)\s*$/gm)) {
    const k = place(m[2]!);
    byPlace.set(k, (byPlace.get(k) ?? 0) + ((Number(m[1]) / 100) * cpu * 1e6) / framesPerSecond);
  }
  return { name, cpuPer100: (cpu / STREAMS) * 1e4, byPlace, data };
}

async function main(): Promise<void> {
  const which = spawnSync('perf', ['--version'], { encoding: 'utf8' });
  if (which.status !== 0) throw new Error('needs Linux perf (Debian: apt-get install linux-perf)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-profile-'));
  try {
    const { file } = librivoxLoop();
    const g = await profile('gateway', dir, file);
    const b = await profile('bare uWS', dir, file);
    console.log(`\n${STREAMS} streams, ${SECONDS} s under perf at ${FREQ} Hz (perf's sampling included)`);
    console.log(`| | gateway | bare uWS | gateway − bare |\n|---|---|---|---|`);
    console.log(`| CPU per 100 streams | ${g.cpuPer100.toFixed(2)}% | ${b.cpuPer100.toFixed(2)}% | ${(g.cpuPer100 / b.cpuPer100).toFixed(2)}× |`);
    const places = [...new Set([...g.byPlace.keys(), ...b.byPlace.keys()])].sort((x, y) => (g.byPlace.get(y) ?? 0) - (g.byPlace.get(x) ?? 0));
    for (const p of places) {
      const gv = g.byPlace.get(p) ?? 0;
      const bv = b.byPlace.get(p) ?? 0;
      console.log(`| ${p}, µs per frame | ${gv.toFixed(1)} | ${bv.toFixed(1)} | ${(gv - bv).toFixed(1)} |`);
    }
    const js = execFileSync('perf', ['report', '-i', g.data, '--children', '--sort', 'sym', '-g', 'none', '--stdio'], { encoding: 'utf8', maxBuffer: 1 << 26 });
    console.log('\nGateway JS functions (with callees, self), % of the gateway process:');
    let shown = 0;
    for (const m of js.matchAll(/^\s+([\d.]+)%\s+([\d.]+)%\s+\[\.\] JS:[*^~]?(.+?)\s*$/gm)) {
      if (m[3]!.includes('node:internal') && Number(m[1]) < 5) continue;
      console.log(`  ${m[1]!.padStart(6)}%  ${m[2]!.padStart(6)}%  ${m[3]!.replace(/file:\/\/\S*?\/dist\//, '')}`);
      if (++shown === 20) break;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
