/**
 * Deepgram's live dialect, driven by Deepgram's Python SDK (deepgram-sdk
 * from PyPI, pinned; installed by `scripts/setup.sh --test` into the
 * test-only virtual environment build/pydg, never into the product). The
 * script test/compat/deepgram_python_live.py streams a WAV through the SDK's
 * live client with interim_results, Finalize (waiting for its answer) and
 * CloseStream, and prints what the SDK parsed as JSON lines. The transcript
 * must be what the native protocol gives for the same audio cut at the same
 * point, as for the JS SDK (deepgram-sdk.test.ts).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { encodeWav, readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect } from '../../src/client/client.js';
import { packageRoot } from '../../src/util/paths.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';

const PYTHON = path.join(packageRoot(), 'build', 'pydg', 'bin', 'python');
const SCRIPT = path.join(packageRoot(), 'test', 'compat', 'deepgram_python_live.py');
const hasSdk = existsSync(PYTHON);

const KEY = 'dg-test-key-0123456789abcdef';
const clips = librivoxClips().slice(0, 3);
const parts = clips.map((c) => wavToInt16(readWav(c.file)));
const pcm = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
parts.reduce((off, p) => (pcm.set(p, off), off + p.length), 0);
const reference = clips.map((c) => c.text).join(' ');
const bytes = new Uint8Array(pcm.buffer);
// Finalize at the boundary of the first clip (whole samples).
const cut = parts[0]!.length * 2;

async function native(h: Harness): Promise<string> {
  const c = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: KEY });
  const finals: string[] = [];
  c.on('message', (m) => {
    if (m.type === 'final' && m.text) finals.push(m.text);
  });
  await c.write(bytes.subarray(0, cut));
  c.flush();
  const at = cut / 2 / 16000;
  await new Promise<void>((resolve) => c.on('message', (m) => m.type === 'final' && m.end >= at - 0.05 && resolve()));
  await c.write(bytes.subarray(cut));
  await c.stop();
  return finals.join(' ');
}

type Msg = Record<string, unknown> & { type: string };

describe.skipIf(!hasSdk)(`Deepgram live dialect: the official Python SDK as the client${hasSdk ? '' : ' (skipped: build/pydg is missing; run scripts/setup.sh --test)'}`, () => {
  let h: Harness;
  let dir: string;
  let wav: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-dg-py-'));
    wav = path.join(dir, 'speech.wav');
    writeFileSync(wav, encodeWav(pcm, 16000, 1));
    h = await startGateway('ws', {
      auth: { apiKeys: [`dg-bot:${KEY}`] },
      engine: { decoders: 2, threads: 2 },
      // Not a lag test: the engine may fall behind real time on this shared 2-core machine.
      pool: { slabSeconds: 40 },
      limits: { lagMaxSeconds: 30 },
    });
  });
  afterAll(async () => {
    await h?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('streams real speech with interim_results, Finalize and CloseStream; the transcript is the native one', async () => {
    const expected = await native(h);
    expect(expected.length).toBeGreaterThan(20);
    await settled(h.gw);

    const out = await new Promise<string>((resolve, reject) => {
      execFile(PYTHON, [SCRIPT, h.base, KEY, wav, String(cut)], { timeout: 150_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr.slice(-2000)}\n${stdout.slice(-2000)}`));
        else resolve(stdout);
      });
    });
    const msgs = out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Msg);
    expect(msgs.filter((m) => m.type === '_error')).toEqual([]);
    expect(msgs.at(-1)).toEqual({ type: '_closed', code: 1000 });
    expect(msgs[0]!.type).toBe('Metadata');
    expect(msgs.at(-2)!.type).toBe('Metadata');
    // The SDK's parser types every Results and Metadata (this SDK has no type for Warning, sent when the engine lags).
    for (const m of msgs.filter((x) => x.type === 'Results' || x.type === 'Metadata')) expect(m._sdk).toBe(m.type === 'Results' ? 'ListenV1Results' : 'ListenV1Metadata');
    const results = msgs.filter((m) => m.type === 'Results') as unknown as {
      is_final: boolean;
      from_finalize: boolean;
      channel: { alternatives: { transcript: string; words: { word: string; confidence: number }[] }[] };
    }[];
    const finals = results.filter((r) => r.is_final);
    const text = finals
      .map((r) => r.channel.alternatives[0]!.transcript)
      .filter(Boolean)
      .join(' ');
    expect(text).toBe(expected);
    const w = wer([[reference, text]]).wer;
    console.log(`[python sdk] WER ${w.toFixed(1)}% over ${(pcm.length / 16000).toFixed(1)} s; ${results.length} Results (${finals.length} final)`);
    expect(w).toBeLessThan(50);
    expect(results.some((r) => !r.is_final && r.channel.alternatives[0]!.transcript)).toBe(true);
    expect(finals.filter((r) => r.from_finalize)).toHaveLength(1);
    for (const r of finals) {
      const alt = r.channel.alternatives[0]!;
      if (alt.transcript) expect(alt.words.length).toBeGreaterThan(0);
    }
    await settled(h.gw);
  }, 240_000);
});
