/**
 * The store's schema, as versioned migrations, each written for both
 * dialects: the same tables, columns and indexes in SQLite and PostgreSQL
 * (times are integer ms since the epoch, words are JSON text in both).
 *
 * A store records the version it is at (SQLite: PRAGMA user_version;
 * PostgreSQL: the one row of captiongate_schema), runs the migrations after
 * it at startup in one transaction, and is refused if it was written by a
 * newer captiongate. Several processes may start at once on the same store:
 * SQLite takes the write lock first (BEGIN IMMEDIATE), PostgreSQL an
 * advisory lock held until the transaction ends, so exactly one of them
 * migrates and the others then see the new version.
 */
export interface Migration {
  /** 1, 2, ...: the schema version this migration brings the store to. */
  readonly version: number;
  readonly sqlite: readonly string[];
  readonly postgres: readonly string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    // Sessions, their finals, meetings' clocks.
    version: 1,
    sqlite: [
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
    postgres: [
      `CREATE TABLE sessions (
         id TEXT PRIMARY KEY,
         owner TEXT,
         meeting_id TEXT,
         speaker TEXT,
         started_at BIGINT NOT NULL,
         ended_at BIGINT,
         end_reason TEXT,
         received_samples BIGINT NOT NULL DEFAULT 0,
         decoded_samples BIGINT NOT NULL DEFAULT 0,
         dropped_samples BIGINT NOT NULL DEFAULT 0
       )`,
      'CREATE INDEX sessions_owner ON sessions (owner, started_at)',
      'CREATE INDEX sessions_meeting ON sessions (meeting_id)',
      'CREATE INDEX sessions_ended ON sessions (ended_at)',
      `CREATE TABLE finals (
         session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
         segment INTEGER NOT NULL,
         start_s DOUBLE PRECISION NOT NULL,
         end_s DOUBLE PRECISION NOT NULL,
         text TEXT NOT NULL,
         words TEXT NOT NULL,
         speaker TEXT,
         PRIMARY KEY (session_id, segment)
       )`,
      `CREATE TABLE meetings (
         id TEXT PRIMARY KEY,
         started_at BIGINT NOT NULL
       )`,
    ],
  },
  {
    // Each final's session seq, so a resume on another node replays the
    // finals it missed with their own seq (NULL for finals written before).
    version: 2,
    sqlite: ['ALTER TABLE finals ADD COLUMN seq INTEGER'],
    postgres: ['ALTER TABLE finals ADD COLUMN seq BIGINT'],
  },
];

/** The schema version this captiongate writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** The refusal of a store written by a newer captiongate. */
export function newerSchemaMessage(where: string, at: number, hint: string): string {
  return (
    `the caption store ${where} is at schema version ${at}, written by a newer captiongate (this one knows up to ${SCHEMA_VERSION}). ` +
    `Run the newer version, or ${hint}.`
  );
}
