/**
 * Loads the compiled addon (native/build/Release/captiongate.node) and types
 * its raw surface. Nothing here validates: callers in src/engine and
 * src/audio do that first.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { packageRoot } from '../util/paths.js';
import { EngineError, type EngineResult, type EngineStats, type StreamId } from './types.js';

export interface NativeEngineOptions {
  kind?: 'pocketsphinx';
  hmm: string;
  lm: string;
  dict: string;
  threads: number;
  decoders: number;
  fwdflat: boolean;
  bestpath: boolean;
  beam: number;
  wbeam: number;
  pbeam: number;
  lw: number;
  maxhmmpf: number;
  maxwpf: number;
  plWindow: number;
  removeNoise: boolean;
  cmnUpdateSamples: number;
  vadThreshold: number;
  vadStartFrames: number;
  vadEndFrames: number;
  prerollSamples: number;
  maxUtteranceSamples: number;
  /** Fair decoders: with streams waiting, a holder hands its decoder on after this much utterance audio (0: never). */
  holdSamples: number;
  wordConfidence: boolean;
  vadEnabled: boolean;
  extra?: Record<string, string>;
}

export interface NativeWhisperEngineOptions {
  kind: 'whisper';
  modelDir: string;
  device: string;
  threads: number;
  maxBatch: number;
  vadEnabled: boolean;
  vadThreshold: number;
  vadStartFrames: number;
  vadEndFrames: number;
  prerollSamples: number;
  maxUtteranceSamples: number;
  partialIntervalMs: number;
  minContextFrames: number;
  noSpeechThreshold: number;
  logprobThreshold: number;
  selfTest: boolean;
}

export interface NativeMoonshineEngineOptions {
  kind: 'moonshine';
  /** Folder with encoder_model.ort, decoder_model_merged.ort and tokenizer.bin. */
  modelDir: string;
  /** libonnxruntime.so.1 (onnxruntime-node's), dlopen()ed at load. */
  ortLibrary: string;
  /** Inference threads of a round (engine.threads). */
  threads: number;
  /** ORT threads inside one run (1: the threads run separate windows). */
  intraOpThreads: number;
  /** Load the model through ONNX so ORT folds the weight dequantization (base). */
  foldWeights: boolean;
  /** A faster model's folder (tiny beside base): its text is the partial until the main model has some. */
  previewModelDir?: string;
  maxBatch: number;
  maxTokensPerSecond: number;
  maxRepeats: number;
  /** Finals (and speculative finals) are beam searches this wide (1: greedy, as upstream). */
  finalBeamWidth: number;
  vadEnabled: boolean;
  vadThreshold: number;
  vadStartFrames: number;
  vadEndFrames: number;
  prerollSamples: number;
  maxUtteranceSamples: number;
  partialIntervalMs: number;
  /** Partials run only while all decoding stays under this share of the threads (finals always run). */
  partialLoadShare: number;
  tailSamples: number;
  roundMs: number;
  /** Text from a decode whose tokens' mean probability is below this is dropped (noise). */
  minMeanProb: number;
}

/** The null recognizer: consumes every window, decodes nothing (measures the native boundary). */
export interface NativeNullEngineOptions {
  kind: 'null';
  /** Base worker threads (default 1). */
  threads?: number;
}

export type AnyNativeEngineOptions = NativeEngineOptions | NativeWhisperEngineOptions | NativeMoonshineEngineOptions | NativeNullEngineOptions;

export interface WhisperDecodeResult {
  text: string;
  tokens: number[];
  segments: { start: number; end: number; text: string }[];
  noSpeechProb: number;
  avgLogprob: number;
  repetitionCut: boolean;
}

/** The Whisper model on its own (tests, reference comparison, benchmarks). */
export interface NativeWhisper {
  load(): Promise<void>;
  info(): { device: string; weightBytes: number };
  logMel(audio: Float32Array, frames: number): Promise<Float32Array>;
  encode(mels: Float32Array[], frames: number): Promise<Float32Array>;
  decode(enc: Float32Array, batch: number, ctx: number): Promise<WhisperDecodeResult[]>;
  transcribe(audios: Float32Array[], frames?: number): Promise<WhisperDecodeResult[]>;
}

export interface MoonshineTranscript {
  text: string;
  /** Generated tokens (not the start token), EOS included when reached. */
  tokens: number[];
  /** Mean probability of the text tokens. */
  meanProb: number;
  /** Probability of ending at once (EOS at the first step). */
  firstEosProb: number;
  repetitionCut: boolean;
  hitMaxTokens: boolean;
  /** Decoder runs of the batch. */
  steps: number;
  /** Wall time of the batch's encoder run and decoder loop. */
  encodeMs: number;
  decodeMs: number;
  /** Draft tokens offered (0: decoded without one), and taken from the draft's run (its correction included). */
  draftTokens: number;
  draftAccepted: number;
  /** A pick after the draft's run was too close to call: decoded again without the draft. */
  draftRedone: boolean;
  /** Beams of the decode (1: greedy). */
  beams: number;
  /** A beam search's greedy decode, run as one more row beside it. */
  greedy?: MoonshineTranscript;
}

