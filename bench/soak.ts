/**
 * Soak: mixed sessions at a steady load for a long time.
 *
 *   npm run bench:soak -- --minutes 60 --sessions 8      (default: 60 minutes, 8 concurrent)
 *   BENCH_QUICK=1 npm run bench:soak                     (2 minutes)
 *
 * The gateway runs as its own process; this process is the load generator.
 * Sessions come and go: real-time speech and silence, 16 kHz mono and
 * 48 kHz stereo, fast uploads, flushes, abrupt disconnects. Reports RSS drift
 * (first vs last quarter), event-loop lag p99, and checks, exactly:
 * samples received = decoded + dropped (per session from `end`, and in total
 * from the server's counters), and slabs_in_use back to 0.
 * Raw results: build/bench/soak.json
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { readWav, wavToInt16 } from '../src/audio/wav.js';
import { connect } from '../src/client/client.js';
import { fliteSession, librivoxClips } from '../eval/corpus.js';
import { prng } from '../eval/fuzz.js';
import { STORY } from '../eval/texts.js';
import { packageRoot } from '../src/util/paths.js';
import { INFO, metricValue, startServer } from './lib/server.js';

export interface SoakOptions {
  minutes: number;
  sessions: number;
  /** Decoder pool size; default one per session, as in the capacity search, so decoders are not the bottleneck. */
  decoders?: number;
  seed: number;
  log?: (s: string) => void;
}

export interface SoakResult {
  sessionsRun: number;
  abrupt: number;
  ends: Record<string, number>;
  mismatches: number;
  totals: { received: number; decoded: number; dropped: number };
  serverTotals: { received: number; decoded: number; dropped: number };
  rss: { firstQuarterMb: number; lastQuarterMb: number; driftMb: number; samples: number[] };
  /** The V8 heap's share of the RSS (server metric), to tell JS growth from native growth. */
  heap: { firstQuarterMb: number; lastQuarterMb: number; driftMb: number; samples: number[] };
  eventLoopP99MaxMs: number;
  slabsInUseAtEnd: number;
  decodersInUseAtEnd: number;
}

const mean = (x: number[]) => (x.length ? x.reduce((a, b) => a + b, 0) / x.length : 0);

