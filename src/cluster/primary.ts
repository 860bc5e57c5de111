/**
 * The cluster primary (server.workers > 1): it forks the workers, restarts
 * one that dies (with backoff), forwards SIGTERM/SIGINT and waits for every
 * worker to finish, and aggregates the workers' metrics for /metrics. It
 * never handles a connection and loads no engine.
 *
 * One port for all: with uWS each worker listens itself (uSockets sets
 * SO_REUSEPORT on Linux, so the kernel spreads connections over them).
 * A port bound as 0 cannot be shared that way, so for port 0 (tests,
 * benches) the primary picks a free port first and every worker binds it.
 * With ws, Node's cluster shares one listening handle: every worker asks for
 * the configured port and the primary holds it.
 */
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';

import type { Logger } from 'pino';
import { AggregatorRegistry, Counter, Gauge } from 'prom-client';

import { formatBytes } from '../config/derive.js';
import type { Config } from '../config/schema.js';
import { parseToPrimary, type MetricsJson, type ToWorker } from './messages.js';
import { DIVIDED_KEYS } from './share.js';

/** How long the primary waits for each worker's metrics. */
const COLLECT_TIMEOUT_MS = 3000;
/** A worker that ran this long before dying restarts at the first backoff step again. */
const HEALTHY_MS = 30_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30_000;

interface Slot {
  readonly index: number;
  worker: Worker | null;
  ready: boolean;
  startedAt: number;
  /** Consecutive early deaths (for the backoff). */
  failures: number;
  timer: NodeJS.Timeout | null;
  slabs: number;
  poolBytes: number;
}

/** A port free on `host` now (the kernel's pick for port 0), for the workers to share. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const a = probe.address();
      probe.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** Runs the node until it is stopped; resolves with the exit code for the process. */
