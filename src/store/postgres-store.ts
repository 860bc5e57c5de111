/**
 * The PostgreSQL store (pg), for several nodes sharing one database. Same
 * schema and same behaviour as the SQLite store: writes are queued on the
 * main thread (a Map set per final, never a network wait) and written every
 * store.flushMs as one transaction of multi-row statements (unnest of
 * arrays: one INSERT for all of a batch's finals); retention and per-owner
 * quotas run in those transactions.
 *
 * Connection loss: a batch that cannot be written goes back into the queue
 * (newer writes of the same record win) and is retried with a backoff of
 * up to RETRY_MAX_MS; the queue is bounded by store.maxQueuedWrites records,
 * and a write past it is dropped, counted (status().droppedWrites,
 * /metrics) and logged. While the database is unreachable, reads reject at
 * once with StoreUnavailableError (the routes answer 503) and /readyz lists
 * the store as degraded; live sessions never notice.
 */
import type { Logger } from 'pino';
import pg from 'pg';

import type { FinalMessage } from '../protocol/messages.js';
import { MIGRATIONS, SCHEMA_VERSION, newerSchemaMessage } from './migrations.js';
import { FINAL_COLUMNS, SESSION_COLUMNS, SESSION_UPDATE, meetingOf, toFinal, toSession, type FinalRow, type SessionRow } from './rows.js';
import { StoreUnavailableError, type MeetingFinal, type SessionRecord, type Store, type StoreStatus } from './types.js';

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database (never logged as is: see redactUrl). */
  readonly url: string;
  readonly poolSize: number;
  readonly flushMs: number;
  readonly retentionDays: number;
  readonly maxSessionsPerOwner: number;
  readonly maxQueuedWrites: number;
  /** How long a connection attempt may take before it counts as a failure. */
  readonly connectTimeoutMs?: number;
}

type SessionEnd = { endedAt: number; reason: string; receivedSamples: number; decodedSamples: number; droppedSamples: number };

const HOUR_MS = 3_600_000;
const CONNECT_TIMEOUT_MS = 5000;
/** A query (a whole batch included) that takes longer is abandoned and its connection dropped. */
const QUERY_TIMEOUT_MS = 30_000;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 2000;
const DROP_LOG_INTERVAL_MS = 10_000;
/** Records per transaction: a long outage's queue is written in several. */
const MAX_RECORDS_PER_TRANSACTION = 5000;
/** pg_advisory_xact_lock key for migrations ("capt" in ASCII). */
const MIGRATION_LOCK = 0x63617074;

/** The URL with its password (and any password parameter) replaced by ***: safe to log. */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '(an unparsable URL)';
  }
  if (u.password) u.password = '***';
  if (u.searchParams.has('password')) u.searchParams.set('password', '***');
  return u.toString();
}

// BIGINT columns (ms timestamps, sample counts) as numbers: every value is
// far below 2^53. Per pool, so no other pg user in the process is affected.
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : format === 'binary' ? pg.types.getTypeParser(oid, 'binary') : pg.types.getTypeParser(oid, 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

/** PostgreSQL refuses NUL in text; nothing a caption needs is lost by dropping it. */
const text = (s: string) => (s.includes('\0') ? s.replaceAll('\0', '') : s);
const textOrNull = (s: string | null) => (s === null ? null : text(s));

/**
 * Errors worth retrying: the connection (no SQLSTATE: refused, reset,
 * timed out, terminated), or a server state that passes (SQLSTATE classes
 * 08 connection, 53 resources, 57 shutdown/cancel, 40 serialization and
 * deadlock, 55P03 lock timeout). Anything else is the batch's own fault and
 * would fail again.
 */
function transient(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError) return false;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return /^(08|53|57|40)/.test(code) || code === '55P03';
  return true;
}

/** Writes waiting for the next batch, one entry per record (a newer write of a record replaces it). */
class Pending {
  sessions = new Map<string, SessionRecord>();
  meetings = new Map<string, number>();
  finals = new Map<string, { sessionId: string; f: FinalMessage }>();
  ended = new Map<string, SessionEnd>();
  expireBefore: number | null = null;

