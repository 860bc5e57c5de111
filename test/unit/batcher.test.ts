import { describe, expect, it } from 'vitest';

import type { Engine, EngineResult, EngineWindow } from '../../src/engine/types.js';
import { RingBuffer } from '../../src/pool/ring-buffer.js';
import { SlabPool } from '../../src/pool/slab-pool.js';
import { WindowBatcher, type BatchedSession } from '../../src/scheduler/window-batcher.js';
import { WindowScheduler } from '../../src/scheduler/window-scheduler.js';

const policy = { minSamples: 160, maxSamples: 1600, lookbackSamples: 0, maxBatch: 1000 };

/** An engine whose batches complete only when the test says so. */
class ManualEngine {
  calls: EngineWindow[][] = [];
  #pending: ((r: EngineResult[]) => void)[] = [];
  info = { name: 'manual', version: '0', sampleRate: 16000 as const, policy, decoders: 0, threads: 0 };
  submit(windows: readonly EngineWindow[]): Promise<EngineResult[]> {
    this.calls.push([...windows]);
    return new Promise((resolve) => this.#pending.push(resolve));
  }
  completeNext(): void {
    const windows = this.calls[this.calls.length - this.#pending.length]!;
    this.#pending.shift()!(
      windows.map((w) => ({
        stream: w.stream,
        consumed: w.pcm.length,
        position: w.start + w.pcm.length,
        partial: null,
        finals: [],
        endpoint: false,
        inSpeech: false,
        waiting: false,
        flushed: w.flush === true,
        decoderWaitMs: 0,
        error: null,
      })),
    );
  }
  get pending(): number {
    return this.#pending.length;
  }
}

class FakeSession implements BatchedSession {
  inFlight = false;
  parked = false;
  flushPending = false;
  flushSubmitted = false;
  queued = false;
  readySince = 0;
  ended = false;
  results: EngineResult[] = [];
  readonly ring: RingBuffer;
  constructor(readonly streamId: number, pool: SlabPool) {
    this.ring = new RingBuffer(pool.acquire()!, 16000, 1600);
  }
  write(n: number) {
    this.ring.write(new Float32Array(n));
  }
  onResult(r: EngineResult): void {
    this.ring.consume(r.consumed);
    if (r.flushed) this.flushSubmitted = false;
    this.results.push(r);
  }
  onEngineFailure(): void {}
}

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function setup(opts: { maxBatch: number; maxWaitMs: number; maxInFlight: number }, n: number) {
  const engine = new ManualEngine();
  const batcher = new WindowBatcher(engine as unknown as Engine, new WindowScheduler(policy), opts);
  const pool = new SlabPool({ slabs: n, slabSamples: 17600 });
  const sessions = Array.from({ length: n }, (_, i) => new FakeSession(i + 1, pool));
  return { engine, batcher, sessions };
}

describe('WindowBatcher', () => {
  it('sends one engine call for many sessions: a full batch goes at once', async () => {
    const { engine, batcher, sessions } = setup({ maxBatch: 4, maxWaitMs: 1000, maxInFlight: 2 }, 4);
    for (const s of sessions) {
      s.write(1600);
      batcher.markReady(s);
    }
    expect(engine.calls).toHaveLength(1);
    expect(engine.calls[0]!.map((w) => w.stream)).toEqual([1, 2, 3, 4]);
    expect(batcher.batches).toBe(1);
    expect(batcher.windows).toBe(4);
  });

  it('sends a partial batch when the wait deadline passes', async () => {
    const { engine, batcher, sessions } = setup({ maxBatch: 64, maxWaitMs: 20, maxInFlight: 2 }, 3);
    for (const s of sessions) {
      s.write(800);
      batcher.markReady(s);
    }
    expect(engine.calls).toHaveLength(0);
    await sleep(40);
    expect(engine.calls).toHaveLength(1);
    expect(engine.calls[0]).toHaveLength(3);
  });

  it('with maxWaitMs 0 still batches everything that became ready in the same turn', async () => {
    const { engine, batcher, sessions } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 2 }, 10);
    for (const s of sessions) {
      s.write(320);
      batcher.markReady(s);
    }
    await tick();
    expect(engine.calls).toHaveLength(1);
    expect(engine.calls[0]).toHaveLength(10);
  });

  it('bounds batches in flight, and serves every session in turn (FIFO, one window each per batch)', async () => {
    const { engine, batcher, sessions } = setup({ maxBatch: 2, maxWaitMs: 0, maxInFlight: 1 }, 5);
    for (const s of sessions) {
      s.write(3200);
      batcher.markReady(s);
    }
    await tick();
    expect(engine.calls).toHaveLength(1); // in-flight bound
    const order: number[] = [];
    while (engine.pending) {
      order.push(...engine.calls.at(-1)!.map((w) => w.stream));
      engine.completeNext();
      await tick();
      await tick();
    }
    // Every session had a window before any session had its second.
    const firstRound = order.slice(0, 5).sort();
    expect(firstRound).toEqual([1, 2, 3, 4, 5]);
    // Windows never exceed the policy's maximum and a session is never in two batches at once.
    for (const call of engine.calls) {
      expect(new Set(call.map((w) => w.stream)).size).toBe(call.length);
      for (const w of call) expect(w.pcm.length).toBeLessThanOrEqual(policy.maxSamples);
    }
    for (const s of sessions) expect(s.ring.available).toBe(0);
  });

  it('cuts windows at submit time, so audio that arrived while waiting rides along', async () => {
    const { engine, batcher, sessions } = setup({ maxBatch: 64, maxWaitMs: 20, maxInFlight: 1 }, 1);
    const s = sessions[0]!;
    s.write(160);
    batcher.markReady(s);
    s.write(480);
    batcher.markReady(s);
    await sleep(40);
    expect(engine.calls[0]![0]!.pcm.length).toBe(640);
  });

  it('skips parked and ended sessions', async () => {
    const { engine, batcher, sessions } = setup({ maxBatch: 64, maxWaitMs: 0, maxInFlight: 1 }, 2);
    const [a, b] = sessions as [FakeSession, FakeSession];
    a.write(1600);
    b.write(1600);
    a.parked = true;
    batcher.markReady(a);
    batcher.markReady(b);
    b.ended = true;
    await tick();
    expect(engine.calls).toHaveLength(0);
  });
});
