/**
 * Clients that do not do flow control (issue 16). A sender faster than real
 * time that never reads acks gets every word: its connection stops reading
 * (ws: the socket is paused; the pinned uWebSockets.js cannot pause, so
 * frames are held, up to server.maxHeldAudioBytes) instead of the session
 * ending with engine_overload. A real-time sender whose engine cannot keep
 * up still gets `lagging` and the hard bound. They are told apart by
 * whether the audio runs ahead of the wall clock (Session.aheadSeconds),
 * also after the session has moved to another node.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createOverheadEngine } from '../../src/engine/overhead.js';
import type { EndMessage, ReadyMessage, ResumedMessage } from '../../src/protocol/messages.js';
import { RawClient, settled, startGateway, type Harness, type TransportKind } from '../helpers/gateway.js';
import { redisAvailable, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { slowEngine } from '../helpers/slow-engine.js';

const limits = { lagWarnSeconds: 1, lagMaxSeconds: 3 };

function tone(seconds: number): Uint8Array {
  const pcm = new Int16Array(seconds * 16000);
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(3000 * Math.sin((2 * Math.PI * 220 * i) / 16000));
  return new Uint8Array(pcm.buffer);
}

/** Sends `audio` from `from` in 100 ms frames at real time until `until()` or the connection closes. */
async function realTime(c: RawClient, audio: Uint8Array, from: number, until: () => boolean): Promise<void> {
  const t0 = performance.now();
  for (let off = from, i = 0; off < audio.length && c.closeCode === undefined && !until(); off += 3200, i++) {
    const wait = t0 + i * 100 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    c.ws.send(audio.subarray(off, off + 3200));
  }
}

/** Sends `audio` from `from` to `to` in 100 ms frames all at once (faster than real time). */
function burst(c: RawClient, audio: Uint8Array, from = 0, to = audio.length): void {
  for (let off = from; off < to; off += 3200) c.ws.send(audio.subarray(off, Math.min(to, off + 3200)));
}

