/**
 * The store's schema, as versioned migrations. Each version is a list of
 * statements; a store file records the version it is at (SQLite:
 * PRAGMA user_version), runs the ones after it at startup, and is refused
 * if it was written by a newer captiongate.
 */
export const SQLITE_MIGRATIONS: readonly (readonly string[])[] = [
  // 1: sessions, their finals, meetings' clocks.
  [
    `CREATE TABLE sessions (
       id TEXT PRIMARY KEY,
       owner TEXT,
       meeting_id TEXT,
       speaker TEXT,
       started_at INTEGER NOT NULL,
       ended_at INTEGER,
       end_reason TEXT,
       received_samples INTEGER NOT NULL DEFAULT 0,
       decoded_samples INTEGER NOT NULL DEFAULT 0,
       dropped_samples INTEGER NOT NULL DEFAULT 0
     )`,
    'CREATE INDEX sessions_owner ON sessions (owner, started_at)',
    'CREATE INDEX sessions_meeting ON sessions (meeting_id)',
    'CREATE INDEX sessions_ended ON sessions (ended_at)',
    `CREATE TABLE finals (
       session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
       segment INTEGER NOT NULL,
       start_s REAL NOT NULL,
       end_s REAL NOT NULL,
       text TEXT NOT NULL,
       words TEXT NOT NULL,
       speaker TEXT,
       PRIMARY KEY (session_id, segment)
     )`,
    `CREATE TABLE meetings (
       id TEXT PRIMARY KEY,
       started_at INTEGER NOT NULL
     )`,
  ],
  // 2: each final's session seq, so a resume on another node replays the
  // finals it missed with their own seq (NULL for finals written before).
  ['ALTER TABLE finals ADD COLUMN seq INTEGER'],
];
