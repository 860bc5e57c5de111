/**
 * SIGTERM under load: the real server process (npm start's entry) with 50
 * live sessions. Every session gets its finals and `end` (server_shutdown),
 * then 4006; the process exits 0 at server.shutdownGraceSeconds at the latest
 * (plus the time running engine windows take to finish).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { librivoxClips } from '../../eval/corpus.js';
import { prng } from '../../eval/fuzz.js';
import { RawClient } from '../helpers/gateway.js';

const clips = librivoxClips().map((c) => wavToInt16(readWav(c.file)));
// Generous, so a CI machine busy with other test files still decodes every backlog;
// the process exits as soon as the sessions are done, not at the deadline.
const GRACE = 20;

describe('SIGTERM with 50 live sessions', () => {
  it('finishes every session, then exits 0 within the grace period', async () => {
    const child = spawn(process.execPath, [path.resolve('dist/src/main.js')], {
      env: {
        ...process.env,
        PORT: '0',
        CAPTIONGATE_SERVER_HOST: '127.0.0.1',
        CAPTIONGATE_SERVER_SHUTDOWN_GRACE_SECONDS: String(GRACE),
        CAPTIONGATE_ENGINE_DECODERS: '10',
        CAPTIONGATE_LIMITS_MAX_SESSIONS_PER_ADDRESS: '100',
        CAPTIONGATE_LOG_LEVEL: 'info',
        CAPTIONGATE_STORE_PATH: path.join(mkdtempSync(path.join(os.tmpdir(), 'captiongate-sigterm-')), 'captions.db'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.on('exit', (code) => resolve({ code, at: Date.now() })));
    const port = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 20_000);
      child.stdout.on('data', () => {
        const m = /"port":(\d+),"msg":"listening/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(Number(m[1]));
        }
      });
    });

    const rand = prng(50);
    const silence = Int16Array.from({ length: 1600 }, () => Math.round((rand() - 0.5) * 40));
    const clients = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const c = new RawClient(`ws://127.0.0.1:${port}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
        await c.waitFor((m) => m.type === 'ready');
        const speech = i < 10 ? clips[i % clips.length]! : null;
        // Real-time pacing until the server ends the session.
        void (async () => {
          const t0 = performance.now();
          for (let f = 0; c.closeCode === undefined && !c.messages.some((m) => m.type === 'end'); f++) {
            const due = t0 + f * 100 - performance.now();
            if (due > 0) await new Promise((r) => setTimeout(r, due));
            const pcm = speech && (f + 1) * 1600 <= speech.length ? speech.subarray(f * 1600, (f + 1) * 1600) : silence;
            if (c.ws.readyState === 1) c.ws.send(pcm);
          }
        })();
        return { c, speaking: speech !== null };
      }),
    );
    await new Promise((r) => setTimeout(r, 3500));
    const sentAt = Date.now();
    child.kill('SIGTERM');
    const { code, at } = await exited;
    expect(code).toBe(0);
    // By the deadline, plus room for the engine's threads to finish the windows
    // they are in (seconds on a CI machine whose cores are busy with other tests).
    expect((at - sentAt) / 1000).toBeLessThan(GRACE + 10);
    for (const { c, speaking } of clients) {
      await c.closed;
      expect(c.closeCode).toBe(4006);
      const end = c.messages.find((m) => m.type === 'end') as { reason: string; audio: { receivedSamples: number; decodedSamples: number; droppedSamples: number } };
      expect(end.reason).toBe('server_shutdown');
      // It kept sending until `end`: told at once, then at most once a second, and never cut off for it (4006 above, not 4005).
      const afterStop = c.messages.filter((m) => m.type === 'error' && m.code === 'CAP_ERR_AUDIO_AFTER_STOP').length;
      expect(afterStop).toBeLessThanOrEqual(GRACE + 2);
      expect(end.audio.receivedSamples).toBe(end.audio.decodedSamples + end.audio.droppedSamples);
      if (speaking) {
        const why = `no final with words; end.audio ${JSON.stringify(end.audio)}; messages ${JSON.stringify(c.messages.slice(0, 4))}\nserver log tail:\n${out.slice(-3000)}`;
        expect(c.messages.some((m) => m.type === 'final' && m.text !== ''), why).toBe(true);
      }
    }
    expect(out).toContain('shutdown complete');
  });
});
