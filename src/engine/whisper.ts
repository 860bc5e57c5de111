/**
 * Whisper base behind the engine contract (engine.kind "whisper"). The model
 * is installed by scripts/fetch-whisper-model.mjs (setup runs it); a missing
 * or altered model is a clear error here, never a download.
 *
 * Captions from a window encoder: utterances are cut by the same VAD as
 * PocketSphinx's, an open utterance is re-decoded every partialIntervalMs
 * for a partial, and its final is decoded once at the endpoint. The encoder
 * batches every pending job of every session into one GEMM-shaped call.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import type { Config } from '../config/schema.js';
import { packageRoot } from '../util/paths.js';
import { loadAddon, type NativeWhisper, type NativeWhisperEngineOptions } from './addon.js';
import { loadNativeEngine, NativeBackedEngine, streamingPolicy } from './native-engine.js';
import { ENGINE_SAMPLE_RATE as RATE, EngineError, type Engine, type EngineInfo, type StreamId } from './types.js';

const FRAME_MS = 10;

export type WhisperOptions = Pick<Config['engine'], 'threads' | 'windowMs' | 'whisper' | 'vad'>;

/** Resolves the model directory (relative paths are from the package root). */
export function whisperModelDir(o: WhisperOptions['whisper']): string {
  return path.isAbsolute(o.modelDir) ? o.modelDir : path.join(packageRoot(), o.modelDir);
}

/** Throws EngineError('ENGINE_MODEL_MISSING') with the command that installs the model. */
export function checkWhisperModel(o: WhisperOptions['whisper']): string {
  const dir = whisperModelDir(o);
  const missing = ['model.bin', 'vocabulary.txt'].filter((f) => !existsSync(path.join(dir, f)));
  if (missing.length) {
    throw new EngineError(
      'ENGINE_MODEL_MISSING',
      `Whisper model not found in ${dir} (missing ${missing.join(', ')}).\n` +
        'Install it with: node scripts/fetch-whisper-model.mjs   (scripts/setup.sh runs it)\n' +
        '(or point engine.whisper.modelDir at a verified copy).',
    );
  }
  return dir;
}

export function whisperNativeOptions(o: WhisperOptions): NativeWhisperEngineOptions {
  const w = o.whisper;
  const minFrames = Math.min(3000, Math.round(w.minContextSeconds * 100));
  return {
    kind: 'whisper',
    modelDir: checkWhisperModel(w),
    device: w.device,
    threads: o.threads,
    maxBatch: w.maxBatch,
    vadEnabled: o.vad.enabled,
    vadThreshold: o.vad.threshold,
    vadStartFrames: Math.max(1, Math.round(o.vad.startMs / FRAME_MS)),
    vadEndFrames: Math.max(1, Math.round(o.vad.endMs / FRAME_MS)),
    prerollSamples: Math.round((o.vad.prerollMs * RATE) / 1000),
    maxUtteranceSamples: Math.round(Math.min(w.maxUtteranceSeconds, o.vad.maxUtteranceSeconds) * RATE),
    partialIntervalMs: w.partialIntervalMs,
    minContextFrames: minFrames - (minFrames % 2),
    noSpeechThreshold: w.noSpeechThreshold,
    logprobThreshold: w.logprobThreshold,
    selfTest: w.selfTest,
  };
}

export async function createWhisperEngine(options: WhisperOptions): Promise<Engine & { injectFault(id: StreamId): void }> {
  const nativeOptions = whisperNativeOptions(options);
  const { native, listeners } = await loadNativeEngine(nativeOptions);
  const info: EngineInfo = Object.freeze({
    name: 'whisper-base',
    version: 'ct2-float16',
    sampleRate: RATE,
    // Windows feed the VAD and the utterance buffer; the engine consumes
    // them whole, so the same policy as PocketSphinx's.
    policy: streamingPolicy(options.windowMs),
    // One inference thread; its BLAS uses engine.threads cores.
    decoders: 1,
    threads: options.threads,
  });
  return new NativeBackedEngine(native, info, listeners);
}

/** The bare model (no streaming), for tests, the reference check and benchmarks. */
export async function loadWhisperModel(
  options: WhisperOptions['whisper'],
  device: { device?: string; perturbation?: number; threads?: number } = {},
): Promise<NativeWhisper> {
  const dir = checkWhisperModel(options);
  const { NativeWhisper } = loadAddon();
  const m = new NativeWhisper(dir, device);
  await m.load();
  return m;
}
