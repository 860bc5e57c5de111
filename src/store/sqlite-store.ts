/**
 * The SQLite store (better-sqlite3, WAL), the embedded default. Writes are
 * queued on the main thread and handed to the store's worker every
 * store.flushMs as one transaction, so the event loop never touches the
 * disk and a SIGKILL loses at most the last batch. Reads go to the same
 * worker. Retention and per-owner quotas run in the worker's transactions
 * too.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import type { Logger } from 'pino';

import type { FinalMessage } from '../protocol/messages.js';
import { MIGRATIONS, SCHEMA_VERSION, newerSchemaMessage } from './migrations.js';
import { FINAL_COLUMNS, SESSION_COLUMNS, SESSION_UPDATE, meetingOf, toFinal, toSession, type FinalRow, type SessionRow } from './rows.js';
import { SqlError, SqlWorker, type SqlParam, type Statement } from './sql-worker.js';
import type { MeetingFinal, SessionRecord, Store, StoreStatus } from './types.js';

export interface SqliteStoreOptions {
  readonly path: string;
  readonly flushMs: number;
  readonly retentionDays: number;
  readonly maxSessionsPerOwner: number;
  readonly busyTimeoutMs: number;
}

const HOUR_MS = 3_600_000;

/**
 * Runs `op` again while SQLite says another connection holds the lock
 * (past the busy timeout it already waited): backoff from 25 ms to 1 s,
 * for at least 10 s in all. Another process of the node (server.workers)
 * or a backup may hold the file; what was queued is not given up at the
 * first refusal.
 */
async function retryBusy<T>(op: () => Promise<T>, busyTimeoutMs: number, log: Logger): Promise<T> {
  const giveUpAt = Date.now() + Math.max(10_000, 2 * busyTimeoutMs);
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof SqlError && err.busy) || Date.now() >= giveUpAt) throw err;
      const wait = Math.min(1000, 25 * 2 ** (attempt - 1));
      log.warn({ code: err.code, attempt, retryInMs: wait }, 'caption store: the file is locked by another connection; trying again');
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

/** Opens (creating or migrating) the store file; refuses one written by a newer captiongate. */
export async function openSqliteStore(opts: SqliteStoreOptions, log: Logger): Promise<Store> {
  mkdirSync(path.dirname(opts.path), { recursive: true });
  const sql = new SqlWorker(opts.path, opts.busyTimeoutMs);
  try {
    await sql.opened();
    // Workers of one node start at once on one file: one of them migrates, the others find it done.
    const at = await retryBusy(() => sql.migrate(MIGRATIONS.map((m) => m.sqlite)), opts.busyTimeoutMs, log);
    if (at > SCHEMA_VERSION) throw new Error(newerSchemaMessage(opts.path, at, 'point store.path at another file'));
    for (let v = at + 1; v <= SCHEMA_VERSION; v++) log.info({ store: opts.path, version: v }, `caption store migrated to schema version ${v}`);
  } catch (err) {
    await sql.close().catch(() => {});
    throw err;
  }
  return new SqliteStore(sql, opts, log);
}

