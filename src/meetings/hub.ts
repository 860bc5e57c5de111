/**
 * Meetings: sessions that carry the same `meta.meetingId` are participants
 * of one room; viewers on `GET /v1/meetings/:id/captions` receive every
 * participant's partials and finals, tagged with speaker and session, on the
 * meeting's timeline (seconds since the first participant started).
 * A joining viewer first gets the finals so far, sorted by start.
 *
 * Bounded: at most `maxMeetings` rooms, `maxViewersPerMeeting` viewers per
 * room, `maxReplayFinals` kept per room; empty rooms expire after
 * `retentionSeconds`. Each viewer has its own Outbox, so a slow viewer is
 * coalesced and then dropped without slowing speakers or other viewers.
 */
import type { CaptionEvent } from '../captions/stabilizer.js';
import { CloseCode, GatewayError } from '../errors.js';
import type { FinalMessage, PartialMessage, ServerMessage, Unsequenced } from '../protocol/messages.js';
import type { Outbox } from '../session/outbox.js';

export interface MeetingOptions {
  readonly maxMeetings: number;
  readonly maxViewersPerMeeting: number;
  readonly maxReplayFinals: number;
  readonly retentionSeconds: number;
  readonly stalledReaderSeconds: number;
  /** Called when a viewer is dropped for not reading (metrics). */
  readonly onSlowViewer?: () => void;
}

export interface Participant {
  readonly sessionId: string;
  readonly speaker: string;
  readonly startedAt: number;
}

/**
 * A viewer still catching up on the replay gets it paced by its socket:
 * items go out only while the socket is not backed up, the rest follow on
 * drain. Live messages that arrive meanwhile wait behind the replay.
 */
interface ViewerState {
  replay: Unsequenced<ServerMessage>[] | null;
  next: number;
}

interface Room {
  readonly id: string;
  startedAt: number | null;
  readonly participants: Map<string, Participant>;
  readonly viewers: Map<Outbox, ViewerState>;
  finals: Unsequenced<FinalMessage>[];
  truncated: number;
  idleSince: number;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

export class MeetingHub {
  #opts: MeetingOptions;
  #rooms = new Map<string, Room>();
  #sweep: NodeJS.Timeout;
  /** Viewers dropped as slow readers (metrics/tests). */
  slowViewersDropped = 0;

  constructor(opts: MeetingOptions) {
    this.#opts = opts;
    this.#sweep = setInterval(() => this.#tick(), 500);
    this.#sweep.unref();
  }

  get meetings(): number {
    return this.#rooms.size;
  }

  /** Viewers across all meetings, and participants (leak checks). */
  totals(): { meetings: number; viewers: number; participants: number; maxViewerQueuedBytes: number } {
    let viewers = 0;
    let participants = 0;
    let maxViewerQueuedBytes = 0;
    for (const r of this.#rooms.values()) {
      viewers += r.viewers.size;
      participants += r.participants.size;
      for (const v of r.viewers.keys()) maxViewerQueuedBytes = Math.max(maxViewerQueuedBytes, v.queuedBytes);
    }
    return { meetings: this.#rooms.size, viewers, participants, maxViewerQueuedBytes };
  }

  viewers(meetingId: string): number {
    return this.#rooms.get(meetingId)?.viewers.size ?? 0;
  }

  #room(id: string, create: boolean): Room | GatewayError {
    let r = this.#rooms.get(id);
    if (r) return r;
    if (!create) return new GatewayError('CAP_ERR_NOT_FOUND', `no meeting ${id}`);
    if (this.#rooms.size >= this.#opts.maxMeetings) {
      return new GatewayError('CAP_ERR_CAPACITY', `the server already has ${this.#opts.maxMeetings} meetings`, 5000);
    }
    r = { id, startedAt: null, participants: new Map(), viewers: new Map(), finals: [], truncated: 0, idleSince: Date.now() };
    this.#rooms.set(id, r);
    return r;
  }

  joined(meetingId: string, p: Participant): void {
    const r = this.#room(meetingId, true);
    if (r instanceof GatewayError) return; // the session still works; it just is not fanned out
    r.startedAt ??= p.startedAt;
    r.participants.set(p.sessionId, p);
    this.#broadcast(r, { type: 'participant', event: 'joined', sessionId: p.sessionId, speaker: p.speaker });
  }