export async function soak(o: SoakOptions): Promise<SoakResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const rand = prng(o.seed);
  const clips = librivoxClips().map((c) => wavToInt16(readWav(c.file)));
  const story = wavToInt16(readWav(fliteSession(STORY.slice(0, 10), { voice: 'slt', gapSeconds: 1.5 }).file));
  const server = await startServer({ ...INFO, CAPTIONGATE_ENGINE_DECODERS: String(o.decoders ?? o.sessions), CAPTIONGATE_POOL_SLABS: String(o.sessions * 4) });
  const url = `ws://127.0.0.1:${server.port}/v1/listen`;
  const deadline = Date.now() + o.minutes * 60_000;
  const result: SoakResult = {
    sessionsRun: 0,
    abrupt: 0,
    ends: {},
    mismatches: 0,
    totals: { received: 0, decoded: 0, dropped: 0 },
    serverTotals: { received: 0, decoded: 0, dropped: 0 },
    rss: { firstQuarterMb: 0, lastQuarterMb: 0, driftMb: 0, samples: [] },
    heap: { firstQuarterMb: 0, lastQuarterMb: 0, driftMb: 0, samples: [] },
    eventLoopP99MaxMs: 0,
    slabsInUseAtEnd: -1,
    decodersInUseAtEnd: -1,
  };
  const sampler = setInterval(async () => {
    result.rss.samples.push(Math.round(server.rssMb() * 10) / 10);
    // One scrape per sample: each scrape also closes the server's event-loop window.
    const text = await server.metricsText().catch(() => '');
    result.heap.samples.push(text ? Math.round((metricValue(text, 'captiongate_process_heap_used_bytes') / 2 ** 20) * 10) / 10 : NaN);
    result.eventLoopP99MaxMs = Math.max(result.eventLoopP99MaxMs, metricValue(text, 'captiongate_event_loop_lag_p99_seconds') * 1000);
  }, 5000);

  // Meeting-like content: speech about 40% of the time.
  const withPause = (pcm: Int16Array, pauseSeconds: number) => {
    const out = new Int16Array(pcm.length + pauseSeconds * 16000);
    out.set(pcm);
    for (let i = pcm.length; i < out.length; i++) out[i] = Math.round((rand() - 0.5) * 30);
    return out;
  };
  const one = async () => {
    const r = rand();
    const stereo48 = r < 0.3;
    const pick = rand();
    const pcm16 =
      pick < 0.4
        ? withPause(clips[Math.floor(rand() * clips.length)]!, 8)
        : pick < 0.8
          ? withPause(story.subarray(Math.floor(rand() * (story.length / 2))), 4)
          : withPause(new Int16Array(0), 10);
    // Sessions never outlive the soak by more than a few seconds, so short soaks end on time.
    const seconds = Math.max(3, Math.min(5 + rand() * 40, (deadline - Date.now()) / 1000));
    const fast = rand() < 0.05;
    const abrupt = rand() < 0.15;
    // An abrupt one is a client that vanishes for good: no resume (the server parks it, then ends it).
    const c = await connect(url, { ...(stereo48 ? { sampleRate: 48000, channels: 2 } : { sampleRate: 16000 }), resume: !abrupt });
    result.sessionsRun++;
    const frames = Math.floor(seconds * 10);
    const t0 = performance.now();
    for (let f = 0; f < frames; f++) {
      const src = pcm16.subarray((f * 1600) % Math.max(1600, pcm16.length - 1600), ((f * 1600) % Math.max(1600, pcm16.length - 1600)) + 1600);
      let frame: Int16Array = src;
      if (stereo48) {
        frame = new Int16Array(src.length * 6);
        for (let i = 0; i < src.length * 3; i++) frame[2 * i] = frame[2 * i + 1] = src[Math.floor(i / 3)]!;
      }
      if (fast) await c.write(frame);
      else {
        const wait = t0 + f * 100 - performance.now();
        if (wait > 0) await new Promise((res) => setTimeout(res, wait));
        c.send(frame);
      }
      if (rand() < 0.01) c.flush();
      if (abrupt && f === Math.floor(frames / 2)) {
        result.abrupt++;
        c.terminate();
        return;
      }
      if (c.ended) break;
    }
    const end = await c.stop();
    result.ends[end.reason] = (result.ends[end.reason] ?? 0) + 1;
    const a = end.audio;
    if (a.receivedSamples !== a.decodedSamples + a.droppedSamples) result.mismatches++;
    result.totals.received += a.receivedSamples;
    result.totals.decoded += a.decodedSamples;
    result.totals.dropped += a.droppedSamples;
  };

  const lanes = Array.from({ length: o.sessions }, async (_, lane) => {
    await new Promise((r) => setTimeout(r, lane * 700));
    while (Date.now() < deadline) {
      try {
        await one();
      } catch (err) {
        // A refusal (capacity, rate limit) is a normal answer under load: count it, honour the hint.
        const e = err as { code?: string; retryAfterMs?: number };
        const key = `refused:${e.code ?? 'error'}`;
        result.ends[key] = (result.ends[key] ?? 0) + 1;
        await new Promise((res) => setTimeout(res, e.retryAfterMs ?? 1000));
      }
    }
  });
  let lastReport = Date.now();
  const reporter = setInterval(() => {
    if (Date.now() - lastReport > 60_000) {
      lastReport = Date.now();
      log(`soak: ${result.sessionsRun} sessions, RSS ${server.rssMb().toFixed(1)} MB (heap ${result.heap.samples.at(-1) ?? 0} MB), ends ${JSON.stringify(result.ends)}`);
    }
  }, 5000);
  await Promise.all(lanes);
  clearInterval(reporter);
  clearInterval(sampler);
  // Let abrupt disconnects settle, then read the server's own accounting.
  await new Promise((r) => setTimeout(r, 2000));
  result.serverTotals = {
    received: await server.metric('captiongate_samples_received_total'),
    decoded: await server.metric('captiongate_samples_decoded_total'),
    dropped: await server.metric('captiongate_samples_dropped_total'),
  };
  result.slabsInUseAtEnd = await server.metric('captiongate_slabs_in_use');
  result.decodersInUseAtEnd = await server.metric('captiongate_decoders_in_use');
  const q = Math.max(1, Math.floor(result.rss.samples.length / 4));
  result.rss.firstQuarterMb = mean(result.rss.samples.slice(0, q));
  result.rss.lastQuarterMb = mean(result.rss.samples.slice(-q));
  result.rss.driftMb = result.rss.lastQuarterMb - result.rss.firstQuarterMb;
  result.heap.firstQuarterMb = mean(result.heap.samples.slice(0, q));
  result.heap.lastQuarterMb = mean(result.heap.samples.slice(-q));
  result.heap.driftMb = result.heap.lastQuarterMb - result.heap.firstQuarterMb;
  const code = await server.stop();
  if (code !== 0) throw new Error(`server exited with ${code}:\n${server.log().slice(-2000)}`);
  return result;
}

