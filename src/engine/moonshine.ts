/**
 * Moonshine (tiny or base, English; Useful Sensors / Moonshine AI, MIT)
 * behind the engine contract (engine.kind "moonshine"). The weights are
 * installed by scripts/fetch-moonshine-model.mjs (setup runs it); a missing
 * model is a clear error here, never a download. Inference runs in the
 * addon on ONNX Runtime's C API (onnxruntime-node 1.22.0's library,
 * dlopen()ed at load); docs/moonshine.md has the design and the numbers.
 *
 * Captions from an encoder whose cost grows with the audio: utterances are
 * cut by the same VAD as the other engines, the open utterance is re-decoded
 * for partials at a cadence that adapts to load, and its final is decoded
 * once, from a span fixed by the audio (speculatively, while the pause that
 * ends it lasts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import type { Config } from '../config/schema.js';
import { packageRoot } from '../util/paths.js';
import { loadAddon, type NativeMoonshine, type NativeMoonshineEngineOptions } from './addon.js';
import { loadNativeEngine, NativeBackedEngine, streamingPolicy } from './native-engine.js';
import { ENGINE_SAMPLE_RATE as RATE, EngineError, type Engine, type EngineInfo, type StreamId } from './types.js';

const FRAME_MS = 10;
const MODEL_FILES = ['encoder_model.ort', 'decoder_model_merged.ort', 'tokenizer.bin'];

export type MoonshineOptions = Pick<Config['engine'], 'threads' | 'windowMs' | 'moonshine' | 'vad'>;
export type MoonshineModelName = Config['engine']['moonshine']['model'];

/** The model folder: `<modelsDir>/moonshine-<model>` (relative paths are from the package root). */
export function moonshineModelDir(o: Pick<MoonshineOptions['moonshine'], 'model' | 'modelsDir'>): string {
  const base = path.isAbsolute(o.modelsDir) ? o.modelsDir : path.join(packageRoot(), o.modelsDir);
  return path.join(base, `moonshine-${o.model}`);
}

/**
 * Throws EngineError('ENGINE_MODEL_MISSING') with one line that says how to install the model, or what to choose instead
 * (`asPreview`: it is the first-partials model beside another, which can also go without it).
 */
export function checkMoonshineModel(o: Pick<MoonshineOptions['moonshine'], 'model' | 'modelsDir'> & { asPreview?: boolean }): string {
  const dir = moonshineModelDir(o);
  const missing = MODEL_FILES.filter((f) => !existsSync(path.join(dir, f)));
  if (missing.length) {
    throw new EngineError(
      'ENGINE_MODEL_MISSING',
      `Moonshine ${o.model} model not found in ${dir} (missing ${missing.join(', ')}): install it with \`node scripts/fetch-moonshine-model.mjs\` (scripts/setup.sh runs it), or set engine.kind to "pocketsphinx"${o.asPreview ? ` (or engine.moonshine.preview to "none")` : ''}.`,
    );
  }
  return dir;
}

/** onnxruntime-node's bundled ONNX Runtime library (the engine dlopen()s it) and its version. */
export function onnxRuntimeLibrary(): { file: string; version: string } {
  const require = createRequire(import.meta.url);
  let pkg: string;
  try {
    pkg = require.resolve('onnxruntime-node/package.json', { paths: [packageRoot()] });
  } catch {
    throw new EngineError('ENGINE_LOAD_FAILED', 'The ONNX Runtime library is not installed (npm package onnxruntime-node): run npm ci (scripts/setup.sh does).');
  }
  const version = (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new EngineError('ENGINE_LOAD_FAILED', `The Moonshine engine is built for linux-x64 (this is ${process.platform}-${process.arch}).`);
  }
  const file = path.join(path.dirname(pkg), 'bin', 'napi-v6', 'linux', 'x64', 'libonnxruntime.so.1');
  if (!existsSync(file)) {
    throw new EngineError('ENGINE_LOAD_FAILED', `The ONNX Runtime library ${file} is missing: reinstall onnxruntime-node with npm ci.`);
  }
  return { file, version };
}

