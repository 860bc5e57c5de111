/**
 * server.workers: one node, two gateway processes on one port, as
 * `npm start` runs them (a cluster primary and its workers), for each
 * transport (uWS: SO_REUSEPORT; ws: Node cluster's shared handle). The
 * overhead engine makes a final each second of audio, so every session has
 * captions without a recognizer's CPU.
 *
 * Redis: this only checks that redis.url is set (nothing here needs the bus).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';

import { RawClient } from '../helpers/gateway.js';
import { alive, childPids, get, samples, startNode, value, type NodeProcess } from '../helpers/node-process.js';

const ENV = {
  CAPTIONGATE_SERVER_WORKERS: '2',
  CAPTIONGATE_REDIS_URL: 'redis://127.0.0.1:6379',
  CAPTIONGATE_ENGINE_KIND: 'overhead',
  CAPTIONGATE_ALLOW_OVERHEAD_ENGINE: '1',
  CAPTIONGATE_OVERHEAD_FINAL_SECONDS: '1',
  CAPTIONGATE_POOL_SLABS: '128',
  CAPTIONGATE_SERVER_SHUTDOWN_GRACE_SECONDS: '15',
};
const FRAME = new Int16Array(1600); // 100 ms
/** The primary's line once every worker listens (a worker's own "listening" line comes earlier). */
const NODE_READY = /"port":(\d+),"msg":"node ready/;

type End = { type: 'end'; reason: string; audio: { receivedSamples: number; decodedSamples: number; droppedSamples: number } };

