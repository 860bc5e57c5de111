/**
 * The gateway on PostgreSQL (store.kind "postgres"), as it is run: the real
 * server process (dist/src/main.js) configured through its environment,
 * against a real PostgreSQL 15 on a loopback port.
 * - Two nodes on one database: a session on one node is served by the
 *   other; both stop, a third starts, and it serves the same files.
 * - PostgreSQL goes away mid-session: the live session goes on (captions
 *   keep coming), /readyz stays 200 and says the store is degraded, stored
 *   files answer 503 CAP_ERR_STORE_UNAVAILABLE; when it is back, every
 *   final the client got lands in the store.
 * - A node loses PostgreSQL, then is killed (SIGKILL) mid-session: the node
 *   that takes the session over (Redis registry) writes the finals the dead
 *   one could not, so the file has every final the client got.
 * - An unreachable store.url at startup: one clear line, exit 1.
 * The password in store.url never appears in any log.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect } from '../../src/client/client.js';
import type { FinalMessage } from '../../src/protocol/messages.js';
import { librivoxClips } from '../../eval/corpus.js';
import { POSTGRES_PASSWORD, startPostgres, type PostgresServer } from '../helpers/postgres-server.js';
import { startRedis } from '../helpers/redis-server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const SECRET = 'pg-gateway-test-secret-0123456789-abcd';
const key = new TextEncoder().encode(SECRET);
const token = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('10m').sign(key);
const pcm = (i: number) => wavToInt16(readWav(librivoxClips()[i]!.file));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let pg: PostgresServer;
beforeAll(async () => {
  pg = await startPostgres();
});
const nodes: Node[] = [];
afterAll(async () => {
  for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
  await pg?.destroy();
});

interface Node {
  child: ChildProcess;
  port: number;
  output(): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

function spawnNode(env: Record<string, string>): { child: ChildProcess; output(): string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [path.resolve('dist/src/main.js')], {
    env: {
      ...process.env,
      PORT: '0',
      CAPTIONGATE_CONFIG: '',
      CAPTIONGATE_SERVER_HOST: '127.0.0.1',
      CAPTIONGATE_ENGINE_KIND: 'pocketsphinx',
      CAPTIONGATE_ENGINE_DECODERS: '2',
      CAPTIONGATE_ENGINE_THREADS: '1',
      CAPTIONGATE_STORE_KIND: 'postgres',
      CAPTIONGATE_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

async function startNode(env: Record<string, string>): Promise<Node> {
  const s = spawnNode(env);
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`node did not start:\n${s.output()}`)), 90_000);
    const check = () => {
      const m = /"port":(\d+),"msg":"listening/.exec(s.output());
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    };
    s.child.stdout!.on('data', check);
    void s.exited.then(() => {
      clearTimeout(t);
      reject(new Error(`node exited at startup:\n${s.output()}`));
    });
  });
  const node: Node = {
    ...s,
    port,
    stop: async () => {
      if (s.child.exitCode === null) s.child.kill('SIGTERM');
      await s.exited;
    },
  };
  nodes.push(node);
  return node;
}

const poll = async <T>(what: string, f: () => Promise<T | undefined>, ms = 30_000): Promise<T> => {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
};

describe('the gateway on PostgreSQL', () => {
  it('two nodes share one store: one serves the other\'s session and meeting; after both stop, a new node serves them too', async () => {
    const url = await pg.createDatabase('gw_nodes');
    const env = { CAPTIONGATE_STORE_URL: url, CAPTIONGATE_AUTH_SECRET: SECRET };
    const [a, b] = await Promise.all([startNode(env), startNode(env)]);
    const alice = { authorization: `Bearer ${await token({ sub: 'alice' })}` };
    const viewer = { authorization: `Bearer ${await token({ sub: 'v', meetingId: 'standup', scope: 'view' })}` };
    const c = await connect(`ws://127.0.0.1:${a.port}/v1/listen`, { sampleRate: 16000, token: await token({ sub: 'alice', meetingId: 'standup' }) });
    await c.write(pcm(0));
    const end = await c.stop();
    expect(end.reason).toBe('client_stop');
    const id = c.ready.sessionId;
    const before = await (await fetch(`http://127.0.0.1:${a.port}/v1/sessions/${id}/captions.vtt`, { headers: alice })).text();
    expect(before).toMatch(/^WEBVTT\n\n.*-->/s);

    // Node B never saw the session: it reads it from PostgreSQL (written within store.flushMs).
    const fromB = await poll('node B to serve the session', async () => {
      const r = await fetch(`http://127.0.0.1:${b.port}/v1/sessions/${id}/captions.json`, { headers: alice });
      if (r.status !== 200) return undefined;
      const j = (await r.json()) as { endReason: string | null; finals: FinalMessage[] };
      return j.endReason ? { r, j } : undefined;
    });
    expect(fromB.r.headers.get('x-captiongate-live')).toBe('false');
    expect(fromB.j.endReason).toBe('client_stop');
    expect(await (await fetch(`http://127.0.0.1:${b.port}/v1/sessions/${id}/captions.vtt`, { headers: alice })).text()).toBe(before);
    // Same rules on every node.
    expect((await fetch(`http://127.0.0.1:${b.port}/v1/sessions/${id}/captions.vtt`)).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${b.port}/v1/sessions/${id}/captions.vtt`, { headers: { authorization: `Bearer ${await token({ sub: 'mallory' })}` } })).status).toBe(403);
    const meeting = await fetch(`http://127.0.0.1:${b.port}/v1/meetings/standup/captions.vtt`, { headers: viewer });
    expect(meeting.status).toBe(200);
    expect(await meeting.text()).toContain(fromB.j.finals[0]!.text.split(' ')[0]!);
    const listed = (await (await fetch(`http://127.0.0.1:${b.port}/v1/sessions`, { headers: alice })).json()) as { sessions: { sessionId: string }[] };
    expect(listed.sessions.map((s) => s.sessionId)).toEqual([id]);

    await Promise.all([a.stop(), b.stop()]);
    const c2 = await startNode(env);
    try {
      const vtt = await fetch(`http://127.0.0.1:${c2.port}/v1/sessions/${id}/captions.vtt`, { headers: alice });
      expect(vtt.status).toBe(200);
      expect(await vtt.text()).toBe(before);
      const json = (await (await fetch(`http://127.0.0.1:${c2.port}/v1/sessions/${id}/captions.json`, { headers: alice })).json()) as { audio: { receivedSamples: number } };
      expect(json.audio.receivedSamples).toBe(end.audio.receivedSamples);
    } finally {
      await c2.stop();
    }
    for (const n of [a, b, c2]) {
      expect(n.output()).toMatch(/caption store: postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/gw_nodes \(PostgreSQL\)/);
      expect(n.output()).not.toContain(POSTGRES_PASSWORD);
    }
  });

  it('PostgreSQL going away mid-session does not end the session; /readyz says degraded; stored files answer 503; the finals land when it is back', async () => {
    const url = await pg.createDatabase('gw_outage');
    const a = await startNode({ CAPTIONGATE_STORE_URL: url });
    const http = `http://127.0.0.1:${a.port}`;
    try {
      const c = await connect(`ws://127.0.0.1:${a.port}/v1/listen`, { sampleRate: 16000 });
      const finals: FinalMessage[] = [];
      c.on('final', (f) => finals.push(f));
      const id = c.ready.sessionId;
      const finalsAfter = (n: number, what: string) => poll(what, async () => (finals.filter((f) => f.text).length > n ? true : undefined), 90_000);

      await c.write(pcm(0));
      c.flush();
      await finalsAfter(0, 'a final before the outage');
      expect((await (await fetch(`${http}/readyz`)).json()) as unknown).toMatchObject({ status: 'ready', degraded: [] });

      await pg.stop();
      const atOutage = finals.filter((f) => f.text).length;
      await c.write(pcm(1));
      c.flush();
      await finalsAfter(atOutage, 'a final during the outage');
      await c.write(pcm(2));
      c.flush();
      await finalsAfter(atOutage + 1, 'a second final during the outage');
      // The first write that fails marks the store degraded; the node stays ready for sessions.
      const ready = await poll('/readyz to say the store is degraded', async () => {
        const r = await fetch(`${http}/readyz`);
        const j = (await r.json()) as { degraded?: string[] };
        return j.degraded?.includes('store') ? { status: r.status, j } : undefined;
      });
      expect(ready.status).toBe(200);
      expect(ready.j).toMatchObject({ status: 'ready', ready: true, degraded: ['store'] });
      expect(await (await fetch(`${http}/metrics`)).text()).toMatch(/^captiongate_store_up 0$/m);
      // Stored files cannot be served now: 503 with the documented code.
      const stored = await fetch(`${http}/v1/sessions/no-such-session-0001/captions.vtt`);
      expect(stored.status).toBe(503);
      expect(stored.headers.get('retry-after')).toBe('2');
      expect(((await stored.json()) as { error: { code: string } }).error.code).toBe('CAP_ERR_STORE_UNAVAILABLE');
      expect((await fetch(`${http}/v1/sessions`)).status).toBe(503);
      // The live session's own file is in memory: served as usual.
      expect((await fetch(`${http}/v1/sessions/${id}/captions.vtt`)).status).toBe(200);
      const duringOutage = finals.filter((f) => f.text).length - atOutage;
      expect(duringOutage).toBeGreaterThanOrEqual(2);

      await pg.start();
      await poll('/readyz to say the store is back', async () => {
        const j = (await (await fetch(`${http}/readyz`)).json()) as { degraded?: string[] };
        return j.degraded?.length === 0 ? true : undefined;
      });
      await c.write(pcm(3));
      const end = await c.stop();
      expect(end.reason).toBe('client_stop');
      await a.stop();

      // Everything the client got is in the store, word for word.
      const rows = await pg.query<{ segment: number; text: string }>('gw_outage', 'SELECT segment, text FROM finals WHERE session_id = $1 ORDER BY segment', [id]);
      expect(rows).toEqual(finals.filter((f) => f.text).map((f) => ({ segment: f.segment, text: f.text })));
      const [s] = await pg.query<{ end_reason: string }>('gw_outage', 'SELECT end_reason FROM sessions WHERE id = $1', [id]);
      expect(s!.end_reason).toBe('client_stop');
      console.log(`outage: ${rows.length} finals stored, ${duringOutage} of them received while PostgreSQL was down`);
      const out = a.output();
      expect(out).toMatch(/PostgreSQL is unreachable; writes are queued/);
      expect(out).toMatch(/PostgreSQL is reachable again/);
      expect(out).not.toContain(POSTGRES_PASSWORD);
    } finally {
      if (!(await pg.query('postgres', 'SELECT 1').then(() => true, () => false))) await pg.start();
      await a.stop();
    }
  });

  it('a node that lost PostgreSQL and is then killed loses no final: the node that takes its session over writes them', async () => {
    const url = await pg.createDatabase('gw_kill');
    const redis = await startRedis();
    // Node A reaches PostgreSQL through a proxy the test closes: its database goes away, B's does not.
    const proxy = await startTcpProxy(pg.port);
    try {
      const env = { CAPTIONGATE_AUTH_SECRET: SECRET, CAPTIONGATE_REDIS_URL: redis.url };
      const [a, b] = await Promise.all([
        startNode({ ...env, CAPTIONGATE_STORE_URL: url.replace(`:${pg.port}/`, `:${proxy.port}/`), CAPTIONGATE_SERVER_NODE_ID: 'node-a' }),
        startNode({ ...env, CAPTIONGATE_STORE_URL: url, CAPTIONGATE_SERVER_NODE_ID: 'node-b' }),
      ]);
      const listen = (n: Node) => `ws://127.0.0.1:${n.port}/v1/listen`;
      const c = await connect(listen(a), { sampleRate: 16000, token: await token({ sub: 'alice' }), resume: { initialDelayMs: 100, urls: [listen(a), listen(b)] } });
      const finals: FinalMessage[] = [];
      c.on('message', (m) => m.type === 'final' && m.text && finals.push(m));
      const utterance = async (i: number) => {
        const n = finals.length;
        await c.write(pcm(i));
        c.flush();
        await poll(`the final of clip ${i}`, async () => (finals.length > n ? true : undefined));
      };
      await utterance(0);
      const id = c.ready.sessionId;
      await poll('the first final in PostgreSQL', async () => ((await pg.query('gw_kill', 'SELECT 1 FROM finals WHERE session_id = $1', [id])).length ? true : undefined));
      // From here A's writes fail (its store queues them), and A dies before it could write them.
      await proxy.close();
      await utterance(1);
      await utterance(2);
      a.child.kill('SIGKILL');
      await a.exited;
      await utterance(3);
      const end = await c.stop();
      expect(end.reason).toBe('client_stop');
      expect(c.url).toBe(listen(b));
      const stored = await poll('every final in PostgreSQL', async () => {
        const rows = await pg.query<{ seq: string; text: string }>('gw_kill', 'SELECT seq, text FROM finals WHERE session_id = $1 ORDER BY segment', [id]);
        return rows.length >= finals.length ? rows : undefined;
      });
      // Each final the client got, once, with its seq: the two A made without its database came from its checkpoint.
      expect(stored.map((r) => [Number(r.seq), r.text])).toEqual(finals.map((f) => [f.seq, f.text]));
      expect(Number(/"carriedFinals":(\d+)/.exec(b.output())?.[1])).toBeGreaterThanOrEqual(2);
    } finally {
      await proxy.close().catch(() => {});
      await redis.destroy();
    }
  }, 240_000);

  it('refuses to start on an unreachable store.url with one clear line (no password), and on postgres without a URL', async () => {
    const bad = spawnNode({ CAPTIONGATE_STORE_URL: `postgres://captiongate:${POSTGRES_PASSWORD}@127.0.0.1:1/captions` });
    expect(await bad.exited).toBe(1);
    const lines = bad.output().split('\n').filter((l) => /caption store/.test(l));
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as { level: number; msg: string };
    expect(line.level).toBe(60);
    expect(line.msg).toMatch(/^startup failed: cannot reach the caption store \(PostgreSQL at postgres:\/\/captiongate:\*\*\*@127\.0\.0\.1:1\/captions\): .*ECONNREFUSED/);
    expect(bad.output()).not.toContain(POSTGRES_PASSWORD);

    const none = spawnNode({ CAPTIONGATE_STORE_URL: '' });
    expect(await none.exited).toBe(1);
    expect(none.output()).toMatch(/store\.url: must be set when store\.kind is "postgres"/);
  });
});
