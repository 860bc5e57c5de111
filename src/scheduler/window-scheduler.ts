/**
 * Cuts one session's next engine window from its ring, following the
 * engine's declared policy. Pure bookkeeping; no timers.
 *
 *   ready  := nothing in flight, not parked, and
 *             (backlog >= policy.minSamples  or  a flush is pending)
 *   window := [readPos - lookback, readPos + min(backlog, maxSamples))
 *   flush  := requested and the window reaches the end of the backlog
 */
import type { EngineWindow, StreamId, WindowPolicy } from '../engine/types.js';
import type { RingBuffer } from '../pool/ring-buffer.js';

/** The state of a session that the scheduler reads and updates. */
export interface WindowSource {
  readonly streamId: StreamId;
  readonly ring: RingBuffer;
  inFlight: boolean;
  parked: boolean;
  flushPending: boolean;
  flushSubmitted: boolean;
}

export class WindowScheduler {
  readonly policy: WindowPolicy;

  constructor(policy: WindowPolicy) {
    this.policy = policy;
  }

  ready(s: WindowSource): boolean {
    if (s.inFlight || s.parked) return false;
    return s.ring.available >= this.policy.minSamples || s.flushPending;
  }

  /** The next window, marking the source in flight; null if not ready. */
  cut(s: WindowSource): EngineWindow | null {
    if (!this.ready(s)) return null;
    const backlog = s.ring.available;
    const len = Math.min(backlog, this.policy.maxSamples);
    const flush = s.flushPending && len === backlog;
    if (len === 0 && !flush) return null;
    const lookback = Math.min(this.policy.lookbackSamples, s.ring.readPos);
    const start = s.ring.readPos - lookback;
    s.inFlight = true;
    if (flush) {
      s.flushPending = false;
      s.flushSubmitted = true;
    }
    return { stream: s.streamId, start, pcm: s.ring.view(start, len + lookback), flush };
  }
}
