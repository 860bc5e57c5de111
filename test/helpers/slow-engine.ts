/**
 * An engine that cannot keep up: it wraps another engine and completes
 * each batch only after `rtf` times the audio in it has passed, one batch
 * at a time, as a single-threaded recognizer slower than real time would.
 * Tests use it to produce engine lag (not decoder waiting) on purpose.
 */
import { ENGINE_SAMPLE_RATE, type Engine, type EngineResult, type EngineWindow } from '../../src/engine/types.js';

export function slowEngine(inner: Engine, rtf: number): Engine {
  let busyUntil = 0;
  return {
    info: inner.info,
    openStream: () => inner.openStream(),
    closeStream: (id) => inner.closeStream(id),
    onReady: (l) => inner.onReady(l),
    stats: () => inner.stats(),
    shutdown: () => inner.shutdown(),
    submit(windows: readonly EngineWindow[]): Promise<EngineResult[]> {
      const samples = windows.reduce((n, w) => n + (w.pcm instanceof Uint8Array ? w.pcm.byteLength / 2 : w.pcm.length), 0);
      const now = performance.now();
      busyUntil = Math.max(busyUntil, now) + ((samples / ENGINE_SAMPLE_RATE) * 1000 * rtf);
      const results = inner.submit(windows);
      return new Promise((resolve, reject) => setTimeout(() => results.then(resolve, reject), busyUntil - now));
    },
  };
}
