/**
 * Crash safety: kill -9 during live sessions loses at most the last second
 * of finals. The real server process, SIGKILLed mid-speech, restarted on
 * the same store file: every final its clients had more than a second
 * before the kill is in the store, word for word.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import type { FinalMessage } from '../../src/protocol/messages.js';
import { librivoxClips } from '../../eval/corpus.js';
import { RawClient } from '../helpers/gateway.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-crash-'));
const store = path.join(dir, 'captions.db');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function server(): Promise<{ child: ChildProcess; port: number; exited: Promise<void> }> {
  const child = spawn(process.execPath, [path.resolve('dist/src/main.js')], {
    env: {
      ...process.env,
      PORT: '0',
      CAPTIONGATE_SERVER_HOST: '127.0.0.1',
      CAPTIONGATE_ENGINE_KIND: 'pocketsphinx',
      CAPTIONGATE_STORE_PATH: store,
      CAPTIONGATE_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 60_000);
    child.stdout!.on('data', () => {
      const m = /"port":(\d+),"msg":"listening/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
  });
  return { child, port, exited };
}

describe('crash safety', () => {
  it('SIGKILL mid-speech loses at most the last second of finals', async () => {
    const a = await server();
    // Three talkers, each saying every LibriVox clip in turn, a little faster than real time.
    const clips = librivoxClips().map((c) => wavToInt16(readWav(c.file)));
    const speech = Int16Array.from(clips.flatMap((c) => [...c, ...new Int16Array(16000)]));
    const received = new Map<string, { at: number; f: FinalMessage }[]>();
    const talkers = await Promise.all(
      [0, 1, 2].map(async (k) => {
        const c = new RawClient(`ws://127.0.0.1:${a.port}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
        const ready = (await c.waitFor((m) => m.type === 'ready')) as { sessionId: string };
        received.set(ready.sessionId, []);
        c.ws.on('message', (d: Buffer) => {
          const m = JSON.parse(d.toString()) as FinalMessage;
          if (m.type === 'final' && m.text) received.get(ready.sessionId)!.push({ at: Date.now(), f: m });
        });
        void (async () => {
          for (let off = (k * 16000) % speech.length; c.ws.readyState === 1; off = (off + 1600) % (speech.length - 1600)) {
            c.ws.send(speech.subarray(off, off + 1600));
            await new Promise((r) => setTimeout(r, 70));
          }
        })();
        return c;
      }),
    );
    // Talk until a few finals are in, then kill the server without warning.
    // (Up to 3 minutes: a loaded machine decodes slowly; the check is about what is kept, not how fast.)
    for (let i = 0; i < 1800 && [...received.values()].some((v) => v.length < 3); i++) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 2000));
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    await a.exited;
    await Promise.all(talkers.map((c) => c.closed));

    const b = await server();
    try {
      let checked = 0;
      for (const [id, got] of received) {
        const r = await fetch(`http://127.0.0.1:${b.port}/v1/sessions/${id}/captions.json`);
        expect(r.status, `session ${id}`).toBe(200);
        const stored = ((await r.json()) as { finals: FinalMessage[] }).finals;
        const bySegment = new Map(stored.map((f) => [f.segment, f]));
        for (const { at, f } of got) {
          if (killedAt - at <= 1000) continue; // the last second may be lost
          expect(bySegment.get(f.segment)?.text, `session ${id} segment ${f.segment}`).toBe(f.text);
          checked++;
        }
        // Nothing was made up either: every stored final is one the client got.
        for (const f of stored) expect(got.some((g) => g.f.segment === f.segment && g.f.text === f.text)).toBe(true);
      }
      console.log(`crash: ${checked} finals older than 1 s at the kill, all in the store`);
      expect(checked).toBeGreaterThanOrEqual(6);
    } finally {
      b.child.kill('SIGTERM');
      await b.exited;
    }
  }, 360_000);
});
