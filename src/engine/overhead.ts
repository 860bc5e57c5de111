/**
 * The overhead-measurement engine: accepts every window, decodes nothing,
 * answers on the next turn of the event loop. It exists only so bench/ and
 * test/ can measure the gateway's own cost (ingest, rings, scheduling,
 * batching, protocol) with the recognizer taken out. createEngine() refuses
 * it unless CAPTIONGATE_ALLOW_OVERHEAD_ENGINE=1.
 */
import type { Config } from '../config/schema.js';
import { EngineError, type Engine, type EngineInfo, type EngineResult, type EngineStats, type EngineWindow, type StreamId } from './types.js';

const RATE = 16_000;

export class OverheadEngine implements Engine {
  readonly info: EngineInfo;
  #streams = new Map<StreamId, number>();
  #nextId = 1;
  #closed = false;
  #windows = 0;
  #samples = 0;
  /** Windows per submit call, for tests that prove batching happened. */
  readonly batchSizes: number[] = [];

  constructor(options: Pick<Config['engine'], 'windowMs' | 'threads' | 'decoders'>) {
    const windowSamples = Math.round((options.windowMs * RATE) / 1000);
    this.info = Object.freeze({
      name: 'overhead',
      version: '1',
      sampleRate: RATE,
      policy: Object.freeze({ minSamples: windowSamples, maxSamples: Math.max(windowSamples, RATE), lookbackSamples: 0, maxBatch: 1024 }),
      decoders: 0,
      threads: 0,
    });
  }

  openStream(): StreamId {
    if (this.#closed) throw new EngineError('ENGINE_SHUTDOWN', 'engine is shut down');
    const id = this.#nextId++;
    this.#streams.set(id, 0);
    return id;
  }

  closeStream(id: StreamId): void {
    this.#streams.delete(id);
  }

  submit(windows: readonly EngineWindow[]): Promise<EngineResult[]> {
    if (this.#closed) return Promise.reject(new EngineError('ENGINE_SHUTDOWN', 'engine is shut down'));
    this.batchSizes.push(windows.length);
    const results: EngineResult[] = windows.map((w) => {
      const pos = this.#streams.get(w.stream);
      if (pos === undefined) throw new TypeError(`Expected an open stream for window.stream but received ${w.stream}`);
      const n = w.pcm instanceof Uint8Array ? w.pcm.byteLength / 2 : w.pcm.length;
      const end = w.start + n;
      const advanced = Math.max(0, end - pos);
      this.#streams.set(w.stream, Math.max(pos, end));
      this.#windows++;
      this.#samples += advanced;
      return {
        stream: w.stream,
        consumed: n,
        position: Math.max(pos, end),
        partial: null,
        finals: [],
        endpoint: false,
        inSpeech: false,
        waiting: false,
        flushed: w.flush === true,
        decoderWaitMs: 0,
        error: null,
      };
    });
    return new Promise((resolve) => setImmediate(() => resolve(results)));
  }

  onReady(): void {}

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
      queuedWindows: 0,
      busyMs: 0,
      modelBytes: 0,
    };
  }

  async shutdown(): Promise<void> {
    this.#closed = true;
    this.#streams.clear();
  }
}

export function createOverheadEngine(options: Pick<Config['engine'], 'windowMs' | 'threads' | 'decoders'>): OverheadEngine {
  return new OverheadEngine(options);
}
