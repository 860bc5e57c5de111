/**
 * An Engine over the addon's NativeEngine, whichever backend it runs
 * (PocketSphinx, Whisper or Moonshine): argument checks, open-stream bookkeeping, and
 * the ready listeners. The backends differ only in options and EngineInfo.
 */
import { loadAddon, type NativeEngine, type NativeEngineOptions, type NativeMoonshineEngineOptions, type NativeWhisperEngineOptions } from './addon.js';
import {
  EngineError,
  type Engine,
  type EngineInfo,
  type EngineResult,
  type EngineStats,
  type EngineWindow,
  ENGINE_SAMPLE_RATE,
  type StreamId,
  type StreamOptions,
  type WindowPolicy,
  checkStreamOptions,
} from './types.js';

export class NativeBackedEngine implements Engine {
  readonly info: EngineInfo;
  #native: NativeEngine;
  #listeners: ((ids: readonly StreamId[]) => void)[] = [];
  #open = new Set<StreamId>();
  #closed = false;

  constructor(native: NativeEngine, info: EngineInfo, listeners: ((ids: readonly StreamId[]) => void)[]) {
    this.#native = native;
    this.info = info;
    this.#listeners = listeners;
  }

  openStream(options?: StreamOptions): StreamId {
    if (this.#closed) throw new EngineError('ENGINE_SHUTDOWN', 'engine is shut down');
    checkStreamOptions(options);
    const e = options?.endpointMs;
    // The addon counts 10 ms VAD frames: -1 is no endpoint, 0 (absent) the engine's own.
    const id = this.#native.openStream(e === undefined ? undefined : { endpointFrames: e === false ? -1 : Math.ceil(e / 10) });
    this.#open.add(id);
    return id;
  }

  closeStream(id: StreamId): void {
    if (!this.#open.delete(id)) return;
    this.#native.closeStream(id);
  }

  submit(windows: readonly EngineWindow[]): Promise<EngineResult[]> {
    if (this.#closed) return Promise.reject(new EngineError('ENGINE_SHUTDOWN', 'engine is shut down'));
    for (const w of windows) {
      if (!this.#open.has(w.stream)) {
        throw new TypeError(`Expected an open stream for window.stream but received ${w.stream} (closed or unknown)`);
      }
      if (!(w.pcm instanceof Float32Array) && !(w.pcm instanceof Int16Array) && !(w.pcm instanceof Uint8Array)) {
        throw new TypeError('Expected Float32Array, Int16Array or s16le bytes (Uint8Array) for window.pcm');
      }
      if (w.pcm instanceof Uint8Array && w.pcm.byteLength % 2 !== 0) {
        throw new TypeError(`Expected whole 16-bit samples for window.pcm but received ${w.pcm.byteLength} bytes`);
      }
      if (!Number.isSafeInteger(w.start) || w.start < 0) {
        throw new TypeError(`Expected a sample position >= 0 for window.start but received ${w.start}`);
      }
      const samples = w.pcm instanceof Uint8Array ? w.pcm.byteLength / 2 : w.pcm.length;
      if (samples > this.info.policy.maxSamples) {
        throw new RangeError(`Expected at most ${this.info.policy.maxSamples} samples per window but received ${samples}`);
      }
    }
    return this.#native.submit(
      windows.map((w) => ({ stream: w.stream, start: w.start, pcm: w.pcm, flush: w.flush === true })),
    );
  }

  onReady(listener: (ids: readonly StreamId[]) => void): void {
    this.#listeners.push(listener);
  }

  stats(): EngineStats {
    return this.#native.stats();
  }

  /** Test hook: the stream's next window fails as if decoding threw. */
  injectFault(id: StreamId): void {
    this.#native.injectFault(id);
  }

  async shutdown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#open.clear();
    await this.#native.shutdown();
  }
}

type ReadyListener = (ids: readonly StreamId[]) => void;

/** Creates the addon's engine for these options and loads its models off the main thread. */
export async function loadNativeEngine(
  options: NativeEngineOptions | NativeWhisperEngineOptions | NativeMoonshineEngineOptions,
): Promise<{ native: NativeEngine; listeners: ReadyListener[] }> {
  const { NativeEngine } = loadAddon();
  const listeners: ReadyListener[] = [];
  const native = new NativeEngine(options, (ids) => {
    for (const l of listeners) l(ids);
  });
  try {
    await native.load();
  } catch (err) {
    throw new EngineError('ENGINE_LOAD_FAILED', (err as Error).message);
  }
  return { native, listeners };
}

/** Window policy of an engine that consumes every window whole (both native engines). */
export function streamingPolicy(windowMs: number): WindowPolicy {
  const windowSamples = Math.round((windowMs * ENGINE_SAMPLE_RATE) / 1000);
  return Object.freeze({
    minSamples: windowSamples,
    // Catch up after a backlog in at most 1 s pieces: long enough to cut
    // per-call overhead, short enough that no stream hogs a worker.
    maxSamples: Math.max(windowSamples, ENGINE_SAMPLE_RATE),
    maxBatch: 256,
  });
}