async function open(port: number): Promise<{ c: RawClient; id: string }> {
  const c = new RawClient(`ws://127.0.0.1:${port}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
  const ready = (await c.waitFor((m) => m.type === 'ready', 30_000)) as { sessionId: string };
  return { c, id: ready.sessionId };
}

/** Sends `seconds` of audio at once, then stop; resolves with the end. */
async function talk(c: RawClient, seconds: number): Promise<End> {
  for (let i = 0; i < seconds * 10; i++) c.ws.send(FRAME);
  c.sendJson({ type: 'stop' });
  return (await c.waitFor((m) => m.type === 'end', 30_000)) as End;
}

/** The pid that logged "session started" for each session id. */
function sessionPids(out: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of out.split('\n')) {
    if (!line.includes('"msg":"session started"')) continue;
    const j = JSON.parse(line) as { pid: number; session: string };
    m.set(j.session, j.pid);
  }
  return m;
}

/** The pid of each session, once the log shows them all. */
function logged(node: NodeProcess, sessions: { id: string }[]): Promise<Map<string, number>> {
  return until('every session in the log', async () => {
    const m = sessionPids(node.out());
    return sessions.every((s) => m.has(s.id)) ? m : null;
  });
}

async function until<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 30_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const metrics = async (port: number, q = '') => (await get(port, `/metrics${q}`)).body;
const workerPids = (text: string) => samples(text, 'captiongate_worker_sessions_active').map((s) => Number(s.labels.pid));

describe.each(['uws', 'ws'] as const)('two workers on one port (%s)', (transport) => {
  let node: NodeProcess;
  const ended = new Map<string, { end: End; finals: number }>();

  beforeAll(async () => {
    node = await startNode({ ...ENV, CAPTIONGATE_SERVER_TRANSPORT: transport }, NODE_READY);
  });
  afterAll(async () => {
    await node?.stop();
  });

  it('spreads sessions over both workers; every session gets its captions; /metrics is the node total', async () => {
    const N = 40;
    // One after another, as clients arrive (ws: the cluster's round robin hands each to the next idle worker).
    const sessions: { c: RawClient; id: string }[] = [];
    for (let i = 0; i < N; i++) sessions.push(await open(node.port));
    // While all are open: the node's /metrics shows each worker's share, labelled by pid.
    const during = await metrics(node.port);
    const perWorker = samples(during, 'captiongate_worker_sessions_active');
    expect(perWorker, during).toHaveLength(2);
    expect(new Set(perWorker.map((s) => s.labels.pid)).size).toBe(2);
    for (const w of perWorker) expect(w.value, `worker ${w.labels.worker} has no session: ${JSON.stringify(perWorker)}`).toBeGreaterThan(0);
    expect(perWorker.reduce((a, s) => a + s.value, 0)).toBe(N);
    expect(value(during, 'captiongate_sessions_active')).toBe(N);
    expect(value(during, 'captiongate_slabs_total')).toBe(128);
    expect(value(during, 'captiongate_workers_scraped')).toBe(2);
    // The log agrees: two pids started them.
    const pids = await logged(node, sessions);
    expect(new Set(sessions.map((s) => pids.get(s.id))).size).toBe(2);

    const ends = await Promise.all(sessions.map(({ c }) => talk(c, 3)));
    let received = 0;
    sessions.forEach(({ c, id }, i) => {
      const end = ends[i]!;
      expect(end.reason).toBe('client_stop');
      expect(end.audio.receivedSamples).toBe(48_000);
      expect(end.audio.decodedSamples + end.audio.droppedSamples).toBe(end.audio.receivedSamples);
      const finals = c.messages.filter((m) => m.type === 'final' && (m as { text: string }).text !== '').length;
      expect(finals, `session ${id} got no captions`).toBeGreaterThan(0);
      received += end.audio.receivedSamples;
      ended.set(id, { end, finals });
    });
    await Promise.all(sessions.map(({ c }) => c.closed));

    // Counters sum over the workers; each worker's own part is there with ?worker=self.
    const after = await until('every end counted', async () => {
      const t = await metrics(node.port);
      return samples(t, 'captiongate_sessions_ended_total').reduce((a, s) => a + s.value, 0) === N ? t : null;
    });
    expect(value(after, 'captiongate_sessions_started_total')).toBe(N);
    expect(value(after, 'captiongate_samples_received_total')).toBe(received);
    expect(value(after, 'captiongate_sessions_active')).toBe(0);
    const self = await metrics(node.port, '?worker=self');
    expect(value(self, 'captiongate_slabs_total')).toBe(64);
    expect(value(self, 'captiongate_sessions_started_total')).toBeLessThan(N);
    expect(samples(self, 'captiongate_worker_sessions_active')).toHaveLength(1);
    // Each worker by its index, whichever worker the scrape reaches; the node total is their sum.
    const each = await Promise.all([0, 1].map((i) => metrics(node.port, `?worker=${i}`)));
    each.forEach((t, i) => {
      expect(value(t, 'captiongate_slabs_total')).toBe(64);
      expect(samples(t, 'captiongate_worker_sessions_active').map((x) => x.labels.worker)).toEqual([String(i)]);
    });
    expect(each.reduce((a, t) => a + value(t, 'captiongate_sessions_started_total'), 0)).toBe(N);
    expect(each.reduce((a, t) => a + value(t, 'captiongate_samples_received_total'), 0)).toBe(received);
    // The node's event-loop lag is its worst worker's, not a sum.
    expect(samples(after, 'captiongate_event_loop_lag_p99_seconds')).toHaveLength(1);
    expect((await get(node.port, '/metrics?worker=2')).status).toBe(503);
    expect((await get(node.port, '/metrics?worker=x')).status).toBe(400);
  });

  it('serves a caption file from the worker that did not write it (one SQLite file)', async () => {
    const pids = sessionPids(node.out());
    const [id, { finals }] = [...ended.entries()][0]!;
    const writer = pids.get(id)!;
    // One kept-alive socket reaches one worker: find one that reaches the other.
    const agent = await until('a connection to the other worker', async () => {
      const a = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const h = JSON.parse((await get(node.port, '/healthz', a)).body) as { pid: number; worker: number };
      if (h.pid !== writer) return a;
      a.destroy();
      return null;
    });
    // Served from the store, which is at most store.flushMs behind: wait for the session's end there.
    const file = await until('the ended session in the store', async () => {
      const r = await get(node.port, `/v1/sessions/${id}/captions.json`, agent);
      return r.status === 200 && (JSON.parse(r.body) as { endedAt: string | null }).endedAt !== null ? r : null;
    });
    const body = JSON.parse(file.body) as { live: boolean; finals: { text: string }[]; audio: { receivedSamples: number } };
    expect(body.live).toBe(false);
    expect(body.finals).toHaveLength(finals);
    expect(body.audio.receivedSamples).toBe(48_000);
    const vtt = await get(node.port, `/v1/sessions/${id}/captions.vtt`, agent);
    expect(vtt.status).toBe(200);
    expect(vtt.body.startsWith('WEBVTT')).toBe(true);
    const h = JSON.parse((await get(node.port, '/healthz', agent)).body) as { pid: number };
    expect(h.pid).not.toBe(writer);
    agent.destroy();
  });

  it('restarts a worker killed with SIGKILL, and the node keeps serving', async () => {
    const before = workerPids(await metrics(node.port));
    expect(before).toHaveLength(2);
    const victim = before[0]!;
    process.kill(victim, 'SIGKILL');
    await until('the worker to die', async () => (alive(victim) ? null : true));
    // The other worker serves meanwhile.
    const meanwhile = await Promise.all(Array.from({ length: 6 }, () => open(node.port)));
    for (const { c } of meanwhile) expect((await talk(c, 2)).reason).toBe('client_stop');
    const restarted = await until('the restarted worker in /metrics', async () => {
      const t = await metrics(node.port);
      const pids = workerPids(t);
      return value(t, 'captiongate_workers_scraped') === 2 && pids.length === 2 && !pids.includes(victim) ? t : null;
    });
    expect(value(restarted, 'captiongate_worker_restarts_total')).toBe(1);
    expect(node.out()).toMatch(/"msg":"worker \d \(pid \d+\) died \(signal SIGKILL\)/);
    expect(childPids(node.child.pid!)).toHaveLength(2);
    // Both serve again.
    const again: { c: RawClient; id: string }[] = [];
    for (let i = 0; i < 20; i++) again.push(await open(node.port));
    const pids = await logged(node, again);
    expect(new Set(again.map((s) => pids.get(s.id))).size).toBe(2);
    for (const { c } of again) expect((await talk(c, 1)).reason).toBe('client_stop');
  });

  it('SIGTERM: every session ends properly, every worker stops, the port is freed', async () => {
    const workers = childPids(node.child.pid!);
    expect(workers).toHaveLength(2);
    const live = await Promise.all(Array.from({ length: 12 }, () => open(node.port)));
    // Real-time senders, until the server ends them.
    for (const { c } of live) {
      void (async () => {
        while (c.closeCode === undefined && !c.messages.some((m) => m.type === 'end')) {
          if (c.ws.readyState === 1) c.ws.send(FRAME);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
    }
    await new Promise((r) => setTimeout(r, 2000));
    const sentAt = Date.now();
    // uws: SIGTERM to the primary, as a supervisor of its main process sends it. ws: to every
    // process at once, as systemd's default KillMode=control-group does: one stop each, not a "second signal".
    node.child.kill('SIGTERM');
    if (transport === 'ws') for (const pid of workers) process.kill(pid, 'SIGTERM');
    const code = await node.exited;
    expect(code, node.out().split('\n').filter((l) => !l.includes('"level":30')).join('\n').slice(-4000)).toBe(0);
    expect(Date.now() - sentAt).toBeLessThan(25_000);
    for (const { c } of live) {
      await c.closed;
      expect(c.closeCode).toBe(4006);
      const end = c.messages.find((m) => m.type === 'end') as End;
      expect(end.reason).toBe('server_shutdown');
      expect(end.audio.receivedSamples).toBe(end.audio.decodedSamples + end.audio.droppedSamples);
      expect(c.messages.some((m) => m.type === 'final' && (m as { text: string }).text !== '')).toBe(true);
    }
    for (const pid of workers) expect(alive(pid)).toBe(false);
    expect(node.out()).not.toContain('second signal');
    expect(node.out().match(/"msg":"shutdown complete"/g)).toHaveLength(2);
    // The port is free again.
    await new Promise<void>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(node.port, '127.0.0.1', () => s.close(() => resolve()));
    });
  });
});

describe('server.workers at startup', () => {
  const run = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, args, { env: { ...process.env, PORT: '0', CAPTIONGATE_SERVER_HOST: '127.0.0.1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('exit', (code) => resolve({ code, out }));
    });

  it('more than one worker without redis.url: refuses with one line saying Redis is required and how to set it', async () => {
    for (const args of [[path.resolve('dist/src/main.js')], [path.resolve('bin/captiongate.js'), 'serve', '--workers', '3']]) {
      const r = await run(args, args.length === 1 ? { CAPTIONGATE_SERVER_WORKERS: '2' } : {});
      expect(r.code).toBe(1);
      const lines = r.out.split('\n').filter((l) => l.includes('Redis is required'));
      expect(lines, r.out).toHaveLength(1);
      expect(lines[0]).toContain('CAPTIONGATE_REDIS_URL');
      expect(lines[0]).toContain(args.length === 1 ? '(it is 2)' : '(it is 3)');
      expect(r.out).not.toContain('listening');
    }
  });

  it('a worker that cannot start stops the node (exit 1, its reason in the log); SIGTERM while workers start exits 0 at once', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-workers-start-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const store = { CAPTIONGATE_STORE_PATH: path.join(dir, 'captions.db') };
    const bad = await run([path.resolve('dist/src/main.js')], { ...ENV, ...store, CAPTIONGATE_ENGINE_KIND: 'pocketsphinx', CAPTIONGATE_ENGINE_POCKETSPHINX_MODEL_DIR: '/nonexistent' });
    expect(bad.code).toBe(1);
    expect(bad.out).toMatch(/"msg":"worker \d \(pid \d+\) failed to start \(code 1\): stopping the node/);
    expect(bad.out).toContain('"msg":"startup failed:');

    const child = spawn(process.execPath, [path.resolve('dist/src/main.js')], {
      env: { ...process.env, ...ENV, PORT: '0', CAPTIONGATE_SERVER_HOST: '127.0.0.1', CAPTIONGATE_ENGINE_KIND: 'pocketsphinx', ...store },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('"msg":"starting 2 workers')) resolve();
      }),
    );
    const t0 = Date.now();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('one worker and no Redis: the single process of before (no cluster primary)', async () => {
    const node = await startNode({ CAPTIONGATE_ENGINE_KIND: 'overhead', CAPTIONGATE_ALLOW_OVERHEAD_ENGINE: '1' });
    try {
      expect(JSON.parse((await get(node.port, '/healthz')).body)).toEqual({ status: 'ok' });
      expect(childPids(node.child.pid!)).toEqual([]);
      const t = await metrics(node.port);
      expect(samples(t, 'captiongate_worker_sessions_active')).toEqual([]);
      expect(t).not.toContain('captiongate_workers');
      expect(node.out()).not.toContain('"role":"primary"');
    } finally {
      expect(await node.stop()).toBe(0);
    }
  });
});
