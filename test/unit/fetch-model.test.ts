import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { whisperModelDir } from '../../src/engine/whisper.js';
import { testConfig } from '../helpers/config.js';

const script = new URL('../../scripts/fetch-whisper-model.mjs', import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' });

describe('Whisper model install (scripts/fetch-whisper-model.mjs)', () => {
  it('verifies the installed copy by SHA-256 without downloading again', () => {
    const r = run('--check', '--dir', whisperModelDir(testConfig().engine.whisper));
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/verified/);
  });

  it('refuses an altered model with both hashes in the message', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cg-model-'));
    const real = whisperModelDir(testConfig().engine.whisper);
    copyFileSync(path.join(real, 'vocabulary.txt'), path.join(dir, 'vocabulary.txt'));
    copyFileSync(path.join(real, 'config.json'), path.join(dir, 'config.json'));
    writeFileSync(path.join(dir, 'model.bin'), 'not the weights');
    const r = run('--check', '--dir', dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/model\.bin: SHA-256 [0-9a-f]{64}, expected d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9/);
    expect(r.stderr).toMatch(/fetch-whisper-model\.mjs/);
  });
});
