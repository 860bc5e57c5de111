/** The caption store the config names: SQLite (the default, one file) or memory. */
import path from 'node:path';

import type { Logger } from 'pino';

import type { Config } from '../config/schema.js';
import { MemoryStore } from './memory-store.js';
import { openSqliteStore } from './sqlite-store.js';
import type { Store } from './types.js';

export type { MeetingFinal, SessionRecord, Store } from './types.js';

export async function openStore(config: Readonly<Config>, log: Logger): Promise<Store> {
  const s = config.store;
  if (s.kind === 'memory') return new MemoryStore();
  const file = path.resolve(s.path);
  const store = await openSqliteStore(
    { path: file, flushMs: s.flushMs, retentionDays: s.retentionDays, maxSessionsPerOwner: s.maxSessionsPerOwner, busyTimeoutMs: s.busyTimeoutMs },
    log,
  );
  log.info({ store: file }, `caption store: ${file} (SQLite, WAL)`);
  return store;
}
