/**
 * Admission, bookkeeping and timers for all sessions.
 *
 * Admission order (cheapest refusal first, nothing allocated before a
 * refusal): shutting down, per-address limit, engine lag (measured), then a
 * slab from the pool. A refused client gets an `error` with `retryAfterMs`
 * and a close; it is never accepted and failed later.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import type { Logger } from 'pino';

import type { CaptionEvent } from '../captions/stabilizer.js';
import { ARRIVAL_RESOLUTION_MS, type Shapes } from '../config/derive.js';
import type { Config } from '../config/schema.js';
import { ENGINE_SAMPLE_RATE, type EngineInfo, type StreamOptions } from '../engine/types.js';
import { CloseCode, GatewayError } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { RingBuffer } from '../pool/ring-buffer.js';
import type { SlabPool } from '../pool/slab-pool.js';
import type { FinalMessage, StartMessage } from '../protocol/messages.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import { ArrivalTable } from './arrival-log.js';
import type { ErrorReporter } from './error-reporter.js';
import type { Outbox } from './outbox.js';
import { Session, type FaultHooks, type Restored } from './session.js';

/** A session another node had, to continue here (resume across nodes; src/registry finds it). */
export interface Adoption {
  readonly id: string;
  readonly resumeToken: string;
  readonly start: StartMessage;
  readonly owner: string | null;
  readonly sub: string | null;
  readonly maxSessionSeconds: number;
  readonly restored: Restored;
  /** The client's lastSeq (checked against the session's seq by the caller). */
  readonly lastSeq: number;
  /** The finals after lastSeq, from the store, with their own seq. */
  readonly finals: readonly FinalMessage[];
  /** How long the old node ran after its last checkpoint of this session, seconds (0: it handed over). */
  readonly gapSeconds: number;
}

/** Largest conversion output of one frame: 1 s at 16 kHz, plus the resampler's filter tail. */
const MAX_FRAME_OUTPUT = 2 * ENGINE_SAMPLE_RATE + 4096;

/** What a session is made from, but for its slab and ring (the manager's). */
type SessionInit = ConstructorParameters<typeof Session>[1];

export const CAPACITY_RETRY_MS = 2000;
export const PER_ADDRESS_RETRY_MS = 5000;
const SWEEP_MS = 500;

export interface SessionManagerDeps {
  readonly config: Readonly<Config>;
  readonly shapes: Shapes;
  readonly engine: EngineInfo;
  readonly pool: SlabPool;
  readonly scheduler: Scheduler;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
  readonly faults?: FaultHooks | undefined;
  readonly published?: (s: Session, ev: CaptionEvent) => void;
  /** Is this id taken by a session that ended but whose captions are still kept? */
  readonly idKept?: (id: string) => boolean;
  readonly started?: (s: Session) => void;
  /** A session continued here from another node (not a new one: no store record, no `ready`). */
  readonly adopted?: (s: Session) => void;
  readonly parked?: (s: Session) => void;
  readonly ended?: (s: Session) => void;
}

export class SessionManager {
  #deps: SessionManagerDeps;
  #byId = new Map<string, Session>();
  #byResumeToken = new Map<string, Session>();
  #perAddress = new Map<string, number>();
  #perIdentity = new Map<string, number>();
  #identityOf = new WeakMap<Session, string>();
  #holds = new WeakMap<Session, { release(): void }>();
  #scratch: Int16Array;
  /** A row per slab of the pool (src/session/arrival-log.ts). */
  #arrivals: ArrivalTable;
  #sweep: NodeJS.Timeout;
  #shuttingDown = false;
  #engineLag = 0;
  #idWaiters: (() => void)[] = [];