describe.each<TransportKind>(['ws', 'uws'])('backpressure (%s)', (transport) => {
  it('a sender 4x faster than the engine, without acks, loses nothing and is not warned', async () => {
    // The engine runs at 4x real time; the client sends 20 s at once.
    const h = await startGateway(transport, { limits }, slowEngine(createOverheadEngine({ windowMs: 100 }), 0.25));
    try {
      const c = new RawClient(`${h.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
      await c.waitFor((m) => m.type === 'ready');
      const audio = tone(20);
      burst(c, audio);
      c.sendJson({ type: 'stop' });
      const end = (await c.waitFor((m) => m.type === 'end', 60_000)) as EndMessage;
      expect(end.reason).toBe('client_stop');
      expect(end.audio.receivedSamples).toBe(20 * 16000);
      expect(end.audio.droppedSamples).toBe(0);
      expect(c.messages.some((m) => m.type === 'warning')).toBe(false);
      await c.closed;
      expect(c.closeCode).toBe(1000);
      await settled(h.gw);
    } finally {
      await h.stop();
    }
  }, 90_000);

  it('a real-time sender whose engine cannot keep up still gets lagging and the hard bound', async () => {
    const h = await startGateway(transport, { limits, admission: { maxEngineLagSeconds: 60 } }, slowEngine(createOverheadEngine({ windowMs: 100 }), 2));
    try {
      const c = new RawClient(`${h.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
      await c.waitFor((m) => m.type === 'ready');
      const audio = tone(15);
      await realTime(c, audio, 0, () => false);
      const end = (await c.waitFor((m) => m.type === 'end', 30_000)) as EndMessage;
      expect(c.messages.some((m) => m.type === 'warning' && m.code === 'lagging')).toBe(true);
      expect(end.reason).toBe('engine_overload');
      expect(end.audio.droppedSamples).toBeGreaterThan(0);
      await settled(h.gw);
    } finally {
      await h.stop();
    }
  }, 90_000);
});


describe.skipIf(!redisAvailable())('backpressure after a move to another node', () => {
  let redis: RedisServer;
  let dir: string;
  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-moved-'));
  });
  afterAll(async () => {
    await redis?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Two nodes in this process sharing the Redis and one store file; B's engine runs at `rtf` times real time. */
  const twoNodes = async (rtf: number) => {
    const node = (nodeId: string) => ({ server: { nodeId }, redis: { url: redis.url }, store: { path: path.join(dir, 'captions.db') }, limits, admission: { maxEngineLagSeconds: 60 } });
    const a = await startGateway('ws', node(`a-${rtf}`), createOverheadEngine({ windowMs: 100 }));
    const b = await startGateway('ws', node(`b-${rtf}`), slowEngine(createOverheadEngine({ windowMs: 100 }), rtf));
    return { a, b };
  };

  /** Drains A (4014), resumes the session on B, and returns B's connection with where its audio stands. */
  const moveToB = async (c: RawClient, ready: ReadyMessage, a: Harness, b: Harness) => {
    const draining = a.gw.shutdown();
    await c.closed;
    expect(c.closeCode).toBe(4014);
    const lastSeq = Math.max(...c.messages.map((m) => ('seq' in m ? m.seq : 0)));
    const moved = new RawClient(`${b.base}/v1/listen?resume=${ready.resumeToken}&lastSeq=${lastSeq}`);
    const resumed = (await moved.waitFor((m) => m.type === 'resumed', 30_000)) as ResumedMessage;
    expect(resumed.sessionId).toBe(ready.sessionId);
    await draining;
    return { moved, from: resumed.receivedFrames * 2 };
  };

  it('a real-time sender continued on a node whose engine cannot keep up gets lagging and the hard bound there', async () => {
    const { a, b } = await twoNodes(2);
    try {
      const audio = tone(30);
      const c = new RawClient(`${a.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
      const ready = (await c.waitFor((m) => m.type === 'ready')) as ReadyMessage;
      // 4 s on A, whose engine keeps up; then A drains and hands the session over.
      const t0 = performance.now();
      await realTime(c, audio, 0, () => performance.now() - t0 >= 4000);
      const { moved, from } = await moveToB(c, ready, a, b);
      // On B it goes on at real time. B decodes at half real time: its
      // backlog passes lagWarnSeconds (1 s) after about 2 s and
      // lagMaxSeconds (3 s) after about 6 s.
      await realTime(moved, audio, from, () => moved.messages.some((m) => m.type === 'end'));
      const end = (await moved.waitFor((m) => m.type === 'end', 30_000)) as EndMessage;
      expect(moved.messages.some((m) => m.type === 'warning' && m.code === 'lagging')).toBe(true);
      expect(end.reason).toBe('engine_overload');
      expect(end.audio.droppedSamples).toBeGreaterThan(0);
      await settled(b.gw);
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 120_000);

  it('a sender faster than real time continued there is still paused, not warned: nothing is lost', async () => {
    const { a, b } = await twoNodes(0.25);
    try {
      const audio = tone(20);
      const c = new RawClient(`${a.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
      const ready = (await c.waitFor((m) => m.type === 'ready')) as ReadyMessage;
      burst(c, audio, 0, 4 * 32000);
      await new Promise((r) => setTimeout(r, 300));
      const { moved, from } = await moveToB(c, ready, a, b);
      burst(moved, audio, from);
      moved.sendJson({ type: 'stop' });
      const end = (await moved.waitFor((m) => m.type === 'end', 60_000)) as EndMessage;
      expect(end.reason).toBe('client_stop');
      expect(end.audio.receivedSamples).toBe(20 * 16000);
      expect(end.audio.droppedSamples).toBe(0);
      expect(moved.messages.some((m) => m.type === 'warning')).toBe(false);
      await settled(b.gw);
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 120_000);
});
