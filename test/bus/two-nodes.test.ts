/**
 * Two gateway processes (dist/src/main.js, each with its own memory store)
 * sharing one real redis-server, started by the test:
 *
 * - one meeting, a speaker on each node: viewers on both nodes see every
 *   final once, in one order (the same seqs), and a viewer who joins later
 *   gets the complete replay;
 * - Redis stopped for 5 s mid-meeting (restarted empty: no persistence):
 *   both speakers keep getting their own captions, /readyz stays 200 and
 *   says "redis" is degraded, and once Redis is back the viewers get the
 *   outage's finals, with no duplicates and seqs still growing;
 * - a token's opens and concurrent sessions count across both nodes.
 */
import type { ChildProcess } from 'node:child_process';

import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { fliteSession } from '../../eval/corpus.js';
import { MEETING } from '../../eval/texts.js';
import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect, type CaptionClient } from '../../src/client/client.js';
import type { FinalMessage, WireMessage } from '../../src/protocol/messages.js';
import { RawClient } from '../helpers/gateway.js';
import { spawnGateway } from '../helpers/gateway-process.js';
import { redisAvailable, startRedis, type RedisServer } from '../helpers/redis-server.js';

const SECRET = 'two-nodes-test-secret-0123456789abcdef';
const key = new TextEncoder().encode(SECRET);
const token = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('10m').sign(key);

const MEETING_ID = 'cross-node-1';
const OPENS_PER_MINUTE = 4;

interface Node {
  readonly child: ChildProcess;
  readonly port: number;
  out(): string;
  stop(): Promise<void>;
}

async function startNode(redisUrl: string, name: string): Promise<Node> {
  // A memory store: each node keeps its own files; only the bus is shared.
  const g = await spawnGateway({
    CAPTIONGATE_ENGINE_KIND: 'pocketsphinx',
    CAPTIONGATE_ENGINE_DECODERS: '2',
    CAPTIONGATE_ENGINE_THREADS: '1',
    CAPTIONGATE_POOL_SLABS: '16',
    CAPTIONGATE_STORE_KIND: 'memory',
    CAPTIONGATE_AUTH_SECRET: SECRET,
    CAPTIONGATE_RATE_LIMITS_OPENS_PER_MINUTE_PER_TOKEN: String(OPENS_PER_MINUTE),
    CAPTIONGATE_REDIS_URL: redisUrl,
    CAPTIONGATE_REDIS_HEARTBEAT_MS: '500',
    CAPTIONGATE_REDIS_LEASE_MS: '3000',
  });
  return {
    child: g.child,
    port: g.port,
    out: g.output,
    async stop() {
      await g.stop('SIGTERM');
    },
  };
}

const pcmOf = (sentence: string, voice: 'slt' | 'rms') => wavToInt16(readWav(fliteSession([sentence], { voice, leadSeconds: 0.3, tailSeconds: 1.0 }).file));
/** One sentence per speaker per phase: before, during and after the outage. */
const lines = {
  alice: [MEETING.alice[0]!, MEETING.alice[1]!, MEETING.carol[0]!],
  bob: [MEETING.bob[0]!, MEETING.bob[1]!, MEETING.carol[1]!],
};
const audio = {
  alice: lines.alice.map((l) => pcmOf(l, 'slt')),
  bob: lines.bob.map((l) => pcmOf(l, 'rms')),
};

const finalsOf = (msgs: WireMessage[]) => msgs.filter((m): m is FinalMessage => m.type === 'final' && m.text !== '');
const until = async (what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 30_000) => {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};
const readyz = async (port: number) => {
  const r = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: r.status, body: (await r.json()) as { ready: boolean; degraded: string[] } };
};

/** Sends one phase's audio as fast as flow control allows, then waits until all of it is decoded. */
async function speak(c: CaptionClient, pcm: Int16Array): Promise<void> {
  const bytes = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  for (let off = 0; off < bytes.length; off += 3200) await c.write(bytes.subarray(off, Math.min(bytes.length, off + 3200)));
  await until('the audio to be decoded', () => c.decodedSeconds >= c.sentSeconds - 0.01, 60_000);
}