/** The Moonshine model on its own (tests, the reference comparison, benchmarks). */
export interface NativeMoonshine {
  load(): Promise<void>;
  info(): { ortVersion: string; fileBytes: number; takesMask: boolean; rowsIndependent: boolean; layers: number; hidden: number };
  /** One batch: rows of 16 kHz audio (different lengths are padded and masked: tiny only). */
  /**
   * `draft`: tokens expected to begin a one-row batch's transcript (an earlier
   * decode of the start of the same audio); the result is the same, cheaper
   * when the draft is right (base only; docs/moonshine.md). `beamWidth` > 1:
   * a beam search (no draft).
   */
  transcribe(
    rows: Float32Array[],
    options?: { maxTokensPerSecond?: number; maxRepeats?: number; beamWidth?: number; draft?: readonly number[] },
  ): Promise<MoonshineTranscript[]>;
}

export interface NativeMoonshineOptions {
  modelDir: string;
  ortLibrary: string;
  intraOpThreads?: number;
  foldWeights?: boolean;
}

export interface NativeWindow {
  stream: number;
  start: number;
  pcm: Float32Array | Int16Array | Uint8Array;
  flush: boolean;
}

/**
 * Test hooks, never on the wire. 'fail': the stream's next window completes
 * with ENGINE_DECODE_FAILED without reaching the recognizer. 'throw' /
 * 'bad_alloc': the next native decode call holding the stream throws
 * std::runtime_error / std::bad_alloc inside the worker. 'napi': the next
 * submit() holding the stream throws std::bad_alloc inside the N-API method
 * (it comes out as a JS Error, synchronously).
 */
export type NativeFaultKind = 'fail' | 'throw' | 'bad_alloc' | 'napi';

export interface NativeEngine {
  load(): Promise<void>;
  /** endpointFrames: the stream's endpoint silence in 10 ms frames (-1: none; 0 or absent: the engine's). */
  openStream(options?: { endpointFrames: number }): StreamId;
  closeStream(id: StreamId): boolean;
  /** Rejects synchronously (throws) when the engine is shut down or a stream is closed or unknown; error.code says which. */
  submit(windows: NativeWindow[]): Promise<EngineResult[]>;
  stats(): EngineStats;
  shutdown(): Promise<void>;
  /** Returns false if the stream is unknown or closed. */
  injectFault(id: StreamId, kind?: NativeFaultKind): boolean;
}

export interface NativeAudioConverterOptions {
  sampleRate: number;
  channels: number;
  encoding: 's16le' | 'f32le';
  quality: number;
}

export interface NativeAudioConverter {
  convert(bytes: Uint8Array, out: Int16Array): number;
  flush(out: Int16Array): number;
  maxOutput(bytes: number): number;
}

interface Addon {
  NativeEngine: new (options: AnyNativeEngineOptions, onReady: (ids: number[]) => void) => NativeEngine;
  NativeWhisper: new (modelDir: string, options?: { device?: string; perturbation?: number; threads?: number }) => NativeWhisper;
  /** Test hook: the repetition guard's cut for a token sequence. */
  whisperRepeatedTail(tokens: number[], repeats?: number): number;
  NativeAudioConverter: new (options: NativeAudioConverterOptions) => NativeAudioConverter;
  NativeMoonshine: new (options: NativeMoonshineOptions) => NativeMoonshine;
  /** Test hook: the Moonshine repetition guard's cut for a token sequence. */
  moonshineRepeatedTail(tokens: number[], repeats?: number): number;
  abiVersion: number;
}

let cached: Addon | undefined;

export function loadAddon(): Addon {
  if (cached) return cached;
  const file = process.env.CAPTIONGATE_ADDON ?? path.join(packageRoot(), 'native', 'build', 'Release', 'captiongate.node');
  if (!existsSync(file)) {
    throw new EngineError(
      'ENGINE_ADDON_MISSING',
      `The native addon is not built (${file} is missing).\n` +
        'Possible solutions:\n' +
        '- Run scripts/setup.sh (installs apt packages, then npm install builds the addon).\n' +
        '- Or: apt-get install -y build-essential pkg-config libpocketsphinx-dev libspeexdsp-dev && npm run build',
    );
  }
  const require = createRequire(import.meta.url);
  cached = require(file) as Addon;
  return cached;
}
