/**
 * Meetings across nodes, through Redis Streams. This module moves opaque
 * meeting events (the hub owns their content, src/meetings/hub.ts); it owns
 * the keys, the order, the outage buffer and the one reader per node.
 *
 * Keys, per meeting (hash-tagged so one meeting stays in one cluster slot):
 *   <prefix>meeting:{<id>}:meta    hash: seq (the meeting's last seq), start (ms of its
 *                                  first participant), finals (count), p:<node> (dedupe)
 *   <prefix>meeting:{<id>}:stream  the events, XADD MAXLEN ~ redis.meetingMaxLen
 *   <prefix>meeting:{<id>}:parts   hash: session id -> {n: node, p: participant, l: its "left" event}
 *                                  (for viewers who join later, and for reaping)
 * All three expire `retentionMs` after the last node that has a participant
 * or a viewer in the meeting stopped renewing them (heartbeat).
 *
 * Order. One Lua script assigns the meeting seq and XADDs in one step, so
 * stream order = seq order = the meeting's order, whichever node published.
 * A node sends its events in the order they happened (one batch in flight).
 *
 * Exactly once. Each node numbers its events (`o` = node:n, one growing counter per node).
 * The script skips an event whose number it has already taken (a batch
 * resent after its reply was lost), and readers skip one they already
 * applied (an event resent to a Redis that restarted without its data).
 *
 * Outage. Publishing never waits for Redis. While it is away, finals and
 * participant events queue here, finals up to `redis.outageBufferBytes` (then the
 * newest are dropped, counted and logged; participant events, one pair per
 * session, always queue); partials are dropped (a final
 * supersedes them). When Redis is back the queue goes out first, in order.
 * Readers go on from the last stream id they applied, so viewers get the
 * finals of the outage afterwards, once each.
 *
 * Participants of a node that died. Every node that follows a meeting
 * checks, each heartbeat, that the nodes of its participants still hold
 * their lease (Bus.nodeKey); for one that has not for `leaseMs` more (a
 * Redis that lost its data lost the leases too, until the next renewal;
 * so a dead node's participants leave 1-2 leases after it died), a Lua step removes the
 * participant and appends the "left" event it stored when it joined (once,
 * whoever notices first). A node that was only cut off from Redis for
 * longer than its lease puts its participants back when it returns (their
 * "joined" again), as it does after Redis lost its data.
 *
 * Redis restarted without its data: the first event of a meeting it no
 * longer knows restores the meeting's start from the publisher's memory and
 * continues the seq above the highest one that node has seen (plus a gap,
 * SEQ_GAP), so viewers' seqs keep growing.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';

import type { Bus } from './bus.js';

/** How far seqs jump when Redis lost a meeting's data (see above). */
export const SEQ_GAP = 1_000_000;
/** Events per publish batch, and per XREAD reply. */
const BATCH = 512;
/** XREAD BLOCK timeout: how long the reader waits before it looks again. */
const BLOCK_MS = 5000;

const PUBLISH_LUA = `
local meta, stream, parts = KEYS[1], KEYS[2], KEYS[3]
local node, n = ARGV[1], tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', meta, 'p:' .. node) or '0')
if n <= last then return {0, 0} end
local seq
if redis.call('HEXISTS', meta, 'seq') == 1 then
  seq = redis.call('HINCRBY', meta, 'seq', 1)
else
  local floor = tonumber(ARGV[3])
  if floor > 0 then seq = floor + ${SEQ_GAP} else seq = 1 end
  redis.call('HSET', meta, 'seq', seq)
end
local start = redis.call('HGET', meta, 'start')
if not start then
  start = ARGV[7]
  redis.call('HSET', meta, 'start', start)
end
redis.call('HSET', meta, 'p:' .. node, n)
local kind = ARGV[8]
if kind == 'j' then redis.call('HSET', parts, ARGV[9], ARGV[10])
elseif kind == 'l' then redis.call('HDEL', parts, ARGV[9])
elseif kind == 'f' then redis.call('HINCRBY', meta, 'finals', 1) end
redis.call('XADD', stream, 'MAXLEN', '~', ARGV[5], '*', 'seq', seq, 'start', start, 'o', node .. ':' .. n, 'b', ARGV[4])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
return {seq, tonumber(start)}
`;

