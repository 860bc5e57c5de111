/**
 * The SQLite store (better-sqlite3, WAL), the embedded default. Writes are
 * queued on the main thread and handed to the store's worker every
 * store.flushMs as one transaction, so the event loop never touches the
 * disk and a SIGKILL loses at most the last batch. Reads go to the same
 * worker. Retention and per-owner quotas run in the worker's transactions
 * too. The workers of a node (server.workers) share the file: each process
 * has its own store and retention; sql-worker.ts says how they take turns.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import type { Logger } from 'pino';

import type { FinalMessage, WordOut } from '../protocol/messages.js';
import { SQLITE_MIGRATIONS } from './migrations.js';
import { SqlError, SqlWorker, type SqlParam, type Statement } from './sql-worker.js';
import type { MeetingFinal, SessionRecord, Store } from './types.js';

export interface SqliteStoreOptions {
  readonly path: string;
  readonly flushMs: number;
  readonly retentionDays: number;
  readonly maxSessionsPerOwner: number;
  readonly busyTimeoutMs: number;
}

interface SessionRow {
  id: string;
  owner: string | null;
  meeting_id: string | null;
  speaker: string | null;
  started_at: number;
  ended_at: number | null;
  end_reason: string | null;
  received_samples: number;
  decoded_samples: number;
  dropped_samples: number;
}

interface FinalRow {
  session_id: string;
  segment: number;
  start_s: number;
  end_s: number;
  text: string;
  words: string;
  speaker: string | null;
}

const SESSION_COLUMNS = 'id, owner, meeting_id, speaker, started_at, ended_at, end_reason, received_samples, decoded_samples, dropped_samples';
const HOUR_MS = 3_600_000;

const toSession = (r: SessionRow): SessionRecord => ({
  id: r.id,
  owner: r.owner,
  meetingId: r.meeting_id,
  speaker: r.speaker,
  startedAt: r.started_at,
  endedAt: r.ended_at,
  endReason: r.end_reason,
  receivedSamples: r.received_samples,
  decodedSamples: r.decoded_samples,
  droppedSamples: r.dropped_samples,
});

const toFinal = (r: FinalRow, shift = 0): FinalMessage => {
  const round3 = (x: number) => Math.round(x * 1000) / 1000;
  const words = (JSON.parse(r.words) as WordOut[]).map((w) => (shift ? { ...w, start: round3(w.start + shift), end: round3(w.end + shift) } : w));
  const f: FinalMessage = { type: 'final', seq: 0, segment: r.segment, text: r.text, start: round3(r.start_s + shift), end: round3(r.end_s + shift), words };
  if (r.speaker !== null) f.speaker = r.speaker;
  return f;
};

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
    // Workers of one node start at once on one file: the version is read
    // and the migrations run in one write transaction, so exactly one of
    // them migrates and the others find the schema done.
    const latest = SQLITE_MIGRATIONS.length;
    const { from: at, to } = await retryBusy(() => sql.migrate(SQLITE_MIGRATIONS), opts.busyTimeoutMs, log);
    if (at > latest) {
      throw new Error(
        `the caption store ${opts.path} is at schema version ${at}, written by a newer captiongate (this one knows up to ${latest}). ` +
          'Run the newer version, or point store.path at another file.',
      );
    }
    if (to > at) log.info({ store: opts.path, from: at, version: to }, `caption store migrated to schema version ${to}`);
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
      `INSERT OR REPLACE INTO sessions (${SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [r.id, r.owner, r.meetingId, r.speaker, r.startedAt, r.endedAt, r.endReason, r.receivedSamples, r.decodedSamples, r.droppedSamples],
      'run',
    ]);
  }

  final(sessionId: string, f: FinalMessage): void {
    this.#push([
      'INSERT OR REPLACE INTO finals (session_id, segment, start_s, end_s, text, words, speaker) VALUES (?, ?, ?, ?, ?, ?, ?)',
      [sessionId, f.segment, f.start, f.end, f.text, JSON.stringify(f.words), f.speaker ?? null],
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
    this.#push(['INSERT OR IGNORE INTO meetings (id, started_at) VALUES (?, ?)', [meetingId, startedAt], 'run']);
  }

  async getSession(id: string): Promise<SessionRecord | null> {
    const [row] = (await this.#read([[`SELECT ${SESSION_COLUMNS} FROM sessions WHERE id = ?`, [id], 'get']])) as [SessionRow | null];
    return row ? toSession(row) : null;
  }

  async getFinals(id: string): Promise<FinalMessage[]> {
    const [rows] = (await this.#read([['SELECT * FROM finals WHERE session_id = ? ORDER BY segment', [id], 'all']])) as [FinalRow[]];
    return rows.map((r) => toFinal(r));
  }

  async getMeeting(meetingId: string): Promise<{ startedAt: number; sessions: SessionRecord[]; finals: MeetingFinal[] } | null> {
    const [meeting, sessions, finals] = (await this.#read([
      ['SELECT started_at FROM meetings WHERE id = ?', [meetingId], 'get'],
      [`SELECT ${SESSION_COLUMNS} FROM sessions WHERE meeting_id = ? ORDER BY started_at`, [meetingId], 'all'],
      ['SELECT f.* FROM finals f JOIN sessions s ON s.id = f.session_id WHERE s.meeting_id = ?', [meetingId], 'all'],
    ])) as [{ started_at: number } | null, SessionRow[], FinalRow[]];
    if (!meeting && !sessions.length) return null;
    const recs = sessions.map(toSession);
    const t0 = meeting?.started_at ?? Math.min(...recs.map((s) => s.startedAt));
    const startOf = new Map(recs.map((s) => [s.id, s.startedAt]));
    const out = finals.map((r): MeetingFinal => ({ ...toFinal(r, ((startOf.get(r.session_id) ?? t0) - t0) / 1000), sessionId: r.session_id }));
    out.sort((a, b) => a.start - b.start || a.end - b.end);
    return { startedAt: t0, sessions: recs, finals: out };
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

  /** Reads see every write queued before them. */
  async #read(batch: Statement[]): Promise<unknown[]> {
    await this.flush();
    return this.#exec(batch);
  }

  #exec(batch: Statement[]): Promise<unknown[]> {
    return retryBusy(() => this.#sql.exec(batch), this.#opts.busyTimeoutMs, this.#log);
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
        this.#exec(batch).then(
          () => undefined,
          (err: unknown) => this.#log.error({ err, statements: batch.length }, 'caption store: a batch of writes failed'),
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
