/**
 * The smallest client of the engine contract: one stream of PCM through the
 * same Scheduler the gateway uses (so parking, the ready latch and flushes
 * follow one protocol), in windows of a chosen size, optionally paced at
 * real time, flushed at the end. The CLI demo, tests and benches use it.
 */
import { ENGINE_SAMPLE_RATE, EngineError, type Engine, type EngineResult, type Hypothesis, type Utterance } from '../engine/types.js';
import { RingBuffer } from '../pool/ring-buffer.js';
import { standaloneSlab } from '../pool/slab-pool.js';
import { Scheduler, type ScheduledStream } from './scheduler.js';

export interface TranscribeOptions {
  /** Samples per window (default: the engine's minimum window). */
  windowSamples?: number;
  /** Pace windows at real time (default: as fast as the engine goes). */
  realtime?: boolean;
  onPartial?: (h: Hypothesis) => void;
  onFinal?: (u: Utterance) => void;
  /** Run through this scheduler (the gateway's) instead of a private one. */
  scheduler?: Scheduler;
  /** A background stream: it yields to the scheduler's other streams (file jobs). */
  background?: boolean;
  /** Stops the transcription (it rejects with the signal's reason). */
  signal?: AbortSignal;
}

export interface TranscribeResult {
  readonly finals: Utterance[];
  readonly windows: number;
  readonly decoderWaitMs: number;
  readonly parks: number;
}

/** One scheduler per engine: its ready listener is registered once. */
const schedulers = new WeakMap<Engine, Scheduler>();
function schedulerFor(engine: Engine): Scheduler {
  let s = schedulers.get(engine);
  if (!s) {
    s = new Scheduler(engine, { maxBatch: engine.info.policy.maxBatch, maxWaitMs: 0, maxInFlight: 1024 });
    schedulers.set(engine, s);
  }
  return s;
}

export async function transcribePcm(engine: Engine, pcm: Int16Array, opts: TranscribeOptions = {}): Promise<TranscribeResult> {
  const policy = engine.info.policy;
  const size = Math.max(1, Math.min(opts.windowSamples ?? policy.minSamples, policy.maxSamples));
  const scheduler = opts.scheduler ?? schedulerFor(engine);
  // A private ring: room for two windows, mirrored so any window is contiguous.
  const capacity = 2 * policy.maxSamples;
  const ring = new RingBuffer(standaloneSlab(capacity + policy.maxSamples), capacity, policy.maxSamples);
  const finals: Utterance[] = [];
  let windows = 0;
  let decoderWaitMs = 0;
  let parks = 0;
  let failure: Error | null = null;
  let wakeUp: (() => void) | null = null;
  const progressed = () => {
    const w = wakeUp;
    wakeUp = null;
    w?.();
  };
  const stream: ScheduledStream = scheduler.open(ring, {
    onResult(r: EngineResult) {
      windows++;
      if (r.error) failure ??= new EngineError(r.error.code, r.error.message);
      decoderWaitMs += r.decoderWaitMs;
      if (r.waiting) parks++;
      for (const f of r.finals) {
        finals.push(f);
        opts.onFinal?.(f);
      }
      if (r.partial) opts.onPartial?.(r.partial);
      progressed();
    },
    onEngineFailure(err) {
      failure ??= err;
      progressed();
    },
    onInternalError(err) {
      failure ??= err instanceof Error ? err : new Error(String(err));
      progressed();
    },
    onUnparked: progressed,
  }, { background: opts.background === true });
  const onAbort = () => {
    failure ??= opts.signal?.reason instanceof Error ? opts.signal.reason : new Error('aborted');
    progressed();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  /** Waits until the stream is idle (or failed). Parked streams wait for the engine's ready event. */
  const whileBusy = async (done: () => boolean) => {
    while (!failure && !done()) await new Promise<void>((r) => (wakeUp = r));
    if (failure) throw failure;
  };
  const t0 = performance.now();
  try {
    for (let pos = 0; pos < pcm.length; pos += size) {
      const end = Math.min(pcm.length, pos + size);
      if (opts.realtime) {
        const wait = t0 + (end / ENGINE_SAMPLE_RATE) * 1000 - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      ring.write(pcm.subarray(pos, end));
      stream.wake();
      // One window per chunk: wait until this one has been taken (or less
      // than a window is left, which the final flush takes).
      await whileBusy(() => stream.idle && (ring.available < policy.minSamples || ring.available === 0));
    }
    stream.flush();
    await whileBusy(() => stream.settled && stream.idle);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    stream.close();
  }
  return { finals, windows, decoderWaitMs, parks };
}
