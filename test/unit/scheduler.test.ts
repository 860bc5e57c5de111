import { describe, expect, it } from 'vitest';

import type { Engine, EngineResult, EngineWindow, StreamId } from '../../src/engine/types.js';
import { RingBuffer } from '../../src/pool/ring-buffer.js';
import { SlabPool } from '../../src/pool/slab-pool.js';
import { Scheduler, type ScheduledStream, type StreamSink } from '../../src/scheduler/scheduler.js';

const policy = { minSamples: 160, maxSamples: 1600, maxBatch: 1000 };

const ok = (w: EngineWindow, over: Partial<EngineResult> = {}): EngineResult => ({
  stream: w.stream,
  consumed: w.pcm.length,
  partial: null,
  finals: [],
  waiting: false,
  flushed: w.flush === true,
  decoderWaitMs: 0,
  error: null,
  ...over,
});

/** An engine whose batches complete only when the test says so. */
class ManualEngine {
  calls: EngineWindow[][] = [];
  /** performance.now() of each call. */
  callTimes: number[] = [];
  #pending: ((r: EngineResult[]) => void)[] = [];
  #ready: ((ids: readonly StreamId[]) => void)[] = [];
  #next = 1;
  closed: StreamId[] = [];
  info = { name: 'manual', version: '0', sampleRate: 16000 as const, policy, decoders: 0, threads: 0 };
  openStream(): StreamId {
    return this.#next++;
  }
  closeStream(id: StreamId): void {
    this.closed.push(id);
  }
  onReady(l: (ids: readonly StreamId[]) => void): void {
    this.#ready.push(l);
  }
  ready(ids: StreamId[]): void {
    for (const l of this.#ready) l(ids);
  }
  submit(windows: readonly EngineWindow[]): Promise<EngineResult[]> {
    this.calls.push([...windows]);
    this.callTimes.push(performance.now());
    return new Promise((resolve) => this.#pending.push(resolve));
  }
  /** Completes the oldest pending call; `answer` may change a window's result. */
  completeNext(answer: (w: EngineWindow) => EngineResult = (w) => ok(w)): void {
    const windows = this.calls[this.calls.length - this.#pending.length]!;
    this.#pending.shift()!(windows.map(answer));
  }
  get pending(): number {
    return this.#pending.length;
  }
}

class Owner implements StreamSink {
  readonly ring: RingBuffer;
  readonly stream: ScheduledStream;
  results: EngineResult[] = [];
  failures: unknown[] = [];
  throwOnResult = false;
  constructor(scheduler: Scheduler, pool: SlabPool, background = false) {
    this.ring = new RingBuffer(pool.acquire()!, 16000, 1600);
    this.stream = scheduler.open(this.ring, this, { background });
  }
  write(n: number) {
    this.ring.write(new Int16Array(n));
    this.stream.wake();
  }
  onResult(r: EngineResult): void {
    this.results.push(r);
    if (this.throwOnResult) throw new Error('boom');
  }
  onEngineFailure(err: Error): void {
    this.failures.push(err);
  }
  onInternalError(err: unknown): void {
    this.failures.push(err);
  }
}

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function setup(opts: { maxBatch: number; maxWaitMs: number; maxInFlight: number; minIntervalMs?: number }, n: number) {
  const engine = new ManualEngine();
  const scheduler = new Scheduler(engine as unknown as Engine, opts);
  const pool = new SlabPool({ slabs: n, slabSamples: 17600 });
  const owners = Array.from({ length: n }, () => new Owner(scheduler, pool));
  return { engine, scheduler, owners };
}

describe('Scheduler', () => {
  it('sends one engine call for many streams: a full batch goes at once', () => {
    const { engine, scheduler, owners } = setup({ maxBatch: 4, maxWaitMs: 1000, maxInFlight: 2 }, 4);
    for (const o of owners) o.write(1600);
    expect(engine.calls).toHaveLength(1);
    expect(engine.calls[0]!.map((w) => w.stream)).toEqual([1, 2, 3, 4]);
    expect(scheduler.batches).toBe(1);
    expect(scheduler.windows).toBe(4);
  });

  it('sends a partial batch when the wait deadline passes', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 20, maxInFlight: 2 }, 3);
    for (const o of owners) o.write(800);
    expect(engine.calls).toHaveLength(0);
    await sleep(40);
    expect(engine.calls).toHaveLength(1);
    expect(engine.calls[0]).toHaveLength(3);
  });

  it('with maxWaitMs 0 still batches everything that became ready in the same turn', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 }, 10);
    for (const o of owners) o.write(320);
    await tick();
    expect(engine.calls).toHaveLength(1);
    expect(engine.calls[0]).toHaveLength(10);
  });

  it('minIntervalMs: a window at a low rate goes at once; at a high rate the windows of many streams share a call', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 1024, minIntervalMs: 30 }, 10);
    // Low rate: each window is the first in a long while, so it goes in the same turn.
    owners[0]!.write(1600);
    await tick();
    expect(engine.calls).toHaveLength(1);
    engine.completeNext();
    await sleep(45);
    owners[1]!.write(1600);
    await tick();
    expect(engine.calls).toHaveLength(2);
    // High rate: ten streams ready one after another, well inside the interval,
    // wait for it and go as one call, not ten.
    const before = engine.calls.length;
    const t0 = performance.now();
    for (const o of owners) {
      o.write(1600);
      await sleep(1);
    }
    const writing = performance.now() - t0;
    const sent = () => engine.calls.slice(before).flat().length;
    for (let i = 0; i < 1000 && sent() < 9; i++) await sleep(1);
    expect(sent()).toBe(10 - 1); // owners[1] is still in flight
    // One call per interval the writes spanned (one, unless the machine stalled this test).
    expect(engine.calls.length - before).toBeLessThanOrEqual(1 + Math.floor(writing / 30));
    // Calls are the interval apart (timers run late on a loaded machine; libuv's whole-ms clock may fire one early).
    for (let i = before; i < engine.calls.length; i++) expect(engine.callTimes[i]! - engine.callTimes[i - 1]!).toBeGreaterThanOrEqual(27);
  });

  it('bounds batches in flight, and serves every stream in turn (FIFO, one window each per batch)', async () => {
    const { engine, owners } = setup({ maxBatch: 2, maxWaitMs: 0, maxInFlight: 1 }, 5);
    for (const o of owners) o.write(3200);
    await tick();
    expect(engine.calls).toHaveLength(1); // in-flight bound
    const order: number[] = [];
    while (engine.pending) {
      order.push(...engine.calls.at(-1)!.map((w) => w.stream));
      engine.completeNext();
      await tick();
      await tick();
    }
    // Every stream had a window before any stream had its second.
    expect(order.slice(0, 5).sort()).toEqual([1, 2, 3, 4, 5]);
    // Windows never exceed the policy's maximum, a stream is never in two batches at once,
    // and each window starts where the stream's consumption stands.
    const next = new Map<number, number>();
    for (const call of engine.calls) {
      expect(new Set(call.map((w) => w.stream)).size).toBe(call.length);
      for (const w of call) {
        expect(w.pcm.length).toBeLessThanOrEqual(policy.maxSamples);
        expect(w.start).toBe(next.get(w.stream) ?? 0);
        next.set(w.stream, w.start + w.pcm.length);
      }
    }
    for (const o of owners) expect(o.ring.available).toBe(0);
  });

  it('cuts windows at submit time, so audio that arrived while waiting rides along', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 20, maxInFlight: 1 }, 1);
    const o = owners[0]!;
    o.write(160);
    o.write(480);
    await sleep(40);
    expect(engine.calls[0]![0]!.pcm.length).toBe(640);
  });

  it('skips closed streams, and drops a result that arrives after its stream closed', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 }, 2);
    const [a, b] = owners as [Owner, Owner];
    a.write(1600);
    b.write(1600);
    b.stream.close();
    await tick();
    expect(engine.calls).toHaveLength(1);
    expect(engine.calls[0]!.map((w) => w.stream)).toEqual([a.stream.id]);
    a.stream.close();
    expect(engine.closed).toEqual([b.stream.id, a.stream.id]);
    engine.completeNext();
    await tick();
    expect(a.results).toHaveLength(0);
  });

  it('parks a stream the engine has no decoder for, keeps the rest in the ring, and resumes on ready', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 }, 1);
    const o = owners[0]!;
    o.write(1600);
    await tick();
    engine.completeNext((w) => ok(w, { consumed: 400, waiting: true }));
    await tick();
    expect(o.ring.available).toBe(1200);
    o.write(160);
    await tick();
    expect(engine.calls).toHaveLength(1); // parked: nothing goes until ready
    engine.ready([o.stream.id]);
    await tick();
    expect(engine.calls).toHaveLength(2);
    expect(engine.calls[1]![0]!.start).toBe(400);
    expect(engine.calls[1]![0]!.pcm.length).toBe(1360);
  });

  it('a ready event that arrives before the parking result is latched, not lost', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 }, 1);
    const o = owners[0]!;
    o.write(1600);
    await tick();
    engine.ready([o.stream.id]);
    engine.completeNext((w) => ok(w, { consumed: 400, waiting: true }));
    await tick();
    await tick();
    expect(engine.calls).toHaveLength(2);
  });

  it('redoes a flush the engine did not reach because it parked first', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 }, 1);
    const o = owners[0]!;
    o.write(1600);
    o.stream.flush();
    await tick();
    expect(engine.calls[0]![0]!.flush).toBe(true);
    engine.completeNext((w) => ok(w, { consumed: 400, waiting: true, flushed: false }));
    await tick();
    expect(o.stream.settled).toBe(false);
    engine.ready([o.stream.id]);
    await tick();
    expect(engine.calls[1]![0]!.flush).toBe(true);
    engine.completeNext();
    await tick();
    expect(o.stream.settled).toBe(true);
  });

  it('a sink that throws fails its own stream only; the batch-mates get their results', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 }, 3);
    const [a, b, c] = owners as [Owner, Owner, Owner];
    b.throwOnResult = true;
    for (const o of owners) o.write(1600);
    await tick();
    engine.completeNext();
    await tick();
    expect(a.results).toHaveLength(1);
    expect(c.results).toHaveLength(1);
    expect(a.failures).toHaveLength(0);
    expect(b.failures).toHaveLength(1);
    expect((b.failures[0] as Error).message).toBe('boom');
  });

  it('an engine that consumes more than the window broke the contract: that stream gets an internal error', async () => {
    const { engine, owners } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 }, 2);
    const [a, b] = owners as [Owner, Owner];
    a.write(320);
    b.write(320);
    await tick();
    engine.completeNext((w) => ok(w, w.stream === a.stream.id ? { consumed: 321 } : {}));
    await tick();
    expect(a.failures).toHaveLength(1);
    expect(String(a.failures[0])).toMatch(/consumed 321 samples of a 320-sample window/);
    expect(a.ring.available).toBe(320);
    expect(b.results).toHaveLength(1);
    expect(b.failures).toHaveLength(0);
  });

  it('a rejected engine call is reported to every stream in it', async () => {
    const engine = new ManualEngine();
    engine.submit = () => Promise.reject(new Error('engine down'));
    const scheduler = new Scheduler(engine as unknown as Engine, { maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 });
    const pool = new SlabPool({ slabs: 2, slabSamples: 17600 });
    const owners = [new Owner(scheduler, pool), new Owner(scheduler, pool)];
    for (const o of owners) o.write(1600);
    await tick();
    await tick();
    for (const o of owners) expect(String(o.failures[0])).toMatch(/engine down/);
  });

  it('a batch the engine refuses to take (submit throws) is retried window by window: only the bad window fails', async () => {
    const engine = new ManualEngine();
    const submit = engine.submit.bind(engine);
    engine.submit = (windows) => {
      if (windows.some((w) => w.stream === 2)) throw new Error('cannot copy this window');
      return submit(windows);
    };
    const scheduler = new Scheduler(engine as unknown as Engine, { maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 });
    const pool = new SlabPool({ slabs: 3, slabSamples: 17600 });
    const owners = [new Owner(scheduler, pool), new Owner(scheduler, pool), new Owner(scheduler, pool)];
    for (const o of owners) o.write(1600);
    await tick();
    await tick();
    expect(engine.calls.map((c) => c.map((w) => w.stream))).toEqual([[1], [3]]);
    expect(String(owners[1]!.failures[0])).toMatch(/cannot copy/);
    engine.completeNext();
    engine.completeNext();
    await tick();
    expect(owners[0]!.results).toHaveLength(1);
    expect(owners[2]!.results).toHaveLength(1);
  });
});

