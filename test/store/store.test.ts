/**
 * The durable caption store (issues 14 and 15): one contract, run against
 * every store the config can name: memory (keeps nothing: every read is
 * empty), SQLite through better-sqlite3 (a real file in a temporary folder)
 * and PostgreSQL 15 (a real server on a loopback port, one database per
 * case). Transcripts outlive the process, under the same authorization
 * rules as live ones; schema versions, migrated once when several
 * processes start together; retention and per-owner quotas; a meeting's
 * file on the meeting's clock whichever node wrote it; owners list and
 * delete their sessions. Then PostgreSQL going away under a store, and
 * coming back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import Database from 'better-sqlite3';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect } from '../../src/client/client.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/store/migrations.js';
import { openPostgresStore, redactUrl } from '../../src/store/postgres-store.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { StoreUnavailableError, type Store } from '../../src/store/types.js';
import { librivoxClips } from '../../eval/corpus.js';
import { settled, startGateway } from '../helpers/gateway.js';
import { POSTGRES_PASSWORD, startPostgres, type PostgresServer } from '../helpers/postgres-server.js';

const SECRET = 'store-test-secret-0123456789-abcdefgh';
const key = new TextEncoder().encode(SECRET);
const token = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(key);
const pcm = (i: number) => wavToInt16(readWav(librivoxClips()[i]!.file));
const silentLog = pino({ level: 'silent' });
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'captiongate-store-'));
  dirs.push(d);
  return d;
};

let pgServer: PostgresServer;
beforeAll(async () => {
  pgServer = await startPostgres();
});
afterAll(async () => {
  await pgServer?.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface StoreOptions {
  flushMs: number;
  retentionDays: number;
  maxSessionsPerOwner: number;
  maxQueuedWrites: number;
}
const defaults: StoreOptions = { flushMs: 50, retentionDays: 30, maxSessionsPerOwner: 1000, maxQueuedWrites: 100_000 };

/** One place a store lives (a file, a database), opened as often as a case likes. */
interface Place {
  open(over?: Partial<StoreOptions>): Promise<Store>;
  /** Marks the place as written by a captiongate with schema version v. */
  setSchemaVersion(v: number): Promise<void>;
  schemaVersion(): Promise<number>;
  /** Moves a session's end `days` into the past. */
  endedDaysAgo(id: string, days: number): Promise<void>;
}

interface Backend {
  readonly name: string;
  /** Keeps what it is given (memory keeps nothing). */
  readonly durable: boolean;
  place(): Promise<Place>;
}

let databases = 0;
const backends: Backend[] = [
  {
    name: 'memory',
    durable: false,
    async place() {
      return {
        open: async () => new MemoryStore(),
        setSchemaVersion: async () => {},
        schemaVersion: async () => 0,
        endedDaysAgo: async () => {},
      };
    },
  },
  {
    name: 'SQLite',
    durable: true,
    async place() {
      const file = path.join(tmp(), 'c.db');
      const sql = (f: (db: Database.Database) => void) => {
        const db = new Database(file);
        f(db);
        db.close();
      };
      return {
        open: (over = {}) => openSqliteStore({ path: file, busyTimeoutMs: 5000, ...defaults, ...over }, silentLog),
        setSchemaVersion: async (v) => sql((db) => db.pragma(`user_version = ${v}`)),
        schemaVersion: async () => {
          let v = 0;
          sql((db) => (v = db.pragma('user_version', { simple: true }) as number));
          return v;
        },
        endedDaysAgo: async (id, days) => sql((db) => db.prepare('UPDATE sessions SET ended_at = ? WHERE id = ?').run(Date.now() - days * 86_400_000, id)),
      };
    },
  },
  {
    name: 'PostgreSQL',
    durable: true,
    async place() {
      const db = `contract_${++databases}`;
      const url = await pgServer.createDatabase(db);
      return {
        open: (over = {}) => openPostgresStore({ url, poolSize: 4, connectTimeoutMs: 3000, ...defaults, ...over }, silentLog),
        setSchemaVersion: async (v) => {
          await pgServer.query(db, 'CREATE TABLE IF NOT EXISTS captiongate_schema (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version INTEGER NOT NULL)');
          await pgServer.query(db, 'INSERT INTO captiongate_schema (version) VALUES ($1) ON CONFLICT (one) DO UPDATE SET version = excluded.version', [v]);
        },
        schemaVersion: async () => (await pgServer.query<{ version: number }>(db, 'SELECT version FROM captiongate_schema'))[0]?.version ?? 0,
        endedDaysAgo: async (id, days) => {
          await pgServer.query(db, 'UPDATE sessions SET ended_at = $1 WHERE id = $2', [Date.now() - days * 86_400_000, id]);
        },
      };
    },
  },
];

