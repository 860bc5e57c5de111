/**
 * Groups ready windows of many sessions into one engine call.
 *
 * - A batch goes when it is full (maxBatch) or when the oldest ready
 *   session has waited maxWaitMs (0: at the end of the current event-loop
 *   turn, which still batches everything that arrived in it).
 * - Sessions wait in one FIFO and each contributes at most one window per
 *   batch, so every session is served in turn.
 * - At most maxInFlight batches are in the engine at once; beyond that,
 *   ready sessions wait (and later batches fill up instead).
 * - Windows are cut at submit time, so a window carries all audio that
 *   arrived while it waited.
 */
import type { Engine, EngineResult, EngineWindow } from '../engine/types.js';
import type { WindowScheduler, WindowSource } from './window-scheduler.js';

export interface BatchedSession extends WindowSource {
  /** Set by the batcher while the session is in its queue. */
  queued: boolean;
  /** performance.now() when the session became ready (latency metric). */
  readySince: number;
  readonly ended: boolean;
  onResult(result: EngineResult): void;
  onEngineFailure(err: Error): void;
}

export interface WindowBatcherOptions {
  readonly maxBatch: number;
  readonly maxWaitMs: number;
  readonly maxInFlight: number;
}

export interface BatchObserver {
  batch(size: number): void;
  submitLatency(seconds: number): void;
}

export class WindowBatcher {
  #engine: Engine;
  #scheduler: WindowScheduler;
  #opts: WindowBatcherOptions;
  #observer: BatchObserver | undefined;
  #queue: BatchedSession[] = [];
  #head = 0;
  #inFlight = 0;
  #deadline = 0;
  #timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  #idleWaiters: (() => void)[] = [];
  /** Engine calls made, and windows in them (tests prove batching with these). */
  batches = 0;
  windows = 0;

  constructor(engine: Engine, scheduler: WindowScheduler, opts: WindowBatcherOptions, observer?: BatchObserver) {
    this.#engine = engine;
    this.#scheduler = scheduler;
    this.#opts = { ...opts, maxBatch: Math.max(1, Math.min(opts.maxBatch, engine.info.policy.maxBatch)) };
    this.#observer = observer;
  }

  get inFlight(): number {
    return this.#inFlight;
  }
  get queued(): number {
    return this.#queue.length - this.#head;
  }

  /** A session may have a window ready; cheap to call on every frame. */
  markReady(s: BatchedSession): void {
    if (s.queued || s.ended || !this.#scheduler.ready(s)) return;
    s.queued = true;
    s.readySince = performance.now();
    if (this.queued === 0) this.#deadline = s.readySince + this.#opts.maxWaitMs;
    this.#queue.push(s);
    if (this.queued >= this.#opts.maxBatch) this.#pump(false);
    else this.#arm();
  }

  /** Resolves when nothing is queued or in flight (shutdown, tests). */
  idle(): Promise<void> {
    if (this.queued === 0 && this.#inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  #pump(timerFired: boolean): void {
    while (this.#inFlight < this.#opts.maxInFlight && this.queued > 0) {
      const due = timerFired || this.queued >= this.#opts.maxBatch || performance.now() >= this.#deadline;
      if (!due) break;
      this.#submitOne();
      timerFired = false;
      if (this.queued > 0) this.#deadline = this.#queue[this.#head]!.readySince + this.#opts.maxWaitMs;
    }
    this.#arm();
    this.#checkIdle();
  }

  #arm(): void {
    if (this.#timer || this.queued === 0 || this.#inFlight >= this.#opts.maxInFlight) return;
    const wait = this.#deadline - performance.now();
    const fire = () => {
      this.#timer = null;
      this.#pump(true);
    };
    this.#timer = wait <= 0 ? setImmediate(fire) : setTimeout(fire, wait);
  }

  #submitOne(): void {
    const sessions: BatchedSession[] = [];
    const windows: EngineWindow[] = [];
    const now = performance.now();
    while (this.queued > 0 && windows.length < this.#opts.maxBatch) {
      const s = this.#queue[this.#head++]!;
      s.queued = false;
      if (s.ended) continue;
      const w = this.#scheduler.cut(s);
      if (!w) continue;
      sessions.push(s);
      windows.push(w);
      this.#observer?.submitLatency((now - s.readySince) / 1000);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (!windows.length) return;
    this.#inFlight++;
    this.batches++;
    this.windows += windows.length;
    this.#observer?.batch(windows.length);
    let promise: Promise<EngineResult[]>;
    try {
      promise = this.#engine.submit(windows);
    } catch (err) {
      promise = Promise.reject(err);
    }
    promise.then(
      (results) => this.#complete(sessions, results, null),
      (err: unknown) => this.#complete(sessions, null, err instanceof Error ? err : new Error(String(err))),
    );
  }

  #complete(sessions: BatchedSession[], results: EngineResult[] | null, err: Error | null): void {
    this.#inFlight--;
    sessions.forEach((s, i) => {
      s.inFlight = false;
      const r = results?.[i];
      if (r) s.onResult(r);
      else s.onEngineFailure(err ?? new Error('engine returned too few results'));
      if (!s.ended) this.markReady(s);
    });
    this.#pump(false);
  }

  #checkIdle(): void {
    if (this.queued === 0 && this.#inFlight === 0 && this.#idleWaiters.length) {
      const w = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const f of w) f();
    }
  }

  close(): void {
    if (this.#timer) {
      clearTimeout(this.#timer as NodeJS.Timeout);
      clearImmediate(this.#timer as NodeJS.Immediate);
      this.#timer = null;
    }
  }
}
