/**
 * `npm run bench:fanout` (issue 15): meeting fan-out through Redis vs in
 * process, side by side in one run.
 *
 *   A (in-process): one node, no Redis; 1 speaker and BENCH_VIEWERS viewers on it.
 *   B (Redis): a real redis-server (started here, temporary folder, free port,
 *      stopped after) and three nodes sharing it (distinct server.nodeId); the
 *      speaker on node 1, the viewers spread evenly over nodes 1–3.
 *
 * The speaker streams 100 ms frames of silence at real time; the overhead
 * engine (CAPTIONGATE_OVERHEAD_FINAL_SECONDS=1) makes a final every second of
 * audio whatever the audio is. For each final the speaker gets on its own
 * socket (matched by `segment`), each viewer's copy is timed against it:
 * delay = viewer receive time − speaker receive time. Only finals the speaker
 * gets after every viewer is ready, during BENCH_SECONDS, are counted.
 *
 * Every socket (the speaker and all viewers) lives in this one process, on one
 * event loop: a receive time includes this process's own loop delay (reported
 * as benchLoopP99Ms; the speaker's copy is timed on the same loop, so a stall
 * can lengthen a delay or shorten it): delays near that figure are the bench's.
 *
 * Env: BENCH_VIEWERS (500), BENCH_SECONDS (30). Raw delays: build/bench/fanout.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

import WebSocket from 'ws';

import { packageRoot } from '../src/util/paths.js';
import { percentile, sleep } from './lib/measure.js';
import { startRedis, type BenchRedis } from './lib/redis.js';
import { INFO, startServer, type ServerProcess } from './lib/server.js';

const VIEWERS = Number(process.env.BENCH_VIEWERS ?? 500);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 30);
const NODES_B = 3;
const FRAME_MS = 100;
const FRAME = Buffer.alloc((16000 * FRAME_MS) / 1000 * 2); // s16le silence, 100 ms at 16 kHz
/** Viewers opened at once (then the next batch). */
const OPEN_BATCH = 25;
/** After the last viewer is ready, before counting (joins settle). */
const SETTLE_MS = 1500;
/** After the window, for copies still on their way. */
const GRACE_MS = 3000;

const room = VIEWERS + 100;
const nodeEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
  ...INFO,
  CAPTIONGATE_ENGINE_KIND: 'overhead',
  CAPTIONGATE_ALLOW_OVERHEAD_ENGINE: '1',
  CAPTIONGATE_OVERHEAD_FINAL_SECONDS: '1',
  // Auth off (no CAPTIONGATE_AUTH_SECRET): viewers need no token.
  CAPTIONGATE_AUTH_SECRET: '',
  // Every viewer connects from 127.0.0.1.
  CAPTIONGATE_LIMITS_MAX_CONNECTIONS_PER_ADDRESS: String(room),
  CAPTIONGATE_MEETINGS_MAX_VIEWERS_PER_MEETING: String(room),
  CAPTIONGATE_MEETINGS_MAX_VIEWERS_PER_TOKEN: String(room),
  CAPTIONGATE_MEETINGS_MAX_WAITING_VIEWERS_PER_ADDRESS: String(room),
  CAPTIONGATE_MEETINGS_MAX_WAITING_VIEWERS_PER_TOKEN: String(room),
  CAPTIONGATE_RATE_LIMITS_OPENS_PER_MINUTE_PER_ADDRESS: '1000000',
  CAPTIONGATE_RATE_LIMITS_OPENS_PER_MINUTE_PER_TOKEN: '1000000',
  CAPTIONGATE_SERVER_SHUTDOWN_GRACE_SECONDS: '3',
  ...extra,
});

interface Stats {
  n: number;
  p50: number;
  p99: number;
  max: number;
  min: number;
}
const round = (x: number) => Math.round(x * 100) / 100;
const stats = (xs: readonly number[]): Stats => ({
  n: xs.length,
  p50: round(percentile(xs, 50)),
  p99: round(percentile(xs, 99)),
  max: round(xs.length ? Math.max(...xs) : NaN),
  min: round(xs.length ? Math.min(...xs) : NaN),
});

