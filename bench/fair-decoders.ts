/**
 * Fair decoders (issue 13): `npx tsc -p tsconfig.build.json && node dist/bench/fair-decoders.js`.
 *
 * A real gateway (uWebSockets.js, PocketSphinx, engine.decoders = 2,
 * engine.threads = 2) and six talkers reading LibriVox back to back at
 * real time for BENCH_SECONDS (default 60), once per
 * engine.pocketsphinx.maxHoldMs in BENCH_HOLDS (default "0,3000"; 0 is the
 * behaviour before the hand-over), after a control run with a decoder per
 * talker (nobody waits: if that falls behind, the CPU has no headroom and
 * the other rows say nothing about fairness). Halfway, a seventh session asks to be
 * admitted (4 s of speech) and /readyz is read. Prints per run: final
 * delay (arrival minus the wall time the final's last audio frame was
 * sent) p50/p95/max, the longest any talker went without a final with
 * words, lagging warnings, end reasons, the admission result, the
 * gateway's CPU use and the load average.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { pino } from 'pino';

import { readWav, wavToInt16 } from '../src/audio/wav.js';
import { CaptionClientError } from '../src/client/client.js';
import { loadConfig } from '../src/config/load.js';
import { createGateway } from '../src/gateway/gateway.js';
import { librivoxClips } from '../eval/corpus.js';
import { continuousTalk, longestWithoutFinal, percentile, talkRealtime } from '../eval/talkers.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 60);
const HOLDS = (process.env.BENCH_HOLDS ?? '0,3000').split(',').map(Number);
// BENCH_TALKERS / BENCH_DECODERS (default 6 / 2, the test) change the mix.
const TALKERS = Number(process.env.BENCH_TALKERS ?? 6);
const DECODERS = Number(process.env.BENCH_DECODERS ?? 2);
const talks = Array.from({ length: TALKERS }, (_, i) => continuousTalk(i, SECONDS));
const clip = wavToInt16(readWav(librivoxClips()[0]!.file));
const s = (ms: number) => (ms / 1000).toFixed(2);

console.log(`fair decoders: ${TALKERS} real-time talkers x ${SECONDS} s, engine.threads 2, ${os.cpus().length} cores`);
const rows: string[] = [];
const runsToDo = [{ decoders: TALKERS, hold: 0 }, ...HOLDS.map((hold) => ({ decoders: DECODERS, hold }))];
for (const { decoders, hold } of runsToDo) {
  const label = decoders === TALKERS ? `${TALKERS} decoders (control)` : hold === 0 ? `${DECODERS} decoders, maxHoldMs 0 (before)` : `${DECODERS} decoders, maxHoldMs ${hold}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-bench-'));
  const config = loadConfig({
    ignoreEnv: true,
    overrides: {
      server: { host: '127.0.0.1', port: 0, transport: 'uws' },
      store: { path: path.join(dir, 'captions.db') },
      engine: { kind: 'pocketsphinx', decoders, threads: 2, pocketsphinx: { maxHoldMs: hold } },
    },
  });
  const gw = await createGateway({ config, logger: pino({ level: 'silent' }) });
  const url = `ws://127.0.0.1:${await gw.listen()}/v1/listen`;
  const load0 = os.loadavg()[0]!;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const runs = Promise.all(talks.map((t) => talkRealtime(url, t.pcm, SECONDS)));
  await new Promise((r) => setTimeout(r, (SECONDS / 2) * 1000));
  const waiting = gw.engine.stats().streamsWaiting;
  const readyz = (await fetch(`${url.replace('ws:', 'http:').replace('/v1/listen', '')}/readyz`)).status;
  let admission: string;
  try {
    const r = await talkRealtime(url, clip, 4);
    admission = `admitted (${r.end.reason}, ${r.finals.filter((f) => f.text).length} finals)`;
  } catch (err) {
    admission = `refused: ${err instanceof CaptionClientError ? err.code : String(err)}`;
  }
  const done = await runs;
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const load1 = os.loadavg()[0]!;
  const stats = gw.engine.stats();
  await gw.shutdown();
  rmSync(dir, { recursive: true, force: true });

  const delays = done.flatMap((r) => r.finalDelaysMs);
  const silent = Math.max(...done.map((r) => longestWithoutFinal(r)));
  const ends = [...new Set(done.map((r) => r.end.reason))].join(',');
  const dropped = done.reduce((a, r) => a + r.end.audio.droppedSamples, 0);
  const cpuShare = (cpu.user + cpu.system) / 1000 / wall;
  console.log(
    `${label}: wall ${s(wall)} s; final delay p50 ${s(percentile(delays, 50))} p95 ${s(percentile(delays, 95))} max ${s(Math.max(...delays))} s; ` +
      `longest without a final ${s(silent)} s; finals with words ${done.map((r) => r.finals.filter((f) => f.text).length).join('/')}; ` +
      `lagging warnings ${done.map((r) => r.lagWarnings).join('/')}; ends ${ends}; dropped ${dropped}; errors ${done.flatMap((r) => r.errors).join(',') || 'none'}; ` +
      `half time: ${waiting} waiting, /readyz ${readyz}, newcomer ${admission}; gateway CPU ${cpuShare.toFixed(2)} cores; load ${load0.toFixed(2)} -> ${load1.toFixed(2)}; ` +
      `decoder waits ${stats.decoderWaits}`,
  );
  rows.push(
    `| ${label} | ${s(percentile(delays, 50))} | ${s(percentile(delays, 95))} | ${s(Math.max(...delays))} | ${s(silent)} | ` +
      `${done.reduce((a, r) => a + r.lagWarnings, 0)} | ${ends} | ${dropped} | ${readyz}, ${admission} | ${cpuShare.toFixed(2)} | ${load0.toFixed(1)} -> ${load1.toFixed(1)} |`,
  );
}
console.log('');
console.log('| run | p50 final delay (s) | p95 final delay (s) | max final delay (s) | longest without a final (s) | lagging warnings | ends | dropped samples | half time: /readyz, newcomer | gateway CPU (cores) | load avg |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
