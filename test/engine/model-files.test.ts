/**
 * Damaged model files must give a clear error, never a crash: truncated and
 * corrupted copies of the Whisper model (CTranslate2 model.bin) and of its
 * vocabulary, in a temp folder, fed to the model loader (and once through
 * the engine factory). Every size the reader takes from the file is checked
 * (native/src/whisper/ct2_model.cc, tokenizer.cc).
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadAddon } from '../../src/engine/addon.js';
import { EngineError } from '../../src/engine/types.js';
import { checkWhisperModel, createWhisperEngine } from '../../src/engine/whisper.js';
import { testConfig } from '../helpers/config.js';

const modelDir = checkWhisperModel(testConfig().engine.whisper);
const modelBin = path.join(modelDir, 'model.bin');
const vocabulary = path.join(modelDir, 'vocabulary.txt');

interface Variable {
  name: string;
  /** Offsets of the fields in the file. */
  rankAt: number;
  dimsAt: number;
  typeAt: number;
  nbytesAt: number;
  rank: number;
  type: number;
  nbytes: number;
}

/** Walks model.bin's header and variable table (layout of CTranslate2 binary version 6). */
function layout(b: Buffer): { nvarsAt: number; variables: Variable[]; end: number } {
  let p = 4;
  const specLen = b.readUInt16LE(p);
  p += 2 + specLen + 4;
  const nvarsAt = p;
  const nvars = b.readUInt32LE(p);
  p += 4;
  const variables: Variable[] = [];
  for (let i = 0; i < nvars; i++) {
    const nameLen = b.readUInt16LE(p);
    const name = b.toString('utf8', p + 2, p + 2 + nameLen).replace(/\0$/, '');
    p += 2 + nameLen;
    const rankAt = p;
    const rank = b.readUInt8(p);
    p += 1;
    const dimsAt = p;
    p += 4 * rank;
    const typeAt = p;
    const type = b.readUInt8(p);
    p += 1;
    const nbytesAt = p;
    const nbytes = b.readUInt32LE(p);
    p += 4 + nbytes;
    variables.push({ name, rankAt, dimsAt, typeAt, nbytesAt, rank, type, nbytes });
  }
  return { nvarsAt, variables, end: p };
}

