/**
 * The scheduler: one engine, many streams. It owns every stream's
 * scheduling state (in flight, parked for a decoder, ready latch, flush
 * pending) in one object per stream, cuts windows from the stream's ring at
 * submit time, batches ready streams into engine calls, and hands each
 * result to the stream's sink after consuming what the engine took.
 *
 * - A batch goes when it is full (maxBatch) or when the oldest ready stream
 *   has waited maxWaitMs (0: at the end of the current event-loop turn,
 *   which still batches everything that arrived in it), but a batch that is
 *   not full goes no sooner than minIntervalMs after the one before. So at a
 *   low window rate every window goes at once, and at a high one the
 *   windows of many streams share one engine call: one thread handoff and
 *   one completion wakeup per batch, not per window, for at most
 *   minIntervalMs of added wait.
 * - Streams wait in one FIFO and each contributes at most one window per
 *   batch, so every stream is served in turn.
 * - At most maxInFlight batches are in the engine at once; beyond that,
 *   ready streams wait (and later batches fill up instead).
 * - Windows are cut at submit time, so a window carries all audio that
 *   arrived while it waited.
 *
 * - Background streams (file jobs) yield to the others: they wait in a queue
 *   of their own, a background window goes only when no other stream is
 *   ready, as a batch of one, one at a time, never taking the last free
 *   in-flight slot (unless the engine is idle), and only while `headroom()`
 *   says the live streams are keeping up. Their windows never delay a live
 *   stream by more than one background window's decoding.
 *
 * A sink that throws while handling its result is that stream's fault only:
 * it is told through onInternalError, and everyone else carries on.
 */
// The global `performance` is a lazy accessor in Node 20 (a getter call per use); the per-frame path imports it.
import { performance } from 'node:perf_hooks';

import type { Engine, EngineResult, EngineWindow, StreamId, StreamOptions, WindowPolicy } from '../engine/types.js';
import type { RingBuffer } from '../pool/ring-buffer.js';

/** What a stream's owner (a session, or transcribePcm) hears back. */
export interface StreamSink {
  /** A result for this stream; `result.consumed` samples have already left the ring. */
  onResult(result: EngineResult): void;
  /** The engine call carrying this stream's window failed as a whole. */
  onEngineFailure(err: Error): void;
  /** Handling this stream's result threw (or the engine broke the contract for it). */
  onInternalError(err: unknown): void;
  /** The engine can take this parked stream's audio again (its next window may wait for more audio). */
  onUnparked?(): void;
}

/** The owner's handle on its stream. */
export interface ScheduledStream {
  readonly id: StreamId;
  /** New audio is in the ring; cheap to call on every frame. */
  wake(): void;
  /** End the open utterance once everything written so far has been decoded. */
  flush(): void;
  /** Samples the engine has taken so far: counted here, where they leave the ring, before the sink hears of it. */
  readonly consumed: number;
  /** Waiting for the engine to free a decoder (not engine lag). */
  readonly parked: boolean;
  /** Nothing in flight, no flush pending, nothing left in the ring. */
  readonly settled: boolean;
  /** Nothing will happen until more audio or a flush: not in flight, not parked, less than a window left. */
  readonly idle: boolean;
  /** Closes the engine stream; a result still in flight is dropped. Idempotent. */
  close(): void;
}

export interface SchedulerOptions {
  readonly maxBatch: number;
  readonly maxWaitMs: number;
  readonly maxInFlight: number;
  /** Least time between two engine calls whose batch is not full (default 0). */
  readonly minIntervalMs?: number;
  /** Whether background windows may go now (default: always). Polled while one waits. */
  readonly headroom?: () => boolean;
}

/** How often a waiting background window asks `headroom()` again. */
const HEADROOM_POLL_MS = 20;

export interface BatchObserver {
  batch(size: number): void;
  submitLatency(seconds: number): void;
  /** Samples the engine took (decoded), across all streams. */
  consumed(samples: number): void;
}

