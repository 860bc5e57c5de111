/**
 * Meetings: sessions that carry the same `meta.meetingId` are participants
 * of one room; viewers on `GET /v1/meetings/:id/captions` receive every
 * participant's partials and finals, tagged with the speaker's name and an
 * opaque per-meeting `participant` id, on the meeting's timeline (seconds
 * since the first participant started). A joining viewer first gets the
 * finals so far, sorted by start.
 *
 * Bounded, and nobody holds a place without bound:
 * - rooms are made by speakers only, at most `maxMeetings`. A viewer of a
 *   meeting that has no speaker yet waits outside any room (waiting
 *   viewers are bounded per address and per token) and joins the room when
 *   it opens. A speaker whose room cannot be made is told so (a warning).
 * - `maxViewersPerMeeting` viewers per room, `maxViewersPerToken` of them
 *   with one token;
 * - each room's replay holds at most `maxReplayBytes` of finals (oldest go
 *   first, and joining viewers are told how many); empty rooms expire
 *   after `retentionSeconds`.
 * Each viewer has its own Outbox, so a slow viewer is coalesced and then
 * dropped without slowing speakers or other viewers.
 *
 * Viewer messages carry the meeting's own `seq`, one counter per room for
 * everything it broadcasts, so a viewer that reconnects with `?lastSeq=n`
 * gets the finals after n (in the order they were made) and then the live
 * feed; the replay to a new viewer is the same finals, sorted by start,
 * each with its own seq.
 *
 * Session ids are not shown to viewers unless the viewer may read that
 * session's caption file anyway (`canRead`): the id is a handle on the file.
 */
import { randomBytes } from 'node:crypto';

import { finalBytes } from '../captions/archive.js';
import type { CaptionEvent } from '../captions/stabilizer.js';
import { CloseCode, GatewayError } from '../errors.js';
import type { FinalMessage, PartialMessage, ServerMessage, Unsequenced } from '../protocol/messages.js';
import type { Outbox } from '../session/outbox.js';

export interface MeetingOptions {
  readonly maxMeetings: number;
  readonly maxViewersPerMeeting: number;
  readonly maxViewersPerToken: number;
  readonly maxWaitingViewersPerAddress: number;
  readonly maxWaitingViewersPerToken: number;
  readonly maxReplayBytes: number;
  readonly retentionSeconds: number;
  readonly stalledReaderSeconds: number;
  /** Called when a viewer is dropped for not reading (metrics). */
  readonly onSlowViewer?: () => void;
}

export interface Participant {
  readonly sessionId: string;
  readonly speaker: string;
  readonly startedAt: number;
  /** The identity that owns the session (null with auth off). */
  readonly owner: string | null;
}

/** Who a viewer is. */
export interface ViewerIdentity {
  readonly address: string;
  /** Token identity (null with auth off). */
  readonly token: string | null;
  /** May this viewer read the caption file of a session with this owner? Then it may see the session's id. */
  canRead(owner: string | null): boolean;
}

/**
 * A viewer still catching up on the replay gets it paced by its socket:
 * items go out only while the socket is not backed up, the rest follow on
 * drain. Live messages that arrive meanwhile wait behind the replay.
 */
interface ViewerState {
  readonly who: ViewerIdentity;
  replay: Stamped[] | null;
  next: number;
}

/** A viewer message and the meeting seq it carries. */
interface Stamped {
  readonly msg: Unsequenced<ServerMessage>;
  readonly seq: number;
}

interface Member extends Participant {
  /** Opaque id shown to viewers. */
  readonly participant: string;
}