const REAP_LUA = `
local meta, stream, parts = KEYS[1], KEYS[2], KEYS[3]
local v = redis.call('HGET', parts, ARGV[1])
if not v then return 0 end
local rec = cjson.decode(v)
if redis.call('EXISTS', ARGV[2] .. rec.n) == 1 then return 0 end
if redis.call('HEXISTS', meta, 'seq') == 0 then return 0 end
redis.call('HDEL', parts, ARGV[1])
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local start = redis.call('HGET', meta, 'start') or '0'
redis.call('XADD', stream, 'MAXLEN', '~', ARGV[3], '*', 'seq', seq, 'start', start, 'o', 'reap/' .. ARGV[1] .. ':' .. ARGV[5], 'b', rec.l)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
return seq
`;

/** What a publisher hands over: the hub's own serialized event. */
export interface PublishedEvent {
  /** j: a participant joined; l: left; f: a final (kept through an outage); p: a partial (dropped in one). */
  readonly kind: 'j' | 'l' | 'f' | 'p';
  readonly body: string;
  /** The participant's start (ms): the meeting's start if it is the first. */
  readonly startedAt: number;
  /** j/l: the participant's session id, and (j) what viewers who join later are told. */
  readonly sessionId?: string;
  readonly participant?: string;
  /** j: the participant's "left" event, published for it if its node dies. */
  readonly leftBody?: string;
}

/** One event as read back from the stream. */
export interface StreamEntry {
  readonly id: string;
  readonly seq: number;
  /** The meeting's start (ms). */
  readonly start: number;
  /** Publisher node and its number for this event (dedupe). */
  readonly origin: string;
  readonly body: string;
}

/** A meeting as it stands in Redis, read in one step. */
export interface MeetingSnapshot {
  readonly exists: boolean;
  readonly seq: number;
  readonly start: number | null;
  /** Finals ever published (those no longer in the stream were trimmed). */
  readonly finals: number;
  /** Participant records by session id (as published with `j`). */
  readonly participants: ReadonlyMap<string, string>;
  readonly entries: readonly StreamEntry[];
}

/** What a node following a meeting is told. */
export interface MeetingFollower {
  /** The meeting as it stood when the follow (or a re-sync) began; entries after it follow. */
  snapshot(s: MeetingSnapshot): void;
  entry(e: StreamEntry): void;
}

interface Queued {
  readonly meetingId: string;
  readonly ev: PublishedEvent;
  readonly n: number;
  readonly bytes: number;
}

interface Followed {
  readonly meetingId: string;
  readonly key: string;
  readonly follower: MeetingFollower;
  /** Last stream id applied; null until the snapshot is in. */
  lastId: string | null;
  loading: boolean;
}

interface PublishState {
  /** Highest seq seen for the meeting (floor after a data loss). */
  seq: number;
  /** The meeting's start as Redis said (restored after a data loss). */
  start: number | null;
  /** Local participants and viewers: keeps the keys alive (heartbeat). */
  holds: number;
  /** When holds fell to 0 (forgotten after a while). */
  idleSince: number;
}

export interface MeetingStreamsOptions {
  readonly maxLen: number;
  /** Keys live this long after the last renewal. */
  readonly retentionMs: number;
  readonly outageBufferBytes: number;
  readonly heartbeatMs: number;
  /** A node whose lease has been missing this long (as this node sees it) is dead: its participants leave. */
  readonly leaseMs: number;
}

type PublishReply = [number, number];
type PublishFn = (meta: string, stream: string, parts: string, ...args: (string | number)[]) => Promise<PublishReply>;
type ReapFn = (meta: string, stream: string, parts: string, ...args: (string | number)[]) => Promise<number>;

