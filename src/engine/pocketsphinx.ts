/**
 * PocketSphinx behind the engine contract. Validates options (better-sqlite3
 * style: defaults, validate, interpret), checks the model files so a missing
 * model is a clear error with the apt package to install, then hands plain
 * numbers to the native engine.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import type { Config } from '../config/schema.js';
import type { NativeEngineOptions } from './addon.js';
import { loadNativeEngine, NativeBackedEngine, streamingPolicy } from './native-engine.js';
import { ENGINE_SAMPLE_RATE as RATE, EngineError, type Engine, type EngineInfo, type StreamId } from './types.js';

const FRAME_MS = 10;

export type PocketSphinxOptions = Pick<Config['engine'], 'threads' | 'decoders' | 'windowMs' | 'pocketsphinx' | 'vad'> & {
  /** Raw extra PocketSphinx options ("-key value" without the dash), for tuning experiments. */
  extra?: Record<string, string>;
};

function modelFiles(o: PocketSphinxOptions['pocketsphinx']) {
  const resolve = (p: string) => (path.isAbsolute(p) ? p : path.join(o.modelDir, p));
  return { hmm: resolve(o.hmm), lm: resolve(o.lm), dict: resolve(o.dict) };
}

/** Throws EngineError('ENGINE_MODEL_MISSING') naming the apt package if a model file is absent. */
export function checkPocketSphinxModel(o: PocketSphinxOptions['pocketsphinx']): { hmm: string; lm: string; dict: string } {
  const files = modelFiles(o);
  const missing = Object.entries(files).filter(([, p]) => !existsSync(p));
  if (missing.length) {
    throw new EngineError(
      'ENGINE_MODEL_MISSING',
      `PocketSphinx model not found: ${missing.map(([k, p]) => `${k}=${p}`).join(', ')}.\n` +
        'Install the US English model with: apt-get install -y pocketsphinx-en-us\n' +
        '(or point engine.pocketsphinx.modelDir / hmm / lm / dict at another model).',
    );
  }
  if (!existsSync(path.join(files.hmm, 'mdef'))) {
    throw new EngineError(
      'ENGINE_MODEL_MISSING',
      `${files.hmm} is not a PocketSphinx acoustic model directory (no mdef file). ` +
        'Install it with: apt-get install -y pocketsphinx-en-us',
    );
  }
  return files;
}

export function pocketSphinxNativeOptions(o: PocketSphinxOptions): NativeEngineOptions {
  const files = checkPocketSphinxModel(o.pocketsphinx);
  const ps = o.pocketsphinx;
  return {
    ...files,
    threads: o.threads,
    decoders: o.decoders,
    fwdflat: ps.fwdflat,
    bestpath: ps.bestpath,
    beam: ps.beam,
    wbeam: ps.wbeam,
    pbeam: ps.pbeam,
    lw: ps.lw,
    maxhmmpf: ps.maxhmmpf,
    maxwpf: ps.maxwpf,
    plWindow: ps.plWindow,
    removeNoise: ps.removeNoise,
    cmnUpdateSamples: Math.round((ps.cmnUpdateMs * RATE) / 1000),
    wordConfidence: ps.wordConfidence,
    vadEnabled: o.vad.enabled,
    vadThreshold: o.vad.threshold,
    vadStartFrames: Math.max(1, Math.round(o.vad.startMs / FRAME_MS)),
    vadEndFrames: Math.max(1, Math.round(o.vad.endMs / FRAME_MS)),
    prerollSamples: Math.round((o.vad.prerollMs * RATE) / 1000),
    maxUtteranceSamples: Math.round(o.vad.maxUtteranceSeconds * RATE),
    holdSamples: Math.round((ps.maxHoldMs * RATE) / 1000),
    ...(o.extra ? { extra: o.extra } : {}),
  };
}

export async function createPocketSphinxEngine(options: PocketSphinxOptions): Promise<Engine & { injectFault(id: StreamId): void }> {
  const nativeOptions = pocketSphinxNativeOptions(options);
  const { native, listeners } = await loadNativeEngine(nativeOptions);
  const info: EngineInfo = Object.freeze({
    name: 'pocketsphinx',
    version: '5prealpha',
    sampleRate: RATE,
    policy: streamingPolicy(options.windowMs),
    decoders: options.decoders,
    threads: options.threads,
  });
  return new NativeBackedEngine(native, info, listeners);
}