describe('Whisper model files: damaged copies give a clear error, never a crash', () => {
  let original: Buffer;
  let vars: ReturnType<typeof layout>;
  let dir: string;
  const { NativeWhisper } = loadAddon();

  beforeAll(() => {
    original = readFileSync(modelBin);
    vars = layout(original);
    dir = mkdtempSync(path.join(tmpdir(), 'captiongate-model-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Loads a model folder whose model.bin is `bin` (vocabulary intact), or whose vocabulary is `vocab`. */
  async function loadWith(files: { bin?: Buffer; vocab?: Buffer | string }): Promise<string> {
    const d = mkdtempSync(path.join(dir, 'case-'));
    try {
      if (files.bin) writeFileSync(path.join(d, 'model.bin'), files.bin);
      else symlinkSync(modelBin, path.join(d, 'model.bin'));
      if (files.vocab !== undefined) writeFileSync(path.join(d, 'vocabulary.txt'), files.vocab);
      else copyFileSync(vocabulary, path.join(d, 'vocabulary.txt'));
      const m = new NativeWhisper(d);
      const err = await m.load().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, 'the damaged copy loaded').toBeInstanceOf(Error);
      return (err as Error).message;
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }

  const patched = (edit: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(original);
    edit(b);
    return b;
  };

  it('(1/3) truncated model.bin at any point says truncated', async () => {
    const cuts = [0, 3, 7, vars.nvarsAt + 2, vars.variables[0]!.typeAt, vars.variables[1]!.nbytesAt + 100, original.length >> 1, original.length - 1];
    for (const n of cuts) {
      const msg = await loadWith({ bin: original.subarray(0, n) });
      expect(msg, `cut at ${n}`).toMatch(/model\.bin: truncated (or corrupt )?CTranslate2 model/);
    }
  });

  it('(2/3) corrupted header and table fields are named', async () => {
    const v0 = vars.variables[0]!;
    const matrix = vars.variables.find((v) => v.rank >= 2)!;
    const cases: [string, (b: Buffer) => void, RegExp][] = [
      ['version', (b) => b.writeInt32LE(99, 0), /unsupported CTranslate2 binary version 99/],
      ['variable count', (b) => b.writeUInt32LE(0xffffffff, vars.nvarsAt), /4294967295 variables cannot fit/],
      ['alias count', (b) => b.writeUInt32LE(0x7fffffff, vars.end), /2147483647 aliases cannot fit/],
      ['rank', (b) => b.writeUInt8(200, v0.rankAt), /has rank 200/],
      ['type', (b) => b.writeUInt8(7, v0.typeAt), /unsupported tensor type 7/],
      ['size', (b) => b.writeUInt32LE(v0.nbytes + 2, v0.nbytesAt), /holds \d+ bytes, its shape and type need \d+/],
      ['dimension', (b) => b.writeUInt32LE(3, matrix.dimsAt), new RegExp(`${matrix.name} holds \\d+ bytes, its shape and type need \\d+`)],
      ['every dimension huge', (b) => {
        for (let d = 0; d < matrix.rank; d++) b.writeUInt32LE(0xffffffff, matrix.dimsAt + 4 * d);
      }, /impossible shape/],
      ['name length', (b) => b.writeUInt16LE(0xffff, vars.variables[0]!.rankAt - v0.name.length - 2 - 1), /model\.bin: /],
    ];
    for (const [what, edit, expected] of cases) {
      const msg = await loadWith({ bin: patched(edit) });
      expect(msg, what).toMatch(/model\.bin: /);
      expect(msg, what).toMatch(expected);
    }
  });

  it('(3/3) an integer scalar with no bytes, or a tensor of the wrong kind, is refused', async () => {
    const scalar = vars.variables.find((v) => v.rank === 0 && v.type >= 1 && v.type <= 3);
    expect(scalar, 'the model has integer scalars (head counts, flags)').toBeDefined();
    // nbytes 0 where a scalar needs its bytes: the reader used to read p[0] past the data.
    const noBytes = Buffer.concat([
      original.subarray(0, scalar!.nbytesAt),
      Buffer.from([0, 0, 0, 0]),
      original.subarray(scalar!.nbytesAt + 4 + scalar!.nbytes),
    ]);
    expect(await loadWith({ bin: noBytes })).toMatch(new RegExp(`${scalar!.name} holds 0 bytes, its shape and type need`));
    // A weight renamed: missing tensor. A head count changed: not Whisper base.
    const w = vars.variables.find((v) => v.name === 'encoder/conv1/weight')!;
    const renamed = patched((b) => b.write('X', w.rankAt - w.name.length, 'latin1'));
    expect(await loadWith({ bin: renamed })).toMatch(/missing tensor encoder\/conv1\/weight/);
    const heads = vars.variables.find((v) => v.name === 'encoder/num_heads')!;
    const sixHeads = patched((b) => b.writeUInt8(6, heads.nbytesAt + 4));
    expect(await loadWith({ bin: sixHeads })).toMatch(/not Whisper base \(8 heads expected\)/);
  }, 120_000);

  it('a damaged vocabulary is named: truncated, too long, bad lines, misplaced special tokens, binary junk', async () => {
    const lines = readFileSync(vocabulary, 'utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    expect(lines.length).toBe(51_865);
    const cases: [string, Buffer | string, RegExp][] = [
      ['empty', '', /expected 51,865 tokens .* found 0/],
      ['truncated', lines.slice(0, 30_000).join('\n'), /found 30000 \(truncated or damaged/],
      ['extra lines', [...lines, 'a', 'b'].join('\n'), /more than 51,865 tokens/],
      ['long line', [...lines.slice(0, 10), 'x'.repeat(5000), ...lines.slice(11)].join('\n'), /line 11 is 5000 bytes long/],
      ['special tokens moved', [...lines.slice(0, 50_258), 'hello', ...lines.slice(50_259)].join('\n'), /special tokens are not where/],
      ['binary junk', Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7919 + 13) % 256)), /vocabulary\.txt: /],
    ];
    for (const [what, vocab, expected] of cases) {
      const msg = await loadWith({ vocab });
      expect(msg, what).toMatch(/vocabulary\.txt: /);
      expect(msg, what).toMatch(expected);
    }
  }, 120_000);

  it('through the engine factory: ENGINE_LOAD_FAILED with the reader\'s message', async () => {
    const d = mkdtempSync(path.join(dir, 'engine-'));
    writeFileSync(path.join(d, 'model.bin'), original.subarray(0, 1000));
    copyFileSync(vocabulary, path.join(d, 'vocabulary.txt'));
    const c = testConfig().engine;
    const err = await createWhisperEngine({ ...c, whisper: { ...c.whisper, modelDir: d } }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('ENGINE_LOAD_FAILED');
    expect((err as Error).message).toMatch(/model\.bin: truncated (or corrupt )?CTranslate2 model/);
  });
});