interface Room {
  readonly id: string;
  readonly startedAt: number;
  readonly participants: Map<string, Member>;
  readonly viewers: Map<Outbox, ViewerState>;
  /** Finals for the replay, with their session's id and owner (who may see the id). */
  finals: { msg: Unsequenced<FinalMessage>; seq: number; sessionId: string; owner: string | null; bytes: number }[];
  replayBytes: number;
  truncated: number;
  /** The meeting seq of the newest final dropped from the replay (0: none). */
  lastDroppedSeq: number;
  /** The last meeting seq stamped. */
  seq: number;
  idleSince: number;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const opaqueId = () => randomBytes(6).toString('base64url');

export class MeetingHub {
  #opts: MeetingOptions;
  #rooms = new Map<string, Room>();
  /** Viewers of meetings with no room yet. */
  #waiting = new Map<string, Map<Outbox, ViewerState>>();
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

  /** The most memory replays can hold. */
  budgetBytes(): number {
    return this.#opts.maxMeetings * this.#opts.maxReplayBytes;
  }

  /** Viewers across all meetings (waiting ones included), and participants (leak checks). */
  totals(): { meetings: number; viewers: number; waitingViewers: number; participants: number; maxViewerQueuedBytes: number } {
    let viewers = 0;
    let participants = 0;
    let waitingViewers = 0;
    let maxViewerQueuedBytes = 0;
    for (const r of this.#rooms.values()) {
      viewers += r.viewers.size;
      participants += r.participants.size;
      for (const v of r.viewers.keys()) maxViewerQueuedBytes = Math.max(maxViewerQueuedBytes, v.queuedBytes);
    }
    for (const w of this.#waiting.values()) waitingViewers += w.size;
    return { meetings: this.#rooms.size, viewers: viewers + waitingViewers, waitingViewers, participants, maxViewerQueuedBytes };
  }

  viewers(meetingId: string): number {
    return (this.#rooms.get(meetingId)?.viewers.size ?? 0) + (this.#waiting.get(meetingId)?.size ?? 0);
  }

  /**
   * A speaker joined. Returns an error when its captions cannot be shared
   * (the room cannot be made): the session still works, and is told so.
   */
  joined(meetingId: string, p: Participant, clock?: number): GatewayError | null {
    let r = this.#rooms.get(meetingId);
    if (!r) {
      if (this.#rooms.size >= this.#opts.maxMeetings) {
        return new GatewayError(
          'CAP_ERR_CAPACITY',
          `captions of this session are not shared with meeting ${meetingId}'s viewers: the server already has ${this.#opts.maxMeetings} meetings (meetings.maxMeetings)`,
        );
      }
      r = {
        id: meetingId,
        // A participant continued from another node brings the meeting's clock.
        startedAt: clock ?? p.startedAt,
        participants: new Map(),
        viewers: new Map(),
        finals: [],
        replayBytes: 0,
        truncated: 0,
        lastDroppedSeq: 0,
        seq: 0,
        idleSince: Date.now(),
      };
      this.#rooms.set(meetingId, r);
      // Viewers who were waiting for this meeting come in.
      const waiting = this.#waiting.get(meetingId);
      if (waiting) {
        this.#waiting.delete(meetingId);
        for (const [outbox, st] of waiting) r.viewers.set(outbox, st);
      }
    }
    const m: Member = { ...p, participant: opaqueId() };
    r.participants.set(p.sessionId, m);
    this.#broadcast(r, (st) => ({ type: 'participant', event: 'joined', ...this.#tag(m, st.who) }));
    return null;
  }

  left(meetingId: string, sessionId: string): void {
    const r = this.#rooms.get(meetingId);
    const m = r?.participants.get(sessionId);
    if (!r || !m) return;
    r.participants.delete(sessionId);
    this.#broadcast(r, (st) => ({ type: 'participant', event: 'left', ...this.#tag(m, st.who) }));
    if (!r.participants.size && !r.viewers.size) r.idleSince = Date.now();
  }

  /** Speaker name, participant id, and the session id where this viewer may see it. */
  #tag(m: Member, who: ViewerIdentity): { speaker: string; participant: string; sessionId?: string } {
    return who.canRead(m.owner) ? { speaker: m.speaker, participant: m.participant, sessionId: m.sessionId } : { speaker: m.speaker, participant: m.participant };
  }

  /** The meeting's clock (its first participant's start, ms since the epoch); null without a room. */
  clock(meetingId: string): number | null {
    return this.#rooms.get(meetingId)?.startedAt ?? null;
  }

  /** A participant's caption: shift onto the meeting timeline, keep finals, fan out. */
  publish(meetingId: string, sessionId: string, ev: CaptionEvent): void {
    const r = this.#rooms.get(meetingId);
    const m = r?.participants.get(sessionId);
    if (!r || !m) return;
    const offset = (m.startedAt - r.startedAt) / 1000;
    // Built once per caption; each viewer gets the one its rights allow.
    const shifted = { speaker: m.speaker, participant: m.participant, start: round3(ev.start + offset), end: round3(ev.end + offset) };
    let plain: Unsequenced<FinalMessage> | Unsequenced<PartialMessage>;
    if (ev.type === 'final') {
      const f: Unsequenced<FinalMessage> = {
        ...ev,
        ...shifted,
        words: ev.words.map((w) => ({ ...w, start: round3(w.start + offset), end: round3(w.end + offset) })),
      };
      if (f.text) this.#keep(r, f, m, r.seq + 1); // the seq #broadcast stamps next
      plain = f;
    } else {
      plain = { ...ev, ...shifted };
    }
    const withId = { ...plain, sessionId };
    this.#broadcast(r, (st) => (st.who.canRead(m.owner) ? withId : plain));
  }

  #keep(r: Room, f: Unsequenced<FinalMessage>, m: Member, seq: number): void {
    const bytes = finalBytes(f);
    r.finals.push({ msg: f, seq, sessionId: m.sessionId, owner: m.owner, bytes });
    r.replayBytes += bytes;
    let drop = 0;
    while (r.replayBytes > this.#opts.maxReplayBytes && drop < r.finals.length - 1) r.replayBytes -= r.finals[drop++]!.bytes;
    if (drop) {
      r.lastDroppedSeq = r.finals[drop - 1]!.seq;
      r.finals.splice(0, drop);
      r.truncated += drop;
    }
  }

  /** The meeting's kept finals with their session ids, by start (its caption file without a store); null if there is no room. */
  meetingFinals(meetingId: string): (Unsequenced<FinalMessage> & { sessionId: string })[] | null {
    const r = this.#rooms.get(meetingId);
    if (!r) return null;
    return r.finals.map(({ msg, sessionId }) => ({ ...msg, sessionId })).sort((a, b) => a.start - b.start || a.end - b.end);
  }

  /**
   * Adds a viewer (waiting, if the meeting has no room yet) and replays the
   * finals so far, sorted by start; a returning viewer (lastSeq) gets only
   * the finals after its lastSeq, in seq order.
   */
  addViewer(meetingId: string, outbox: Outbox, who: ViewerIdentity, lastSeq: number | null = null): GatewayError | null {
    const r = this.#rooms.get(meetingId);
    const o = this.#opts;
    const inRoom = r ? [...r.viewers.values()] : [];
    const waitingHere = this.#waiting.get(meetingId);
    if (r && r.viewers.size >= o.maxViewersPerMeeting) {
      return new GatewayError('CAP_ERR_CAPACITY', `meeting ${meetingId} already has ${o.maxViewersPerMeeting} viewers`, 5000);
    }
    if (who.token !== null) {
      const mine = [...inRoom, ...(waitingHere?.values() ?? [])].filter((v) => v.who.token === who.token).length;
      if (mine >= o.maxViewersPerToken) {
        return new GatewayError('CAP_ERR_TOO_MANY_CONNECTIONS', `this token already holds ${mine} viewer places in meeting ${meetingId} (meetings.maxViewersPerToken)`, 5000);
      }
    }
    if (!r) {
      let byAddress = 0;
      let byToken = 0;
      for (const w of this.#waiting.values()) {
        for (const v of w.values()) {
          if (v.who.address === who.address) byAddress++;
          if (who.token !== null && v.who.token === who.token) byToken++;
        }
      }
      if (byAddress >= o.maxWaitingViewersPerAddress || (who.token !== null && byToken >= o.maxWaitingViewersPerToken)) {
        return new GatewayError(
          'CAP_ERR_TOO_MANY_CONNECTIONS',
          `too many viewers waiting for meetings that have not started, from this ${byAddress >= o.maxWaitingViewersPerAddress ? 'address' : 'token'} ` +
            '(meetings.maxWaitingViewersPerAddress / PerToken)',
          5000,
        );
      }
    }
    const finals = r?.finals ?? [];
    const sorted =
      lastSeq === null ? [...finals].sort((a, b) => a.msg.start - b.msg.start || a.msg.end - b.msg.end) : finals.filter((f) => f.seq > lastSeq);
    const state: ViewerState = {
      who,
      replay: sorted.map(({ msg, seq, sessionId, owner }) => ({ msg: who.canRead(owner) ? { ...msg, sessionId } : msg, seq })),
      next: 0,
    };
    if (r) r.viewers.set(outbox, state);
    else {
      let w = this.#waiting.get(meetingId);
      if (!w) this.#waiting.set(meetingId, (w = new Map()));
      w.set(outbox, state);
    }
    // Finals after lastSeq that are no longer kept were lost to this viewer.
    const truncated = !r ? 0 : lastSeq === null || lastSeq < r.lastDroppedSeq ? r.truncated : 0;
    outbox.sendAt(
      {
        type: 'viewer_ready',
        meetingId,
        participants: r ? [...r.participants.values()].map((m) => this.#tag(m, who)) : [],
        replay: sorted.length,
        truncated,
      },
      r?.seq ?? 0,
    );
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
    while (st.next < st.replay.length && !outbox.congested && !outbox.closed) {
      const { msg, seq } = st.replay[st.next++]!;
      outbox.sendAt(msg, seq);
    }
    if (st.next >= st.replay.length) st.replay = null;
  }

  removeViewer(meetingId: string, outbox: Outbox): void {
    const w = this.#waiting.get(meetingId);
    if (w?.delete(outbox) && !w.size) this.#waiting.delete(meetingId);
    const r = this.#rooms.get(meetingId);
    if (!r) return;
    r.viewers.delete(outbox);
    if (!r.participants.size && !r.viewers.size) r.idleSince = Date.now();
  }

  #broadcast(r: Room, messageFor: (st: ViewerState) => Unsequenced<ServerMessage>): void {
    const seq = ++r.seq;
    for (const [v, st] of r.viewers) {
      const msg = messageFor(st);
      if (st.replay) st.replay.push({ msg, seq });
      else v.sendAt(msg, seq);
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
        if (v.congestedFor(now) > stallMs || v.overflowed || behind > r.finals.length * 2 + 1000) {
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
    for (const [id, w] of this.#waiting) {
      for (const v of [...w.keys()]) if (v.closed) w.delete(v);
      if (!w.size) this.#waiting.delete(id);
    }
  }

  /** Closes every viewer: 4006, or 4014 "reconnect" when other nodes serve the meeting (a drain). */
  close(reconnect = false): void {
    clearInterval(this.#sweep);
    const [code, reason] = reconnect ? [CloseCode.RECONNECT, 'reconnect'] : [CloseCode.SERVER_SHUTDOWN, 'server_shutdown'];
    for (const r of this.#rooms.values()) for (const v of r.viewers.keys()) v.close(code, reason);
    for (const w of this.#waiting.values()) for (const v of w.keys()) v.close(code, reason);
    this.#rooms.clear();
    this.#waiting.clear();
  }
}