describe.skipIf(!redisAvailable())('two nodes, one Redis', () => {
  let redis: RedisServer;
  let a: Node;
  let b: Node;
  beforeAll(async () => {
    redis = await startRedis();
    [a, b] = await Promise.all([startNode(redis.url, 'node-a'), startNode(redis.url, 'node-b')]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.destroy();
  });

  it('one meeting across nodes: one order for every viewer, a complete replay, and a 5 s Redis outage without loss or duplicates', async () => {
    const viewerUrl = async (port: number, sub: string) =>
      `ws://127.0.0.1:${port}/v1/meetings/${MEETING_ID}/captions?token=${await token({ sub, scope: 'view', meetingId: MEETING_ID })}`;
    // A viewer on node B, there before anyone speaks.
    const v1 = new RawClient(await viewerUrl(b.port, 'viewer-1'));
    await v1.waitFor((m) => m.type === 'viewer_ready');

    const speaker = async (port: number, sub: string) =>
      connect(`ws://127.0.0.1:${port}/v1/listen`, {
        sampleRate: 16000,
        token: await token({ sub, scope: 'listen', meetingId: MEETING_ID, name: sub }),
        meta: { meetingId: MEETING_ID },
        resume: false,
      });
    const alice = await speaker(a.port, 'alice');
    const bob = await speaker(b.port, 'bob');
    const own = { alice: [] as FinalMessage[], bob: [] as FinalMessage[] };
    alice.on('final', (f) => f.text && own.alice.push(f));
    bob.on('final', (f) => f.text && own.bob.push(f));
    const speakerTrouble: string[] = [];
    for (const c of [alice, bob]) c.on('message', (m) => (m.type === 'error' || m.type === 'warning') && speakerTrouble.push(JSON.stringify(m)));

    // Phase 1: both speak, Redis up.
    await Promise.all([speak(alice, audio.alice[0]!), speak(bob, audio.bob[0]!)]);
    const phase1 = own.alice.length + own.bob.length;
    expect(own.alice.length).toBeGreaterThan(0);
    expect(own.bob.length).toBeGreaterThan(0);
    await v1.waitFor(() => finalsOf(v1.messages).length >= phase1, 20_000);

    // A viewer joining on node A gets the whole meeting so far as its replay.
    const v2 = new RawClient(await viewerUrl(a.port, 'viewer-2'));
    const ready2 = await v2.waitFor((m): m is Extract<WireMessage, { type: 'viewer_ready' }> => m.type === 'viewer_ready');
    expect(ready2).toMatchObject({ replay: phase1, truncated: 0 });
    expect(ready2.participants.map((p) => p.speaker).sort()).toEqual(['alice', 'bob']);
    await v2.waitFor(() => finalsOf(v2.messages).length >= phase1);

    // Phase 2: Redis stops (and will come back empty).
    await redis.stop();
    const outageAt = Date.now();
    await until('both nodes to report redis degraded', async () => {
      const [ra, rb] = await Promise.all([readyz(a.port), readyz(b.port)]);
      return ra.body.degraded.includes('redis') && rb.body.degraded.includes('redis');
    });
    for (const n of [a, b]) {
      const r = await readyz(n.port);
      // Degraded, not drained: still ready for plain sessions.
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ ready: true, degraded: ['redis'] });
    }
    const seenBefore = finalsOf(v1.messages).length;
    await Promise.all([speak(alice, audio.alice[1]!), speak(bob, audio.bob[1]!)]);
    const phase2 = own.alice.length + own.bob.length;
    // Each speaker got its own captions while Redis was away.
    expect(phase2).toBeGreaterThan(phase1);
    expect(own.alice.some((f) => lines.alice[1]!.split(' ').some((w) => f.text.includes(w)))).toBe(true);
    expect(redis.running).toBe(false);
    // Viewers miss the live messages meanwhile.
    expect(finalsOf(v1.messages).length).toBe(seenBefore);
    const left = 5000 - (Date.now() - outageAt);
    if (left > 0) await new Promise((r) => setTimeout(r, left));
    await redis.start();
    await until('both nodes to report redis healthy', async () => {
      const [ra, rb] = await Promise.all([readyz(a.port), readyz(b.port)]);
      return !ra.body.degraded.length && !rb.body.degraded.length;
    });
    // The outage's finals reach the viewers afterwards.
    await v1.waitFor(() => finalsOf(v1.messages).length >= phase2, 20_000);
    await v2.waitFor(() => finalsOf(v2.messages).length >= phase2, 20_000);

    // Phase 3: after the outage.
    await Promise.all([speak(alice, audio.alice[2]!), speak(bob, audio.bob[2]!)]);
    await Promise.all([alice.stop(), bob.stop()]);
    const total = own.alice.length + own.bob.length;
    await v1.waitFor(() => finalsOf(v1.messages).length >= total, 20_000);
    await v2.waitFor(() => finalsOf(v2.messages).length >= total, 20_000);
    await v1.waitFor((m) => m.type === 'participant' && m.event === 'left' && m.speaker === 'bob', 20_000);
    await v2.waitFor((m) => m.type === 'participant' && m.event === 'left' && m.speaker === 'bob', 20_000);
    await new Promise((r) => setTimeout(r, 500));

    // Every final exactly once, attributed to its speaker, with its text.
    const key = (f: FinalMessage) => `${f.speaker}/${f.segment}`;
    const expected = [...own.alice.map((f) => `alice/${f.segment}:${f.text}`), ...own.bob.map((f) => `bob/${f.segment}:${f.text}`)].sort();
    for (const [v, replayed] of [[v1, 0], [v2, ready2.replay]] as const) {
      const fs = finalsOf(v.messages);
      expect(fs.map((f) => `${key(f)}:${f.text}`).sort()).toEqual(expected);
      // Seqs only grow (the outage restarted Redis empty: they jump, never go back).
      // (The replay comes first, sorted by start; live messages after it.)
      const seqs = v.messages.slice(1 + replayed).flatMap((m) => ('seq' in m ? [m.seq] : []));
      expect(v.messages[0]!.type).toBe('viewer_ready');
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
      // Each speaker's finals in their own order.
      for (const s of ['alice', 'bob']) {
        const mine = fs.filter((f) => f.speaker === s).map((f) => f.segment);
        expect(mine).toEqual([...mine].sort((x, y) => x - y));
      }
    }
    // One order for every viewer: the same events with the same seqs, from the moment v2 was live.
    const live2 = finalsOf(v2.messages).slice(ready2.replay);
    const byKey1 = new Map(finalsOf(v1.messages).map((f) => [key(f), f.seq]));
    for (const f of live2) expect(byKey1.get(key(f))).toBe(f.seq);
    const order1 = finalsOf(v1.messages).map(key);
    expect(live2.map(key)).toEqual(order1.slice(order1.length - live2.length));

    // The speakers never heard of the outage.
    expect(speakerTrouble).toEqual([]);
    // Each node saw one loss, is up again, and held its queue through the outage (partials dropped, no final).
    for (const n of [a, b]) {
      const text = await (await fetch(`http://127.0.0.1:${n.port}/metrics`)).text();
      const value = (name: string) => Number(/^(\S+) (\S+)$/m.exec(text.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[2] ?? NaN);
      expect(value('captiongate_redis_up')).toBe(1);
      expect(value('captiongate_redis_connection_losses_total')).toBe(1);
      expect(value('captiongate_meeting_bus_queued_events')).toBe(0);
      expect(text).not.toMatch(/captiongate_meeting_bus_dropped_total\{kind="final"\} [1-9]/);
    }

    // A viewer joining now (node B, which mirrors the meeting) gets every final as its replay.
    const v3 = new RawClient(await viewerUrl(b.port, 'viewer-3'));
    const ready3 = await v3.waitFor((m): m is Extract<WireMessage, { type: 'viewer_ready' }> => m.type === 'viewer_ready');
    expect(ready3.replay).toBe(total);
    await v3.waitFor(() => finalsOf(v3.messages).length >= total);
    expect(finalsOf(v3.messages).map((f) => `${key(f)}:${f.text}`).sort()).toEqual(expected);
    // A viewer coming back on the other node with ?lastSeq= (a seq it saw on node B) gets exactly what came after it.
    const f1 = finalsOf(v1.messages);
    const cut = f1[phase1 - 1]!.seq;
    const v4 = new RawClient(`${await viewerUrl(a.port, 'viewer-4')}&lastSeq=${cut}`);
    const ready4 = await v4.waitFor((m): m is Extract<WireMessage, { type: 'viewer_ready' }> => m.type === 'viewer_ready');
    expect(ready4.replay).toBe(total - phase1);
    await v4.waitFor(() => finalsOf(v4.messages).length >= total - phase1);
    expect(finalsOf(v4.messages).map((f) => [f.seq, key(f), f.text])).toEqual(f1.slice(phase1).map((f) => [f.seq, key(f), f.text]));
    for (const v of [v1, v2, v3, v4]) v.ws.close();
  }, 240_000);

  it("counts a token's opens, and its concurrent sessions, across both nodes", async () => {
    await until('redis healthy on both nodes', async () => {
      const [ra, rb] = await Promise.all([readyz(a.port), readyz(b.port)]);
      return !ra.body.degraded.length && !rb.body.degraded.length;
    });
    // Opens: OPENS_PER_MINUTE per minute for one token, whichever node they hit.
    const limited = await token({ sub: 'limited', scope: 'listen' });
    const url = (n: Node, t: string) => `ws://127.0.0.1:${n.port}/v1/listen?sampleRate=16000&channels=1&encoding=s16le&token=${t}`;
    const opened: RawClient[] = [];
    for (let i = 0; i < OPENS_PER_MINUTE; i++) {
      const c = new RawClient(url(i % 2 ? b : a, limited));
      await c.waitFor((m) => m.type === 'ready');
      opened.push(c);
    }
    for (const n of [a, b]) {
      const refused = new RawClient(url(n, limited));
      await refused.closed;
      expect(refused.errors.join(' ')).toMatch(/429/);
    }
    for (const c of opened) c.ws.close();

    // Concurrent sessions: maxSessions 2 across the nodes.
    const capped = await token({ sub: 'capped', scope: 'listen', maxSessions: 2 });
    const s1 = new RawClient(url(a, capped));
    await s1.waitFor((m) => m.type === 'ready');
    const s2 = new RawClient(url(b, capped));
    await s2.waitFor((m) => m.type === 'ready');
    const s3 = new RawClient(url(a, capped));
    await s3.closed;
    expect(s3.errors.join(' ')).toMatch(/429/);
    // A place comes back when a session ends, on whichever node.
    s2.sendJson({ type: 'stop' });
    await s2.closed;
    await new Promise((r) => setTimeout(r, 300));
    const s4 = new RawClient(url(a, capped));
    await s4.waitFor((m) => m.type === 'ready');
    s1.ws.close();
    s4.ws.close();
  }, 60_000);
});
