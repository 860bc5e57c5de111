/**
 * better-sqlite3 on a worker thread of its own: its calls are synchronous,
 * so the event loop never waits on the disk. The worker is only an
 * executor: each message is a batch of (SQL, parameters) run in one
 * transaction, and the answer is their results. The schema, the queries
 * and the batching live in TypeScript on the main thread (sqlite-store.ts).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

export type SqlParam = string | number | bigint | null | Uint8Array;
/** One statement: `run` (writes; answers changes), `get` (one row) or `all` (rows). */
export type Statement = readonly [sql: string, params: readonly SqlParam[], mode: 'run' | 'get' | 'all'];

// CommonJS, evaluated in the worker: open the file, then run batches.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
let db;
try {
  db = new Database(workerData.path, { timeout: workerData.busyTimeoutMs });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  parentPort.postMessage({ id: 0, result: null });
} catch (e) {
  parentPort.postMessage({ id: 0, error: String(e && e.message || e) });
}
const prepared = new Map();
const run = (batch) => batch.map(([sql, params, mode]) => {
  let s = prepared.get(sql);
  if (!s) { s = db.prepare(sql); prepared.set(sql, s); }
  if (mode === 'all') return s.all(...params);
  if (mode === 'get') return s.get(...params) ?? null;
  return s.run(...params).changes;
});
// A batch that writes takes the write lock up front (BEGIN IMMEDIATE): with
// several processes on the file (server.workers) it then waits in SQLite's
// busy handler instead of failing on a read lock it cannot upgrade.
const tx = (batch) => {
  const t = db.transaction(run);
  return batch.some((s) => s[2] === 'run') ? t.immediate(batch) : t(batch);
};
// Read the version and migrate under the write lock (BEGIN IMMEDIATE): when
// several processes open a new file at once, one migrates and the others
// wait (busy timeout), then find it done.
const migrate = (steps) => db.transaction(() => {
  const from = db.pragma('user_version', { simple: true });
  if (from > steps.length) return [from];
  for (let v = from; v < steps.length; v++) {
    for (const s of steps[v]) db.exec(s);
    db.pragma('user_version = ' + (v + 1));
  }
  return [from];
}).immediate();
parentPort.on('message', ({ id, batch, close, migrate: steps }) => {
  if (close) { db && db.close(); parentPort.postMessage({ id, result: null }); return; }
  try { parentPort.postMessage({ id, result: steps ? migrate(steps) : tx(batch) }); }
  catch (e) { parentPort.postMessage({ id, error: String(e && e.message || e), code: e && typeof e.code === 'string' ? e.code : undefined }); }
});
`;

/** A statement failed; `code` is SQLite's (SQLITE_BUSY, SQLITE_CONSTRAINT_PRIMARYKEY, …) when it gave one. */
export class SqlError extends Error {
  readonly code: string | null;
  constructor(message: string, code: string | null) {
    super(message);
    this.name = 'SqlError';
    this.code = code;
  }
  /** Another connection held the lock past the busy timeout: worth trying again. */
  get busy(): boolean {
    return this.code !== null && (this.code.startsWith('SQLITE_BUSY') || this.code.startsWith('SQLITE_LOCKED'));
  }
}

export class SqlWorker {
  #worker: Worker;
  #next = 1;
  #pending = new Map<number, { resolve: (r: unknown[]) => void; reject: (e: Error) => void }>();
  #opened: Promise<void>;
  #dead: Error | null = null;

  constructor(path: string, busyTimeoutMs: number) {
    const module = createRequire(import.meta.url).resolve('better-sqlite3');
    this.#worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module, path, busyTimeoutMs } });
    this.#worker.unref();
    this.#opened = new Promise((resolve, reject) => this.#pending.set(0, { resolve: () => resolve(), reject }));
    this.#worker.on('message', (m: { id: number; result?: unknown[]; error?: string; code?: string }) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.error !== undefined) p.reject(new SqlError(m.error, m.code ?? null));
      else p.resolve(m.result ?? []);
    });
    const fail = (err: Error) => {
      this.#dead = err;
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => fail(new Error(`the store's worker exited (${code})`)));
  }

  /** Resolves once the file is open (WAL on), or rejects with why not. */
  opened(): Promise<void> {
    return this.#opened;
  }

  /** Runs the statements in one transaction; resolves with each one's result. */
  exec(batch: readonly Statement[]): Promise<unknown[]> {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, batch });
    });
  }

  /**
   * Brings the file to version steps.length (steps[v] takes it from v to
   * v + 1) in one immediate transaction; resolves with the version it was
   * at (above steps.length: nothing was done).
   */
  async migrate(steps: readonly (readonly string[])[]): Promise<number> {
    if (this.#dead) throw this.#dead;
    const id = this.#next++;
    const [from] = await new Promise<unknown[]>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, migrate: steps });
    });
    return from as number;
  }

  async close(): Promise<void> {
    if (this.#dead) return;
    const id = this.#next++;
    await new Promise<unknown>((resolve) => {
      this.#pending.set(id, { resolve, reject: resolve });
      this.#worker.postMessage({ id, close: true });
    });
    await this.#worker.terminate();
  }
}