export async function runPrimary(config: Readonly<Config>, log: Logger): Promise<number> {
  const n = config.server.workers;
  const slots: Slot[] = Array.from({ length: n }, (_, index) => ({ index, worker: null, ready: false, startedAt: 0, failures: 0, timer: null, slabs: 0, poolBytes: 0 }));
  let boundPort: number | null = null;
  let started = false;
  let stopping = false;
  let failedCode = 0;
  let restarts = 0;
  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => (finish = resolve));
  let startupDone: () => void = () => {};
  const allReady = new Promise<void>((resolve) => (startupDone = resolve));

  // --- metrics: gather every ready worker's registry and aggregate ---
  let nextCollect = 1;
  const collecting = new Map<number, (metrics: MetricsJson) => void>();
  const nodeMetrics = async (only?: number): Promise<string> => {
    if (only !== undefined && !slots[only]?.ready) {
      throw new Error(only < n ? `worker ${only} is not running (starting or restarting)` : `there is no worker ${only} (server.workers is ${n})`);
    }
    const live = slots.filter((s) => s.ready && s.worker?.isConnected() && (only === undefined || s.index === only));
    const id = nextCollect++;
    const responses: MetricsJson[] = [];
    await new Promise<void>((resolve) => {
      let waiting = live.length;
      if (waiting === 0) return resolve();
      const timer = setTimeout(() => {
        collecting.delete(id);
        resolve();
      }, COLLECT_TIMEOUT_MS);
      const answered = (metrics: MetricsJson | null) => {
        if (metrics) responses.push(metrics);
        if (--waiting === 0) {
          clearTimeout(timer);
          collecting.delete(id);
          resolve();
        }
      };
      collecting.set(id, answered);
      const msg: ToWorker = { t: 'cg:collect', id };
      for (const s of live) s.worker!.send(msg, undefined, {}, (err: Error | null) => err && answered(null));
    });
    const registry = AggregatorRegistry.aggregate(responses);
    if (only !== undefined) {
      if (responses.length === 0) throw new Error(`worker ${only} did not answer within ${COLLECT_TIMEOUT_MS} ms`);
      return registry.metrics();
    }
    new Gauge({ name: 'captiongate_workers', help: 'Worker processes configured (server.workers).', registers: [registry] }).set(n);
    new Gauge({ name: 'captiongate_workers_scraped', help: 'Workers whose metrics are in this scrape (fewer than captiongate_workers while one restarts or does not answer).', registers: [registry] }).set(responses.length);
    new Counter({ name: 'captiongate_worker_restarts_total', help: 'Workers restarted after they died.', registers: [registry] }).inc(restarts);
    return registry.metrics();
  };

  const onMessage = (slot: Slot, worker: Worker, raw: unknown) => {
    const m = parseToPrimary(raw);
    if (!m || slot.worker !== worker) return;
    switch (m.t) {
      case 'cg:ready':
        slot.ready = true;
        slot.slabs = m.slabs;
        slot.poolBytes = m.poolBytes;
        boundPort ??= m.port;
        if (started) log.info({ worker: slot.index, pid: worker.process.pid }, `worker ${slot.index} (pid ${worker.process.pid}) is back`);
        if (!started && slots.every((s) => s.ready)) {
          started = true;
          startupDone();
        }
        return;
      case 'cg:metrics-json':
        collecting.get(m.id)?.(m.metrics);
        return;
      case 'cg:node-metrics':
        nodeMetrics(m.worker).then(
          (text) => reply(worker, { t: 'cg:node-metrics', id: m.id, text }),
          (err: unknown) => reply(worker, { t: 'cg:node-metrics', id: m.id, text: '', error: String((err as Error).message ?? err) }),
        );
        return;
    }
  };
  const reply = (worker: Worker, m: ToWorker) => {
    if (worker.isConnected()) worker.send(m, undefined, {}, () => {});
  };

  const fork = (slot: Slot) => {
    const env: Record<string, string> = { CAPTIONGATE_WORKER_INDEX: String(slot.index), CAPTIONGATE_SERVER_PORT: String(port) };
    const worker = cluster.fork(env);
    slot.worker = worker;
    slot.ready = false;
    slot.startedAt = Date.now();
    worker.on('message', (m: unknown) => onMessage(slot, worker, m));
    worker.on('exit', (code, signal) => onExit(slot, worker, code, signal));
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null) => {
    if (slot.worker !== worker) return;
    slot.worker = null;
    slot.ready = false;
    const pid = worker.process.pid;
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (stopping) {
      // A worker ended by our SIGTERM while it was starting had nothing to finish.
      if (code !== 0 && signal !== 'SIGTERM') failedCode = 1;
      log.info({ worker: slot.index, pid, code, signal }, `worker ${slot.index} (pid ${pid}) stopped (${how})`);
      if (slots.every((s) => !s.worker)) finish(failedCode);
      return;
    }
    if (!started) {
      // A worker that cannot start (bad model, port taken) will not start on a retry either.
      log.fatal({ worker: slot.index, pid, code, signal }, `worker ${slot.index} (pid ${pid}) failed to start (${how}): stopping the node; its log says why`);
      void stop('startup failure', 1);
      return;
    }
    const lived = Date.now() - slot.startedAt;
    slot.failures = lived >= HEALTHY_MS ? 1 : slot.failures + 1;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (slot.failures - 1));
    restarts++;
    log.error(
      { worker: slot.index, pid, code, signal, livedMs: lived, restartInMs: delay },
      code === 0
        ? `worker ${slot.index} (pid ${pid}) stopped on its own (${how}); starting a new one in ${delay} ms`
        : `worker ${slot.index} (pid ${pid}) died (${how}); its sessions are gone; restarting it in ${delay} ms`,
    );
    slot.timer = setTimeout(() => {
      slot.timer = null;
      if (!stopping) fork(slot);
    }, delay);
  };

  const stop = async (why: string, code = 0): Promise<void> => {
    if (code !== 0) failedCode = code;
    if (stopping) return;
    stopping = true;
    for (const s of slots) {
      if (s.timer) clearTimeout(s.timer);
      s.timer = null;
    }
    const live = slots.filter((s) => s.worker);
    log.info({ why, workers: live.length }, `stopping: ${why}; waiting for ${live.length} workers to finish their sessions`);
    if (live.length === 0) {
      finish(failedCode);
      return;
    }
    // A message, not a signal: a worker that got SIGTERM too (systemd signals the whole
    // control group; Ctrl-C the whole process group) counts one stop, not a second signal.
    // A worker still starting has no sessions and no listener yet (a message would be
    // lost): SIGTERM ends it at once.
    for (const s of live) {
      const w = s.worker!;
      if (!s.ready) w.process.kill('SIGTERM');
      else w.send({ t: 'cg:stop' } satisfies ToWorker, undefined, {}, (err: Error | null) => err && w.process.kill('SIGTERM'));
    }
    // A worker ends its sessions and file jobs within shutdownGraceSeconds; one that hangs beyond is killed.
    const deadline = setTimeout(() => {
      for (const s of slots) {
        if (!s.worker) continue;
        log.error({ worker: s.index, pid: s.worker.process.pid }, `worker ${s.index} did not stop in time: killing it`);
        s.worker.process.kill('SIGKILL');
      }
      failedCode = 1;
    }, (config.server.shutdownGraceSeconds + 20) * 1000);
    deadline.unref();
  };

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second signal: the workers exit at once (a signal after a stop is their second).
      log.warn({ signal }, 'second signal: telling the workers to exit now');
      for (const s of slots) s.worker?.process.kill('SIGTERM');
      return;
    }
    void stop(`${signal} received`);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  log.info(
    { workers: n, transport: config.server.transport, divided: DIVIDED_KEYS },
    `starting ${n} workers (${config.server.transport}); the node's ${DIVIDED_KEYS.join(', ')} are shared out among them`,
  );
  const port = config.server.transport === 'uws' && config.server.port === 0 ? await freePort(config.server.host) : config.server.port;
  for (const s of slots) fork(s);
  void allReady.then(() => {
    if (stopping) return;
    const slabs = slots.reduce((a, s) => a + s.slabs, 0);
    const poolBytes = slots.reduce((a, s) => a + s.poolBytes, 0);
    log.info(
      { workers: n, pids: slots.map((s) => s.worker?.process.pid), node: { slabs, poolBytes } },
      `node memory budget: ${n} workers, ${slabs} slabs in all, pool ${formatBytes(poolBytes)} in all (each worker logs its share)`,
    );
    log.info({ host: config.server.host, workers: n, port: boundPort }, `node ready: ${n} workers listening on ${config.server.host}:${boundPort}`);
  });
  return finished.then((code) => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    return code;
  });
}