  left(meetingId: string, sessionId: string): void {
    const r = this.#rooms.get(meetingId);
    const p = r?.participants.get(sessionId);
    if (!r || !p) return;
    r.participants.delete(sessionId);
    this.#broadcast(r, { type: 'participant', event: 'left', sessionId, speaker: p.speaker });
    if (!r.participants.size && !r.viewers.size) r.idleSince = Date.now();
  }

  /** A participant's caption: shift onto the meeting timeline, keep finals, fan out. */
  publish(meetingId: string, sessionId: string, ev: CaptionEvent): void {
    const r = this.#rooms.get(meetingId);
    const p = r?.participants.get(sessionId);
    if (!r || !p || r.startedAt === null) return;
    const offset = (p.startedAt - r.startedAt) / 1000;
    const shift = { speaker: p.speaker, sessionId, start: round3(ev.start + offset), end: round3(ev.end + offset) };
    if (ev.type === 'final') {
      const f: Unsequenced<FinalMessage> = {
        ...ev,
        ...shift,
        words: ev.words.map((w) => ({ ...w, start: round3(w.start + offset), end: round3(w.end + offset) })),
      };
      if (f.text) {
        r.finals.push(f);
        if (r.finals.length > this.#opts.maxReplayFinals) {
          r.finals.shift();
          r.truncated++;
        }
      }
      this.#broadcast(r, f);
    } else {
      const partial: Unsequenced<PartialMessage> = { ...ev, ...shift };
      this.#broadcast(r, partial);
    }
  }

  /** Adds a viewer and replays the finals so far (sorted by start). */
  addViewer(meetingId: string, outbox: Outbox): GatewayError | null {
    const r = this.#room(meetingId, true);
    if (r instanceof GatewayError) return r;
    if (r.viewers.size >= this.#opts.maxViewersPerMeeting) {
      return new GatewayError('CAP_ERR_CAPACITY', `meeting ${meetingId} already has ${this.#opts.maxViewersPerMeeting} viewers`, 5000);
    }
    const state: ViewerState = { replay: [...r.finals].sort((a, b) => a.start - b.start || a.end - b.end), next: 0 };
    r.viewers.set(outbox, state);
    outbox.send({
      type: 'viewer_ready',
      meetingId,
      participants: [...r.participants.values()].map((p) => ({ sessionId: p.sessionId, speaker: p.speaker })),
      replay: r.finals.length,
      truncated: r.truncated,
    });
    this.#pump(outbox, state);
    return null;
  }

  /** The viewer's socket drained: continue its replay. */
  drained(meetingId: string, outbox: Outbox): void {
    const st = this.#rooms.get(meetingId)?.viewers.get(outbox);
    if (st) this.#pump(outbox, st);
  }

  #pump(outbox: Outbox, st: ViewerState): void {
    if (!st.replay) return;
    while (st.next < st.replay.length && !outbox.congested && !outbox.closed) outbox.send(st.replay[st.next++]!);
    if (st.next >= st.replay.length) st.replay = null;
  }

  removeViewer(meetingId: string, outbox: Outbox): void {
    const r = this.#rooms.get(meetingId);
    if (!r) return;
    r.viewers.delete(outbox);
    if (!r.participants.size && !r.viewers.size) r.idleSince = Date.now();
  }

  #broadcast(r: Room, msg: Unsequenced<ServerMessage>): void {
    for (const [v, st] of r.viewers) {
      if (st.replay) st.replay.push(msg);
      else v.send(msg);
    }
  }

  #tick(): void {
    const now = Date.now();
    const stallMs = this.#opts.stalledReaderSeconds * 1000;
    for (const r of this.#rooms.values()) {
      for (const [v, st] of [...r.viewers]) {
        if (v.closed) {
          r.viewers.delete(v);
          continue;
        }
        const behind = st.replay ? st.replay.length - st.next : 0;
        if (v.congestedFor(now) > stallMs || v.overflowed || behind > this.#opts.maxReplayFinals * 2) {
          this.slowViewersDropped++;
          this.#opts.onSlowViewer?.();
          r.viewers.delete(v);
          v.close(CloseCode.SLOW_READER, 'slow_reader');
        }
      }
      if (!r.participants.size && !r.viewers.size && now - r.idleSince > this.#opts.retentionSeconds * 1000) {
        this.#rooms.delete(r.id);
      }
    }
  }

  close(): void {
    clearInterval(this.#sweep);
    for (const r of this.#rooms.values()) for (const v of r.viewers.keys()) v.close(CloseCode.SERVER_SHUTDOWN, 'server_shutdown');
    this.#rooms.clear();
  }
}
