/**
 * The durable caption store (issue 14): SQLite through better-sqlite3, a
 * real file in a temporary folder. Transcripts outlive the process, under
 * the same authorization rules as live ones; schema versions; retention and
 * per-owner quotas; owners list and delete their sessions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import Database from 'better-sqlite3';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect } from '../../src/client/client.js';
import { SQLITE_MIGRATIONS } from '../../src/store/migrations.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { Store } from '../../src/store/types.js';
import { librivoxClips } from '../../eval/corpus.js';
import { settled, startGateway } from '../helpers/gateway.js';

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
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const opts = (file: string, over: Partial<Parameters<typeof openSqliteStore>[0]> = {}) => ({
  path: file,
  flushMs: 50,
  retentionDays: 30,
  maxSessionsPerOwner: 1000,
  busyTimeoutMs: 2000,
  ...over,
});
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

describe('SQLite caption store', () => {
  it('writes in batches and reads back after reopening the file; a meeting on its own clock', async () => {
    const file = path.join(tmp(), 'c.db');
    let store: Store = await openSqliteStore(opts(file), silentLog);
    const t0 = Date.now();
    store.sessionStarted(session('a', 'sub:alice', t0, 'm1'));
    store.meetingStarted('m1', t0);
    store.sessionStarted(session('b', 'sub:bob', t0 + 2000, 'm1'));
    store.final('a', final(0, 'hello from alice', 1));
    store.final('b', final(0, 'hello from bob', 0.5));
    store.sessionEnded('a', { endedAt: t0 + 5000, reason: 'client_stop', receivedSamples: 80000, decodedSamples: 80000, droppedSamples: 0 });
    await store.close();
    store = await openSqliteStore(opts(file), silentLog);
    expect(await store.getSession('a')).toMatchObject({ owner: 'sub:alice', meetingId: 'm1', endReason: 'client_stop', receivedSamples: 80000 });
    expect((await store.getFinals('a')).map((f) => f.text)).toEqual(['hello from alice']);
    const m = await store.getMeeting('m1');
    // Bob started 2 s later: his 0.5 s is 2.5 s on the meeting's clock, after alice's 1.0 s.
    expect(m!.finals.map((f) => [f.sessionId, f.start])).toEqual([
      ['a', 1],
      ['b', 2.5],
    ]);
    expect(m!.finals[1]!.words[0]!.start).toBe(2.5);
    await store.close();
  });

  it('refuses a store file written by a newer captiongate, saying so', async () => {
    const file = path.join(tmp(), 'newer.db');
    const db = new Database(file);
    db.pragma('user_version = 99');
    db.close();
    await expect(openSqliteStore(opts(file), silentLog)).rejects.toThrow(/schema version 99, written by a newer captiongate/);
  });

  it('keeps each final\'s seq (schema version 2, for a resume on another node); a version 1 file is migrated, its old finals without one', async () => {
    const file = path.join(tmp(), 'v1.db');
    // A file as captiongate wrote it before version 2.
    const db = new Database(file);
    for (const sql of SQLITE_MIGRATIONS[0]!) db.exec(sql);
    db.pragma('user_version = 1');
    db.prepare('INSERT INTO sessions (id, owner, started_at) VALUES (?, ?, ?)').run('old', null, Date.now());
    db.prepare('INSERT INTO finals (session_id, segment, start_s, end_s, text, words) VALUES (?, ?, ?, ?, ?, ?)').run('old', 0, 0, 1, 'before', '[]');
    db.close();
    const store = await openSqliteStore(opts(file), silentLog);
    store.final('old', { ...final(1, 'after the upgrade', 2), seq: 17 });
    expect((await store.getFinals('old')).map((f) => [f.seq, f.text])).toEqual([
      [0, 'before'],
      [17, 'after the upgrade'],
    ]);
    await store.close();
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(SQLITE_MIGRATIONS.length);
    check.close();
  });

  it('keeps at most maxSessionsPerOwner ended sessions per owner (its own oldest go), and expires old transcripts', async () => {
    const file = path.join(tmp(), 'q.db');
    const store = await openSqliteStore(opts(file, { maxSessionsPerOwner: 2 }), silentLog);
    const t0 = Date.now();
    store.sessionStarted(session('other', 'sub:other', t0));
    store.sessionEnded('other', { endedAt: t0, reason: 'client_stop', receivedSamples: 0, decodedSamples: 0, droppedSamples: 0 });
    for (let i = 0; i < 4; i++) {
      store.sessionStarted(session(`s${i}`, 'sub:spam', t0 + i));
      store.sessionEnded(`s${i}`, { endedAt: t0 + i, reason: 'client_stop', receivedSamples: 0, decodedSamples: 0, droppedSamples: 0 });
    }
    await store.flush();
    expect((await store.listSessions('sub:spam', { limit: 10 })).map((s) => s.id)).toEqual(['s3', 's2']);
    expect(await store.getSession('other')).not.toBeNull();
    await store.close();
    // Retention: a session that ended 40 days ago is gone at the next start.
    const db = new Database(file);
    db.prepare('UPDATE sessions SET ended_at = ? WHERE id = ?').run(Date.now() - 40 * 86_400_000, 'other');
    db.close();
    const again = await openSqliteStore(opts(file, { retentionDays: 30 }), silentLog);
    await again.flush();
    expect(await again.getSession('other')).toBeNull();
    expect(await again.getSession('s3')).not.toBeNull();
    await again.close();
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
