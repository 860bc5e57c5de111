/** The caption store the config names: SQLite (the default, one file), PostgreSQL (several nodes) or memory. */
import path from 'node:path';

import type { Logger } from 'pino';

import type { Config } from '../config/schema.js';
import { MemoryStore } from './memory-store.js';
import { openPostgresStore, redactUrl } from './postgres-store.js';
import { openSqliteStore } from './sqlite-store.js';
import type { Store } from './types.js';

export type { MeetingFinal, SessionRecord, Store, StoreStatus } from './types.js';
export { StoreUnavailableError } from './types.js';

export async function openStore(config: Readonly<Config>, log: Logger): Promise<Store> {
  const s = config.store;
  if (s.kind === 'memory') return new MemoryStore();
  if (s.kind === 'postgres') {
    const store = await openPostgresStore(
      { url: s.url, poolSize: s.poolSize, flushMs: s.flushMs, retentionDays: s.retentionDays, maxSessionsPerOwner: s.maxSessionsPerOwner, maxQueuedWrites: s.maxQueuedWrites },
      log,
    );
    // Never the URL as given: it may hold a password.
    const where = redactUrl(s.url);
    log.info({ store: where }, `caption store: ${where} (PostgreSQL)`);
    return store;
  }
  const file = path.resolve(s.path);
  const store = await openSqliteStore(
    { path: file, flushMs: s.flushMs, retentionDays: s.retentionDays, maxSessionsPerOwner: s.maxSessionsPerOwner, busyTimeoutMs: s.busyTimeoutMs },
    log,
  );
  log.info({ store: file }, `caption store: ${file} (SQLite, WAL)`);
  return store;
}