/** One stream's scheduling state. Only this module reads or writes it. */
class StreamState implements ScheduledStream {
  readonly id: StreamId;
  readonly ring: RingBuffer;
  readonly sink: StreamSink;
  readonly background: boolean;
  readonly #scheduler: Scheduler;
  inFlight = false;
  /** Parked: the engine has no decoder for it yet; waits for onReady. */
  parked = false;
  /** onReady arrived before the parking result did. */
  readyLatched = false;
  flushPending = false;
  flushSubmitted = false;
  queued = false;
  closed = false;
  /** Its engine call failed or its result could not be handled: no more windows (the owner closes it). */
  failed = false;
  /** performance.now() when it became ready (latency metric). */
  readySince = 0;
  /** Samples in the window in flight (a result may not consume more). */
  windowSamples = 0;
  consumed = 0;

  constructor(scheduler: Scheduler, id: StreamId, ring: RingBuffer, sink: StreamSink, background: boolean) {
    this.#scheduler = scheduler;
    this.background = background;
    this.id = id;
    this.ring = ring;
    this.sink = sink;
  }

  wake(): void {
    this.#scheduler.markReady(this);
  }
  flush(): void {
    if (this.closed) return;
    this.flushPending = true;
    this.#scheduler.markReady(this);
  }
  get settled(): boolean {
    return !this.inFlight && !this.flushPending && !this.flushSubmitted && this.ring.available === 0;
  }
  get idle(): boolean {
    return !this.inFlight && !this.parked && !this.flushPending && !this.flushSubmitted;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#scheduler.closed(this);
  }

  ready(policy: WindowPolicy): boolean {
    if (this.inFlight || this.parked || this.closed || this.failed) return false;
    return this.ring.available >= policy.minSamples || this.flushPending;
  }

  /** The next window, marking the stream in flight; null if there is none. */
  cut(policy: WindowPolicy): EngineWindow | null {
    if (!this.ready(policy)) return null;
    const backlog = this.ring.available;
    const len = Math.min(backlog, policy.maxSamples);
    const flush = this.flushPending && len === backlog;
    if (len === 0 && !flush) return null;
    this.inFlight = true;
    this.windowSamples = len;
    if (flush) {
      this.flushPending = false;
      this.flushSubmitted = true;
    }
    const start = this.ring.readPos;
    return { stream: this.id, start, pcm: this.ring.view(start, len), flush };
  }

  /** Applies a result to the scheduling state and the ring, then tells the sink. */
  complete(r: EngineResult): void {
    this.inFlight = false;
    if (this.closed) return;
    if (r.error) {
      // The window's error fails its stream: the owner closes it.
      this.failed = true;
      this.sink.onResult(r);
      return;
    }
    if (!(r.consumed >= 0 && r.consumed <= this.windowSamples)) {
      throw new RangeError(`engine consumed ${r.consumed} samples of a ${this.windowSamples}-sample window`);
    }
    if (r.consumed > 0) {
      this.ring.consume(r.consumed);
      this.consumed += r.consumed;
      this.#scheduler.observer?.consumed(r.consumed);
    }
    if (r.waiting) {
      // The engine's ready event can arrive before this result.
      if (this.readyLatched) this.readyLatched = false;
      else this.parked = true;
    }
    if (this.flushSubmitted) {
      this.flushSubmitted = false;
      if (!r.flushed) this.flushPending = true; // parked before the flush ran; redo it
    }
    this.sink.onResult(r);
  }

  /** The engine reserved a decoder for this stream. */
  unpark(): void {
    if (!this.parked) {
      this.readyLatched = true;
      return;
    }
    this.parked = false;
    this.#scheduler.markReady(this);
    this.sink.onUnparked?.();
  }
}