  get size(): number {
    return this.sessions.size + this.meetings.size + this.finals.size + this.ended.size;
  }

  get empty(): boolean {
    return this.size === 0 && this.expireBefore === null;
  }

  /**
   * Moves up to `max` records out, in the order a transaction needs them
   * (a session before its finals and its end); the retention sweep goes
   * with the last of them.
   */
  take(max: number): Pending {
    const out = new Pending();
    let n = 0;
    const move = <V>(from: Map<string, V>, to: Map<string, V>) => {
      for (const [k, v] of from) {
        if (n >= max) return;
        to.set(k, v);
        from.delete(k);
        n++;
      }
    };
    move(this.sessions, out.sessions);
    move(this.meetings, out.meetings);
    move(this.finals, out.finals);
    move(this.ended, out.ended);
    if (this.size === 0) {
      out.expireBefore = this.expireBefore;
      this.expireBefore = null;
    }
    return out;
  }

  /** Takes back an unwritten older batch under this one: what this one holds wins. */
  absorb(older: Pending): void {
    for (const [k, v] of older.sessions) if (!this.sessions.has(k)) this.sessions.set(k, v);
    for (const [k, v] of older.meetings) this.meetings.set(k, Math.min(v, this.meetings.get(k) ?? v));
    for (const [k, v] of older.finals) if (!this.finals.has(k)) this.finals.set(k, v);
    // An end written before the session was started again (a resume) is stale.
    for (const [k, v] of older.ended) if (!this.ended.has(k) && !this.sessions.has(k)) this.ended.set(k, v);
    if (older.expireBefore !== null) this.expireBefore = Math.max(older.expireBefore, this.expireBefore ?? 0);
  }
}

const byKey = <V>(m: Map<string, V>): [string, V][] => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/**
 * Connects, creates or migrates the schema (one transaction, under an
 * advisory lock, so nodes starting together migrate once), and refuses a
 * database written by a newer captiongate. Rejects with one clear line
 * (the URL without its password) when the database cannot be reached.
 */
export async function openPostgresStore(opts: PostgresStoreOptions, log: Logger): Promise<Store> {
  const where = redactUrl(opts.url);
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
    keepAlive: true,
    application_name: 'captiongate',
    types,
  });
  // An idle connection that breaks (the server went away) is dropped by the
  // pool and reported here: without a listener it would crash the process.
  // Once the store exists, it takes this as a sign the database is down.
  const idle = { failed: (err: Error) => log.warn({ err: { message: err.message }, store: where }, 'caption store: an idle PostgreSQL connection failed') };
  pool.on('error', (err) => idle.failed(err));
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    await pool.end().catch(() => {});
    throw new Error(`cannot reach the caption store (PostgreSQL at ${where}): ${(err as Error).message}`, { cause: err });
  }
  const swallow = () => {};
  client.on('error', swallow);
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS captiongate_schema (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version INTEGER NOT NULL)');
    const { rows } = await client.query<{ version: number }>('SELECT version FROM captiongate_schema');
    const at = rows[0]?.version ?? 0;
    if (at > SCHEMA_VERSION) throw new Error(newerSchemaMessage(`(PostgreSQL at ${where})`, at, 'point store.url at another database'));
    for (const m of MIGRATIONS.slice(at)) for (const s of m.postgres) await client.query(s);
    await client.query(
      'INSERT INTO captiongate_schema (one, version) VALUES (TRUE, $1) ON CONFLICT (one) DO UPDATE SET version = excluded.version',
      [Math.max(at, SCHEMA_VERSION)],
    );
    await client.query('COMMIT');
    for (let v = at + 1; v <= SCHEMA_VERSION; v++) log.info({ store: where, version: v }, `caption store migrated to schema version ${v}`);
    client.removeListener('error', swallow);
    client.release();
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    client.removeListener('error', swallow);
    client.release(true);
    await pool.end().catch(() => {});
    throw err;
  }
  const store = new PostgresStore(pool, opts, where, log);
  idle.failed = (err) => store.connectionLost(err);
  return store;
}