class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  #sql: SqlWorker;
  #opts: SqliteStoreOptions;
  #log: Logger;
  #queue: Statement[] = [];
  #timer: NodeJS.Timeout | null = null;
  #retention: NodeJS.Timeout | null = null;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  #dropped = 0;

  constructor(sql: SqlWorker, opts: SqliteStoreOptions, log: Logger) {
    this.#sql = sql;
    this.#opts = opts;
    this.#log = log;
    if (opts.retentionDays > 0) {
      this.#expire();
      this.#retention = setInterval(() => this.#expire(), HOUR_MS);
      this.#retention.unref();
    }
  }

  #push(...s: Statement[]): void {
    if (this.#closed) return;
    this.#queue.push(...s);
    this.#timer ??= setTimeout(() => {
      this.#timer = null;
      void this.flush();
    }, this.#opts.flushMs);
  }

  sessionStarted(r: SessionRecord): void {
    this.#push([
      // An upsert, not REPLACE: a session written again (resumed on another node) keeps its finals.
      `INSERT INTO sessions (${SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET ${SESSION_UPDATE}`,
      [r.id, r.owner, r.meetingId, r.speaker, r.startedAt, r.endedAt, r.endReason, r.receivedSamples, r.decodedSamples, r.droppedSamples],
      'run',
    ]);
  }

  final(sessionId: string, f: FinalMessage): void {
    this.#push([
      'INSERT OR REPLACE INTO finals (session_id, segment, start_s, end_s, text, words, speaker, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      [sessionId, f.segment, f.start, f.end, f.text, JSON.stringify(f.words), f.speaker ?? null, f.seq > 0 ? f.seq : null],
      'run',
    ]);
  }

  sessionEnded(id: string, e: { endedAt: number; reason: string; receivedSamples: number; decodedSamples: number; droppedSamples: number }): void {
    this.#push(
      [
        'UPDATE sessions SET ended_at = ?, end_reason = ?, received_samples = ?, decoded_samples = ?, dropped_samples = ? WHERE id = ?',
        [e.endedAt, e.reason, e.receivedSamples, e.decodedSamples, e.droppedSamples, id],
        'run',
      ],
      // The owner's quota: its oldest ended sessions beyond store.maxSessionsPerOwner go.
      [
        `DELETE FROM sessions WHERE id IN (
           SELECT id FROM sessions WHERE owner IS (SELECT owner FROM sessions WHERE id = ?) AND ended_at IS NOT NULL
           ORDER BY started_at DESC LIMIT -1 OFFSET ?)`,
        [id, this.#opts.maxSessionsPerOwner],
        'run',
      ],
    );
  }

  meetingStarted(meetingId: string, startedAt: number): void {
    // The earliest start wins, whichever process writes first.
    this.#push([
      'INSERT INTO meetings (id, started_at) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET started_at = min(started_at, excluded.started_at)',
      [meetingId, startedAt],
      'run',
    ]);
  }

  async getSession(id: string): Promise<SessionRecord | null> {
    const [row] = (await this.#read([[`SELECT ${SESSION_COLUMNS} FROM sessions WHERE id = ?`, [id], 'get']])) as [SessionRow | null];
    return row ? toSession(row) : null;
  }

  async getFinals(id: string): Promise<FinalMessage[]> {
    const [rows] = (await this.#read([[`SELECT ${FINAL_COLUMNS} FROM finals WHERE session_id = ? ORDER BY segment`, [id], 'all']])) as [FinalRow[]];
    return rows.map((r) => toFinal(r));
  }

  async getMeeting(meetingId: string): Promise<{ startedAt: number; sessions: SessionRecord[]; finals: MeetingFinal[] } | null> {
    const [meeting, sessions, finals] = (await this.#read([
      ['SELECT started_at FROM meetings WHERE id = ?', [meetingId], 'get'],
      [`SELECT ${SESSION_COLUMNS} FROM sessions WHERE meeting_id = ? ORDER BY started_at`, [meetingId], 'all'],
      [`SELECT f.* FROM finals f JOIN sessions s ON s.id = f.session_id WHERE s.meeting_id = ?`, [meetingId], 'all'],
    ])) as [{ started_at: number } | null, SessionRow[], FinalRow[]];
    return meetingOf(meeting?.started_at ?? null, sessions, finals);
  }

  async listSessions(owner: string | null | undefined, opts: { limit: number; before?: number }): Promise<SessionRecord[]> {
    const before = opts.before ?? Number.MAX_SAFE_INTEGER;
    const [rows] = (await this.#read([
      owner === undefined
        ? [`SELECT ${SESSION_COLUMNS} FROM sessions WHERE started_at < ? ORDER BY started_at DESC LIMIT ?`, [before, opts.limit], 'all']
        : [`SELECT ${SESSION_COLUMNS} FROM sessions WHERE owner IS ? AND started_at < ? ORDER BY started_at DESC LIMIT ?`, [owner, before, opts.limit], 'all'],
    ])) as [SessionRow[]];
    return rows.map(toSession);
  }

  async deleteSession(id: string): Promise<boolean> {
    const [n] = (await this.#read([['DELETE FROM sessions WHERE id = ?', [id], 'run']])) as [number];
    return n > 0;
  }

  status(): StoreStatus {
    // A local file: never unreachable. Failed batches are counted as dropped.
    return { ok: true, queuedWrites: this.#queue.length, droppedWrites: this.#dropped };
  }

  /** Reads see every write queued before them. */
  async #read(batch: Statement[]): Promise<unknown[]> {
    await this.flush();
    return this.#sql.exec(batch);
  }

  flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#queue.length) {
      const batch = this.#queue;
      this.#queue = [];
      // One transaction per batch, in order.
      this.#writing = this.#writing.then(() =>
        retryBusy(() => this.#sql.exec(batch), this.#opts.busyTimeoutMs, this.#log).then(
          () => undefined,
          (err: unknown) => {
            this.#dropped += batch.length;
            this.#log.error({ err, statements: batch.length }, 'caption store: a batch of writes failed');
          },
        ),
      );
    }
    return this.#writing;
  }

  #expire(): void {
    const cutoff = Date.now() - this.#opts.retentionDays * 24 * HOUR_MS;
    const params: SqlParam[] = [cutoff];
    this.#push(
      ['DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?', params, 'run'],
      ['DELETE FROM meetings WHERE id NOT IN (SELECT meeting_id FROM sessions WHERE meeting_id IS NOT NULL)', [], 'run'],
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#retention) clearInterval(this.#retention);
    await this.flush();
    this.#closed = true;
    await this.#sql.close();
  }
}
