/**
 * The engine contract. Every engine (PocketSphinx, Whisper, the overhead
 * engine, and any later one) implements it, the gateway talks to nothing
 * else, and test/engine/conformance.test.ts runs the same cases against
 * each. docs/architecture.md §3 is its prose.
 *
 * The loop is sherpa-onnx's: open a stream, feed it windows, read results,
 * flush, close. Streams are data; `submit` decodes a batch of windows from
 * many streams in one call.
 *
 * - A window starts where its stream's consumption stands: `start` is the
 *   sum of every `consumed` so far. Anything else is ENGINE_BAD_WINDOW.
 * - `consumed` is how many samples from `pcm[0]` the engine took. It is the
 *   whole window, except when the stream parks (`waiting`): then the caller
 *   keeps the rest and resubmits it after `onReady` names the stream.
 * - Every utterance an engine opens ends with exactly one final, in time
 *   order; one that decoded to nothing gets an empty final, so a partial
 *   already shown is always closed.
 * - `flush` ends the open utterance after the window (`flushed` says it
 *   happened; a parked window has not reached it and must be resubmitted).
 * - A window's `error` fails its stream, and only its stream: the caller
 *   closes it. `closeStream` completes the stream's queued windows with
 *   ENGINE_STREAM_CLOSED, `shutdown` everyone's with ENGINE_SHUTDOWN.
 * - Windows of one stream are decoded in submission order; a stream's
 *   results never depend on what it was batched with.
 * - A stream may set its own endpoint silence at open (StreamOptions); out
 *   of range is a RangeError from openStream.
 */

/** Every engine takes 16 kHz mono: the gateway converts to it at ingest. */
export const ENGINE_SAMPLE_RATE = 16_000;

export type StreamId = number;

/** How the scheduler must cut windows for this engine. All sizes in 16 kHz samples. */
export interface WindowPolicy {
  /** Submit once at least this much new audio is available (or on flush). */
  readonly minSamples: number;
  /** Never submit more than this in one window. */
  readonly maxSamples: number;
  /** Largest useful batch (windows per submit). */
  readonly maxBatch: number;
}

export interface EngineInfo {
  readonly name: string;
  /** Which model of the engine, where it has several (Moonshine: 'tiny' or 'base'). */
  readonly model?: string;
  readonly version: string;
  readonly sampleRate: typeof ENGINE_SAMPLE_RATE;
  readonly policy: WindowPolicy;
  readonly decoders: number;
  readonly threads: number;
}

export interface EngineWindow {
  readonly stream: StreamId;
  /** Stream sample position of pcm[0]: the stream's consumption so far. */
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
  /** Samples from pcm[0] the engine took (the whole window unless `waiting`). */
  readonly consumed: number;
  /** The open utterance's hypothesis, when this window gives one (null: none, or unchanged). */
  readonly partial: Hypothesis | null;
  /** Utterances that ended in this window, in time order; possibly empty text. Never revised. */
  readonly finals: readonly Utterance[];
  /** The stream is parked waiting for a free decoder; resubmit the rest after onReady. */
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

/** Shortest and longest per-stream endpoint silence, ms (one VAD frame; engine.vad.endMs's ceiling). */
export const ENDPOINT_MS_MIN = 10;
export const ENDPOINT_MS_MAX = 10_000;

/** A stream's own settings, given at openStream. */
export interface StreamOptions {
  /**
   * Silence after speech that ends an utterance, in ms: an integer from
   * ENDPOINT_MS_MIN to ENDPOINT_MS_MAX, rounded up to whole 10 ms VAD
   * frames. `false`: no endpoint; the utterance ends only at a flush or at
   * the engine's longest utterance (engine.vad.maxUtteranceSeconds).
   * Absent: the engine's own (engine.vad.endMs). An engine without a VAD
   * (engine.vad.enabled false, the overhead engine) has no endpoint to change.
   */
  readonly endpointMs?: number | false;
}

/** Throws RangeError (misuse) if the options are out of range. */
export function checkStreamOptions(o: StreamOptions | undefined): void {
  const e = o?.endpointMs;
  if (e === undefined || e === false) return;
  if (!Number.isInteger(e) || e < ENDPOINT_MS_MIN || e > ENDPOINT_MS_MAX) {
    throw new RangeError(`Expected an integer from ${ENDPOINT_MS_MIN} to ${ENDPOINT_MS_MAX} or false for endpointMs but received ${String(e)}`);
  }
}

export interface Engine {
  readonly info: EngineInfo;
  /** Throws RangeError if `options` are out of range (checkStreamOptions). */
  openStream(options?: StreamOptions): StreamId;
  /** Idempotent. Queued windows complete with ENGINE_STREAM_CLOSED. */
  closeStream(id: StreamId): void;
  /** Takes the whole batch, or throws (misuse) and takes none of it. */
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