export class MeetingStreams {
  #bus: Bus;
  #log: Logger;
  #opts: MeetingStreamsOptions;
  #redis: Redis & { captiongatePublish: PublishFn; captiongateReap: ReapFn };
  /** This node's participants per meeting: session id -> their "joined" event (put back if Redis lost them). */
  #mine = new Map<string, Map<string, PublishedEvent>>();
  #reaping = false;
  /** Nodes whose lease this node found missing, since when (a Redis that lost its data loses leases for a heartbeat too). */
  #missingSince = new Map<string, number>();
  #queue: Queued[] = [];
  #queuedBytes = 0;
  /**
   * This node's event number, one counter for all meetings: it only grows,
   * so each meeting's events from this node have growing numbers however
   * long the node forgets the meeting in between (dedupe needs no more).
   */
  #n = 0;
  #sending = false;
  #retry: NodeJS.Timeout | null = null;
  #state = new Map<string, PublishState>();
  #followed = new Map<string, Followed>();
  #reader: Redis;
  #readerId: number | null = null;
  #readerRunning = false;
  #closed = false;
  #heartbeat: NodeJS.Timeout;
  #offHealth: () => void;
  #dropWarned = false;
  // Metrics.
  #dropped: Counter<'kind'> | null = null;
  #publishErrors: Counter | null = null;
  /** Events applied by followers, and duplicates skipped (tests). */
  duplicatesSkipped = 0;

