/**
 * The worker's side of the cluster link: it tells the primary when it
 * listens, hands its own metrics to the primary's aggregation, and asks
 * the primary for the whole node's metrics when a scrape lands on it.
 */
import cluster from 'node:cluster';

import { Gauge, type Registry } from 'prom-client';

import { parseToWorker, type ToPrimary } from './messages.js';

/** How long a scrape waits for the node's metrics before answering 503. */
const NODE_METRICS_TIMEOUT_MS = 10_000;

/** Which worker this process is, when it is one (the primary forks with CAPTIONGATE_WORKER_INDEX). */
export function workerIndex(): number | null {
  const raw = process.env.CAPTIONGATE_WORKER_INDEX;
  if (!cluster.isWorker || raw === undefined || !/^\d+$/.test(raw)) return null;
  return Number(raw);
}

export class WorkerLink {
  readonly index: number;
  #next = 1;
  #pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  #registry: Registry | null = null;
  #onMessage = (m: unknown) => this.#handle(m);
  #stop: (() => void) | null = null;
  #stopRequested = false;

  constructor(index: number) {
    this.index = index;
    process.on('message', this.#onMessage);
  }

  /**
   * Hands this worker's metrics to the node's aggregation, with a gauge
   * labelled by worker and pid: the node's /metrics then shows how the
   * sessions spread over the workers (the other series are aggregated).
   */
  serve(registry: Registry, sessions: () => number): void {
    const index = String(this.index);
    const pid = String(process.pid);
    new Gauge({
      name: 'captiongate_worker_sessions_active',
      help: 'Sessions open in one worker (server.workers), labelled by worker index and pid.',
      labelNames: ['worker', 'pid'],
      registers: [registry],
      collect() {
        this.set({ worker: index, pid }, sessions());
      },
    });
    this.#registry = registry;
  }

  /** What to do when the primary stops the node (at once, if it asked while this worker was starting). */
  onStop(stop: () => void): void {
    this.#stop = stop;
    if (this.#stopRequested) stop();
  }

  ready(info: { port: number; slabs: number; poolBytes: number }): void {
    this.#send({ t: 'cg:ready', ...info });
  }

  /**
   * The whole node's metrics: the primary gathers every worker's (this
   * one's too) and aggregates them. With `worker`, that one worker's only.
   */
  nodeMetrics(worker?: number): Promise<string> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`the cluster primary did not answer within ${NODE_METRICS_TIMEOUT_MS} ms`));
      }, NODE_METRICS_TIMEOUT_MS);
      this.#pending.set(id, { resolve, reject, timer });
      this.#send(worker === undefined ? { t: 'cg:node-metrics', id } : { t: 'cg:node-metrics', id, worker }, (err) => {
        const p = this.#pending.get(id);
        if (!p) return;
        clearTimeout(p.timer);
        this.#pending.delete(id);
        p.reject(err);
      });
    });
  }

  close(): void {
    process.off('message', this.#onMessage);
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('shutting down'));
    }
    this.#pending.clear();
  }

  #send(m: ToPrimary, failed?: (err: Error) => void): void {
    if (!process.send || !process.connected) {
      failed?.(new Error('no channel to the cluster primary'));
      return;
    }
    process.send(m, undefined, {}, (err: Error | null) => {
      if (err) failed?.(err);
    });
  }

  #handle(raw: unknown): void {
    const m = parseToWorker(raw);
    if (!m) return;
    if (m.t === 'cg:stop') {
      this.#stopRequested = true;
      this.#stop?.();
      return;
    }
    if (m.t === 'cg:collect') {
      const registry = this.#registry;
      if (!registry) return; // not serving yet: the primary only asks workers that said ready
      registry.getMetricsAsJSON().then(
        (metrics) => this.#send({ t: 'cg:metrics-json', id: m.id, metrics }),
        () => this.#send({ t: 'cg:metrics-json', id: m.id, metrics: [] }),
      );
      return;
    }
    const p = this.#pending.get(m.id);
    if (!p) return;
    clearTimeout(p.timer);
    this.#pending.delete(m.id);
    if (m.error !== undefined) p.reject(new Error(m.error));
    else p.resolve(m.text);
  }
}
