/**
 * Runs test/helpers/whisper_reference.py (CTranslate2 + faster-whisper's
 * numpy log-mel, installed into build/pyref by `scripts/setup.sh --test`) on
 * the same model and audio as the backend under test.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { packageRoot } from '../../src/util/paths.js';

export interface ReferenceItem {
  /** 16 kHz mono audio, at most 30 s. */
  audio: Float32Array;
  /** The backend's own [80][3000] log-mel; the reference encoder and decoder then run on it. */
  mel?: Float32Array;
}

export interface ReferenceResult {
  mel: Float32Array;
  encoder: Float32Array;
  tokens: number[];
  noSpeechProb: number;
}

const root = packageRoot();
const python = path.join(root, 'build', 'pyref', 'bin', 'python');
const features = path.join(root, 'build', 'pyref', 'fw', 'faster_whisper', 'feature_extractor.py');

export function whisperReference(modelDir: string, items: readonly ReferenceItem[]): ReferenceResult[] {
  if (!existsSync(python) || !existsSync(features)) {
    throw new Error('The Whisper reference (CTranslate2) is not installed: run ./scripts/setup.sh --test');
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cg-wref-'));
  const req = {
    model: modelDir,
    out: dir,
    items: items.map((it, i) => {
      const audio = path.join(dir, `audio-${i}.f32`);
      writeFileSync(audio, new Uint8Array(it.audio.buffer, it.audio.byteOffset, it.audio.byteLength));
      let mel: string | null = null;
      if (it.mel) {
        mel = path.join(dir, `mel-${i}.f32`);
        writeFileSync(mel, new Uint8Array(it.mel.buffer, it.mel.byteOffset, it.mel.byteLength));
      }
      return { audio, mel };
    }),
  };
  const out = execFileSync(python, [path.join(root, 'test', 'helpers', 'whisper_reference.py')], {
    input: JSON.stringify(req),
    env: { ...process.env, CG_FASTER_WHISPER_FEATURES: features, CG_REF_THREADS: '1' },
    maxBuffer: 64 << 20,
  });
  const f32 = (p: string) => {
    const b = readFileSync(p);
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  return (JSON.parse(out.toString()) as { mel: string; encoder: string; tokens: number[]; noSpeechProb: number }[]).map((r) => ({
    mel: f32(r.mel),
    encoder: f32(r.encoder),
    tokens: r.tokens,
    noSpeechProb: r.noSpeechProb,
  }));
}

export function cosine(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}