class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  #pool: pg.Pool;
  #opts: PostgresStoreOptions;
  #where: string;
  #log: Logger;
  #pending = new Pending();
  /** Records in the batch being written now (for status()). */
  #inFlight = 0;
  #timer: NodeJS.Timeout | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  #retention: NodeJS.Timeout | null = null;
  #writing: Promise<void> = Promise.resolve();
  /** Consecutive failed attempts; > 0 means the database is unreachable. */
  #failures = 0;
  #probing = false;
  #dropped = 0;
  #droppedLoggedAt = 0;
  #closed = false;

  constructor(pool: pg.Pool, opts: PostgresStoreOptions, where: string, log: Logger) {
    this.#pool = pool;
    this.#opts = opts;
    this.#where = where;
    this.#log = log;
    if (opts.retentionDays > 0) {
      this.#expire();
      this.#retention = setInterval(() => this.#expire(), HOUR_MS);
      this.#retention.unref();
    }
  }

  /** Room for one more record? If not, the write is dropped and counted. */
  #admit(isNew: boolean): boolean {
    if (this.#closed) return false;
    if (!isNew || this.#pending.size + this.#inFlight < this.#opts.maxQueuedWrites) return true;
    this.#dropped++;
    const now = Date.now();
    if (now - this.#droppedLoggedAt >= DROP_LOG_INTERVAL_MS) {
      this.#droppedLoggedAt = now;
      this.#log.error(
        { store: this.#where, queuedWrites: this.#pending.size + this.#inFlight, droppedWrites: this.#dropped },
        `caption store: the write queue is full (store.maxQueuedWrites ${this.#opts.maxQueuedWrites}); new writes are dropped until PostgreSQL is back`,
      );
    }
    return false;
  }

  #queued(): void {
    // While the database is down the retry timer paces the attempts.
    if (this.#failures > 0) return;
    this.#timer ??= setTimeout(() => {
      this.#timer = null;
      void this.flush();
    }, this.#opts.flushMs);
  }

  sessionStarted(r: SessionRecord): void {
    const p = this.#pending;
    if (!this.#admit(!p.sessions.has(r.id))) return;
    p.sessions.set(r.id, r);
    p.ended.delete(r.id);
    this.#queued();
  }

  final(sessionId: string, f: FinalMessage): void {
    const p = this.#pending;
    const key = `${sessionId}\n${f.segment}`;
    if (!this.#admit(!p.finals.has(key))) return;
    p.finals.set(key, { sessionId, f });
    this.#queued();
  }

  sessionEnded(id: string, e: SessionEnd): void {
    const p = this.#pending;
    if (!this.#admit(!p.ended.has(id))) return;
    p.ended.set(id, e);
    this.#queued();
  }

  meetingStarted(meetingId: string, startedAt: number): void {
    const p = this.#pending;
    const had = p.meetings.get(meetingId);
    if (!this.#admit(had === undefined)) return;
    p.meetings.set(meetingId, Math.min(startedAt, had ?? startedAt));
    this.#queued();
  }

  async getSession(id: string): Promise<SessionRecord | null> {
    const { rows } = await this.#query<SessionRow>(`SELECT ${SESSION_COLUMNS} FROM sessions WHERE id = $1`, [id]);
    return rows[0] ? toSession(rows[0]) : null;
  }

  async getFinals(id: string): Promise<FinalMessage[]> {
    const { rows } = await this.#query<FinalRow>(`SELECT ${FINAL_COLUMNS} FROM finals WHERE session_id = $1 ORDER BY segment`, [id]);
    return rows.map((r) => toFinal(r));
  }

  async getMeeting(meetingId: string): Promise<{ startedAt: number; sessions: SessionRecord[]; finals: MeetingFinal[] } | null> {
    // One statement, so the meeting, its sessions and their finals are one snapshot.
    const { rows } = await this.#query<{ started_at: number | null; sessions: SessionRow[] | null; finals: FinalRow[] | null }>(
      `SELECT (SELECT started_at FROM meetings WHERE id = $1) AS started_at,
              (SELECT json_agg(s ORDER BY s.started_at) FROM (SELECT ${SESSION_COLUMNS} FROM sessions WHERE meeting_id = $1) s) AS sessions,
              (SELECT json_agg(f) FROM (SELECT f.session_id, f.segment, f.start_s, f.end_s, f.text, f.words, f.speaker
                 FROM finals f JOIN sessions s ON s.id = f.session_id WHERE s.meeting_id = $1) f) AS finals`,
      [meetingId],
    );
    const r = rows[0]!;
    return meetingOf(r.started_at, r.sessions ?? [], r.finals ?? []);
  }

  async listSessions(owner: string | null | undefined, opts: { limit: number; before?: number }): Promise<SessionRecord[]> {
    const before = opts.before ?? Number.MAX_SAFE_INTEGER;
    const { rows } =
      owner === undefined
        ? await this.#query<SessionRow>(`SELECT ${SESSION_COLUMNS} FROM sessions WHERE started_at < $1 ORDER BY started_at DESC LIMIT $2`, [before, opts.limit])
        : await this.#query<SessionRow>(
            `SELECT ${SESSION_COLUMNS} FROM sessions WHERE owner IS NOT DISTINCT FROM $1 AND started_at < $2 ORDER BY started_at DESC LIMIT $3`,
            [owner, before, opts.limit],
          );
    return rows.map(toSession);
  }

  async deleteSession(id: string): Promise<boolean> {
    const { rowCount } = await this.#query('DELETE FROM sessions WHERE id = $1', [id]);
    return (rowCount ?? 0) > 0;
  }

  status(): StoreStatus {
    return { ok: this.#failures === 0, queuedWrites: this.#pending.size + this.#inFlight, droppedWrites: this.#dropped };
  }

  /**
   * Reads see every write queued before them: the queue is written first.
   * While the database is unreachable they fail at once (no wait for a
   * connection timeout per request) until a retry gets through.
   */
  async #query<R extends object>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    const unavailable = (cause?: unknown) =>
      new StoreUnavailableError('the caption store (PostgreSQL) is unreachable; try again later', cause === undefined ? undefined : { cause });
    if (this.#failures > 0) throw unavailable();
    await this.flush();
    if (this.#failures > 0) throw unavailable();
    try {
      return await this.#pool.query<R>(sql, params);
    } catch (err) {
      if (!transient(err)) throw err;
      this.connectionLost(err as Error);
      throw unavailable(err);
    }
  }

  /**
   * A connection broke (a read failed, an idle connection was cut): one
   * connection, or the database? A probe (SELECT 1) right away tells; if it
   * fails, the store is degraded and probed on the retry schedule until it
   * answers, even with nothing queued.
   */
  connectionLost(err: Error): void {
    if (this.#closed || this.#failures > 0 || this.#probing) return;
    this.#probing = true;
    this.#log.warn({ err: { message: err.message }, store: this.#where }, 'caption store: a PostgreSQL connection failed; checking the database');
    this.#writing = this.#writing.then(() =>
      this.#pool.query('SELECT 1').then(
        () => {
          this.#probing = false;
        },
        (probe: unknown) => {
          this.#probing = false;
          if (!this.#closed && this.#failures === 0) this.#failed(probe);
        },
      ),
    );
  }

  #failed(err: unknown): void {
    if (this.#failures++ === 0) {
      this.#log.warn(
        { err: { message: (err as Error).message }, store: this.#where, queuedWrites: this.#pending.size + this.#inFlight },
        'caption store: PostgreSQL is unreachable; writes are queued (up to store.maxQueuedWrites) and retried, reads answer 503',
      );
    }
    if (this.#retryTimer) return;
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.#failures - 1, 10));
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      void this.flush();
    }, delay);
  }

  flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#retryTimer) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    }
    // While the database is down, an attempt is made even with nothing queued: it is the probe that finds it back.
    if (!this.#pending.empty || this.#failures > 0) {
      const batch = this.#pending;
      this.#pending = new Pending();
      this.#inFlight += batch.size;
      // One transaction per batch, in order; an attempt never rejects.
      this.#writing = this.#writing.then(() => this.#attempt(batch));
    }
    return this.#writing;
  }

  /**
   * Writes a batch, MAX_RECORDS_PER_TRANSACTION records per transaction, in
   * dependency order (sessions, meetings, finals, ends), so that the queue
   * of a long outage never becomes one transaction too big to finish. Never
   * rejects: what a connection error leaves unwritten goes back in the queue.
   */
  async #attempt(batch: Pending): Promise<void> {
    let written = 0;
    try {
      do {
        const chunk = batch.take(MAX_RECORDS_PER_TRANSACTION);
        try {
          const skipped = await this.#write(chunk);
          if (skipped > 0) {
            this.#dropped += skipped;
            this.#log.warn({ store: this.#where, finals: skipped }, 'caption store: finals of sessions no longer in the store were not written');
          }
          written += chunk.size;
        } catch (err) {
          if (transient(err)) {
            batch.absorb(chunk);
            throw err;
          }
          // The chunk's own fault: it would fail again.
          this.#dropped += chunk.size;
          this.#log.error({ err, store: this.#where, records: chunk.size }, 'caption store: a batch of writes failed');
        }
        this.#inFlight -= chunk.size;
      } while (!batch.empty);
      if (this.#failures > 0) {
        this.#log.info({ store: this.#where, failedAttempts: this.#failures, written }, 'caption store: PostgreSQL is reachable again; queued writes written');
        this.#failures = 0;
        // Writes queued meanwhile go in the next batch, at the usual pace.
        if (!this.#pending.empty) this.#queued();
      }
    } catch (err) {
      this.#inFlight -= batch.size;
      if (this.#closed) {
        if (batch.size === 0) return;
        this.#dropped += batch.size;
        this.#log.error({ err: { message: (err as Error).message }, store: this.#where, records: batch.size }, 'caption store: PostgreSQL is unreachable at shutdown; queued writes are lost');
        return;
      }
      this.#pending.absorb(batch);
      this.#failed(err);
    }
  }

  /** One transaction; resolves with how many finals were skipped (their session is gone). */
  async #write(b: Pending): Promise<number> {
    if (b.empty) {
      // A probe while the database is down.
      await this.#pool.query('SELECT 1');
      return 0;
    }
    const client = await this.#pool.connect();
    // A checked-out client has no error listener of the pool's: a broken
    // connection must not become an uncaught 'error' event.
    const swallow = () => {};
    client.on('error', swallow);
    let skipped = 0;
    try {
      await client.query('BEGIN');
      // Rows in key order, so two nodes writing the same rows lock them in the same order.
      if (b.sessions.size) {
        const rows = byKey(b.sessions).map(([, r]) => r);
        await client.query(
          `INSERT INTO sessions (${SESSION_COLUMNS})
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[])
           ON CONFLICT (id) DO UPDATE SET ${SESSION_UPDATE}`,
          [
            rows.map((r) => r.id),
            rows.map((r) => textOrNull(r.owner)),
            rows.map((r) => textOrNull(r.meetingId)),
            rows.map((r) => textOrNull(r.speaker)),
            rows.map((r) => r.startedAt),
            rows.map((r) => r.endedAt),
            rows.map((r) => textOrNull(r.endReason)),
            rows.map((r) => r.receivedSamples),
            rows.map((r) => r.decodedSamples),
            rows.map((r) => r.droppedSamples),
          ],
        );
      }
      if (b.meetings.size) {
        const rows = byKey(b.meetings);
        // The earliest start wins, whichever node writes first.
        await client.query(
          `INSERT INTO meetings (id, started_at) SELECT * FROM unnest($1::text[], $2::bigint[])
           ON CONFLICT (id) DO UPDATE SET started_at = LEAST(meetings.started_at, excluded.started_at)`,
          [rows.map(([id]) => text(id)), rows.map(([, t]) => t)],
        );
      }
      if (b.finals.size) {
        const rows = byKey(b.finals).map(([, v]) => v);
        const res = await client.query(
          `INSERT INTO finals (${FINAL_COLUMNS})
           SELECT v.* FROM unnest($1::text[], $2::int[], $3::float8[], $4::float8[], $5::text[], $6::text[], $7::text[], $8::bigint[])
             AS v(session_id, segment, start_s, end_s, text, words, speaker, seq)
           WHERE EXISTS (SELECT 1 FROM sessions s WHERE s.id = v.session_id)
           ON CONFLICT (session_id, segment) DO UPDATE SET
             start_s = excluded.start_s, end_s = excluded.end_s, text = excluded.text, words = excluded.words, speaker = excluded.speaker, seq = excluded.seq`,
          [
            rows.map((r) => r.sessionId),
            rows.map((r) => r.f.segment),
            rows.map((r) => r.f.start),
            rows.map((r) => r.f.end),
            rows.map((r) => text(r.f.text)),
            rows.map((r) => text(JSON.stringify(r.f.words))),
            rows.map((r) => textOrNull(r.f.speaker ?? null)),
            rows.map((r) => (r.f.seq > 0 ? r.f.seq : null)),
          ],
        );
        skipped = rows.length - (res.rowCount ?? rows.length);
      }
      if (b.ended.size) {
        const rows = byKey(b.ended);
        const ids = rows.map(([id]) => id);
        await client.query(
          `UPDATE sessions s SET ended_at = v.ended_at, end_reason = v.reason,
             received_samples = v.received, decoded_samples = v.decoded, dropped_samples = v.dropped
           FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[]) AS v(id, ended_at, reason, received, decoded, dropped)
           WHERE s.id = v.id`,
          [
            ids,
            rows.map(([, e]) => e.endedAt),
            rows.map(([, e]) => text(e.reason)),
            rows.map(([, e]) => e.receivedSamples),
            rows.map(([, e]) => e.decodedSamples),
            rows.map(([, e]) => e.droppedSamples),
          ],
        );
        // The owners' quotas: each one's oldest ended sessions beyond store.maxSessionsPerOwner go.
        await client.query(
          `DELETE FROM sessions WHERE id IN (
             SELECT id FROM (
               SELECT s.id, row_number() OVER (PARTITION BY s.owner ORDER BY s.started_at DESC) AS n
               FROM sessions s
               WHERE s.ended_at IS NOT NULL
                 AND EXISTS (SELECT 1 FROM sessions e WHERE e.id = ANY($1::text[]) AND e.owner IS NOT DISTINCT FROM s.owner)
             ) ranked WHERE n > $2)`,
          [ids, this.#opts.maxSessionsPerOwner],
        );
      }
      if (b.expireBefore !== null) {
        await client.query('DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < $1', [b.expireBefore]);
        await client.query('DELETE FROM meetings m WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.meeting_id = m.id)');
      }
      await client.query('COMMIT');
      client.removeListener('error', swallow);
      client.release();
      return skipped;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      client.removeListener('error', swallow);
      // A connection in an unknown state is not reused.
      client.release(true);
      throw err;
    }
  }

  #expire(): void {
    if (this.#closed) return;
    this.#pending.expireBefore = Date.now() - this.#opts.retentionDays * 24 * HOUR_MS;
    this.#queued();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#retention) clearInterval(this.#retention);
    // One last attempt; if the database is still down, what is queued is lost (and logged as such).
    this.#closed = true;
    await this.flush();
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    await this.#pool.end();
  }
}
