/**
 * The overhead-measurement engine: it keeps the whole engine contract
 * (streams, positions, flush, close and shutdown with work in flight,
 * per-stream faults) and decodes nothing. Each batch completes on the next
 * turn of the event loop, with no thread behind it, so bench/ and test/
 * measure the gateway's own cost (ingest, rings, scheduling, batching,
 * protocol) with the recognizer and its thread hand-off taken out.
 * createEngine() refuses it unless CAPTIONGATE_ALLOW_OVERHEAD_ENGINE=1.
 *
 * With `finalEverySeconds`, it also emits a synthetic final (twelve words)
 * each time a stream passes that much audio, so that a bench can load the
 * caption path (stabilizer, caption file, meetings, the store) as real
 * speech would, without a recognizer's CPU. The bench sets it with
 * CAPTIONGATE_OVERHEAD_FINAL_SECONDS.
 */
import type { Config } from '../config/schema.js';
import {
  ENGINE_SAMPLE_RATE,
  EngineError,
  type Engine,
  type EngineErrorCode,
  type EngineInfo,
  type EngineResult,
  type EngineStats,
  type EngineWindow,
  type StreamId,
  type StreamOptions,
  type Utterance,
  checkStreamOptions,
} from './types.js';

export interface OverheadOptions extends Pick<Config['engine'], 'windowMs'> {
  /** Emit a synthetic final each time a stream passes this much audio (0: never). */
  readonly finalEverySeconds?: number;
}

const SYNTHETIC_WORDS = 'the quick brown fox jumps over the lazy dog and runs far away'.split(' ');

/** A final over [start, end) seconds: twelve words sharing it out. */
function syntheticFinal(start: number, end: number): Utterance {
  const step = (end - start) / SYNTHETIC_WORDS.length;
  const words = SYNTHETIC_WORDS.map((word, i) => ({ word, start: start + i * step, end: start + (i + 1) * step, confidence: 0.9 }));
  return { text: SYNTHETIC_WORDS.join(' '), start, end, words };
}

interface Pending {
  readonly windows: readonly EngineWindow[];
  readonly resolve: (r: EngineResult[]) => void;
}

const failed = (stream: StreamId, code: EngineErrorCode, message: string): EngineResult => ({
  stream,
  consumed: 0,
  partial: null,
  finals: [],
  waiting: false,
  flushed: false,
  decoderWaitMs: 0,
  error: { code, message },
});

export class OverheadEngine implements Engine {
  readonly info: EngineInfo;
  /** Open streams and their positions. */
  #streams = new Map<StreamId, number>();
  #faults = new Set<StreamId>();
  #pending = new Set<Pending>();
  #nextId = 1;
  #closed = false;
  #windows = 0;
  #samples = 0;
  #finalEvery: number;

  constructor(options: OverheadOptions) {
    this.#finalEvery = Math.round((options.finalEverySeconds ?? 0) * ENGINE_SAMPLE_RATE);
    const windowSamples = Math.round((options.windowMs * ENGINE_SAMPLE_RATE) / 1000);
    this.info = Object.freeze({
      name: 'overhead',
      version: '1',
      sampleRate: ENGINE_SAMPLE_RATE,
      policy: Object.freeze({ minSamples: windowSamples, maxSamples: Math.max(windowSamples, ENGINE_SAMPLE_RATE), maxBatch: 1024 }),
      decoders: 0,
      threads: 0,
    });
  }

  /** Checks the options; with no VAD there is no endpoint for them to change. */
  openStream(options?: StreamOptions): StreamId {
    if (this.#closed) throw new EngineError('ENGINE_SHUTDOWN', 'engine is shut down');
    checkStreamOptions(options);
    const id = this.#nextId++;
    this.#streams.set(id, 0);
    return id;
  }

  closeStream(id: StreamId): void {
    this.#streams.delete(id);
    this.#faults.delete(id);
  }

  submit(windows: readonly EngineWindow[]): Promise<EngineResult[]> {
    if (this.#closed) return Promise.reject(new EngineError('ENGINE_SHUTDOWN', 'engine is shut down'));
    for (const w of windows) {
      if (!this.#streams.has(w.stream)) throw new TypeError(`Expected an open stream for window.stream but received ${w.stream}`);
    }
    return new Promise((resolve) => {
      const p: Pending = { windows, resolve };
      this.#pending.add(p);
      setImmediate(() => {
        if (this.#pending.delete(p)) resolve(windows.map((w) => this.#decode(w)));
      });
    });
  }

  #decode(w: EngineWindow): EngineResult {
    const pos = this.#streams.get(w.stream);
    if (pos === undefined) return failed(w.stream, 'ENGINE_STREAM_CLOSED', 'stream was closed before this window ran');
    if (this.#faults.delete(w.stream)) return failed(w.stream, 'ENGINE_DECODE_FAILED', 'injected fault');
    if (w.start !== pos) return failed(w.stream, 'ENGINE_BAD_WINDOW', `window starts at sample ${w.start} but the stream is at ${pos}`);
    const n = w.pcm instanceof Uint8Array ? w.pcm.byteLength / 2 : w.pcm.length;
    this.#streams.set(w.stream, pos + n);
    this.#windows++;
    this.#samples += n;
    const every = this.#finalEvery;
    const finals = every > 0 && Math.floor((pos + n) / every) > Math.floor(pos / every) ? [syntheticFinal(Math.max(0, pos + n - every) / ENGINE_SAMPLE_RATE, (pos + n) / ENGINE_SAMPLE_RATE)] : [];
    return { stream: w.stream, consumed: n, partial: null, finals, waiting: false, flushed: w.flush === true, decoderWaitMs: 0, error: null };
  }

  onReady(): void {}

  /** Test hook: the stream's next window fails as if decoding had. */
  injectFault(id: StreamId): void {
    if (this.#streams.has(id)) this.#faults.add(id);
  }

  stats(): EngineStats {
    return {
      decoders: 0,
      decodersInUse: 0,
      streams: this.#streams.size,
      streamsWaiting: 0,
      windowsProcessed: this.#windows,
      samplesProcessed: this.#samples,
      samplesDecoded: 0,
      decoderWaits: 0,
      decoderWaitMsTotal: 0,
      queuedWindows: [...this.#pending].reduce((n, p) => n + p.windows.length, 0),
      busyMs: 0,
      modelBytes: 0,
    };
  }

  async shutdown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#pending) p.resolve(p.windows.map((w) => failed(w.stream, 'ENGINE_SHUTDOWN', 'engine shut down before this window ran')));
    this.#pending.clear();
    this.#streams.clear();
  }
}

export function createOverheadEngine(options: OverheadOptions): OverheadEngine {
  return new OverheadEngine(options);
}
