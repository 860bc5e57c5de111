/**
 * Runs test/helpers/moonshine_reference.py (the Moonshine wheels' own
 * transcribers, installed into build/pyref by `scripts/setup.sh --test`)
 * on the same model files and audio as the engine under test, with
 * moonshine_token_tap.so preloaded to record the tokens they decode (built
 * here from test/helpers/moonshine_token_tap.cpp into build/pyref/).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { packageRoot } from '../../src/util/paths.js';

export interface MoonshineReference {
  /** Token ids as the upstream runtime decoded them: start token first, EOS last when reached. */
  tokens: number[];
  text: string;
  /** The audio the runtime decoded (moonshine-voice: the line's audio, which its VAD chunking trims to 512-sample blocks). */
  audio: Float32Array;
  /** Which upstream runtime decoded it (base: moonshine-cpp needs AVX-512; see moonshine_reference.py). */
  runtime: 'moonshine-voice' | 'moonshine-cpp';
}

const root = packageRoot();
const python = path.join(root, 'build', 'pyref', 'bin', 'python');

function tokenTap(): string {
  const src = path.join(root, 'test', 'helpers', 'moonshine_token_tap.cpp');
  const lib = path.join(root, 'build', 'pyref', 'lib', 'moonshine_token_tap.so');
  if (!existsSync(lib) || statSync(lib).mtimeMs < statSync(src).mtimeMs) {
    execFileSync('g++', ['-std=c++17', '-O1', '-shared', '-fPIC', '-o', lib, src, '-ldl']);
  }
  return lib;
}

export function moonshineReference(model: 'tiny' | 'base', modelDir: string, audios: readonly Float32Array[]): MoonshineReference[] {
  const probe = model === 'tiny' ? 'moonshine_voice' : 'moonshine_cpp';
  try {
    execFileSync(python, ['-c', `import ${probe}`], { stdio: 'ignore' });
  } catch {
    throw new Error('The Moonshine reference (moonshine-voice, moonshine-cpp) is not installed: run ./scripts/setup.sh --test');
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cg-mref-'));
  const items = audios.map((a, i) => {
    const f = path.join(dir, `audio-${i}.f32`);
    writeFileSync(f, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    return f;
  });
  const out = execFileSync(python, [path.join(root, 'test', 'helpers', 'moonshine_reference.py')], {
    input: JSON.stringify({ model, modelDir, items, out: dir }),
    env: { ...process.env, LD_PRELOAD: tokenTap(), MOONSHINE_TOKEN_TAP: path.join(dir, 'tokens.txt') },
    maxBuffer: 64 << 20,
  });
  return (JSON.parse(out.toString()) as { tokens: number[]; text: string; audio: string; runtime: MoonshineReference['runtime'] }[]).map((r) => {
    const b = readFileSync(r.audio);
    return { tokens: r.tokens, text: r.text, runtime: r.runtime, audio: new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)) };
  });
}