  constructor(bus: Bus, log: Logger, opts: MeetingStreamsOptions, registry?: Registry) {
    this.#bus = bus;
    this.#log = log.child({ component: 'meeting-streams' });
    this.#opts = opts;
    this.#redis = bus.redis as Redis & { captiongatePublish: PublishFn; captiongateReap: ReapFn };
    this.#redis.defineCommand('captiongatePublish', { numberOfKeys: 3, lua: PUBLISH_LUA });
    this.#redis.defineCommand('captiongateReap', { numberOfKeys: 3, lua: REAP_LUA });
    this.#reader = bus.blockingClient('meetings-reader');
    this.#reader.on('ready', () => {
      this.#reader.client('ID').then(
        (id) => (this.#readerId = Number(id)),
        () => {},
      );
    });
    this.#offHealth = bus.onHealth((h) => {
      if (h) this.#send();
    });
    this.#heartbeat = setInterval(() => this.#renew(), opts.heartbeatMs);
    this.#heartbeat.unref();
    if (registry) {
      const self = this;
      new Gauge({
        name: 'captiongate_meeting_bus_queued_events',
        help: 'Meeting events waiting to be published to Redis (an outage keeps finals here, up to redis.outageBufferBytes).',
        registers: [registry],
        collect() {
          this.set(self.#queue.length);
        },
      });
      new Gauge({
        name: 'captiongate_meeting_bus_queued_bytes',
        help: 'Bytes of meeting events waiting to be published to Redis.',
        registers: [registry],
        collect() {
          this.set(self.#queuedBytes);
        },
      });
      this.#dropped = new Counter({
        name: 'captiongate_meeting_bus_dropped_total',
        help: 'Meeting events not published to Redis: partials during an outage (kind=partial), finals past redis.outageBufferBytes (kind=final), events Redis refused (kind=error).',
        labelNames: ['kind'],
        registers: [registry],
      });
      this.#publishErrors = new Counter({ name: 'captiongate_meeting_bus_publish_errors_total', help: 'Publish batches that failed (Redis lost or refused).', registers: [registry] });
    }
  }

  static keys(prefix: string, meetingId: string): { meta: string; stream: string; parts: string } {
    const base = `${prefix}meeting:{${meetingId}}`;
    return { meta: `${base}:meta`, stream: `${base}:stream`, parts: `${base}:parts` };
  }

  /** Bytes the outage buffer may hold (memory budget). */
  get budgetBytes(): number {
    return this.#opts.outageBufferBytes;
  }
  get queued(): number {
    return this.#queue.length;
  }

  #stateOf(meetingId: string): PublishState {
    let s = this.#state.get(meetingId);
    if (!s) this.#state.set(meetingId, (s = { seq: 0, start: null, holds: 0, idleSince: Date.now() }));
    return s;
  }

  /** A local participant or viewer is in the meeting: keep its keys alive. */
  hold(meetingId: string): void {
    this.#stateOf(meetingId).holds++;
  }
  release(meetingId: string): void {
    const s = this.#state.get(meetingId);
    if (!s) return;
    s.holds = Math.max(0, s.holds - 1);
    if (!s.holds) s.idleSince = Date.now();
  }

  /** Queues one event; it goes out at once unless Redis is away. Never throws, never waits. */
  publish(meetingId: string, ev: PublishedEvent): void {
    if (this.#closed) return;
    const bytes = (ev.body.length + (ev.participant?.length ?? 0) + (ev.leftBody?.length ?? 0)) * 2 + 64;
    if (ev.kind === 'p' && !this.#bus.healthy()) {
      this.#dropped?.inc({ kind: 'partial' });
      return;
    }
    // The same bound whether Redis is away or only slow (a hung Redis still looks connected until commands time out).
    // Participant events always queue: they are few (one pair per session) and a lost one would misstate who is there.
    if (this.#queuedBytes + bytes > this.#opts.outageBufferBytes && (ev.kind === 'f' || ev.kind === 'p')) {
      this.#dropped?.inc({ kind: ev.kind === 'p' ? 'partial' : 'final' });
      if (ev.kind === 'f' && !this.#dropWarned) {
        this.#dropWarned = true;
        this.#log.warn(
          { meeting: meetingId, queuedBytes: this.#queuedBytes },
          'redis.outageBufferBytes is full: newer meeting events are dropped until redis takes them again (viewers will miss them; caption files keep them)',
        );
      }
      return;
    }
    this.#stateOf(meetingId);
    if (ev.sessionId !== undefined && (ev.kind === 'j' || ev.kind === 'l')) {
      let mine = this.#mine.get(meetingId);
      if (ev.kind === 'j') {
        if (!mine) this.#mine.set(meetingId, (mine = new Map()));
        mine.set(ev.sessionId, ev);
      } else if (mine?.delete(ev.sessionId) && !mine.size) this.#mine.delete(meetingId);
    }
    this.#queue.push({ meetingId, ev, n: ++this.#n, bytes });
    this.#queuedBytes += bytes;
    this.#send();
  }

  /** Sends what is queued, one batch in flight, in order. */
  #send(): void {
    if (this.#sending || !this.#queue.length || this.#closed || !this.#bus.healthy()) return;
    this.#sending = true;
    const batch = this.#queue.slice(0, BATCH);
    const pipe = this.#redis.pipeline();
    const p = pipe as unknown as { captiongatePublish: (...a: (string | number)[]) => unknown };
    for (const q of batch) {
      const k = MeetingStreams.keys(this.#bus.prefix, q.meetingId);
      const st = this.#stateOf(q.meetingId);
      p.captiongatePublish(
        k.meta,
        k.stream,
        k.parts,
        this.#bus.nodeId,
        q.n,
        st.seq,
        q.ev.body,
        this.#opts.maxLen,
        this.#opts.retentionMs,
        st.start ?? q.ev.startedAt,
        q.ev.kind,
        q.ev.sessionId ?? '',
        q.ev.kind === 'j' ? JSON.stringify({ n: this.#bus.nodeId, p: q.ev.participant ?? '', l: q.ev.leftBody ?? '' }) : '',
      );
    }
    pipe.exec().then(
      (results) => this.#sent(batch, results ?? []),
      (err: unknown) => this.#sent(batch, batch.map(() => [err as Error, null])),
    );
  }

  #sent(batch: Queued[], results: [Error | null, unknown][]): void {
    this.#sending = false;
    let done = 0;
    let failed = false;
    for (let i = 0; i < batch.length; i++) {
      const q = batch[i]!;
      const [err, res] = results[i] ?? [new Error('no reply'), null];
      if (err) {
        // Lost connection: this and everything after it goes again, in order
        // (the script skips what already went in). Anything else Redis
        // refuses would be refused again: counted and dropped.
        if (!this.#bus.healthy() || isConnectionError(err)) {
          failed = true;
          break;
        }
        this.#publishErrors?.inc();
        this.#dropped?.inc({ kind: 'error' });
        this.#log.error({ err, meeting: q.meetingId }, 'redis refused a meeting event: dropped');
      } else if (Array.isArray(res)) {
        const [seq, start] = res as PublishReply;
        const st = this.#stateOf(q.meetingId);
        if (seq > st.seq) st.seq = seq;
        if (start) st.start = start;
      }
      done++;
    }
    const gone = this.#queue.splice(0, done);
    for (const q of gone) this.#queuedBytes -= q.bytes;
    if (failed) {
      this.#publishErrors?.inc();
      // Partials held for the retry are stale by the time Redis is back.
      const keep = this.#queue.filter((q) => q.ev.kind !== 'p');
      if (keep.length !== this.#queue.length) {
        this.#dropped?.inc({ kind: 'partial' }, this.#queue.length - keep.length);
        this.#queue = keep;
        this.#queuedBytes = keep.reduce((n, q) => n + q.bytes, 0);
      }
      // Again when the bus says it is back, or in a while if it never said it was gone (a command timed out).
      this.#retry ??= setTimeout(() => {
        this.#retry = null;
        this.#send();
      }, 500);
      this.#retry.unref();
      return;
    }
    this.#dropWarned = false;
    this.#send();
  }

  /** Raises this node's floor for a meeting (its readers saw this seq). */
  saw(meetingId: string, seq: number): void {
    const st = this.#stateOf(meetingId);
    if (seq > st.seq) st.seq = seq;
  }

  /** Follows a meeting: a snapshot, then every entry after it. One reader serves every followed meeting. */
  follow(meetingId: string, follower: MeetingFollower): void {
    if (this.#closed || this.#followed.has(meetingId)) return;
    const f: Followed = { meetingId, key: MeetingStreams.keys(this.#bus.prefix, meetingId).stream, follower, lastId: null, loading: false };
    this.#followed.set(meetingId, f);
    this.hold(meetingId);
    this.#load(f);
  }

  unfollow(meetingId: string): void {
    if (!this.#followed.delete(meetingId)) return;
    this.release(meetingId);
    this.#wakeReader();
  }

  /** Reads a meeting in one step (MULTI): its meta, participants and stream. */
  async snapshot(meetingId: string): Promise<MeetingSnapshot> {
    const k = MeetingStreams.keys(this.#bus.prefix, meetingId);
    const r = await this.#redis.multi().hgetall(k.meta).hgetall(k.parts).xrange(k.stream, '-', '+').exec();
    if (!r) throw new Error('redis: snapshot transaction aborted');
    for (const [err] of r) if (err) throw err;
    const meta = r[0]![1] as Record<string, string>;
    const parts = r[1]![1] as Record<string, string>;
    const raw = r[2]![1] as [string, string[]][];
    const entries: StreamEntry[] = [];
    for (const [id, fields] of raw) {
      const e = parseEntry(id, fields);
      if (e) entries.push(e);
    }
    return {
      exists: meta.seq !== undefined,
      seq: Number(meta.seq ?? 0),
      start: meta.start !== undefined ? Number(meta.start) : null,
      finals: Number(meta.finals ?? 0),
      participants: new Map(Object.entries(parts).flatMap(([sid, v]) => {
        const rec = parseParticipant(v);
        return rec ? [[sid, rec.p] as [string, string]] : [];
      })),
      entries,
    };
  }

  #load(f: Followed): void {
    if (f.loading || this.#closed) return;
    f.loading = true;
    this.snapshot(f.meetingId).then(
      (s) => {
        f.loading = false;
        if (this.#followed.get(f.meetingId) !== f) return;
        const last = s.entries.at(-1);
        f.lastId = last ? last.id : '0-0';
        if (s.seq) this.saw(f.meetingId, s.seq);
        f.follower.snapshot(s);
        this.#runReader();
        this.#wakeReader();
      },
      async (err: unknown) => {
        f.loading = false;
        this.#log.debug({ err, meeting: f.meetingId }, 'meeting snapshot failed; retrying when redis is back');
        // Try again when the bus is healthy (at once if it already is, after a pause).
        await new Promise((r) => setTimeout(r, 500));
        if (await this.#bus.whenHealthy()) if (this.#followed.get(f.meetingId) === f) this.#load(f);
      },
    );
  }

  /** Interrupts the reader's XREAD BLOCK so it picks up a changed set of meetings. */
  #wakeReader(): void {
    if (this.#readerId === null || !this.#bus.healthy()) return;
    this.#redis.client('UNBLOCK', this.#readerId).catch(() => {});
  }

  /** One loop per node: XREAD BLOCK over every followed meeting whose snapshot is in. */
  async #runReader(): Promise<void> {
    if (this.#readerRunning) return;
    this.#readerRunning = true;
    try {
      while (!this.#closed) {
        const ready = [...this.#followed.values()].filter((f) => f.lastId !== null);
        if (!ready.length) break;
        if (this.#reader.status !== 'ready') {
          // Until the reader is back, or for 500 ms (the listener goes either way: no pile-up during an outage).
          await new Promise<void>((r) => {
            const ready = () => {
              clearTimeout(t);
              r();
            };
            const t = setTimeout(() => {
              this.#reader.off('ready', ready);
              r();
            }, 500);
            this.#reader.once('ready', ready);
          });
          continue;
        }
        let reply: [string, [string, string[]][]][] | null;
        try {
          reply = (await this.#reader.xread('COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', ...ready.map((f) => f.key), ...ready.map((f) => f.lastId!))) as
            | [string, [string, string[]][]][]
            | null;
        } catch (err) {
          if (this.#closed) break;
          this.#log.debug({ err }, 'meeting reader: XREAD failed; retrying');
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        if (!reply) continue;
        const byKey = new Map(ready.map((f) => [f.key, f]));
        for (const [key, entries] of reply) {
          const f = byKey.get(key);
          if (!f || this.#followed.get(f.meetingId) !== f) continue;
          for (const [id, fields] of entries) {
            f.lastId = id;
            const e = parseEntry(id, fields);
            if (!e) continue;
            this.saw(f.meetingId, e.seq);
            try {
              f.follower.entry(e);
            } catch (err) {
              this.#log.error({ err, meeting: f.meetingId }, 'internal error applying a meeting event; skipped');
            }
          }
        }
      }
    } finally {
      this.#readerRunning = false;
    }
  }

  /** Heartbeat: renews the keys of meetings this node takes part in; forgets idle ones. */
  #renew(): void {
    const now = Date.now();
    if (this.#bus.healthy()) {
      const pipe = this.#redis.pipeline();
      let n = 0;
      for (const [id, s] of this.#state) {
        if (!s.holds) continue;
        const k = MeetingStreams.keys(this.#bus.prefix, id);
        for (const key of [k.meta, k.stream, k.parts]) pipe.pexpire(key, this.#opts.retentionMs);
        n++;
      }
      if (n) pipe.exec().catch(() => {});
      void this.#reap();
    }
    for (const [id, s] of this.#state) {
      // Keep the numbering while events may still be queued or the keys live.
      if (!s.holds && now - s.idleSince > this.#opts.retentionMs && !this.#queue.some((q) => q.meetingId === id)) this.#state.delete(id);
    }
  }

  /**
   * Once per heartbeat: participants whose node's lease is gone leave (the
   * stored "left" goes into the stream, once); this node's own participants
   * that Redis no longer lists (it lost its data, or reaped them while this
   * node was cut off) join again.
   */
  async #reap(): Promise<void> {
    if (this.#reaping || this.#closed) return;
    this.#reaping = true;
    try {
      const meetings = [...new Set([...this.#followed.keys(), ...this.#mine.keys()])];
      if (!meetings.length) return;
      const read = this.#redis.pipeline();
      for (const id of meetings) read.hgetall(MeetingStreams.keys(this.#bus.prefix, id).parts);
      const lists = (await read.exec()) ?? [];
      const suspects: { meetingId: string; sid: string; node: string }[] = [];
      for (let i = 0; i < meetings.length; i++) {
        const [err, parts] = lists[i] ?? [new Error('no reply'), null];
        if (err || !parts) continue;
        const listed = parts as Record<string, string>;
        for (const [sid, v] of Object.entries(listed)) {
          const rec = parseParticipant(v);
          if (rec && rec.n !== this.#bus.nodeId) suspects.push({ meetingId: meetings[i]!, sid, node: rec.n });
        }
        // Ours, no longer listed: join again (a mirror that still has it just updates it).
        for (const [sid, joined] of this.#mine.get(meetings[i]!) ?? []) if (!(sid in listed) && !this.#queue.some((q) => q.ev === joined)) this.publish(meetings[i]!, joined);
      }
      if (!suspects.length) return;
      const nodes = [...new Set(suspects.map((x) => x.node))];
      const alive = await Promise.all(nodes.map((n) => this.#redis.exists(this.#bus.nodeKey(n))));
      const now = Date.now();
      const dead = new Set<string>();
      nodes.forEach((n, i) => {
        if (alive[i]) return void this.#missingSince.delete(n);
        const since = this.#missingSince.get(n) ?? now;
        this.#missingSince.set(n, since);
        if (now - since >= this.#opts.leaseMs) dead.add(n);
      });
      for (const n of this.#missingSince.keys()) if (!nodes.includes(n)) this.#missingSince.delete(n);
      for (const x of suspects) {
        if (!dead.has(x.node)) continue;
        const k = MeetingStreams.keys(this.#bus.prefix, x.meetingId);
        const seq = await this.#redis.captiongateReap(k.meta, k.stream, k.parts, x.sid, this.#bus.nodeKey(''), this.#opts.maxLen, this.#opts.retentionMs, 1);
        if (seq) this.#log.info({ meeting: x.meetingId, node: x.node }, "a participant's node is gone (its lease lapsed): it left the meeting");
      }
    } catch (err) {
      this.#log.debug({ err }, 'participant check failed; next heartbeat');
    } finally {
      this.#reaping = false;
    }
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    if (this.#retry) clearTimeout(this.#retry);
    this.#offHealth();
    this.#followed.clear();
    if (this.#queue.length) this.#log.warn({ events: this.#queue.length }, 'closing with meeting events not yet published to redis');
    this.#queue = [];
    this.#queuedBytes = 0;
  }

  /** Waits until everything queued has gone out (tests, shutdown), up to timeoutMs. */
  async flushed(timeoutMs: number): Promise<boolean> {
    const t0 = Date.now();
    while ((this.#queue.length || this.#sending) && Date.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 20));
    return !this.#queue.length;
  }
}

function parseEntry(id: string, fields: string[]): StreamEntry | null {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  const seq = Number(f.seq);
  const start = Number(f.start);
  if (!Number.isSafeInteger(seq) || seq < 1 || !Number.isFinite(start) || typeof f.o !== 'string' || typeof f.b !== 'string') return null;
  return { id, seq, start, origin: f.o, body: f.b };
}

/** A participants-hash value: {n: node id, p: what viewers are told, l: its "left" event}. */
function parseParticipant(v: string): { n: string; p: string; l: string } | null {
  try {
    const o = JSON.parse(v) as unknown;
    if (typeof o !== 'object' || o === null) return null;
    const { n, p, l } = o as Record<string, unknown>;
    return typeof n === 'string' && typeof p === 'string' && typeof l === 'string' ? { n, p, l } : null;
  } catch {
    return null;
  }
}

function isConnectionError(err: Error): boolean {
  return /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|timed out|enableOfflineQueue|MaxRetriesPerRequest/i.test(err.message);
}
