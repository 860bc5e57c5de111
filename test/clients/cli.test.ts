import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { startGateway, type Harness } from '../helpers/gateway.js';

const run = promisify(execFile);
const cli = path.resolve('dist/src/cli/main.js');
const clip = librivoxClips()[0]!;

describe('captiongate stream (CLI)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { engine: { decoders: 2, threads: 2 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('streams a WAV file fast, printing finals as JSON lines and writing .vtt and .srt', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cg-cli-'));
    const vtt = path.join(dir, 'out.vtt');
    const srt = path.join(dir, 'out.srt');
    const { stdout, stderr } = await run(process.execPath, [cli, 'stream', clip.file, '--url', `${h.base}/v1/listen`, '--fast', '--json', '--vtt', vtt, '--srt', srt]);
    const finals = stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; text: string });
    expect(finals.every((f) => f.type === 'final')).toBe(true);
    expect(wer([[clip.text, finals.map((f) => f.text).join(' ')]]).wer).toBeLessThan(50);
    expect(stderr).toMatch(/client_stop: 7\.10 s received, 7\.10 s decoded, 0\.00 s dropped/);
    expect(readFileSync(vtt, 'utf8').startsWith('WEBVTT\n')).toBe(true);
    expect(readFileSync(srt, 'utf8').startsWith('1\n')).toBe(true);
  });

  it('takes 48 kHz stereo raw PCM on stdin as it is (no client-side resampling)', async () => {
    const src = wavToInt16(readWav(clip.file));
    const pcm = new Int16Array(src.length * 3 * 2);
    for (let i = 0; i < src.length * 3; i++) pcm[2 * i] = pcm[2 * i + 1] = src[Math.floor(i / 3)]!;
    const child = spawn(process.execPath, [cli, 'stream', '-', '--url', `${h.base}/v1/listen`, '--rate', '48000', '--channels', '2', '--encoding', 's16le', '--fast', '--json']);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(Buffer.from(pcm.buffer));
    const code = await new Promise<number>((r) => child.on('close', (c) => r(c ?? -1)));
    expect(code).toBe(0);
    expect(stderr).toMatch(/7\.10 s received/);
    const text = stdout.trim().split('\n').map((l) => (JSON.parse(l) as { text: string }).text).join(' ');
    expect(wer([[clip.text, text]]).wer).toBeLessThan(60);
  });

  it('reports a refused connection with the code and exits non-zero', async () => {
    const err = await run(process.execPath, [cli, 'stream', clip.file, '--url', `${h.base}/v1/nope`]).catch((e: { code: number; stderr: string }) => e);
    expect((err as { code: number }).code).not.toBe(0);
    expect((err as { stderr: string }).stderr).toMatch(/CAP_ERR_NOT_FOUND/);
  });
});
