/**
 * One SQLite file, several processes (server.workers): the workers of a
 * node open, migrate, write, expire and read the same store at once.
 * Real processes on a real file: migrations racing on a fresh file, the
 * hourly retention running in each, and writes refused as busy (another
 * connection holds the lock past store.busyTimeoutMs) retried, not lost.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../../src/store/migrations.js';

const PROCESSES = 4;
const SESSIONS = 40;
const FINALS = 5;
const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-shared-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));


function writers(file: string, prefix: string, busyMs: number, startInMs: number): Promise<{ code: number | null; out: string }[]> {
  const startAt = Date.now() + startInMs;
  return Promise.all(
    Array.from(
      { length: PROCESSES },
      (_, p) =>
        new Promise<{ code: number | null; out: string }>((resolve) => {
          const child = spawn(process.execPath, [path.resolve('test/helpers/store-writer.mjs')], {
            env: { ...process.env, SESSIONS: String(SESSIONS), FINALS: String(FINALS), FILE: file, WRITER: String(p), PREFIX: prefix, BUSY_MS: String(busyMs), START_AT: String(startAt) },
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let out = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.stderr.on('data', (d: Buffer) => (out += d.toString()));
          child.on('exit', (code) => resolve({ code, out }));
        }),
    ),
  );
}

describe('one SQLite file shared by worker processes', () => {
  const file = path.join(dir, 'captions.db');

  it('processes opening a fresh file at once migrate it once, and every write of every process is there', async () => {
    const runs = await writers(file, 'a', 5000, 1500);
    for (const r of runs) {
      expect(r.code, r.out).toBe(0);
      expect(r.out).toContain(`"finals":${FINALS}`);
      expect(r.out).not.toContain('failed');
    }
    // Exactly one of them migrated (the others found the schema done).
    const migrated = runs.filter((r) => r.out.includes('migrated')).length;
    expect(migrated).toBeLessThanOrEqual(1);
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect((db.prepare('SELECT count(*) AS n FROM sessions').get() as { n: number }).n).toBe(PROCESSES * SESSIONS);
      expect((db.prepare('SELECT count(*) AS n FROM finals').get() as { n: number }).n).toBe(PROCESSES * SESSIONS * FINALS);
      expect((db.prepare('SELECT count(*) AS n FROM sessions WHERE ended_at IS NULL').get() as { n: number }).n).toBe(0);
    } finally {
      db.close();
    }
  });

  it('a write lock held past the busy timeout: the writes wait and are retried, none is lost; retention runs in each process', async () => {
    // Sessions ended long ago, for every process's retention to expire at startup.
    const db = new Database(file);
    const old = Date.now() - 3 * 24 * 3600 * 1000;
    const ins = db.prepare('INSERT INTO sessions (id, owner, started_at, ended_at, end_reason) VALUES (?, ?, ?, ?, ?)');
    for (let i = 0; i < 20; i++) ins.run(`old-${i}`, 'o', old, old + 1, 'client_stop');
    // Hold the write lock (as a backup or another writer would) from before the writers start until well after.
    db.prepare('BEGIN IMMEDIATE').run();
    const runsP = writers(file, 'b', 100, 300);
    await new Promise((r) => setTimeout(r, 2500));
    db.prepare('COMMIT').run();
    const runs = await runsP;
    for (const r of runs) {
      expect(r.code, r.out).toBe(0);
      expect(r.out).not.toContain('a batch of writes failed');
      expect(r.out).toContain(`"finals":${FINALS}`);
    }
    // The lock was seen and waited out.
    expect(runs.some((r) => r.out.includes('trying again'))).toBe(true);
    try {
      expect((db.prepare("SELECT count(*) AS n FROM sessions WHERE id LIKE 'b%'").get() as { n: number }).n).toBe(PROCESSES * SESSIONS);
      expect((db.prepare("SELECT count(*) AS n FROM finals WHERE session_id LIKE 'b%'").get() as { n: number }).n).toBe(PROCESSES * SESSIONS * FINALS);
      expect((db.prepare("SELECT count(*) AS n FROM sessions WHERE id LIKE 'old-%'").get() as { n: number }).n).toBe(0);
      // Phase one's rows are untouched.
      expect((db.prepare("SELECT count(*) AS n FROM sessions WHERE id LIKE 'a%'").get() as { n: number }).n).toBe(PROCESSES * SESSIONS);
    } finally {
      db.close();
    }
  });
});
