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
 *
 * Across nodes (`redis.url` set, `streams` given): every participant event
 * goes through the meeting's Redis Stream (src/bus/meeting-streams.ts),
 * which gives it the meeting's seq; a node keeps a room only for meetings
 * it has viewers of, as a mirror of the stream (its replay, participants
 * and seq), fed by the node's one reader, and encodes each event once per
 * wire format for all its viewers. Viewers on the speaker's own node read
 * the stream too, so every viewer sees one order. The limits above hold
 * per node (`maxMeetings` bounds the meetings a node has participants in,
 * and the mirrors it keeps). Without Redis all of this stays in process.
 */
import { randomBytes } from 'node:crypto';

import type { MeetingSnapshot, MeetingStreams, StreamEntry } from '../bus/meeting-streams.js';
import { finalBytes } from '../captions/archive.js';
import type { CaptionEvent } from '../captions/stabilizer.js';
import { CloseCode, GatewayError } from '../errors.js';
import { encodeServerMessage } from '../protocol/codec.js';
import type { FinalMessage, PartialMessage, ServerMessage, Unsequenced, WireMode } from '../protocol/messages.js';
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
  /** Meetings across nodes through Redis (null or absent: in process). */
  readonly streams?: MeetingStreams | null;
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

/** What happens in a meeting: applied to a room in process, or sent through its stream (as JSON). */
type MeetingEvent =
  | { readonly k: 'joined'; readonly m: Member }
  | { readonly k: 'left'; readonly m: Member }
  | { readonly k: 'caption'; readonly m: Member; readonly ev: CaptionEvent };

interface KeptFinal {
  msg: Unsequenced<FinalMessage>;
  seq: number;
  sessionId: string;
  owner: string | null;
  bytes: number;
}

interface Room {
  readonly id: string;
  /** The meeting's start (ms); NaN in a mirror until the stream says. */
  startedAt: number;
  readonly participants: Map<string, Member>;
  readonly viewers: Map<Outbox, ViewerState>;
  /** Finals for the replay, with their session's id and owner (who may see the id). */
  finals: KeptFinal[];
  replayBytes: number;
  truncated: number;
  /** The meeting seq of the newest final dropped from the replay (0: none). */
  lastDroppedSeq: number;
  /** The last meeting seq stamped. */
  seq: number;
  idleSince: number;
  /** A mirror of a meeting's stream (Redis), else null. */
  mirror: Mirror | null;
}

interface Mirror {
  /** The snapshot is in: viewers can be served. */
  loaded: boolean;
  /** The meeting exists in Redis (someone spoke in it). */
  exists: boolean;
  /** Viewers who came before the snapshot, with their lastSeq. */
  readonly pending: Map<Outbox, { who: ViewerIdentity; lastSeq: number | null }>;
  /** Per publishing node, the last event number applied (exactly once). */
  readonly origins: Map<string, number>;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const opaqueId = () => randomBytes(6).toString('base64url');
/** A mirror with no viewers is dropped after this long (a viewer reconnecting soon finds it). */
const MIRROR_LINGER_MS = 5000;

export class MeetingHub {
  #opts: MeetingOptions;
  #streams: MeetingStreams | null;
  #rooms = new Map<string, Room>();
  /** Viewers of meetings with no room yet (in process only). */
  #waiting = new Map<string, Map<Outbox, ViewerState>>();
  /** Across nodes: this node's participants, per meeting. */
  #local = new Map<string, Map<string, Member>>();
  #sweep: NodeJS.Timeout;
  /** Viewers dropped as slow readers (metrics/tests). */
  slowViewersDropped = 0;
  /** Across nodes: stream events skipped as already applied (tests). */
  duplicatesSkipped = 0;

  constructor(opts: MeetingOptions) {
    this.#opts = opts;
    this.#streams = opts.streams ?? null;
    this.#sweep = setInterval(() => this.#tick(), 500);
    this.#sweep.unref();
  }

  get meetings(): number {
    return this.#streams ? this.#local.size : this.#rooms.size;
  }

  /** The most memory replays (and, across nodes, the outage buffer) can hold. */
  budgetBytes(): number {
    return this.#opts.maxMeetings * this.#opts.maxReplayBytes + (this.#streams?.budgetBytes ?? 0);
  }

