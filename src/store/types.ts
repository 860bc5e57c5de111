/**
 * The durable caption store: every final, and every session's metadata,
 * written in batches off the hot path, read back for caption files after
 * a restart. SQLite (one file, the embedded default), PostgreSQL (shared
 * by several nodes) or memory (nothing kept beyond the process).
 */
import type { FinalMessage } from '../protocol/messages.js';

export interface SessionRecord {
  readonly id: string;
  /** Token identity that owns it (null with auth off). */
  readonly owner: string | null;
  readonly meetingId: string | null;
  readonly speaker: string | null;
  /** ms since the epoch. */
  readonly startedAt: number;
  readonly endedAt: number | null;
  readonly endReason: string | null;
  readonly receivedSamples: number;
  readonly decodedSamples: number;
  readonly droppedSamples: number;
}

/** A final of a meeting, with whose it is, on the meeting's clock. */
export interface MeetingFinal extends FinalMessage {
  readonly sessionId: string;
}

/** How the store is doing, for /readyz and /metrics. */
export interface StoreStatus {
  /** False while the store cannot be reached (PostgreSQL down): writes queue, reads fail. */
  readonly ok: boolean;
  /** Records waiting to be written (sessions, finals, ends, meetings). */
  readonly queuedWrites: number;
  /** Records dropped since start because the queue was full (store.maxQueuedWrites) or a batch was refused. */
  readonly droppedWrites: number;
}

/**
 * A read the store cannot answer now (its server is unreachable); the
 * HTTP routes answer 503 CAP_ERR_STORE_UNAVAILABLE.
 */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres' | 'memory';
  /** Writes are queued and land in the next batch (at most store.flushMs later). */
  sessionStarted(rec: SessionRecord): void;
  final(sessionId: string, f: FinalMessage): void;
  sessionEnded(id: string, end: { endedAt: number; reason: string; receivedSamples: number; decodedSamples: number; droppedSamples: number }): void;
  /** The meeting's clock starts at its first participant's start (kept if already set). */
  meetingStarted(meetingId: string, startedAt: number): void;

  /** Reads see every write queued before them; they reject with StoreUnavailableError while the store is unreachable. */
  getSession(id: string): Promise<SessionRecord | null>;
  getFinals(id: string): Promise<FinalMessage[]>;
  /** Every final of every session of the meeting, on the meeting's clock, by start. */
  getMeeting(meetingId: string): Promise<{ startedAt: number; sessions: SessionRecord[]; finals: MeetingFinal[] } | null>;
  /** Newest first. `owner` undefined: everyone's (auth off). */
  listSessions(owner: string | null | undefined, opts: { limit: number; before?: number }): Promise<SessionRecord[]>;
  deleteSession(id: string): Promise<boolean>;

  status(): StoreStatus;
  /** Writes everything queued now. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