/** The preview model beside `model`, if any: only a model slower than tiny has one. */
export function moonshinePreviewModel(m: Pick<MoonshineOptions['moonshine'], 'model' | 'preview'>): MoonshineModelName | null {
  return m.model !== 'tiny' && m.preview !== 'none' ? m.preview : null;
}

export function moonshineNativeOptions(o: MoonshineOptions): NativeMoonshineEngineOptions {
  const m = o.moonshine;
  const preview = moonshinePreviewModel(m);
  return {
    kind: 'moonshine',
    modelDir: checkMoonshineModel(m),
    // Base decodes some openings to nothing until 0.7 s of speech; tiny's
    // text is the partial until base has its own (docs/moonshine.md).
    ...(preview ? { previewModelDir: checkMoonshineModel({ model: preview, modelsDir: m.modelsDir, asPreview: true }) } : {}),
    ortLibrary: onnxRuntimeLibrary().file,
    threads: o.threads,
    // Threads run separate windows, each ORT run on one of them: measured
    // better than ORT's own threads at any load but one stream (docs/moonshine.md).
    intraOpThreads: 1,
    // Base ships weight-only int8 that ORT expands on every run unless it
    // folds the constants, which it only does for ONNX (docs/moonshine.md).
    foldWeights: m.model === 'base',
    maxBatch: m.maxBatch,
    maxTokensPerSecond: m.maxTokensPerSecond,
    maxRepeats: 4,
    // 0: the model's own. Tiny's finals read flite speech with 48 errors in
    // 1,071 words at 2 beams (as at 4, for less work) where greedy makes 57;
    // base's make 30 and 31, and greedy keeps its drafts, which make its
    // finals cheap (docs/moonshine.md, policy 9).
    finalBeamWidth: m.finalBeamWidth || (m.model === 'tiny' ? 2 : 1),
    vadEnabled: o.vad.enabled,
    vadThreshold: o.vad.threshold,
    vadStartFrames: Math.max(1, Math.round(o.vad.startMs / FRAME_MS)),
    vadEndFrames: Math.max(1, Math.round(o.vad.endMs / FRAME_MS)),
    prerollSamples: Math.round((o.vad.prerollMs * RATE) / 1000),
    maxUtteranceSamples: Math.round(Math.min(m.maxUtteranceSeconds, o.vad.maxUtteranceSeconds) * RATE),
    partialIntervalMs: m.partialIntervalMs,
    partialLoadShare: m.partialLoadShare,
    tailSamples: Math.round((m.tailMs * RATE) / 1000),
    roundMs: 100,
    minMeanProb: 0.25,
  };
}

export async function createMoonshineEngine(options: MoonshineOptions): Promise<Engine & { injectFault(id: StreamId): void }> {
  const nativeOptions = moonshineNativeOptions(options);
  const preview = moonshinePreviewModel(options.moonshine);
  const { version } = onnxRuntimeLibrary();
  const { native, listeners } = await loadNativeEngine(nativeOptions);
  const info: EngineInfo = Object.freeze({
    name: 'moonshine',
    model: options.moonshine.model,
    version: `${options.moonshine.model}-en int8${preview ? ` (first partials: ${preview}-en)` : ''}, onnxruntime ${version}`,
    sampleRate: RATE,
    // Windows feed the VAD and the utterance buffer; the engine consumes
    // them whole, as the other native engines do.
    policy: streamingPolicy(options.windowMs),
    decoders: 1,
    threads: options.threads,
  });
  return new NativeBackedEngine(native, info, listeners);
}

/** The bare model (no streaming), for tests, the reference check and benchmarks. */
export async function loadMoonshineModel(
  o: Pick<MoonshineOptions['moonshine'], 'model' | 'modelsDir'>,
  opts: { intraOpThreads?: number; foldWeights?: boolean } = {},
): Promise<NativeMoonshine> {
  const dir = checkMoonshineModel(o);
  const { NativeMoonshine } = loadAddon();
  const m = new NativeMoonshine({
    modelDir: dir,
    ortLibrary: onnxRuntimeLibrary().file,
    intraOpThreads: opts.intraOpThreads ?? 1,
    foldWeights: opts.foldWeights ?? o.model === 'base',
  });
  await m.load();
  return m;
}