  /** Viewers across all meetings (waiting ones included), and participants (leak checks). */
  totals(): { meetings: number; viewers: number; waitingViewers: number; participants: number; maxViewerQueuedBytes: number } {
    let viewers = 0;
    let participants = 0;
    let waitingViewers = 0;
    let maxViewerQueuedBytes = 0;
    for (const r of this.#rooms.values()) {
      viewers += r.viewers.size + (r.mirror?.pending.size ?? 0);
      if (!this.#streams) participants += r.participants.size;
      for (const v of r.viewers.keys()) maxViewerQueuedBytes = Math.max(maxViewerQueuedBytes, v.queuedBytes);
    }
    for (const m of this.#local.values()) participants += m.size;
    for (const w of this.#waiting.values()) waitingViewers += w.size;
    return { meetings: this.meetings, viewers: viewers + waitingViewers, waitingViewers, participants, maxViewerQueuedBytes };
  }

  viewers(meetingId: string): number {
    const r = this.#rooms.get(meetingId);
    return (r?.viewers.size ?? 0) + (r?.mirror?.pending.size ?? 0) + (this.#waiting.get(meetingId)?.size ?? 0);
  }

  #newRoom(id: string, startedAt: number, mirror: Mirror | null): Room {
    return {
      id,
      startedAt,
      participants: new Map(),
      viewers: new Map(),
      finals: [],
      replayBytes: 0,
      truncated: 0,
      lastDroppedSeq: 0,
      seq: 0,
      idleSince: Date.now(),
      mirror,
    };
  }

  #tooManyMeetings(meetingId: string): GatewayError {
    return new GatewayError(
      'CAP_ERR_CAPACITY',
      `captions of this session are not shared with meeting ${meetingId}'s viewers: the server already has ${this.#opts.maxMeetings} meetings (meetings.maxMeetings)`,
    );
  }

  /**
   * A speaker joined. Returns an error when its captions cannot be shared
   * (the room cannot be made): the session still works, and is told so.
   */
  /**
   * `clock`: the meeting's start, brought by a participant continued from
   * another node (without Redis, this node may not know the meeting yet).
   * With Redis the meeting's stream keeps the clock.
   */
  joined(meetingId: string, p: Participant, clock?: number): GatewayError | null {
    const m: Member = { ...p, participant: opaqueId() };
    if (this.#streams) {
      let local = this.#local.get(meetingId);
      if (!local) {
        if (this.#local.size >= this.#opts.maxMeetings) return this.#tooManyMeetings(meetingId);
        this.#local.set(meetingId, (local = new Map()));
      }
      local.set(p.sessionId, m);
      this.#streams.hold(meetingId);
      this.#send(meetingId, { k: 'joined', m });
      return null;
    }
    let r = this.#rooms.get(meetingId);
    if (!r) {
      if (this.#rooms.size >= this.#opts.maxMeetings) return this.#tooManyMeetings(meetingId);
      r = this.#newRoom(meetingId, clock ?? p.startedAt, null);
      this.#rooms.set(meetingId, r);
      // Viewers who were waiting for this meeting come in.
      const waiting = this.#waiting.get(meetingId);
      if (waiting) {
        this.#waiting.delete(meetingId);
        for (const [outbox, st] of waiting) r.viewers.set(outbox, st);
      }
    }
    this.#apply(r, r.seq + 1, { k: 'joined', m });
    return null;
  }

  left(meetingId: string, sessionId: string): void {
    if (this.#streams) {
      const local = this.#local.get(meetingId);
      const m = local?.get(sessionId);
      if (!local || !m) return;
      local.delete(sessionId);
      if (!local.size) this.#local.delete(meetingId);
      this.#send(meetingId, { k: 'left', m });
      this.#streams.release(meetingId);
      return;
    }
    const r = this.#rooms.get(meetingId);
    const m = r?.participants.get(sessionId);
    if (!r || !m) return;
    this.#apply(r, r.seq + 1, { k: 'left', m });
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
    if (this.#streams) {
      const m = this.#local.get(meetingId)?.get(sessionId);
      if (m) this.#send(meetingId, { k: 'caption', m, ev });
      return;
    }
    const r = this.#rooms.get(meetingId);
    const m = r?.participants.get(sessionId);
    if (!r || !m) return;
    this.#apply(r, r.seq + 1, { k: 'caption', m, ev });
  }

  /** Across nodes: an event into the meeting's stream (its seq comes back with it). */
  #send(meetingId: string, e: MeetingEvent): void {
    const kind = e.k === 'joined' ? 'j' : e.k === 'left' ? 'l' : e.ev.type === 'final' && e.ev.text ? 'f' : 'p';
    this.#streams!.publish(meetingId, {
      kind,
      body: JSON.stringify(e),
      startedAt: e.m.startedAt,
      sessionId: e.m.sessionId,
      ...(e.k === 'joined' ? { participant: JSON.stringify(e.m), leftBody: JSON.stringify({ k: 'left', m: e.m }) } : {}),
    });
  }

  /** One event, with its meeting seq, into a room: participants, replay, fan-out. */
  #apply(r: Room, seq: number, e: MeetingEvent): void {
    const m = e.m;
    if (e.k !== 'caption') {
      // Across nodes a participant is announced again when Redis lost it: viewers who know it hear nothing new.
      if (e.k === 'joined' && r.participants.get(m.sessionId)?.participant === m.participant) {
        r.seq = seq;
        return;
      }
      if (e.k === 'joined') r.participants.set(m.sessionId, m);
      else r.participants.delete(m.sessionId);
      const plain = { type: 'participant' as const, event: e.k, speaker: m.speaker, participant: m.participant };
      const withId = { ...plain, sessionId: m.sessionId };
      this.#broadcast(r, seq, (st) => (st.who.canRead(m.owner) ? withId : plain));
      if (e.k === 'left' && !r.participants.size && !r.viewers.size) r.idleSince = Date.now();
      return;
    }
    const ev = e.ev;
    const offset = (m.startedAt - r.startedAt) / 1000 || 0;
    // Built once per caption; each viewer gets the one its rights allow.
    const shifted = { speaker: m.speaker, participant: m.participant, start: round3(ev.start + offset), end: round3(ev.end + offset) };
    let plain: Unsequenced<FinalMessage> | Unsequenced<PartialMessage>;
    if (ev.type === 'final') {
      const f: Unsequenced<FinalMessage> = {
        ...ev,
        ...shifted,
        words: ev.words.map((w) => ({ ...w, start: round3(w.start + offset), end: round3(w.end + offset) })),
      };
      if (f.text) this.#keep(r, f, m, seq);
      plain = f;
    } else {
      plain = { ...ev, ...shifted };
    }
    const withId = { ...plain, sessionId: m.sessionId };
    this.#broadcast(r, seq, (st) => (st.who.canRead(m.owner) ? withId : plain));
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

  /**
   * The meeting's kept finals with their session ids, by start (its caption
   * file without a store); null if there is no such meeting. Across nodes,
   * read from the meeting's stream when this node has no mirror of it.
   */
  async meetingFinals(meetingId: string): Promise<(Unsequenced<FinalMessage> & { sessionId: string })[] | null> {
    let r = this.#rooms.get(meetingId);
    if (this.#streams && !r?.mirror?.loaded) {
      let snap: MeetingSnapshot;
      try {
        snap = await this.#streams.snapshot(meetingId);
      } catch {
        return null;
      }
      if (!snap.exists) return null;
      r = this.#newRoom(meetingId, NaN, { loaded: true, exists: true, pending: new Map(), origins: new Map() });
      this.#load(r, snap);
    }
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
    const pendingHere = r?.mirror ? [...r.mirror.pending.values()] : [];
    const inRoom = r ? [...r.viewers.values(), ...pendingHere] : [];
    const waitingHere = this.#waiting.get(meetingId);
    if (r && inRoom.length >= o.maxViewersPerMeeting) {
      return new GatewayError('CAP_ERR_CAPACITY', `meeting ${meetingId} already has ${o.maxViewersPerMeeting} viewers`, 5000);
    }
    if (who.token !== null) {
      const mine = [...inRoom, ...(waitingHere?.values() ?? [])].filter((v) => v.who.token === who.token).length;
      if (mine >= o.maxViewersPerToken) {
        return new GatewayError('CAP_ERR_TOO_MANY_CONNECTIONS', `this token already holds ${mine} viewer places in meeting ${meetingId} (meetings.maxViewersPerToken)`, 5000);
      }
    }
    // A meeting nobody has spoken in yet: its viewers wait, and how many may wait is bounded.
    if (!r || (r.mirror && !r.mirror.exists)) {
      let byAddress = 0;
      let byToken = 0;
      const count = (v: { who: ViewerIdentity }) => {
        if (v.who.address === who.address) byAddress++;
        if (who.token !== null && v.who.token === who.token) byToken++;
      };
      for (const w of this.#waiting.values()) for (const v of w.values()) count(v);
      for (const room of this.#rooms.values()) {
        if (!room.mirror || room.mirror.exists) continue;
        for (const v of room.viewers.values()) count(v);
        for (const v of room.mirror.pending.values()) count(v);
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
    if (this.#streams) {
      let room = r;
      if (!room) {
        let mirrors = 0;
        for (const x of this.#rooms.values()) if (x.mirror) mirrors++;
        if (mirrors >= o.maxMeetings) {
          return new GatewayError('CAP_ERR_CAPACITY', `this server already follows ${o.maxMeetings} meetings (meetings.maxMeetings)`, 5000);
        }
        room = this.#newRoom(meetingId, NaN, { loaded: false, exists: false, pending: new Map(), origins: new Map() });
        this.#rooms.set(meetingId, room);
        this.#follow(room);
      }
      if (!room.mirror!.loaded) {
        room.mirror!.pending.set(outbox, { who, lastSeq });
        return null;
      }
      this.#welcome(room, outbox, who, lastSeq);
      return null;
    }
    if (!r) {
      const state: ViewerState = { who, replay: [], next: 0 };
      let w = this.#waiting.get(meetingId);
      if (!w) this.#waiting.set(meetingId, (w = new Map()));
      w.set(outbox, state);
      outbox.sendAt({ type: 'viewer_ready', meetingId, participants: [], replay: 0, truncated: 0 }, 0);
      this.#pump(outbox, state);
      return null;
    }
    this.#welcome(r, outbox, who, lastSeq);
    return null;
  }

  /** viewer_ready, then the replay (paced by the socket), then live. */
  #welcome(r: Room, outbox: Outbox, who: ViewerIdentity, lastSeq: number | null): void {
    const finals = r.finals;
    const sorted =
      lastSeq === null ? [...finals].sort((a, b) => a.msg.start - b.msg.start || a.msg.end - b.msg.end) : finals.filter((f) => f.seq > lastSeq);
    const state: ViewerState = {
      who,
      replay: sorted.map(({ msg, seq, sessionId, owner }) => ({ msg: who.canRead(owner) ? { ...msg, sessionId } : msg, seq })),
      next: 0,
    };
    r.viewers.set(outbox, state);
    // Finals after lastSeq that are no longer kept were lost to this viewer.
    const truncated = lastSeq === null || lastSeq < r.lastDroppedSeq ? r.truncated : 0;
    outbox.sendAt(
      {
        type: 'viewer_ready',
        meetingId: r.id,
        participants: [...r.participants.values()].map((m) => this.#tag(m, who)),
        replay: sorted.length,
        truncated,
      },
      r.seq,
    );
    this.#pump(outbox, state);
  }

  /** Across nodes: mirror a meeting's stream for this node's viewers. */
  #follow(r: Room): void {
    this.#streams!.follow(r.id, {
      snapshot: (s) => {
        if (this.#rooms.get(r.id) !== r) return;
        this.#load(r, s);
        const pending = [...r.mirror!.pending];
        r.mirror!.pending.clear();
        for (const [outbox, p] of pending) if (!outbox.closed) this.#welcome(r, outbox, p.who, p.lastSeq);
      },
      entry: (e) => {
        if (this.#rooms.get(r.id) === r) this.#entry(r, e);
      },
    });
  }

  /** A snapshot into a mirror: participants, replay, seq; nothing is sent. */
  #load(r: Room, s: MeetingSnapshot): void {
    const mir = r.mirror!;
    mir.loaded = true;
    mir.exists = s.exists;
    r.seq = s.seq;
    if (s.start !== null) r.startedAt = s.start;
    for (const json of s.participants.values()) {
      const m = parseMember(safeJson(json));
      if (m) r.participants.set(m.sessionId, m);
    }
    let kept = 0;
    for (const e of s.entries) {
      this.#origin(r, e);
      const ev = parseEvent(e.body);
      if (ev?.k !== 'caption') continue;
      const c = ev.ev;
      if (c.type !== 'final' || !c.text) continue;
      r.startedAt = e.start;
      const offset = (ev.m.startedAt - r.startedAt) / 1000 || 0;
      const f: Unsequenced<FinalMessage> = {
        ...c,
        speaker: ev.m.speaker,
        participant: ev.m.participant,
        start: round3(c.start + offset),
        end: round3(c.end + offset),
        words: c.words.map((w) => ({ ...w, start: round3(w.start + offset), end: round3(w.end + offset) })),
      };
      this.#keep(r, f, ev.m, e.seq);
      kept++;
    }
    // Finals the stream no longer holds (redis.meetingMaxLen).
    const trimmed = Math.max(0, s.finals - kept);
    if (trimmed) {
      r.truncated += trimmed;
      r.lastDroppedSeq = Math.max(r.lastDroppedSeq, (s.entries[0]?.seq ?? s.seq + 1) - 1);
    }
  }

  /** Records an entry's origin; false if it was applied before (resent after a lost reply or a Redis restart). */
  #origin(r: Room, e: StreamEntry): boolean {
    const i = e.origin.lastIndexOf(':');
    const node = e.origin.slice(0, i);
    const n = Number(e.origin.slice(i + 1));
    const origins = r.mirror!.origins;
    if (n <= (origins.get(node) ?? 0)) return false;
    origins.set(node, n);
    return true;
  }

  #entry(r: Room, e: StreamEntry): void {
    if (!this.#origin(r, e)) {
      this.duplicatesSkipped++;
      return;
    }
    const ev = parseEvent(e.body);
    if (!ev) return;
    r.mirror!.exists = true;
    r.startedAt = e.start;
    // After Redis lost its data, a node that knew little may restart the seq low: never go back.
    this.#apply(r, Math.max(e.seq, r.seq + 1), ev);
  }

  /** The viewer's socket drained: continue its replay. */
  drained(meetingId: string, outbox: Outbox): void {
    const st = this.#rooms.get(meetingId)?.viewers.get(outbox) ?? this.#waiting.get(meetingId)?.get(outbox);
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
    r.mirror?.pending.delete(outbox);
    if (!r.participants.size && !r.viewers.size) r.idleSince = Date.now();
    if (r.mirror && !r.viewers.size && !r.mirror.pending.size) r.idleSince = Date.now();
  }

  /** Stamps the room's seq and sends to every viewer, encoding each distinct message once per wire format. */
  #broadcast(r: Room, seq: number, messageFor: (st: ViewerState) => Unsequenced<ServerMessage>): void {
    r.seq = seq;
    const encoded = new Map<Unsequenced<ServerMessage>, Partial<Record<WireMode, string | Uint8Array>>>();
    for (const [v, st] of r.viewers) {
      const msg = messageFor(st);
      if (st.replay) {
        st.replay.push({ msg, seq });
        continue;
      }
      let byMode = encoded.get(msg);
      if (!byMode) encoded.set(msg, (byMode = {}));
      const data = (byMode[v.mode] ??= encodeServerMessage({ ...msg, seq } as ServerMessage, v.mode));
      v.sendEncoded(data, msg.type);
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
      if (r.mirror) {
        for (const v of [...r.mirror.pending.keys()]) if (v.closed) r.mirror.pending.delete(v);
        if (!r.viewers.size && !r.mirror.pending.size && now - r.idleSince > MIRROR_LINGER_MS) {
          this.#rooms.delete(r.id);
          this.#streams?.unfollow(r.id);
        }
        continue;
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
    for (const r of this.#rooms.values()) {
      for (const v of r.viewers.keys()) v.close(code, reason);
      if (r.mirror) for (const v of r.mirror.pending.keys()) v.close(code, reason);
    }
    for (const w of this.#waiting.values()) for (const v of w.keys()) v.close(code, reason);
    this.#rooms.clear();
    this.#waiting.clear();
    this.#local.clear();
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return null;
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function parseMember(v: unknown): Member | null {
  if (!isObj(v)) return null;
  const { sessionId, speaker, participant, startedAt, owner } = v;
  if (typeof sessionId !== 'string' || typeof speaker !== 'string' || typeof participant !== 'string' || !isNum(startedAt)) return null;
  if (owner !== null && typeof owner !== 'string') return null;
  return { sessionId, speaker, participant, startedAt, owner };
}

/** The one validator of a meeting event read back from a stream (another node, or an older version, wrote it). */
function parseEvent(body: string): MeetingEvent | null {
  const v = safeJson(body);
  if (!isObj(v)) return null;
  const m = parseMember(v.m);
  if (!m) return null;
  if (v.k === 'joined') return { k: 'joined', m };
  if (v.k === 'left') return { k: 'left', m };
  if (v.k !== 'caption' || !isObj(v.ev)) return null;
  const ev = v.ev;
  if (typeof ev.text !== 'string' || !isNum(ev.start) || !isNum(ev.end) || !isNum(ev.segment)) return null;
  if (ev.type === 'partial') {
    if (!isNum(ev.revision)) return null;
    return { k: 'caption', m, ev: { type: 'partial', segment: ev.segment, revision: ev.revision, text: ev.text, start: ev.start, end: ev.end } };
  }
  if (ev.type !== 'final' || !Array.isArray(ev.words)) return null;
  const words = [];
  for (const w of ev.words as unknown[]) {
    if (!isObj(w) || typeof w.word !== 'string' || !isNum(w.start) || !isNum(w.end) || !isNum(w.confidence)) return null;
    words.push({ word: w.word, start: w.start, end: w.end, confidence: w.confidence });
  }
  return { k: 'caption', m, ev: { type: 'final', segment: ev.segment, text: ev.text, start: ev.start, end: ev.end, words } };
}