  constructor(deps: SessionManagerDeps) {
    this.#deps = deps;
    // Largest conversion output of one frame: 1 s of audio at 16 kHz, plus
    // the resampler's filter tail.
    this.#scratch = new Int16Array(MAX_FRAME_OUTPUT);
    this.#arrivals = new ArrivalTable(deps.pool.stats().slabs, deps.shapes.arrivalEntries, ARRIVAL_RESOLUTION_MS);
    this.#sweep = setInterval(() => this.#tick(), SWEEP_MS);
    this.#sweep.unref();
  }

  get size(): number {
    return this.#byId.size;
  }
  /** Sessions whose connection dropped, waiting for a resume. */
  get parked(): number {
    let n = 0;
    for (const s of this.#byId.values()) if (s.state === 'parking' || s.state === 'parked') n++;
    return n;
  }
  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }
  /** Longest wait of any session's oldest undecoded audio at the last sweep, seconds (admission control input). */
  get engineLagSeconds(): number {
    return this.#engineLag;
  }
  /**
   * Longest wait of any live session's oldest undecoded audio right now
   * (measured at most every 10 ms): whether file jobs may use the engine.
   */
  liveLagSeconds(): number {
    const now = performance.now();
    if (now - this.#liveLagAt >= 10) {
      this.#liveLag = this.#measureLag();
      this.#liveLagAt = now;
    }
    return this.#liveLag;
  }
  #liveLag = 0;
  #liveLagAt = -Infinity;
  get scratchBytes(): number {
    return this.#scratch.byteLength;
  }

