/**
 * Rows as both SQL stores read them (same columns in SQLite and
 * PostgreSQL), and how they become records, finals and a meeting's file.
 */
import type { FinalMessage, WordOut } from '../protocol/messages.js';
import type { MeetingFinal, SessionRecord } from './types.js';

export interface SessionRow {
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

export interface FinalRow {
  session_id: string;
  segment: number;
  start_s: number;
  end_s: number;
  text: string;
  words: string;
  speaker: string | null;
  /** The final's session seq (migration 2); null for finals written before it. */
  seq: number | null;
}

export const SESSION_COLUMNS = 'id, owner, meeting_id, speaker, started_at, ended_at, end_reason, received_samples, decoded_samples, dropped_samples';
/** The upsert's SET list (both dialects spell it the same way). */
export const SESSION_UPDATE = SESSION_COLUMNS.split(', ')
  .slice(1)
  .map((c) => `${c} = excluded.${c}`)
  .join(', ');
export const FINAL_COLUMNS = 'session_id, segment, start_s, end_s, text, words, speaker, seq';

export const toSession = (r: SessionRow): SessionRecord => ({
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

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** A stored final, moved `shift` seconds later (onto a meeting's clock). */
export const toFinal = (r: FinalRow, shift = 0): FinalMessage => {
  const words = (JSON.parse(r.words) as WordOut[]).map((w) => (shift ? { ...w, start: round3(w.start + shift), end: round3(w.end + shift) } : w));
  const f: FinalMessage = { type: 'final', seq: r.seq ?? 0, segment: r.segment, text: r.text, start: round3(r.start_s + shift), end: round3(r.end_s + shift), words };
  if (r.speaker !== null) f.speaker = r.speaker;
  return f;
};

/**
 * A meeting's file: every final on the meeting's clock (which starts at its
 * first participant's start), by start, then end; ties by session and
 * segment, so that every store, and every node, gives the same order.
 */
export function meetingOf(
  meetingStartedAt: number | null,
  sessions: readonly SessionRow[],
  finals: readonly FinalRow[],
): { startedAt: number; sessions: SessionRecord[]; finals: MeetingFinal[] } | null {
  if (meetingStartedAt === null && !sessions.length) return null;
  const recs = sessions.map(toSession);
  const t0 = meetingStartedAt ?? Math.min(...recs.map((s) => s.startedAt));
  const startOf = new Map(recs.map((s) => [s.id, s.startedAt]));
  const out = finals.map((r): MeetingFinal => ({ ...toFinal(r, ((startOf.get(r.session_id) ?? t0) - t0) / 1000), sessionId: r.session_id }));
  out.sort((a, b) => a.start - b.start || a.end - b.end || (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : a.segment - b.segment));
  return { startedAt: t0, sessions: recs, finals: out };
}
