/**
 * Resume across nodes and draining, on top of the registry: this node's
 * sessions are written to it as they change; a resume token this node does
 * not know is looked up there, its session handed over by the node that
 * has it (or taken over from a dead one) and continued here; on a drain
 * every session is handed over and its client told to reconnect (4014).
 */
import type { Logger } from 'pino';

import { CloseCode, GatewayError } from '../errors.js';
import type { MeetingHub } from '../meetings/hub.js';
import type { FinalMessage, StartMessage } from '../protocol/messages.js';
import type { Adoption, SessionManager } from '../session/manager.js';
import type { Session } from '../session/session.js';
import type { Store } from '../store/index.js';
import { CHECKPOINT_MS, hashToken, MAX_CARRIED_FINALS, SessionRegistry, type SessionEntry } from './registry.js';

/** How long a resume waits for the old node to hand its session over. */
const HANDOVER_TIMEOUT_MS = 5000;
/** A client may have seen at most this many messages past a dead node's last checkpoint. */
const MAX_SEQ_AHEAD = 100_000;
const RETRY_MS = 1000;

const refused = () => new GatewayError('CAP_ERR_RESUME_REFUSED', 'no session to resume with this token (unknown, ended, expired, or not yours)');

export interface CrossNodeDeps {
  readonly registry: SessionRegistry;
  readonly manager: () => SessionManager;
  readonly store: Store;
  readonly hub: MeetingHub;
  readonly log: Logger;
}

export class CrossNodeResume {
  #d: CrossNodeDeps;
  #byHash = new Map<string, Session>();
  #hashOf = new WeakMap<Session, string>();
  /** What a session continued here brings: its meeting's clock and its finals so far (read once by `carried`). */
  #carried = new Map<string, { clock: number | undefined; finals: FinalMessage[] }>();
  /** Each session's finals the store has not confirmed yet; its entry carries them. */
  #unwritten = new Map<Session, FinalMessage[]>();
  #settleTimer: NodeJS.Timeout | null = null;
  #settling = false;

  constructor(deps: CrossNodeDeps) {
    this.#d = deps;
  }

  get nodeId(): string {
    return this.#d.registry.nodeId;
  }

