/**
 * The Moonshine installer (scripts/fetch-moonshine-model.mjs) verifies every
 * file by SHA-256: the installed copy passes without downloading again, and
 * an altered one is refused with the file's name and both hashes.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { packageRoot } from '../../src/util/paths.js';

const script = path.join(packageRoot(), 'scripts', 'fetch-moonshine-model.mjs');
const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' });
const models = path.join(packageRoot(), 'models');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'cg-moonshine-install-'));

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('Moonshine install (scripts/fetch-moonshine-model.mjs)', () => {
  it('verifies the installed models, the ONNX Runtime headers and library by SHA-256 without downloading again', () => {
    const r = run('--check');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Moonshine tiny \(tiny-en\): verified/);
    expect(r.stdout).toMatch(/Moonshine base \(base-en\): verified/);
    expect(r.stdout).toMatch(/ONNX Runtime headers: verified/);
    expect(r.stdout).toMatch(/ONNX Runtime 1\.22\.0: .*libonnxruntime\.so\.1 verified/);
  });

  it('refuses an altered model with both hashes in the message', () => {
    for (const m of ['moonshine-tiny', 'moonshine-base']) {
      mkdirSync(path.join(tmp, m));
      for (const f of ['encoder_model.ort', 'decoder_model_merged.ort', 'LICENSE']) symlinkSync(path.join(models, m, f), path.join(tmp, m, f));
    }
    writeFileSync(path.join(tmp, 'moonshine-tiny', 'tokenizer.bin'), 'not the tokenizer');
    symlinkSync(path.join(models, 'moonshine-base', 'tokenizer.bin'), path.join(tmp, 'moonshine-base', 'tokenizer.bin'));
    const r = run('--check', '--dir', tmp);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/tokenizer\.bin: SHA-256 [0-9a-f]{64}, expected 6884b35fd6377d4c4d32336a0bc152f36b64d1e45b6503683cdc238250a8472d/);
    expect(r.stderr).toMatch(/fetch-moonshine-model\.mjs/);
    // The intact base copy still verifies.
    expect(r.stdout).toMatch(/Moonshine base \(base-en\): verified/);
  });
});