interface ScenarioResult {
  name: string;
  nodes: number;
  viewers: number;
  /** Viewers per node (index = node). */
  viewersPerNode: number[];
  finalsCounted: number;
  /** Viewer copies expected (finals × viewers) that never came. */
  missing: number;
  /** Copies that came, for a final the speaker never got in the window (not counted). */
  delayMs: Stats;
  /** By the viewer's node (B: node 1 has the speaker). */
  delayMsByNode: Stats[];
  /** Per counted final: p50/p99 over its viewers. */
  perFinal: { segment: number; p50: number; p99: number; max: number }[];
  /** This process's event loop delay during the window (ms). */
  benchLoopP99Ms: number;
  benchLoopMaxMs: number;
  /** Gateway CPU seconds during the window, per node. */
  nodeCpuSeconds: number[];
  /** All delays, ms (for the JSON file). */
  raw: number[];
}

/** Opens a socket and waits for its first message of `type` (listening from the start: it may come in the upgrade's packet). */
function connect(url: string, type: string): { ws: WebSocket; ready: Promise<Record<string, unknown>> } {
  const ws = new WebSocket(url);
  const ready = waitFor(ws, type);
  ws.once('error', () => {}); // reported by waitFor's close
  return { ws, ready };
}

function waitFor(ws: WebSocket, type: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      ws.off('message', on);
      reject(new Error(`no ${type} within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (data: WebSocket.RawData, isBinary: boolean) => {
      if (isBinary) return;
      const m = JSON.parse(data.toString()) as Record<string, unknown>;
      if (m.type === type) {
        clearTimeout(t);
        ws.off('message', on);
        resolve(m);
      } else if (m.type === 'error') {
        clearTimeout(t);
        ws.off('message', on);
        reject(new Error(`${type}: got ${JSON.stringify(m)}`));
      }
    };
    ws.on('message', on);
    ws.once('close', (code, reason) => {
      clearTimeout(t);
      reject(new Error(`closed ${code} ${reason.toString()} before ${type}`));
    });
  });
}

async function scenario(name: string, servers: ServerProcess[]): Promise<ScenarioResult> {
  const meetingId = `fanout-${name}-${Date.now()}`;
  const speakerNode = servers[0]!;
  console.log(`\n[${name}] ${servers.length} node(s), ${VIEWERS} viewers, meeting ${meetingId}`);

  // Speaker first (its session opens the meeting's room), streaming at real time from now on.
  const { ws: speaker, ready: speakerReady } = connect(`ws://127.0.0.1:${speakerNode.port}/v1/listen?sampleRate=16000&channels=1&encoding=s16le&interim=false&meetingId=${meetingId}&speaker=bench`, 'ready');
  const speakerFinals = new Map<number, number>(); // segment -> receive time (counted window only)
  let counting = false;
  speaker.on('message', (data, isBinary) => {
    const t = performance.now();
    if (isBinary || !counting) return;
    const s = data.toString();
    if (!s.includes('"final"')) return;
    const m = JSON.parse(s) as { type: string; segment: number; text: string };
    if (m.type === 'final' && m.text !== '') speakerFinals.set(m.segment, t);
  });
  await speakerReady;
  let sending = true;
  const pump = (async () => {
    const t0 = performance.now();
    for (let i = 0; sending; i++) {
      const due = t0 + i * FRAME_MS;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (!sending || speaker.readyState !== WebSocket.OPEN) break;
      speaker.send(FRAME);
    }
  })();

  // Viewers, evenly over the nodes, a batch at a time.
  const viewerNode: number[] = [];
  // segment -> receive time per viewer (NaN: not yet)
  const got = new Map<number, Float64Array>();
  const sockets: WebSocket[] = [];
  const viewerClosed: string[] = [];
  const openViewer = async (v: number) => {
    const node = v % servers.length;
    viewerNode[v] = node;
    const { ws, ready } = connect(`ws://127.0.0.1:${servers[node]!.port}/v1/meetings/${meetingId}/captions`, 'viewer_ready');
    sockets[v] = ws;
    ws.on('message', (data, isBinary) => {
      const t = performance.now();
      if (isBinary) return;
      const s = data.toString();
      if (!s.includes('"final"')) return;
      const m = JSON.parse(s) as { type: string; segment: number; text: string };
      if (m.type !== 'final' || m.text === '') return;
      let row = got.get(m.segment);
      if (!row) {
        row = new Float64Array(VIEWERS).fill(NaN);
        got.set(m.segment, row);
      }
      // The first copy (a replayed final is older than the window and not counted anyway).
      if (Number.isNaN(row[v]!)) row[v] = t;
    });
    ws.on('close', (code, reason) => {
      if (sending) viewerClosed.push(`viewer ${v} (node ${node + 1}): ${code} ${reason.toString()}`);
    });
    await ready;
  };
  const tOpen = performance.now();
  for (let v = 0; v < VIEWERS; v += OPEN_BATCH) {
    await Promise.all(Array.from({ length: Math.min(OPEN_BATCH, VIEWERS - v) }, (_, k) => openViewer(v + k)));
  }
  console.log(`[${name}] ${VIEWERS} viewers ready in ${((performance.now() - tOpen) / 1000).toFixed(1)} s`);
  await sleep(SETTLE_MS);

  // The window.
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const cpu0 = servers.map((s) => s.cpuSeconds());
  loop.enable();
  counting = true;
  await sleep(SECONDS * 1000);
  counting = false;
  loop.disable();
  const cpu1 = servers.map((s) => s.cpuSeconds());
  await sleep(GRACE_MS);

  // Stop the speaker, close the viewers.
  sending = false;
  await pump;
  const end = waitFor(speaker, 'end', 15_000).catch((e: Error) => ({ type: 'end', error: e.message }));
  speaker.send(JSON.stringify({ type: 'stop' }));
  await end;
  speaker.close();
  for (const ws of sockets) ws.close();
  await sleep(300);

  // Delays.
  const raw: number[] = [];
  const byNode: number[][] = servers.map(() => []);
  const perFinal: ScenarioResult['perFinal'] = [];
  let missing = 0;
  for (const [segment, ts] of [...speakerFinals].sort((a, b) => a[0] - b[0])) {
    const row = got.get(segment);
    const mine: number[] = [];
    for (let v = 0; v < VIEWERS; v++) {
      const tv = row ? row[v]! : NaN;
      if (Number.isNaN(tv)) {
        missing++;
        continue;
      }
      const d = tv - ts;
      mine.push(d);
      raw.push(d);
      byNode[viewerNode[v]!]!.push(d);
    }
    perFinal.push({ segment, p50: round(percentile(mine, 50)), p99: round(percentile(mine, 99)), max: round(mine.length ? Math.max(...mine) : NaN) });
  }
  if (viewerClosed.length) console.log(`[${name}] viewers closed early: ${viewerClosed.slice(0, 5).join('; ')}${viewerClosed.length > 5 ? ` (+${viewerClosed.length - 5})` : ''}`);
  const result: ScenarioResult = {
    name,
    nodes: servers.length,
    viewers: VIEWERS,
    viewersPerNode: servers.map((_, n) => viewerNode.filter((x) => x === n).length),
    finalsCounted: speakerFinals.size,
    missing,
    delayMs: stats(raw),
    delayMsByNode: byNode.map(stats),
    perFinal,
    benchLoopP99Ms: round(loop.percentile(99) / 1e6),
    benchLoopMaxMs: round(loop.max / 1e6),
    nodeCpuSeconds: cpu1.map((c, i) => round(c - cpu0[i]!)),
    raw: raw.map(round),
  };
  console.log(
    `[${name}] finals ${result.finalsCounted}, copies ${raw.length}, missing ${missing}; delay p50 ${result.delayMs.p50} ms, p99 ${result.delayMs.p99} ms, max ${result.delayMs.max} ms; bench loop p99 ${result.benchLoopP99Ms} ms`,
  );
  return result;
}

async function main(): Promise<void> {
  console.log(`Meeting fan-out (issue 15): 1 speaker, ${VIEWERS} viewers, ${SECONDS} s counted per scenario; A in-process (1 node), B through Redis (${NODES_B} nodes).`);
  let redis: BenchRedis | null = null;
  const servers: ServerProcess[] = [];
  const stopAll = async () => {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  };
  let a: ScenarioResult;
  let b: ScenarioResult;
  try {
    // A: one node, no Redis.
    servers.push(await startServer(nodeEnv()));
    a = await scenario('A-in-process', servers);
    await stopAll();

    // B: Redis, three nodes; the speaker on node 1 (servers[0]).
    redis = await startRedis();
    for (let i = 1; i <= NODES_B; i++) {
      servers.push(await startServer(nodeEnv({ CAPTIONGATE_REDIS_URL: redis.url, CAPTIONGATE_SERVER_NODE_ID: `bench-fanout-${i}` })));
    }
    b = await scenario('B-redis', servers);
    await stopAll();
  } finally {
    await stopAll();
    await redis?.stop();
  }

  const added = { p50: round(b.delayMs.p50 - a.delayMs.p50), p99: round(b.delayMs.p99 - a.delayMs.p99), max: round(b.delayMs.max - a.delayMs.max) };
  const pad = (s: string | number, n: number) => String(s).padStart(n);
  console.log('\nDelay of a viewer\'s final after the speaker\'s own copy (ms; receive times in this one process)');
  console.log(`${'scenario'.padEnd(24)}${pad('nodes', 6)}${pad('viewers', 8)}${pad('finals', 7)}${pad('copies', 8)}${pad('missing', 8)}${pad('p50', 9)}${pad('p99', 9)}${pad('max', 9)}${pad('loop p99', 10)}`);
  for (const r of [a, b]) {
    console.log(
      `${r.name.padEnd(24)}${pad(r.nodes, 6)}${pad(r.viewers, 8)}${pad(r.finalsCounted, 7)}${pad(r.delayMs.n, 8)}${pad(r.missing, 8)}${pad(r.delayMs.p50, 9)}${pad(r.delayMs.p99, 9)}${pad(r.delayMs.max, 9)}${pad(r.benchLoopP99Ms, 10)}`,
    );
  }
  b.delayMsByNode.forEach((s, i) => console.log(`${`  B node ${i + 1}${i === 0 ? ' (speaker)' : ''}`.padEnd(24)}${pad('', 6)}${pad(b.viewersPerNode[i]!, 8)}${pad('', 7)}${pad(s.n, 8)}${pad('', 8)}${pad(s.p50, 9)}${pad(s.p99, 9)}${pad(s.max, 9)}`));
  console.log(`${'added by Redis (B − A)'.padEnd(24)}${pad('', 6)}${pad('', 8)}${pad('', 7)}${pad('', 8)}${pad('', 8)}${pad(added.p50, 9)}${pad(added.p99, 9)}${pad(added.max, 9)}`);
  console.log(
    'Note: every socket (speaker and viewers) is in this one Node process on one event loop, so a receive time includes this process\'s own loop delay ("loop p99"); the speaker\'s copy is timed on the same loop. Gateway nodes and redis-server share the machine\'s cores with this process.',
  );

  const out = {
    viewers: VIEWERS,
    seconds: SECONDS,
    addedMs: added,
    scenarios: [a, b].map(({ raw: _raw, ...r }) => r),
  };
  console.log('\nJSON:');
  console.log(JSON.stringify(out));
  const dir = path.join(packageRoot(), 'build', 'bench');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'fanout.json');
  writeFileSync(file, JSON.stringify({ ...out, scenarios: [a, b] }, null, 1));
  console.log(`(all delays: ${file})`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