  start(): Promise<void> {
    this.#settleTimer = setInterval(() => void this.#settle(), CHECKPOINT_MS);
    this.#settleTimer.unref();
    return this.#d.registry.start(
      (hash) => this.#handOver(hash),
      () => {
        const out: { tokenHash: string; entry: SessionEntry; lost: () => void }[] = [];
        for (const [hash, s] of this.#byHash) {
          const e = this.#entry(s);
          if (e) out.push({ tokenHash: hash, entry: e, lost: () => this.#lost(s) });
        }
        return out;
      },
    );
  }

  // ------------------------------------------------ this node's sessions

  /** A session started here (one whose client cannot resume stays off the registry: a drain ends it). */
  track(s: Session): void {
    if (!s.resumable) return;
    const hash = hashToken(s.resumeToken);
    this.#byHash.set(hash, s);
    this.#hashOf.set(s, hash);
    this.checkpoint(s);
  }

  /** A session continued here from another node: its entry is this node's now (after the claim). */
  adopted(s: Session): void {
    const hash = hashToken(s.resumeToken);
    this.#byHash.set(hash, s);
    this.#hashOf.set(s, hash);
    const e = this.#entry(s);
    if (e) void this.#d.registry.put(hash, e, { take: true });
  }

  close(): void {
    if (this.#settleTimer) clearInterval(this.#settleTimer);
    this.#settleTimer = null;
  }

  /**
   * A final of a session here (already queued for the store): its entry
   * is written now, and carries the final until the store confirms it.
   */
  final(s: Session, f: FinalMessage): void {
    if (this.#hashOf.get(s) !== undefined) {
      const list = this.#unwritten.get(s) ?? [];
      list.push(f);
      // A long store outage: the store's own queue keeps the older ones.
      if (list.length > MAX_CARRIED_FINALS) list.splice(0, list.length - MAX_CARRIED_FINALS);
      this.#unwritten.set(s, list);
    }
    this.checkpoint(s);
  }

  /** One store flush for every session here; the finals it wrote leave the entries (at their next write). */
  async #settle(): Promise<void> {
    const { store } = this.#d;
    // The store's server is away: nothing can be confirmed, and its own retries keep their backoff.
    if (this.#settling || this.#unwritten.size === 0 || !store.status().ok) return;
    this.#settling = true;
    try {
      const queued = [...this.#unwritten].map(([s, list]) => [s, new Set(list)] as const);
      if (!(await this.#flushWroteAll())) return;
      for (const [s, written] of queued) {
        const left = (this.#unwritten.get(s) ?? []).filter((f) => !written.has(f));
        if (left.length) this.#unwritten.set(s, left);
        else this.#unwritten.delete(s);
      }
    } finally {
      this.#settling = false;
    }
  }

  /**
   * Flushes the store; true if everything queued before was written. Not
   * ok: some write went back to the store's queue; more dropped: a batch
   * failed. Either way, the finals stay carried.
   */
  async #flushWroteAll(): Promise<boolean> {
    const { store } = this.#d;
    const dropped = store.status().droppedWrites;
    await store.flush();
    const after = store.status();
    return after.ok && after.droppedWrites === dropped;
  }

  /** Writes the session's entry now (at each final, on park). */
  checkpoint(s: Session): void {
    const hash = this.#hashOf.get(s);
    const e = hash && this.#entry(s);
    if (hash && e) void this.#d.registry.put(hash, e).then((r) => r === 'lost' && this.#lost(s));
  }

  /**
   * Another node continued this session while this one could not be asked
   * (cut off from Redis): this copy ends without a message, and its
   * connection, if any, is taken over (4013).
   */
  #lost(s: Session): void {
    if (s.ended || this.#hashOf.get(s) === undefined) return;
    this.#d.log.warn({ session: s.id }, 'another node continued this session (this node could not be reached): ending this copy');
    s.moveAway({ code: CloseCode.TAKEN_OVER, reason: 'CAP_ERR_TAKEN_OVER' });
  }

  /** The session ended here: its entry goes, unless it moved to another node (the entry says so). */
  ended(s: Session): void {
    const hash = this.#hashOf.get(s);
    if (!hash) return;
    if (this.#byHash.get(hash) === s) this.#byHash.delete(hash);
    this.#unwritten.delete(s);
    if (!s.movedAway) this.#d.registry.remove(hash);
  }

  /** The meeting clock and the finals (from the store) a continued session brings (once). */
  carried(sessionId: string): { clock: number | undefined; finals: FinalMessage[] } {
    const c = this.#carried.get(sessionId);
    this.#carried.delete(sessionId);
    return c ?? { clock: undefined, finals: [] };
  }

  #entry(s: Session, state?: SessionEntry['state']): SessionEntry | null {
    const st = state ?? (s.state === 'parked' ? 'parked' : s.state === 'active' || s.state === 'parking' ? 'live' : null);
    if (!st) return null;
    const c = s.checkpoint();
    const finals = this.#unwritten.get(s);
    const meetingId = typeof s.meta.meetingId === 'string' ? s.meta.meetingId : null;
    return {
      v: 1,
      id: s.id,
      node: this.nodeId,
      state: st,
      owner: s.owner,
      sub: s.sub,
      meetingId,
      meetingStartedAt: meetingId ? this.#d.hub.clock(meetingId) : null,
      startedAt: s.startedAt,
      start: {
        type: 'start',
        ...s.format,
        interim: s.settings.interim,
        ack: s.settings.ack,
        language: s.settings.language as NonNullable<StartMessage['language']>,
        meta: { ...s.meta },
      },
      maxSessionSeconds: s.maxSessionSeconds,
      seq: c.seq,
      segment: c.segment,
      position: c.position,
      heardSamples: c.heardSamples,
      ...(finals ? { finals } : {}),
      updatedAt: Date.now(),
    };
  }

  /**
   * Hands a session over: its open utterance is finalized, the store is
   * flushed (a resume elsewhere replays its finals from there), its entry
   * says `moved`, and it ends here without a message; its connection, if
   * any, is closed with `close`.
   */
  async #move(s: Session, close: { code: number; reason: string }): Promise<boolean> {
    const hash = this.#hashOf.get(s);
    if (!hash || !(await s.handOver())) return false;
    if (await this.#flushWroteAll()) this.#unwritten.delete(s);
    const e = this.#entry(s, 'moved');
    if (!e || (await this.#d.registry.put(hash, e)) !== 'ok') {
      // Redis did not take it: the session cannot move; it ends here as at shutdown.
      s.finish('server_shutdown', CloseCode.SERVER_SHUTDOWN, 'the server is shutting down (the session registry is unavailable)');
      return false;
    }
    this.#d.log.info({ session: s.id, seq: e.seq, receivedFrames: e.position.receivedFrames, close: close.code }, 'session handed over (its entry says moved)');
    s.moveAway(close);
    return true;
  }

  /** Another node asks for this session (a resume landed there). */
  async #handOver(hash: string): Promise<boolean> {
    const s = this.#byHash.get(hash);
    if (!s || s.ended) return false;
    this.#d.log.info({ session: s.id }, 'handing a session over to another node (a resume landed there)');
    return this.#move(s, { code: CloseCode.TAKEN_OVER, reason: 'CAP_ERR_TAKEN_OVER' });
  }

  /** SIGTERM with several nodes: every session moves; its client reconnects elsewhere (4014). */
  drain(graceMs: number): Promise<void> {
    return this.#d.manager().drainForMove(async (s) => {
      await this.#move(s, { code: CloseCode.RECONNECT, reason: 'reconnect' });
    }, graceMs);
  }

  // ------------------------------------------------ a resume from elsewhere

  /**
   * A resume token this node does not know: find its session in the
   * registry, check the owner, get it handed over (or take it from a dead
   * node), and read the finals the client missed from the store.
   */
  async find(token: string, lastSeq: number, identity: string | null): Promise<Adoption | GatewayError> {
    const { registry, store } = this.#d;
    const hash = hashToken(token);
    let { entry, unavailable } = await registry.get(hash);
    if (unavailable) return new GatewayError('CAP_ERR_CAPACITY', 'the session registry (Redis) is not answering; retry later', RETRY_MS * 2);
    if (!entry || entry.owner !== identity || entry.node === this.nodeId) return refused();
    let gapSeconds = 0;
    let seq = entry.seq;
    if (entry.state !== 'moved') {
      let beat = await registry.lastBeat(entry.node);
      if (SessionRegistry.alive(beat)) {
        const answer = await registry.requestHandover(entry.node, hash, HANDOVER_TIMEOUT_MS);
        entry = (await registry.get(hash)).entry;
        if (!entry || entry.owner !== identity) return refused();
        // Nobody listens for that node any more: it died (its beat is not yet stale).
        if (answer !== 'unreachable' && entry.state !== 'moved') {
          beat = await registry.lastBeat(entry.node);
          if (SessionRegistry.alive(beat)) {
            return new GatewayError('CAP_ERR_CAPACITY', 'the node that has this session did not hand it over in time; retry', RETRY_MS);
          }
        }
      }
      if (entry.state !== 'moved') {
        // The node died: what it did after its last checkpoint of this
        // session is lost, except what the client sends again.
        gapSeconds = Math.max(0, ((beat ?? entry.updatedAt) - entry.updatedAt) / 1000);
        if (lastSeq > entry.seq + MAX_SEQ_AHEAD) return refused();
        seq = Math.max(entry.seq, lastSeq);
        this.#d.log.warn(
          { session: entry.id, node: entry.node, state: entry.state, updatedAt: entry.updatedAt, beat, gapSeconds, carriedFinals: entry.finals?.length ?? 0 },
          'taking over a session from a node that stopped beating',
        );
      }
    }
    if (lastSeq > seq) return new GatewayError('CAP_ERR_RESUME_REFUSED', `lastSeq ${lastSeq} is ahead of this session`);
    if (!(await registry.claim(hash))) return new GatewayError('CAP_ERR_CAPACITY', 'another node is taking this session over; retry', RETRY_MS);
    const e = entry;
    // Nodes with stores of their own: this one learns of the session now.
    if (!(await store.getSession(e.id))) {
      store.sessionStarted({
        id: e.id,
        owner: e.owner,
        meetingId: e.meetingId,
        speaker: e.start.meta?.speaker ?? null,
        startedAt: e.startedAt,
        endedAt: null,
        endReason: null,
        receivedSamples: 0,
        decodedSamples: 0,
        droppedSamples: 0,
      });
      if (e.meetingId) store.meetingStarted(e.meetingId, e.meetingStartedAt ?? e.startedAt);
    }
    // Finals the old node made but its store may not have written before it died (idempotent: keyed by segment).
    for (const f of e.finals ?? []) store.final(e.id, f);
    const finals = await store.getFinals(e.id);
    this.#carried.set(e.id, { clock: e.meetingStartedAt ?? undefined, finals });
    // Not adopted (the connection failed first): nothing stays behind.
    setTimeout(() => this.#carried.delete(e.id), 60_000).unref();
    return {
      id: e.id,
      resumeToken: token,
      start: e.start,
      owner: e.owner,
      sub: e.sub,
      maxSessionSeconds: e.maxSessionSeconds,
      restored: { startedAt: e.startedAt, seq, segment: e.segment, position: e.position },
      lastSeq,
      finals,
      gapSeconds,
    };
  }
}
