// A worker process's use of the caption store, for test/store/shared-file.test.ts:
// wait for the common start, open the store (dist/), write this writer's
// sessions (flushing every ten), read one back, close; print one JSON line.
// Plain JavaScript: it runs as its own process, outside vitest.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { pino } from 'pino';

const { openSqliteStore } = await import(pathToFileURL(path.resolve('dist/src/store/sqlite-store.js')).href);
const env = process.env;
const sessions = Number(env.SESSIONS);
const finals = Number(env.FINALS);
const log = pino({ level: 'warn' });
const wait = Number(env.START_AT) - Date.now();
if (wait > 0) await new Promise((r) => setTimeout(r, wait));
const store = await openSqliteStore(
  { path: env.FILE, flushMs: 10, retentionDays: 1, maxSessionsPerOwner: 100000, busyTimeoutMs: Number(env.BUSY_MS) },
  log,
);
const now = Date.now();
const id = (i) => `${env.PREFIX}${env.WRITER}-${i}`;
for (let i = 0; i < sessions; i++) {
  store.sessionStarted({ id: id(i), owner: `o${env.WRITER}`, meetingId: null, speaker: null, startedAt: now + i, endedAt: null, endReason: null, receivedSamples: 0, decodedSamples: 0, droppedSamples: 0 });
  for (let f = 0; f < finals; f++) store.final(id(i), { type: 'final', seq: 0, segment: f, text: `words from ${env.WRITER}`, start: f, end: f + 1, words: [] });
  store.sessionEnded(id(i), { endedAt: now + 1000 + i, reason: 'client_stop', receivedSamples: 16000, decodedSamples: 16000, droppedSamples: 0 });
  if (i % 10 === 9) await store.flush();
}
const mine = await store.getFinals(id(0));
await store.close();
console.log(JSON.stringify({ done: true, finals: mine.length }));