const word = (w: string, s: number) => ({ word: w, start: s, end: s + 0.2, confidence: 0.9 });
const final = (segment: number, text: string, start: number) => ({
  type: 'final' as const,
  seq: 0,
  segment,
  text,
  start,
  end: start + 1,
  words: text.split(' ').map((w, i) => word(w, start + i * 0.2)),
});
const session = (id: string, owner: string | null, startedAt: number, meetingId: string | null = null) => ({
  id,
  owner,
  meetingId,
  speaker: `${id}-speaker`,
  startedAt,
  endedAt: null,
  endReason: null,
  receivedSamples: 0,
  decodedSamples: 0,
  droppedSamples: 0,
});
const ended = (at: number) => ({ endedAt: at, reason: 'client_stop', receivedSamples: 0, decodedSamples: 0, droppedSamples: 0 });

it('every migration is written for both dialects, numbered in order', () => {
  MIGRATIONS.forEach((m, i) => {
    expect(m.version).toBe(i + 1);
    expect(m.sqlite.length).toBeGreaterThan(0);
    expect(m.postgres.length).toBeGreaterThan(0);
  });
  expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
});

describe.each(backends)('caption store contract: $name', (b) => {
  it('writes in batches and reads back after reopening; a meeting on its own clock', async () => {
    const place = await b.place();
    let store: Store = await place.open();
    const t0 = Date.now();
    store.sessionStarted(session('a', 'sub:alice', t0, 'm1'));
    store.meetingStarted('m1', t0);
    store.sessionStarted(session('b', 'sub:bob', t0 + 2000, 'm1'));
    store.meetingStarted('m1', t0 + 2000);
    store.final('a', final(0, 'hello from alice', 1));
    store.final('b', final(0, 'hello from bob', 0.5));
    store.sessionEnded('a', { endedAt: t0 + 5000, reason: 'client_stop', receivedSamples: 80000, decodedSamples: 80000, droppedSamples: 0 });
    await store.close();
    store = await place.open();
    try {
      if (!b.durable) {
        expect(await store.getSession('a')).toBeNull();
        expect(await store.getFinals('a')).toEqual([]);
        expect(await store.getMeeting('m1')).toBeNull();
        return;
      }
      expect(await store.getSession('a')).toMatchObject({ owner: 'sub:alice', meetingId: 'm1', endReason: 'client_stop', receivedSamples: 80000, endedAt: t0 + 5000, startedAt: t0 });
      expect((await store.getFinals('a')).map((f) => f.text)).toEqual(['hello from alice']);
      const m = await store.getMeeting('m1');
      expect(m!.startedAt).toBe(t0);
      // Bob started 2 s later: his 0.5 s is 2.5 s on the meeting's clock, after alice's 1.0 s.
      expect(m!.finals.map((f) => [f.sessionId, f.start])).toEqual([
        ['a', 1],
        ['b', 2.5],
      ]);
      expect(m!.finals[1]!.words[0]!.start).toBe(2.5);
      expect(m!.sessions.map((s) => s.id)).toEqual(['a', 'b']);
      expect(store.status()).toEqual({ ok: true, queuedWrites: 0, droppedWrites: 0 });
    } finally {
      await store.close();
    }
  });

  it('a session written again keeps its finals; a final written again replaces it; words, speaker and nulls round-trip', async () => {
    const place = await b.place();
    const store = await place.open();
    try {
      const t0 = Date.now();
      store.sessionStarted({ ...session('r', null, t0), speaker: null });
      const f0 = { ...final(0, 'first take', 0.25), speaker: 'Ann' };
      f0.words[0]!.confidence = 0.123;
      store.final('r', f0);
      store.final('r', final(1, "it's \"quoted\" and back\\slashed, naïve ✓", 2));
      await store.flush();
      // Written again (a resume on another node): its finals stay.
      store.sessionStarted({ ...session('r', null, t0), speaker: null });
      store.final('r', { ...final(0, 'second take', 0.25), speaker: 'Ann' });
      await store.flush();
      const finals = await store.getFinals('r');
      if (!b.durable) {
        expect(finals).toEqual([]);
        return;
      }
      expect(finals.map((f) => f.text)).toEqual(['second take', "it's \"quoted\" and back\\slashed, naïve ✓"]);
      expect(finals[0]).toMatchObject({ type: 'final', segment: 0, start: 0.25, end: 1.25, speaker: 'Ann' });
      expect(finals[1]!.speaker).toBeUndefined();
      expect(finals[1]!.words.map((w) => w.word).join(' ')).toBe(finals[1]!.text);
      expect(await store.getSession('r')).toMatchObject({ owner: null, speaker: null, meetingId: null, endedAt: null, endReason: null });
      // auth off: listed for everyone, and as the owner null.
      expect((await store.listSessions(undefined, { limit: 10 })).map((s) => s.id)).toEqual(['r']);
      expect((await store.listSessions(null, { limit: 10 })).map((s) => s.id)).toEqual(['r']);
      expect(await store.listSessions('sub:x', { limit: 10 })).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('lists newest first, pages with `before`, and deletes a session with its finals', async () => {
    const place = await b.place();
    const store = await place.open();
    try {
      const t0 = Date.now() - 10_000;
      for (let i = 0; i < 5; i++) {
        store.sessionStarted(session(`p${i}`, 'sub:pat', t0 + i * 1000));
        store.final(`p${i}`, final(0, `take ${i}`, 0));
      }
      const page1 = await store.listSessions('sub:pat', { limit: 2 });
      const page2 = await store.listSessions('sub:pat', { limit: 2, before: page1.at(-1)?.startedAt ?? 0 });
      if (!b.durable) {
        expect([page1, page2]).toEqual([[], []]);
        expect(await store.deleteSession('p0')).toBe(false);
        return;
      }
      expect(page1.map((s) => s.id)).toEqual(['p4', 'p3']);
      expect(page2.map((s) => s.id)).toEqual(['p2', 'p1']);
      expect(await store.deleteSession('p3')).toBe(true);
      expect(await store.deleteSession('p3')).toBe(false);
      expect(await store.getSession('p3')).toBeNull();
      expect(await store.getFinals('p3')).toEqual([]);
      expect((await store.listSessions('sub:pat', { limit: 10 })).map((s) => s.id)).toEqual(['p4', 'p2', 'p1', 'p0']);
    } finally {
      await store.close();
    }
  });

  it('writes a large queue whole (12,000 finals in one flush: several transactions for PostgreSQL), each session before its finals', async () => {
    const place = await b.place();
    const store = await place.open();
    try {
      const t0 = Date.now();
      for (let k = 0; k < 3; k++) {
        store.sessionStarted(session(`big${k}`, 'sub:big', t0 + k));
        for (let i = 0; i < 4000; i++) store.final(`big${k}`, final(i, `line ${i} of ${k}`, i));
        store.sessionEnded(`big${k}`, ended(t0 + 10_000));
      }
      await store.flush();
      expect(store.status()).toMatchObject({ ok: true, queuedWrites: 0, droppedWrites: 0 });
      const finals = await store.getFinals('big2');
      if (!b.durable) {
        expect(finals).toEqual([]);
        return;
      }
      expect(finals).toHaveLength(4000);
      expect(finals[3999]!.text).toBe('line 3999 of 2');
      expect((await store.getSession('big2'))!.endReason).toBe('client_stop');
    } finally {
      await store.close();
    }
  });

  it.runIf(b.durable)('refuses a store written by a newer captiongate, saying so', async () => {
    const place = await b.place();
    await place.setSchemaVersion(99);
    await expect(place.open()).rejects.toThrow(/schema version 99, written by a newer captiongate/);
  });

  it.runIf(b.durable)('processes that open a new store at once migrate it once, and all of them work', async () => {
    const place = await b.place();
    const stores = await Promise.all([0, 1, 2, 3].map(() => place.open()));
    try {
      expect(await place.schemaVersion()).toBe(SCHEMA_VERSION);
      const t0 = Date.now();
      stores.forEach((s, i) => s.sessionStarted(session(`n${i}`, 'sub:n', t0 + i)));
      await Promise.all(stores.map((s) => s.flush()));
      expect((await stores[0]!.listSessions('sub:n', { limit: 10 })).map((s) => s.id)).toEqual(['n3', 'n2', 'n1', 'n0']);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it.runIf(b.durable)('two nodes on one store: the meeting file is on the meeting\'s clock, whichever node writes first', async () => {
    const place = await b.place();
    const [nodeA, nodeB] = await Promise.all([place.open(), place.open()]);
    try {
      const t0 = Date.now();
      // Bob (node B) joined 3 s after Alice (node A), but node B writes first.
      nodeB.sessionStarted(session('bob', 'sub:bob', t0 + 3000, 'm2'));
      nodeB.meetingStarted('m2', t0 + 3000);
      nodeB.final('bob', final(0, 'bob early', 0.5));
      nodeB.final('bob', final(1, 'bob later', 4));
      await nodeB.flush();
      nodeA.sessionStarted(session('alice', 'sub:alice', t0, 'm2'));
      nodeA.meetingStarted('m2', t0);
      nodeA.final('alice', final(0, 'alice first', 1));
      nodeA.final('alice', final(1, 'alice between', 5));
      await nodeA.flush();
      for (const reader of [nodeA, nodeB]) {
        const m = await reader.getMeeting('m2');
        expect(m!.startedAt).toBe(t0);
        expect(m!.finals.map((f) => [f.text, f.start])).toEqual([
          ['alice first', 1],
          ['bob early', 3.5],
          ['alice between', 5],
          ['bob later', 7],
        ]);
      }
    } finally {
      await Promise.all([nodeA.close(), nodeB.close()]);
    }
  });

  it.runIf(b.durable)('keeps each final\'s seq (schema version 2), for a resume on another node', async () => {
    const place = await b.place();
    const store = await place.open();
    store.sessionStarted(session('s', null, Date.now()));
    store.final('s', { ...final(0, 'first', 0), seq: 5 });
    store.final('s', { ...final(1, 'second', 2), seq: 17 });
    await store.close();
    const again = await place.open();
    expect((await again.getFinals('s')).map((f) => [f.seq, f.text])).toEqual([
      [5, 'first'],
      [17, 'second'],
    ]);
    await again.close();
    expect(await place.schemaVersion()).toBe(SCHEMA_VERSION);
  });

  it('keeps at most maxSessionsPerOwner ended sessions per owner (its own oldest go), and expires old transcripts', async () => {
    const place = await b.place();
    const store = await place.open({ maxSessionsPerOwner: 2 });
    const t0 = Date.now();
    store.sessionStarted(session('other', 'sub:other', t0));
    store.sessionEnded('other', ended(t0));
    for (let i = 0; i < 4; i++) {
      store.sessionStarted(session(`s${i}`, 'sub:spam', t0 + i));
      store.final(`s${i}`, final(0, `spam ${i}`, 0));
      store.sessionEnded(`s${i}`, ended(t0 + i));
    }
    // Live (not ended) sessions do not count.
    store.sessionStarted(session('live', 'sub:spam', t0 + 10));
    await store.flush();
    const listed = (await store.listSessions('sub:spam', { limit: 10 })).map((s) => s.id);
    if (!b.durable) {
      expect(listed).toEqual([]);
      await store.close();
      return;
    }
    expect(listed).toEqual(['live', 's3', 's2']);
    expect(await store.getFinals('s0')).toEqual([]);
    expect(await store.getSession('other')).not.toBeNull();
    await store.close();
    // Retention: a session that ended 40 days ago is gone at the next start.
    await place.endedDaysAgo('other', 40);
    const again = await place.open({ retentionDays: 30 });
    await again.flush();
    expect(await again.getSession('other')).toBeNull();
    expect(await again.getSession('s3')).not.toBeNull();
    await again.close();
  });
});

describe('SQLite store: an older file', () => {
  it('a version 1 file (before finals had a seq) is migrated; its old finals read back without one', async () => {
    const file = path.join(tmp(), 'v1.db');
    const db = new Database(file);
    for (const sql of MIGRATIONS[0]!.sqlite) db.exec(sql);
    db.pragma('user_version = 1');
    db.prepare('INSERT INTO sessions (id, owner, started_at) VALUES (?, ?, ?)').run('old', null, Date.now());
    db.prepare('INSERT INTO finals (session_id, segment, start_s, end_s, text, words) VALUES (?, ?, ?, ?, ?, ?)').run('old', 0, 0, 1, 'before', '[]');
    db.close();
    const store = await openSqliteStore({ path: file, busyTimeoutMs: 5000, ...defaults }, silentLog);
    store.final('old', { ...final(1, 'after the upgrade', 2), seq: 17 });
    expect((await store.getFinals('old')).map((f) => [f.seq, f.text])).toEqual([
      [0, 'before'],
      [17, 'after the upgrade'],
    ]);
    await store.close();
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    check.close();
  });
});

describe('PostgreSQL store: the database goes away and comes back', () => {
  it('refuses to start on an unreachable URL with one line that names it without its password', async () => {
    const url = `postgres://captiongate:${POSTGRES_PASSWORD}@127.0.0.1:1/captions`;
    const err = (await openPostgresStore({ url, poolSize: 1, connectTimeoutMs: 2000, ...defaults }, silentLog).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/^cannot reach the caption store \(PostgreSQL at postgres:\/\/captiongate:\*\*\*@127\.0\.0\.1:1\/captions\): .*ECONNREFUSED/);
    expect(err.message).not.toContain(POSTGRES_PASSWORD);
    expect(err.message).not.toContain('\n');
    expect(redactUrl(`postgresql://u@h/db?password=${POSTGRES_PASSWORD}&sslmode=disable`)).toBe('postgresql://u@h/db?password=***&sslmode=disable');
  });

  it('queues writes while it is down (bounded, counted), reads answer StoreUnavailableError, and everything queued lands when it is back', async () => {
    const url = await pgServer.createDatabase('outage');
    const store = await openPostgresStore({ url, poolSize: 2, connectTimeoutMs: 2000, ...defaults, maxQueuedWrites: 100 }, silentLog);
    try {
      const t0 = Date.now();
      store.sessionStarted(session('o', 'sub:o', t0, 'mo'));
      store.meetingStarted('mo', t0);
      store.final('o', final(0, 'before the outage', 0));
      await store.flush();
      expect(store.status().ok).toBe(true);

      await pgServer.stop();
      for (let i = 1; i <= 40; i++) store.final('o', final(i, `during the outage ${i}`, i));
      await store.flush();
      expect(store.status()).toMatchObject({ ok: false, queuedWrites: 40, droppedWrites: 0 });
      // Reads fail at once, with the error the routes turn into 503.
      const t = Date.now();
      await expect(store.getFinals('o')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.getMeeting('mo')).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - t).toBeLessThan(1000);
      // Past the bound (100 records): dropped and counted, never a crash; rewrites of queued records still fit.
      for (let i = 41; i <= 150; i++) store.final('o', final(i, `during the outage ${i}`, i));
      store.final('o', final(40, 'during the outage 40, revised', 40));
      expect(store.status()).toMatchObject({ ok: false, queuedWrites: 100, droppedWrites: 50 });
      store.sessionEnded('o', ended(t0 + 200_000));
      expect(store.status().droppedWrites).toBe(51);

      await pgServer.start();
      const deadline = Date.now() + 30_000;
      while (!store.status().ok && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(store.status()).toMatchObject({ ok: true, queuedWrites: 0, droppedWrites: 51 });
      const finals = await store.getFinals('o');
      // Segment 0 from before, 1..100 queued (40, then 60 up to the bound), 101..150 dropped.
      expect(finals.map((f) => f.segment)).toEqual(Array.from({ length: 101 }, (_, i) => i));
      expect(finals[40]!.text).toBe('during the outage 40, revised');
      expect((await store.getMeeting('mo'))!.finals).toHaveLength(101);
      // Writes go on as usual afterwards.
      store.sessionEnded('o', ended(t0 + 300_000));
      expect((await store.getSession('o'))!.endedAt).toBe(t0 + 300_000);
    } finally {
      if (!(await pgServer.query('postgres', 'SELECT 1').then(() => true, () => false))) await pgServer.start();
      await store.close();
    }
  });

  it('a store with nothing to write finds out too: degraded while the database is down, back when it is', async () => {
    const url = await pgServer.createDatabase('idle_outage');
    const store = await openPostgresStore({ url, poolSize: 2, connectTimeoutMs: 2000, ...defaults }, silentLog);
    const until = async (ok: boolean) => {
      const deadline = Date.now() + 30_000;
      while (store.status().ok !== ok && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(store.status().ok).toBe(ok);
    };
    try {
      expect(await store.getSession('x')).toBeNull();
      await pgServer.stop();
      // Its idle connection is cut (or the next read fails): a probe finds the database gone.
      await store.getSession('x').catch(() => null);
      await until(false);
      await expect(store.getSession('x')).rejects.toBeInstanceOf(StoreUnavailableError);
      await pgServer.start();
      await until(true);
      expect(await store.getSession('x')).toBeNull();
    } finally {
      if (!(await pgServer.query('postgres', 'SELECT 1').then(() => true, () => false))) await pgServer.start();
      await store.close();
    }
  });

  it('a batch PostgreSQL refuses for its own sake is dropped and counted, not retried, and the store stays up', async () => {
    const url = await pgServer.createDatabase('refused_batch');
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const store = await openPostgresStore({ url, poolSize: 2, connectTimeoutMs: 2000, ...defaults }, log);
    try {
      store.sessionStarted(session('ok', null, Date.now()));
      await store.flush();
      // A segment number beyond PostgreSQL's INTEGER: SQLSTATE 22003, which no retry would fix.
      store.final('ok', final(2 ** 40, 'out of range', 0));
      store.final('ok', final(1, 'same batch', 0));
      await store.flush();
      expect(store.status()).toEqual({ ok: true, queuedWrites: 0, droppedWrites: 2 });
      expect(lines.some((l) => l.msg === 'caption store: a batch of writes failed' && l.records === 2)).toBe(true);
      store.final('ok', final(2, 'next batch', 0));
      expect((await store.getFinals('ok')).map((f) => f.text)).toEqual(['next batch']);
    } finally {
      await store.close();
    }
  });

  it('a clean stop while the database is down does not hang, and says what was lost', async () => {
    const url = await pgServer.createDatabase('down_at_stop');
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const store = await openPostgresStore({ url, poolSize: 1, connectTimeoutMs: 2000, ...defaults }, log);
    await pgServer.stop();
    try {
      store.sessionStarted(session('gone', null, Date.now()));
      store.final('gone', final(0, 'never written', 0));
      await store.close();
      expect(lines.some((l) => /unreachable at shutdown; queued writes are lost/.test(String(l.msg)) && l.records === 2)).toBe(true);
      expect(JSON.stringify(lines)).not.toContain(POSTGRES_PASSWORD);
    } finally {
      await pgServer.start();
    }
  });
});

describe('transcripts after a restart (through the gateway)', () => {
  it('serves .vtt, .srt and .json of a session, and the meeting file, from the store after a restart, under the same rules', async () => {
    const file = path.join(tmp(), 'restart.db');
    const over = { auth: { secret: SECRET }, engine: { kind: 'pocketsphinx', decoders: 2, threads: 2 }, store: { path: file } };
    let h = await startGateway('uws', over);
    const c = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: await token({ sub: 'alice', meetingId: 'standup' }) });
    await c.write(pcm(0));
    const end = await c.stop();
    expect(end.reason).toBe('client_stop');
    const id = c.ready.sessionId;
    const alice = { authorization: `Bearer ${await token({ sub: 'alice' })}` };
    const before = await (await fetch(`${h.http}/v1/sessions/${id}/captions.vtt`, { headers: alice })).text();
    await settled(h.gw);
    await h.stop();

    h = await startGateway('uws', over);
    try {
      const vtt = await fetch(`${h.http}/v1/sessions/${id}/captions.vtt`, { headers: alice });
      expect(vtt.status).toBe(200);
      expect(await vtt.text()).toBe(before);
      expect(vtt.headers.get('x-captiongate-live')).toBe('false');
      const srt = await (await fetch(`${h.http}/v1/sessions/${id}/captions.srt`, { headers: alice })).text();
      expect(srt).toMatch(/^1\n\d\d:\d\d:\d\d,\d\d\d --> /);
      const json = (await (await fetch(`${h.http}/v1/sessions/${id}/captions.json`, { headers: alice })).json()) as { finals: { text: string }[]; endReason: string; audio: { receivedSamples: number } };
      expect(json.endReason).toBe('client_stop');
      expect(json.audio.receivedSamples).toBe(end.audio.receivedSamples);
      expect(json.finals.map((f) => f.text).join(' ')).toMatch(/\w+ \w+ \w+/);
      // Same rules as live files.
      expect((await fetch(`${h.http}/v1/sessions/${id}/captions.vtt`)).status).toBe(401);
      expect((await fetch(`${h.http}/v1/sessions/${id}/captions.vtt`, { headers: { authorization: `Bearer ${await token({ sub: 'mallory' })}` } })).status).toBe(403);
      // The meeting's file: every speaker on the meeting's clock, for its viewers.
      const viewer = { authorization: `Bearer ${await token({ sub: 'v', meetingId: 'standup', scope: 'view' })}` };
      const meeting = await fetch(`${h.http}/v1/meetings/standup/captions.vtt`, { headers: viewer });
      expect(meeting.status).toBe(200);
      expect(await meeting.text()).toContain(json.finals[0]!.text.split(' ')[0]!);
      expect((await fetch(`${h.http}/v1/meetings/standup/captions.vtt`, { headers: alice })).status).toBe(403);
    } finally {
      await h.stop();
    }
  });

  it('lists the caller\'s sessions, and deletes one of them, from the store too', async () => {
    const h = await startGateway('uws', { auth: { secret: SECRET }, engine: { kind: 'pocketsphinx', decoders: 1, threads: 1 } });
    try {
      const ids: string[] = [];
      for (const sub of ['alice', 'alice', 'bob']) {
        const c = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: await token({ sub }) });
        await c.write(pcm(1).subarray(0, 16000));
        await c.stop();
        ids.push(c.ready.sessionId);
      }
      const alice = { authorization: `Bearer ${await token({ sub: 'alice' })}` };
      const listed = (await (await fetch(`${h.http}/v1/sessions`, { headers: alice })).json()) as { sessions: { sessionId: string }[] };
      expect(listed.sessions.map((s) => s.sessionId).sort()).toEqual([ids[0], ids[1]].sort());
      expect((await fetch(`${h.http}/v1/sessions`)).status).toBe(401);
      // Only the owner deletes.
      expect((await fetch(`${h.http}/v1/sessions/${ids[2]}`, { method: 'DELETE', headers: alice })).status).toBe(403);
      expect((await fetch(`${h.http}/v1/sessions/${ids[0]}`, { method: 'DELETE', headers: alice })).status).toBe(204);
      expect((await fetch(`${h.http}/v1/sessions/${ids[0]}/captions.json`, { headers: alice })).status).toBe(404);
      expect(await h.gw.store.getSession(ids[0]!)).toBeNull();
      await settled(h.gw);
    } finally {
      await h.stop();
    }
  });
});