export class Scheduler {
  readonly policy: WindowPolicy;
  #engine: Engine;
  #opts: SchedulerOptions;
  readonly observer: BatchObserver | undefined;
  #streams = new Map<StreamId, StreamState>();
  #queue: StreamState[] = [];
  #head = 0;
  #inFlight = 0;
  #deadline = 0;
  /** performance.now() of the last live batch submitted. */
  #lastSubmitAt = -Infinity;
  #timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  /** Background streams with a window ready, in turn; at most one of their windows is in the engine. */
  #background: StreamState[] = [];
  #backgroundInFlight = false;
  #backgroundTimer: NodeJS.Timeout | null = null;
  #idleWaiters: (() => void)[] = [];
  /** Engine calls made, and windows in them (tests prove batching with these). */
  batches = 0;
  windows = 0;

  constructor(engine: Engine, opts: SchedulerOptions, observer?: BatchObserver) {
    this.#engine = engine;
    this.policy = engine.info.policy;
    this.#opts = { ...opts, maxBatch: Math.max(1, Math.min(opts.maxBatch, engine.info.policy.maxBatch)) };
    this.observer = observer;
    engine.onReady((ids) => {
      for (const id of ids) this.#streams.get(id)?.unpark();
    });
  }

  get inFlight(): number {
    return this.#inFlight;
  }
  get queued(): number {
    return this.#queue.length - this.#head;
  }
  /** Streams open on the engine through this scheduler (leak checks). */
  get streams(): number {
    return this.#streams.size;
  }

  /** Background windows waiting for their turn. */
  get backgroundQueued(): number {
    return this.#background.length;
  }

  /**
   * Opens an engine stream whose audio is `ring` and whose results go to
   * `sink`. A background stream yields to the others (see above). `stream`:
   * the engine stream's own settings (its endpoint silence).
   */
  open(ring: RingBuffer, sink: StreamSink, opts: { background?: boolean; stream?: StreamOptions } = {}): ScheduledStream {
    const id = this.#engine.openStream(opts.stream);
    const st = new StreamState(this, id, ring, sink, opts.background === true);
    this.#streams.set(id, st);
    return st;
  }

