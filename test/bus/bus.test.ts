/**
 * The bus's parts against a real redis-server (no mocks): the shared
 * connection through an outage, the meeting stream's exactly-once publish
 * and order, and session caps that forget a node that died.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openBus, type Bus } from '../../src/bus/bus.js';
import { MeetingStreams, type StreamEntry } from '../../src/bus/meeting-streams.js';
import { SharedLimits } from '../../src/bus/shared-limits.js';
import { GatewayError } from '../../src/errors.js';
import { testConfig } from '../helpers/config.js';
import { redisAvailable, startRedis, type RedisServer } from '../helpers/redis-server.js';

const log = pino({ level: 'silent' });
const until = async (what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 15_000) => {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe.skipIf(!redisAvailable())('the Redis bus', () => {
  let redis: RedisServer;
  const buses: Bus[] = [];
  const bus = (prefix = 'test:', lease: Record<string, number> = {}) => {
    const b = openBus(testConfig({ redis: { url: redis.url, keyPrefix: prefix, ...lease } }), log)!;
    buses.push(b);
    return b;
  };
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const b of buses) await b.close();
    await redis?.destroy();
  });

  it('is null without redis.url', () => {
    expect(openBus(testConfig(), log)).toBeNull();
  });

  it('fails commands fast during an outage, says so, and comes back on its own', async () => {
    const b = bus();
    await b.whenHealthy();
    const changes: boolean[] = [];
    b.onHealth((h) => changes.push(h));
    await redis.stop();
    await until('the loss to be noticed', () => !b.healthy());
    const t0 = Date.now();
    await expect(b.redis.ping()).rejects.toThrow();
    // No offline queue: the command did not wait for Redis.
    expect(Date.now() - t0).toBeLessThan(500);
    await redis.start();
    await until('the bus to be back', () => b.healthy());
    expect(await b.redis.ping()).toBe('PONG');
    expect(changes).toEqual([false, true]);
    expect(b.losses).toBe(1);
  }, 30_000);

  it('publishes each event once, in order, with one seq per meeting, and a follower reads them all', async () => {
    const pub = bus('order:');
    const sub = bus('order:');
    await Promise.all([pub.whenHealthy(), sub.whenHealthy()]);
    const opts = { maxLen: 1000, retentionMs: 60_000, outageBufferBytes: 1 << 20, heartbeatMs: 1000, leaseMs: 5000 };
    const a = new MeetingStreams(pub, log, opts);
    const b = new MeetingStreams(sub, log, opts);
    const got: StreamEntry[] = [];
    let snapshotSeq = -1;
    b.follow('m1', { snapshot: (s) => (snapshotSeq = s.seq), entry: (e) => got.push(e) });
    await until('the snapshot', () => snapshotSeq === 0);
    for (let i = 0; i < 50; i++) a.publish('m1', { kind: i % 2 ? 'p' : 'f', body: JSON.stringify({ i }), startedAt: 1000 + i });
    await until('every event', () => got.length === 50);
    expect(got.map((e) => e.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(got.map((e) => (JSON.parse(e.body) as { i: number }).i)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // The meeting's start is its first event's.
    expect(new Set(got.map((e) => e.start))).toEqual(new Set([1000]));
    // Sent again (a reply lost in an outage): the script takes it once.
    const k = MeetingStreams.keys('order:', 'm1');
    const run = (pub.redis as unknown as { captiongatePublish: (...a: (string | number)[]) => Promise<[number, number]> }).captiongatePublish;
    // origin is `<node id>:<n>`; a node id may hold colons itself.
    const origin = got[49]!.origin;
    const node = origin.slice(0, origin.lastIndexOf(':'));
    const n = origin.slice(origin.lastIndexOf(':') + 1);
    const again = await run.call(pub.redis, k.meta, k.stream, k.parts, node, Number(n), 0, '{}', 1000, 60_000, 0, 'f', '', '');
    expect(again).toEqual([0, 0]);
    expect(Number(await redis.command(['XLEN', k.stream]))).toBe(50);
    const snap = await b.snapshot('m1');
    expect(snap).toMatchObject({ exists: true, seq: 50, start: 1000, finals: 25 });
    a.close();
    b.close();
  }, 30_000);

  it('one reader per node follows a meeting added while it is blocked in XREAD at once', async () => {
    const pub = bus('unblock:');
    const sub = bus('unblock:');
    await Promise.all([pub.whenHealthy(), sub.whenHealthy()]);
    const opts = { maxLen: 1000, retentionMs: 60_000, outageBufferBytes: 1 << 20, heartbeatMs: 1000, leaseMs: 5000 };
    const a = new MeetingStreams(pub, log, opts);
    const b = new MeetingStreams(sub, log, opts);
    const got: string[] = [];
    let loaded = 0;
    b.follow('u1', { snapshot: () => loaded++, entry: (e) => got.push(`u1:${e.body}`) });
    await until('the first snapshot', () => loaded === 1);
    await new Promise((r) => setTimeout(r, 300)); // the reader is now blocked on u1 alone
    b.follow('u2', { snapshot: () => loaded++, entry: (e) => got.push(`u2:${e.body}`) });
    await until('the second snapshot', () => loaded === 2);
    const t0 = Date.now();
    a.publish('u2', { kind: 'f', body: '"x"', startedAt: 1 });
    await until('the event', () => got.length === 1);
    // Well under the reader's 5 s BLOCK: the new meeting interrupted it (CLIENT UNBLOCK).
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(got).toEqual(['u2:"x"']);
    a.close();
    b.close();
  }, 30_000);

  it("keeps finals through an outage and publishes them after it; drops partials", async () => {
    const pub = bus('outage:');
    await pub.whenHealthy();
    const a = new MeetingStreams(pub, log, { maxLen: 1000, retentionMs: 60_000, outageBufferBytes: 1 << 20, heartbeatMs: 1000, leaseMs: 5000 });
    a.publish('m2', { kind: 'f', body: '"before"', startedAt: 5 });
    expect(await a.flushed(5000)).toBe(true);
    await redis.stop();
    await until('the loss', () => !pub.healthy());
    a.publish('m2', { kind: 'f', body: '"during-1"', startedAt: 5 });
    a.publish('m2', { kind: 'p', body: '"partial"', startedAt: 5 });
    a.publish('m2', { kind: 'f', body: '"during-2"', startedAt: 5 });
    expect(a.queued).toBe(2);
    await redis.start();
    expect(await a.flushed(10_000)).toBe(true);
    const snap = await a.snapshot('m2');
    // Redis came back empty: the kept finals went in, in order; the seq went on above what this node had seen.
    expect(snap.entries.map((e) => e.body)).toEqual(['"during-1"', '"during-2"']);
    expect(snap.entries[0]!.seq).toBeGreaterThan(1);
    expect(snap.start).toBe(5);
    a.close();
  }, 30_000);

  it('bounds what it keeps through an outage (redis.outageBufferBytes): the oldest kept go out, newer ones are dropped', async () => {
    const pub = bus('bounded:');
    await pub.whenHealthy();
    // Each event below costs 2 x 20 + 64 = 104 bytes of the bound.
    const a = new MeetingStreams(pub, log, { maxLen: 1000, retentionMs: 60_000, outageBufferBytes: 350, heartbeatMs: 1000, leaseMs: 5000 });
    await redis.stop();
    await until('the loss', () => !pub.healthy());
    for (let i = 0; i < 6; i++) a.publish('m3', { kind: 'f', body: JSON.stringify(`final-${i}`.padEnd(18)), startedAt: 1 });
    expect(a.queued).toBe(3);
    await redis.start();
    expect(await a.flushed(10_000)).toBe(true);
    const snap = await a.snapshot('m3');
    expect(snap.entries.map((e) => (JSON.parse(e.body) as string).trim())).toEqual(['final-0', 'final-1', 'final-2']);
    a.close();
  }, 30_000);

  it("puts a participant back when Redis lost it, and says a participant left when its node's lease lapses", async () => {
    const lease = { heartbeatMs: 200, leaseMs: 1000 };
    const x = bus('reap:', lease);
    const y = bus('reap:', lease);
    await Promise.all([x.whenHealthy(), y.whenHealthy()]);
    const opts = { maxLen: 1000, retentionMs: 60_000, outageBufferBytes: 1 << 20, heartbeatMs: 200, leaseMs: 1000 };
    const sx = new MeetingStreams(x, log, opts);
    const sy = new MeetingStreams(y, log, opts);
    sx.publish('m4', { kind: 'j', body: '"joined-s1"', startedAt: 7, sessionId: 's1', participant: '{"who":"s1"}', leftBody: '"left-s1"' });
    expect(await sx.flushed(5000)).toBe(true);
    const got: string[] = [];
    let loaded = false;
    sy.follow('m4', { snapshot: () => (loaded = true), entry: (e) => got.push(e.body) });
    await until('the snapshot', () => loaded);
    expect([...(await sy.snapshot('m4')).participants]).toEqual([['s1', '{"who":"s1"}']]);
    // Redis loses everything: node x announces its participant again within a heartbeat.
    await redis.command(['FLUSHALL']);
    await until('the participant to be back', async () => (await sy.snapshot('m4')).participants.has('s1'));
    // Longer than a lease: the leases Redis lost came back in time, so nobody left.
    await new Promise((r) => setTimeout(r, 1500));
    expect(got.filter((b) => b === '"left-s1"')).toEqual([]);
    // Node x dies: once its lease lapses, node y says its participant left, once.
    sx.close();
    x.redis.disconnect();
    await until('the participant to leave', () => got.includes('"left-s1"'), 10_000);
    expect(got.filter((b) => b === '"left-s1"')).toHaveLength(1);
    expect(got.at(-1)).toBe('"left-s1"');
    expect((await sy.snapshot('m4')).participants.size).toBe(0);
    const n = got.length;
    await new Promise((r) => setTimeout(r, 600));
    expect(got).toHaveLength(n);
    sy.close();
  }, 30_000);

  it("counts a token's sessions across nodes, and forgets a node that died once its lease lapses", async () => {
    const x = bus('caps:', { heartbeatMs: 200, leaseMs: 1000 });
    const y = bus('caps:', { heartbeatMs: 200, leaseMs: 1000 });
    await Promise.all([x.whenHealthy(), y.whenHealthy()]);
    const opts = { heartbeatMs: 200, leaseMs: 1000, unclaimedMs: 60_000 };
    const lx = new SharedLimits(x, log, opts);
    const ly = new SharedLimits(y, log, opts);
    await new Promise((r) => setTimeout(r, 300)); // both leases written
    const r1 = await lx.reserve('sub:capped', 2);
    const r2 = await ly.reserve('sub:capped', 2);
    expect(r1).not.toBeInstanceOf(GatewayError);
    expect(r2).not.toBeInstanceOf(GatewayError);
    const r3 = await lx.reserve('sub:capped', 2);
    expect(r3).toBeInstanceOf(GatewayError);
    expect((r3 as GatewayError).code).toBe('CAP_ERR_TOO_MANY_SESSIONS');
    // A place comes back when it is released.
    (r2 as { release(): void }).release();
    await new Promise((r) => setTimeout(r, 50));
    const r4 = await ly.reserve('sub:capped', 2);
    expect(r4).not.toBeInstanceOf(GatewayError);
    // Node x dies (no release, no more heartbeats): after its lease, its place is free.
    lx.close = () => {};
    x.redis.disconnect();
    expect(await ly.reserve('sub:capped', 2)).toBeInstanceOf(GatewayError);
    await new Promise((r) => setTimeout(r, 1300));
    expect(await ly.reserve('sub:capped', 2)).not.toBeInstanceOf(GatewayError);
    ly.close();
  }, 30_000);
});