  get(id: string): Session | undefined {
    return this.#byId.get(id);
  }
  /** The live sessions. */
  list(): Session[] {
    return [...this.#byId.values()];
  }

  /**
   * Admission check without allocating. `checkPool` (readiness probes) also
   * reports an empty pool; on the open path the pool's own acquire() does,
   * so its refusal counter stays honest.
   */
  admissible(remoteAddress: string | null, checkPool = false): GatewayError | null {
    const { config } = this.#deps;
    if (this.#shuttingDown) return new GatewayError('CAP_ERR_SERVER_SHUTDOWN', 'the server is shutting down', CAPACITY_RETRY_MS);
    const perAddress = remoteAddress === null ? null : this.#perAddressRefusal(remoteAddress);
    if (perAddress) return perAddress;
    // The periodic tick's figure may be up to a tick old; before refusing,
    // measure again (the sessions that were behind may have caught up or ended).
    if (this.#engineLag > config.admission.maxEngineLagSeconds) this.#engineLag = this.#measureLag();
    if (this.#engineLag > config.admission.maxEngineLagSeconds) {
      return new GatewayError(
        'CAP_ERR_CAPACITY',
        `the engine is ${this.#engineLag.toFixed(1)} s behind (admission.maxEngineLagSeconds = ${config.admission.maxEngineLagSeconds}); retry later`,
        CAPACITY_RETRY_MS,
      );
    }
    if (checkPool && this.#deps.pool.available === 0) {
      return new GatewayError('CAP_ERR_CAPACITY', `all ${this.#deps.pool.stats().slabs} session slabs are in use; retry later`, CAPACITY_RETRY_MS);
    }
    return null;
  }

  /** Opens a session or returns why not. Sends `ready` on success. */
  open(
    start: StartMessage,
    outbox: Outbox,
    errors: ErrorReporter,
    remoteAddress: string,
    limits: {
      readonly maxSessionSeconds?: number | undefined;
      /** The token's identity: owns the session, and counts against its maxSessions. */
      readonly identity?: string | undefined;
      readonly sub?: string | null | undefined;
      readonly maxSessions?: number | undefined;
      /** The token's place across nodes (src/bus/shared-limits.ts): the session holds it until it ends. */
      readonly hold?: { claim(): void; release(): void } | null | undefined;
      /** false: the client never resumes (Deepgram's dialect), so a drain ends the session instead of moving it. */
      readonly resumable?: boolean;
      /** The engine stream's own settings (a Deepgram `endpointing`); kept for every stream the session opens. */
      readonly stream?: StreamOptions | undefined;
    } = {},
  ): Session | GatewayError {
    const refused = this.admissible(remoteAddress);
    if (refused) return this.#refuse(refused);
    if (limits.identity !== undefined && limits.maxSessions !== undefined) {
      const held = this.#perIdentity.get(limits.identity) ?? 0;
      if (held >= limits.maxSessions) {
        return this.#refuse(
          new GatewayError('CAP_ERR_TOO_MANY_SESSIONS', `this token already holds ${held} sessions (its maxSessions is ${limits.maxSessions})`, PER_ADDRESS_RETRY_MS),
        );
      }
    }
    // A client-chosen id never takes over, hides or replaces another session,
    // live or ended while its captions are kept: it is refused instead.
    let id = start.sessionId;
    if (id !== undefined && (this.#byId.has(id) || this.#deps.idKept?.(id))) {
      return this.#refuse(new GatewayError('CAP_ERR_BAD_PARAMETER', `sessionId "${id}" is already in use`));
    }
    id ??= this.#newId();
    const session = this.#create(
      {
        id,
        start,
        outbox,
        errors,
        remoteAddress,
        owner: limits.identity ?? null,
        sub: limits.sub ?? null,
        maxSessionSeconds: limits.maxSessionSeconds,
        resumable: limits.resumable ?? true,
      },
      limits.stream,
      'start',
    );
    if (session instanceof GatewayError) return this.#refuse(session);
    this.#register(session, remoteAddress, limits.identity ?? null, limits.hold ?? null);
    this.#deps.metrics.sessionsStarted.inc();
    this.#deps.started?.(session);
    return session;
  }

  /** A slab, its ring and the session on it; the slab goes back if the session cannot be made. */
  #create(init: Omit<SessionInit, 'slab' | 'ring'>, stream: StreamOptions | undefined, what: 'start' | 'continue'): Session | GatewayError {
    const slab = this.#deps.pool.acquire();
    if (!slab) return new GatewayError('CAP_ERR_CAPACITY', `all ${this.#deps.pool.stats().slabs} session slabs are in use; retry later`, CAPACITY_RETRY_MS);
    const { config, shapes } = this.#deps;
    try {
      const ring = new RingBuffer(slab, shapes.ringSamples, shapes.mirrorSamples);
      return new Session(
        {
          config,
          shapes,
          engine: this.#deps.engine,
          metrics: this.#deps.metrics,
          log: this.#deps.log,
          scratch: this.#scratch,
          arrivals: this.#arrivals,
          faults: this.#deps.faults,
          openStream: (ring, sink) => this.#deps.scheduler.open(ring, sink, stream ? { stream } : {}),
          releaseSlab: (slab) => this.#deps.pool.release(slab),
          released: (s) => this.#released(s),
          ...(this.#deps.published ? { published: this.#deps.published } : {}),
          ...(this.#deps.parked ? { parked: this.#deps.parked } : {}),
        },
        { ...init, slab, ring },
      );
    } catch (err) {
      this.#deps.pool.release(slab);
      return err instanceof GatewayError ? err : new GatewayError('CAP_ERR_CAPACITY', `session could not ${what}: ${(err as Error).message}`, CAPACITY_RETRY_MS);
    }
  }

  /** Counts a new session where the limits look (address, identity, the token's place across nodes). */
  #register(session: Session, remoteAddress: string, identity: string | null, hold: { claim(): void; release(): void } | null): void {
    this.#byId.set(session.id, session);
    this.#byResumeToken.set(session.resumeToken, session);
    this.#addressCount(remoteAddress, +1);
    if (identity !== null) {
      this.#identityOf.set(session, identity);
      this.#perIdentity.set(identity, (this.#perIdentity.get(identity) ?? 0) + 1);
    }
    if (hold) {
      hold.claim();
      this.#holds.set(session, hold);
    }
  }

  /**
   * Continues a session another node had (the registry found it, the owner
   * was checked, the old node handed it over or died). It is an open: the
   * same admission and a slab. `resumed` goes first, then the finals after
   * lastSeq from the store with their own seq, then the live session.
   */
  /** `hold`: the token's place across nodes (as in open), taken over by the session. */
  adopt(a: Adoption, outbox: Outbox, errors: ErrorReporter, remoteAddress: string, hold: { claim(): void; release(): void } | null = null): Session | GatewayError {
    const refused = this.admissible(remoteAddress);
    if (refused) return this.#refuse(refused);
    if (this.#byId.has(a.id)) return this.#refuse(new GatewayError('CAP_ERR_RESUME_REFUSED', 'no session to resume with this token (unknown, ended, expired, or not yours)'));
    const session = this.#create(
      {
        id: a.id,
        start: a.start,
        outbox,
        errors,
        remoteAddress,
        owner: a.owner,
        sub: a.sub,
        maxSessionSeconds: a.maxSessionSeconds,
        restore: { ...a.restored, resumeToken: a.resumeToken },
      },
      undefined,
      'continue',
    );
    if (session instanceof GatewayError) return this.#refuse(session);
    this.#register(session, remoteAddress, a.owner, hold);
    // Only finals are kept across nodes: every other message after lastSeq
    // (partials, acks, warnings) is counted as skipped.
    const finals = a.finals.filter((f) => f.seq > a.lastSeq && f.seq <= a.restored.seq);
    outbox.sendUnsequenced({
      type: 'resumed',
      sessionId: a.id,
      lastSeq: a.lastSeq,
      gapSeconds: Math.round(a.gapSeconds * 1000) / 1000,
      skippedPartials: 0,
      skippedAcks: 0,
      skippedOther: Math.max(0, a.restored.seq - a.lastSeq - finals.length),
      receivedFrames: a.restored.position.receivedFrames,
    });
    for (const f of finals) outbox.sendAt(f, f.seq);
    this.#deps.metrics.sessionsResumed.inc();
    this.#deps.adopted?.(session);
    return session;
  }

  /**
   * Drain for a move (several nodes share a registry): no new sessions;
   * every session is handed over by `move` (its open utterance finalized,
   * its checkpoint written, its client told to reconnect), within graceMs.
   * What is still running then is ended as at shutdown.
   */
  async drainForMove(move: (s: Session) => Promise<void>, graceMs: number): Promise<void> {
    this.#shuttingDown = true;
    const all = [...this.#byId.values()].map((s) => move(s).catch((err: unknown) => this.#deps.log.error({ err, session: s.id }, 'hand-over failed')));
    await Promise.race([Promise.all(all), new Promise((r) => setTimeout(r, graceMs).unref())]);
    await this.shutdown(Math.min(graceMs, 1000));
  }

  /**
   * The session a resume token names, if the asker may resume it: the same
   * owner (auth on), and the session not ended. One answer for unknown,
   * ended and foreign tokens, so a refusal says nothing about which.
   */
  resumable(token: string, identity: string | null): Session | GatewayError {
    const s = this.#byResumeToken.get(token);
    if (!s || s.ended || s.owner !== identity) {
      return new GatewayError('CAP_ERR_RESUME_REFUSED', 'no session to resume with this token (unknown, ended, expired, or not yours)');
    }
    return s;
  }

  /**
   * Puts a session back on a new connection. A parked session needs a slab
   * again, so it passes the same admission as an open (and may be refused
   * for capacity); a session still parking or connected keeps its own.
   */
  resume(token: string, lastSeq: number, outbox: Outbox, remoteAddress: string, identity: string | null): Session | GatewayError {
    const found = this.resumable(token, identity);
    if (found instanceof GatewayError) return this.#refuse(found);
    const s = found;
    const moving = remoteAddress !== s.remoteAddress;
    let slab = null;
    let ring = null;
    if (s.state === 'parked') {
      // The session already counts against its own address.
      const refused = this.admissible(moving ? remoteAddress : null);
      if (refused) return this.#refuse(refused);
      slab = this.#deps.pool.acquire();
      if (!slab) {
        return this.#refuse(
          new GatewayError('CAP_ERR_CAPACITY', `all ${this.#deps.pool.stats().slabs} session slabs are in use; retry later`, CAPACITY_RETRY_MS),
        );
      }
      ring = new RingBuffer(slab, this.#deps.shapes.ringSamples, this.#deps.shapes.mirrorSamples);
    } else if (moving) {
      const refused = this.#perAddressRefusal(remoteAddress);
      if (refused) return this.#refuse(refused);
    }
    const from = s.remoteAddress;
    if (!s.resume({ outbox, lastSeq, remoteAddress, slab, ring })) {
      if (slab) this.#deps.pool.release(slab);
      return this.#refuse(new GatewayError('CAP_ERR_RESUME_REFUSED', `lastSeq ${lastSeq} is ahead of this session`));
    }
    if (moving) {
      this.#addressCount(from, -1);
      this.#addressCount(remoteAddress, +1);
    }
    this.#deps.metrics.sessionsResumed.inc();
    return s;
  }

  #addressCount(address: string, delta: number): void {
    const n = (this.#perAddress.get(address) ?? 0) + delta;
    if (n <= 0) this.#perAddress.delete(address);
    else this.#perAddress.set(address, n);
  }

  #perAddressRefusal(remoteAddress: string): GatewayError | null {
    const { config } = this.#deps;
    const n = this.#perAddress.get(remoteAddress) ?? 0;
    if (n < config.limits.maxSessionsPerAddress) return null;
    return new GatewayError(
      'CAP_ERR_TOO_MANY_SESSIONS',
      `this address already has ${n} sessions (limits.maxSessionsPerAddress = ${config.limits.maxSessionsPerAddress})`,
      PER_ADDRESS_RETRY_MS,
    );
  }

  #refuse(e: GatewayError): GatewayError {
    this.#deps.metrics.sessionsRefused.inc({ code: e.code });
    this.#deps.metrics.errors.inc({ code: e.code });
    return e;
  }

  /** 128 random bits from the CSPRNG, as 22 characters of [A-Za-z0-9_-]: unguessable, and nothing else in it. */
  #newId(): string {
    for (;;) {
      const id = randomBytes(16).toString('base64url');
      if (!this.#byId.has(id) && !this.#deps.idKept?.(id)) return id;
    }
  }

  #released(s: Session): void {
    if (this.#byId.get(s.id) !== s) return;
    this.#byId.delete(s.id);
    this.#byResumeToken.delete(s.resumeToken);
    this.#addressCount(s.remoteAddress, -1);
    this.#holds.get(s)?.release();
    const who = this.#identityOf.get(s);
    if (who !== undefined) {
      const k = (this.#perIdentity.get(who) ?? 1) - 1;
      if (k <= 0) this.#perIdentity.delete(who);
      else this.#perIdentity.set(who, k);
    }
    this.#deps.ended?.(s);
    if (this.#byId.size === 0 && this.#idWaiters.length) {
      const w = this.#idWaiters;
      this.#idWaiters = [];
      for (const f of w) f();
    }
  }

  #tick(): void {
    const now = Date.now();
    const { config } = this.#deps;
    const { limits } = config;
    const idleMs = limits.idleTimeoutSeconds * 1000;
    const wallMs = limits.maxSessionWallSeconds * 1000;
    const stallMs = config.server.stalledReaderSeconds * 1000;
    const graceMs = limits.resumeGraceSeconds * 1000;
    let parked: Session[] | null = null;
    for (const s of [...this.#byId.values()]) {
      if (s.state === 'parking' || s.state === 'parked') {
        if (now - s.droppedAt > graceMs) {
          s.finish('client_gone', CloseCode.NORMAL, `nobody resumed within limits.resumeGraceSeconds (${limits.resumeGraceSeconds} s)`);
          continue;
        }
        (parked ??= []).push(s);
      }
      if (s.state === 'active' && now - s.lastActivity > idleMs) {
        s.finish('idle_timeout', CloseCode.IDLE_TIMEOUT, `no message for ${limits.idleTimeoutSeconds} s`, {
          code: 'CAP_ERR_IDLE_TIMEOUT',
          message: `no message for limits.idleTimeoutSeconds (${limits.idleTimeoutSeconds} s); finishing the session`,
        });
      }
      // Keepalives keep a connection open, but not a session forever.
      if (s.state === 'active' && now - s.startedAt > wallMs) {
        s.finish('max_wall_time', CloseCode.MAX_DURATION, `open for limits.maxSessionWallSeconds (${limits.maxSessionWallSeconds} s)`, {
          code: 'CAP_ERR_MAX_WALL_TIME',
          message: `the session has been open for limits.maxSessionWallSeconds (${limits.maxSessionWallSeconds} s); finishing it`,
        });
      }
      if (s.state === 'active' && s.silentSeconds(now) > limits.maxSilentSeconds) {
        s.finish('max_silence', CloseCode.IDLE_TIMEOUT, `no speech for limits.maxSilentSeconds (${limits.maxSilentSeconds} s)`, {
          code: 'CAP_ERR_MAX_SILENCE',
          message: `no speech for limits.maxSilentSeconds (${limits.maxSilentSeconds} s); finishing the session`,
        });
      }
      const outbox = s.outbox;
      if (!s.ended && outbox && (outbox.congestedFor(now) > stallMs || outbox.overflowed)) {
        this.#deps.metrics.errors.inc({ code: 'CAP_ERR_SLOW_READER' });
        s.log.warn({ queuedBytes: outbox.queuedBytes }, 'slow reader dropped');
        s.abort('slow_reader', undefined, { notify: false });
        outbox.close(CloseCode.SLOW_READER, 'slow_reader');
      }
    }
    // Parked sessions hold no slab, but their logs count: past the cap, the
    // longest-parked go first.
    const cap = limits.maxParkedSessions;
    if (parked && parked.length > cap) {
      parked.sort((a, b) => a.droppedAt - b.droppedAt);
      for (const s of parked.slice(0, parked.length - cap)) {
        s.finish('client_gone', CloseCode.NORMAL, `too many parked sessions (limits.maxParkedSessions = ${cap})`);
      }
    }
    this.#engineLag = this.#measureLag();
  }

  /** How long the oldest undecoded audio of any live session has waited, seconds. */
  #measureLag(): number {
    const wall = performance.now();
    let lag = 0;
    for (const s of this.#byId.values()) if (!s.ended) lag = Math.max(lag, s.waitingSeconds(wall));
    return lag;
  }

  /** Internal counts that must return to zero when no session is live (leak checks). */
  diagnostics(): { sessions: number; streams: number; addresses: number; identities: number; shutdownWaiters: number } {
    return {
      sessions: this.#byId.size,
      streams: this.#deps.scheduler.streams,
      addresses: this.#perAddress.size,
      identities: this.#perIdentity.size,
      shutdownWaiters: this.#idWaiters.length,
    };
  }

  /** Recomputes the admission lag now (tests, and after bursts). */
  refreshLag(): void {
    this.#tick();
  }

  /**
   * Stop admitting; every session finishes (finals, then `end` with reason
   * server_shutdown). Sessions still running at the deadline are ended with
   * their backlog counted as dropped.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.#shuttingDown = true;
    for (const s of [...this.#byId.values()]) {
      s.finish('server_shutdown', CloseCode.SERVER_SHUTDOWN, 'the server is shutting down');
    }
    if (this.#byId.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#idWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    for (const s of [...this.#byId.values()]) {
      s.abort('server_shutdown', undefined, { close: CloseCode.SERVER_SHUTDOWN });
    }
    clearInterval(this.#sweep);
  }

  close(): void {
    clearInterval(this.#sweep);
  }
}