  /** A stream may have a window ready. */
  markReady(s: StreamState): void {
    if (s.queued || !s.ready(this.policy)) return;
    s.queued = true;
    s.readySince = performance.now();
    if (s.background) {
      this.#background.push(s);
      this.#pumpBackground();
      return;
    }
    if (this.queued === 0) this.#deadline = this.#dueAt(s.readySince);
    this.#queue.push(s);
    if (this.queued >= this.#opts.maxBatch) this.#pump(false);
    else this.#arm(s.readySince);
  }

  closed(s: StreamState): void {
    if (s.background && s.queued) {
      this.#background.splice(this.#background.indexOf(s), 1);
      s.queued = false;
    }
    this.#streams.delete(s.id);
    this.#engine.closeStream(s.id);
  }

  /** Resolves when nothing is queued or in flight (shutdown, tests). */
  whenIdle(): Promise<void> {
    if (this.queued === 0 && this.#inFlight === 0 && !this.#background.length) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  #pump(timerFired: boolean): void {
    while (this.#inFlight < this.#opts.maxInFlight && this.queued > 0) {
      const due = timerFired || this.queued >= this.#opts.maxBatch || performance.now() >= this.#deadline;
      if (!due) break;
      this.#submitOne();
      timerFired = false;
      if (this.queued > 0) this.#deadline = this.#dueAt(this.#queue[this.#head]!.readySince);
    }
    this.#arm();
    this.#pumpBackground();
    this.#checkIdle();
  }

  /** One background window, when nothing else is waiting, none is in the engine and the live streams have headroom. */
  #pumpBackground(): void {
    if (this.#backgroundInFlight || !this.#background.length || this.#backgroundTimer) return;
    // The others first (their completion pumps again), and a slot always stays free for them.
    if (this.queued > 0 || (this.#inFlight > 0 && this.#inFlight + 1 >= this.#opts.maxInFlight)) return;
    if (this.#opts.headroom && !this.#opts.headroom()) {
      this.#backgroundTimer = setTimeout(() => {
        this.#backgroundTimer = null;
        this.#pumpBackground();
      }, HEADROOM_POLL_MS);
      return;
    }
    while (this.#background.length) {
      const s = this.#background.shift()!;
      s.queued = false;
      const w = s.cut(this.policy);
      if (!w) continue;
      this.#backgroundInFlight = true;
      this.batches++;
      this.windows++;
      this.observer?.batch(1);
      this.#send([s], [w]);
      return;
    }
    this.#checkIdle();
  }
  /** When a batch whose oldest window became ready at `readySince` is due, unless it fills first. */
  #dueAt(readySince: number): number {
    return Math.max(readySince + this.#opts.maxWaitMs, this.#lastSubmitAt + (this.#opts.minIntervalMs ?? 0));
  }

  #arm(now = performance.now()): void {
    if (this.#timer || this.queued === 0 || this.#inFlight >= this.#opts.maxInFlight) return;
    const wait = this.#deadline - now;
    this.#timer = wait <= 0 ? setImmediate(this.#fire) : setTimeout(this.#fire, wait);
  }

  #fire = (): void => {
    this.#timer = null;
    this.#pump(true);
  };

  #submitOne(): void {
    const streams: StreamState[] = [];
    const windows: EngineWindow[] = [];
    const now = performance.now();
    const observer = this.observer;
    while (this.queued > 0 && windows.length < this.#opts.maxBatch) {
      const s = this.#queue[this.#head++]!;
      s.queued = false;
      const w = s.cut(this.policy);
      if (!w) continue;
      streams.push(s);
      windows.push(w);
      observer?.submitLatency((now - s.readySince) / 1000);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    if (!windows.length) return;
    this.#lastSubmitAt = now;
    this.batches++;
    this.windows += windows.length;
    observer?.batch(windows.length);
    this.#send(streams, windows);
  }

  /**
   * One engine call. `submit` takes the whole batch or, throwing, none of it;
   * a batch that throws is split and sent window by window, so a window
   * that cannot be submitted fails its own stream and not its batch-mates.
   */
  #send(streams: StreamState[], windows: EngineWindow[]): void {
    let promise: Promise<EngineResult[]>;
    try {
      promise = this.#engine.submit(windows);
    } catch (err) {
      if (windows.length > 1) {
        for (let i = 0; i < windows.length; i++) this.#send([streams[i]!], [windows[i]!]);
        return;
      }
      promise = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.#inFlight++;
    promise.then(
      (results) => this.#complete(streams, results, null),
      (err: unknown) => this.#complete(streams, null, err instanceof Error ? err : new Error(String(err))),
    );
  }

  #complete(streams: StreamState[], results: EngineResult[] | null, err: Error | null): void {
    this.#inFlight--;
    if (streams.length === 1 && streams[0]!.background) this.#backgroundInFlight = false;
    for (let i = 0; i < streams.length; i++) {
      const s = streams[i]!;
      const r = results?.[i];
      try {
        if (r && r.stream === s.id) s.complete(r);
        else {
          s.inFlight = false;
          s.failed = true;
          if (!s.closed) {
            s.sink.onEngineFailure(
              err ?? new Error(r ? `engine answered stream ${r.stream} for stream ${s.id}` : 'engine returned too few results'),
            );
          }
        }
      } catch (e) {
        s.inFlight = false;
        s.failed = true;
        if (!s.closed) s.sink.onInternalError(e);
      }
      if (!s.closed) this.markReady(s);
    }
    this.#pump(false);
  }

  #checkIdle(): void {
    if (this.queued === 0 && this.#inFlight === 0 && !this.#background.length && this.#idleWaiters.length) {
      const w = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const f of w) f();
    }
  }

  /** Stops the batch timer (shutdown). */
  close(): void {
    if (this.#backgroundTimer) {
      clearTimeout(this.#backgroundTimer);
      this.#backgroundTimer = null;
    }
    if (this.#timer) {
      clearTimeout(this.#timer as NodeJS.Timeout);
      clearImmediate(this.#timer as NodeJS.Immediate);
      this.#timer = null;
    }
  }
}
