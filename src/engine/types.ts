/**
 * The engine contract. Every backend (PocketSphinx today; window-batched
 * encoders such as Whisper on NPU/GPU/CPU later) implements it, and the
 * gateway talks to nothing else.
 *
 * The loop is the one from sherpa-onnx's streaming example: open a stream,
 * feed it windows, read results, finish with a flush, close. Two things make
 * it batch- and backpressure-friendly:
 *
 * - `submit` takes windows of many streams at once (one native call, one
 *   completion), which is what a batched encoder needs;
 * - each result says how many samples of its window the engine `consumed`.
 *   The caller keeps the rest in its ring buffer and resubmits them. A
 *   streaming decoder consumes everything unless it is waiting for a free
 *   decoder; a window encoder consumes its hop and keeps its lookback.
 */

export type StreamId = number;

/** How the scheduler must cut windows for this engine. All sizes in 16 kHz samples. */
export interface WindowPolicy {
  /** Submit once at least this much new audio is available (or on flush). */
  readonly minSamples: number;
  /** Never submit more than this in one window. */
  readonly maxSamples: number;
  /** Audio before the unconsumed position the engine wants to see again. */
  readonly lookbackSamples: number;
  /** Largest useful batch (windows per submit). */
  readonly maxBatch: number;
}

export interface EngineInfo {
  readonly name: string;
  readonly version: string;
  readonly sampleRate: 16000;
  readonly policy: WindowPolicy;
  readonly decoders: number;
  readonly threads: number;
}

export interface EngineWindow {
  readonly stream: StreamId;
  /** Stream sample position of pcm[0]. */
  readonly start: number;
  /** 16 kHz mono: float in [-1, 1], 16-bit integers, or raw s16le bytes. */
  readonly pcm: Float32Array | Int16Array | Uint8Array;
  /** End the open utterance after this window (finalize now). */
  readonly flush?: boolean;
}

export interface Word {
  readonly word: string;
  /** Seconds since the stream's first sample. */
  readonly start: number;
  readonly end: number;
  /** Posterior probability in [0, 1]. */
  readonly confidence: number;
}

export interface Utterance {
  readonly text: string;
  readonly start: number;
  readonly end: number;
  readonly words: readonly Word[];
}

export interface Hypothesis {
  readonly text: string;
  readonly start: number;
  readonly end: number;
}

export type EngineErrorCode = 'ENGINE_DECODE_FAILED' | 'ENGINE_STREAM_CLOSED' | 'ENGINE_SHUTDOWN' | 'ENGINE_BAD_WINDOW';

export interface EngineResult {
  readonly stream: StreamId;
  /** Samples of this window the engine took; the caller keeps the rest. */
  readonly consumed: number;
  /** Stream position after this window, in samples. */
  readonly position: number;
  /** Current hypothesis of the open utterance, if any. */
  readonly partial: Hypothesis | null;
  /** Utterances that ended in this window. Never revised. */
  readonly finals: readonly Utterance[];
  /** An utterance ended in this window. */
  readonly endpoint: boolean;
  /** An utterance is open after this window. */
  readonly inSpeech: boolean;
  /** The stream is parked waiting for a free decoder; resubmit after onReady. */
  readonly waiting: boolean;
  /** The window's flush request was carried out. */
  readonly flushed: boolean;
  /** Time this stream waited for a decoder, ending in this window. */
  readonly decoderWaitMs: number;
  readonly error: { readonly code: EngineErrorCode; readonly message: string } | null;
}

export interface EngineStats {
  readonly decoders: number;
  readonly decodersInUse: number;
  readonly streams: number;
  readonly streamsWaiting: number;
  readonly windowsProcessed: number;
  readonly samplesProcessed: number;
  readonly samplesDecoded: number;
  readonly decoderWaits: number;
  readonly decoderWaitMsTotal: number;
  readonly queuedWindows: number;
  readonly busyMs: number;
  /** Model memory the engine holds (PocketSphinx: not measured, 0; Whisper: its weights). */
  readonly modelBytes: number;
}

export interface Engine {
  readonly info: EngineInfo;
  openStream(): StreamId;
  /** Idempotent. Queued windows complete with ENGINE_STREAM_CLOSED. */
  closeStream(id: StreamId): void;
  submit(windows: readonly EngineWindow[]): Promise<EngineResult[]>;
  /** Called with streams that now hold a reserved decoder and should resubmit. */
  onReady(listener: (streams: readonly StreamId[]) => void): void;
  stats(): EngineStats;
  /** Queued windows complete with ENGINE_SHUTDOWN; resolves when workers have stopped. */
  shutdown(): Promise<void>;
}

/** An engine failure (as opposed to misuse, which throws TypeError/RangeError). */
export class EngineError extends Error {
  readonly code: EngineErrorCode | 'ENGINE_MODEL_MISSING' | 'ENGINE_LOAD_FAILED' | 'ENGINE_ADDON_MISSING';
  constructor(code: EngineError['code'], message: string) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
  }
}
