/**
 * The smallest correct client of the engine contract: one stream, windows in
 * order, resubmit what was not consumed, wait for a decoder when parked,
 * flush at the end. The gateway's scheduler does the same for many sessions
 * at once; the demo, tests and benches use this directly.
 */
import { EngineError, type Engine, type Hypothesis, type StreamId, type Utterance } from './types.js';

/** One latch per stream: a ready event may arrive before anyone waits for it. */
class ReadyLatch {
  #fired = new Set<StreamId>();
  #waiters = new Map<StreamId, () => void>();
  constructor(engine: Engine) {
    engine.onReady((ids) => {
      for (const id of ids) {
        const w = this.#waiters.get(id);
        if (w) {
          this.#waiters.delete(id);
          w();
        } else this.#fired.add(id);
      }
    });
  }
  wait(id: StreamId): Promise<void> {
    if (this.#fired.delete(id)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.set(id, resolve));
  }
}

const latches = new WeakMap<Engine, ReadyLatch>();
function latchFor(engine: Engine): ReadyLatch {
  let l = latches.get(engine);
  if (!l) {
    l = new ReadyLatch(engine);
    latches.set(engine, l);
  }
  return l;
}

export interface StreamLoopOptions {
  /** Samples per window (default: the engine's minimum window). */
  windowSamples?: number;
  /** Pace windows at real time (default: as fast as the engine goes). */
  realtime?: boolean;
  onPartial?: (h: Hypothesis) => void;
  onFinal?: (u: Utterance) => void;
}

export interface StreamLoopResult {
  readonly finals: Utterance[];
  readonly windows: number;
  readonly decoderWaitMs: number;
  readonly parks: number;
}

export async function transcribePcm(
  engine: Engine,
  pcm: Float32Array | Int16Array,
  opts: StreamLoopOptions = {},
): Promise<StreamLoopResult> {
  const size = Math.min(opts.windowSamples ?? engine.info.policy.minSamples, engine.info.policy.maxSamples);
  const latch = latchFor(engine);
  const id = engine.openStream();
  const finals: Utterance[] = [];
  let pos = 0;
  let windows = 0;
  let decoderWaitMs = 0;
  let parks = 0;
  const t0 = performance.now();
  try {
    for (;;) {
      const end = Math.min(pcm.length, pos + size);
      if (opts.realtime) {
        const due = t0 + (end / engine.info.sampleRate) * 1000;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      const flush = end === pcm.length;
      const [r] = await engine.submit([{ stream: id, start: pos, pcm: pcm.subarray(pos, end), flush }]);
      if (!r) throw new Error('engine returned no result');
      windows++;
      if (r.error) throw new EngineError(r.error.code, r.error.message);
      decoderWaitMs += r.decoderWaitMs;
      for (const f of r.finals) {
        finals.push(f);
        opts.onFinal?.(f);
      }
      if (r.partial) opts.onPartial?.(r.partial);
      pos += r.consumed;
      if (r.waiting) {
        parks++;
        await latch.wait(id);
        continue;
      }
      if (flush && r.flushed) break;
    }
  } finally {
    engine.closeStream(id);
  }
  return { finals, windows, decoderWaitMs, parks };
}