describe('Scheduler: background streams (file jobs) yield', () => {
  function withBackground(headroom: () => boolean) {
    const engine = new ManualEngine();
    const scheduler = new Scheduler(engine as unknown as Engine, { maxBatch: 8, maxWaitMs: 0, maxInFlight: 3, headroom });
    const pool = new SlabPool({ slabs: 3, slabSamples: 17600 });
    const live = [new Owner(scheduler, pool), new Owner(scheduler, pool)];
    const file = new Owner(scheduler, pool, true);
    return { engine, scheduler, live, file };
  }

  it('a background window goes alone, only when no live window waits, one at a time', async () => {
    const { engine, scheduler, live, file } = withBackground(() => true);
    live[0]!.write(1600);
    file.write(1600);
    await tick();
    // The live window first; the file waits while it is queued, then goes as a batch of one.
    expect(engine.calls.map((c) => c.map((w) => w.stream))).toEqual([[1], [3]]);
    file.write(1600);
    live[1]!.write(1600);
    await tick();
    // The file's next window waits for its first; the live one goes.
    expect(engine.calls.map((c) => c.map((w) => w.stream))).toEqual([[1], [3], [2]]);
    engine.completeNext();
    engine.completeNext();
    await tick();
    expect(engine.calls.at(-1)!.map((w) => w.stream)).toEqual([3]);
    engine.completeNext();
    engine.completeNext();
    await scheduler.whenIdle();
    expect(file.results).toHaveLength(2);
  });

  it('never takes the last free in-flight slot while the engine is busy', async () => {
    const engine = new ManualEngine();
    const scheduler = new Scheduler(engine as unknown as Engine, { maxBatch: 8, maxWaitMs: 0, maxInFlight: 2 });
    const pool = new SlabPool({ slabs: 2, slabSamples: 17600 });
    const live = new Owner(scheduler, pool);
    const file = new Owner(scheduler, pool, true);
    live.write(1600);
    file.write(1600);
    await tick();
    expect(engine.calls).toHaveLength(1);
    engine.completeNext();
    await tick();
    expect(engine.calls.at(-1)!.map((w) => w.stream)).toEqual([2]);
    engine.completeNext();
    await scheduler.whenIdle();
  });

  it('waits while headroom() says the live streams are behind, and goes when they catch up', async () => {
    let room = false;
    const { engine, scheduler, file } = withBackground(() => room);
    file.write(1600);
    await sleep(60);
    expect(engine.calls).toHaveLength(0);
    expect(scheduler.backgroundQueued).toBe(1);
    room = true;
    await sleep(60);
    expect(engine.calls).toHaveLength(1);
    engine.completeNext();
    await scheduler.whenIdle();
    expect(file.results).toHaveLength(1);
  });

  it('a closed background stream leaves the queue', async () => {
    const { scheduler, file } = withBackground(() => false);
    file.write(1600);
    expect(scheduler.backgroundQueued).toBe(1);
    file.stream.close();
    expect(scheduler.backgroundQueued).toBe(0);
    await scheduler.whenIdle();
    scheduler.close();
  });
});