async function main() {
  const { values } = parseArgs({ options: { minutes: { type: 'string' }, sessions: { type: 'string' }, decoders: { type: 'string' }, seed: { type: 'string', default: '1' } } });
  const quick = process.env.BENCH_QUICK === '1';
  const minutes = Number(values.minutes ?? (quick ? 2 : 60));
  const sessions = Number(values.sessions ?? 8);
  console.log(`soak: ${minutes} min, ${sessions} concurrent sessions`);
  const r = await soak({ minutes, sessions, seed: Number(values.seed), ...(values.decoders ? { decoders: Number(values.decoders) } : {}) });
  const exact = r.mismatches === 0 && r.serverTotals.received === r.serverTotals.decoded + r.serverTotals.dropped;
  console.log('\n| figure | value |\n|---|---|');
  console.log(`| sessions run | ${r.sessionsRun} (${r.abrupt} cut abruptly) |`);
  console.log(`| ends | ${Object.entries(r.ends).map(([k, v]) => `${k} ${v}`).join(', ')} |`);
  console.log(`| audio received / decoded / dropped (16 kHz samples, server counters) | ${r.serverTotals.received} / ${r.serverTotals.decoded} / ${r.serverTotals.dropped} |`);
  console.log(`| received = decoded + dropped, exactly | ${exact ? 'yes' : 'NO'} (per-session mismatches: ${r.mismatches}) |`);
  console.log(`| RSS first quarter → last quarter | ${r.rss.firstQuarterMb.toFixed(1)} MB → ${r.rss.lastQuarterMb.toFixed(1)} MB (drift ${r.rss.driftMb >= 0 ? '+' : ''}${r.rss.driftMb.toFixed(1)} MB) |`);
  console.log(`| V8 heap in use, first quarter → last quarter | ${r.heap.firstQuarterMb.toFixed(1)} MB → ${r.heap.lastQuarterMb.toFixed(1)} MB (drift ${r.heap.driftMb >= 0 ? '+' : ''}${r.heap.driftMb.toFixed(1)} MB) |`);
  console.log(`| event-loop lag p99 (worst 5 s window) | ${r.eventLoopP99MaxMs.toFixed(1)} ms |`);
  console.log(`| slabs_in_use / decoders_in_use at the end | ${r.slabsInUseAtEnd} / ${r.decodersInUseAtEnd} |`);
  const dir = path.join(packageRoot(), 'build', 'bench');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'soak.json'), JSON.stringify({ date: new Date().toISOString(), minutes, sessions, ...r }, null, 2));
  if (!exact || r.slabsInUseAtEnd !== 0) process.exitCode = 1;
}

if (process.argv[1]?.endsWith('soak.js')) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
