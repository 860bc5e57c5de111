/**
 * One `/v1/listen` WebSocket: decodes frames (protocol), starts the session
 * (manager), and routes audio and control to it. Before a session exists it
 * answers errors itself.
 *
 * The fault boundary for client messages: anything that throws while one
 * connection's message is handled ends that connection's session with
 * CAP_ERR_INTERNAL (close 4011), and only that one.
 */
import type { Logger } from 'pino';

import type { Reservation } from '../bus/shared-limits.js';
import type { DeepgramParams } from '../compat/deepgram/params.js';
import type { Config } from '../config/schema.js';
import type { StreamOptions } from '../engine/types.js';
import { closeCode, ERRORS, type ErrorCode, GatewayError } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { decodeClientFrame, type ClientEvent } from '../protocol/codec.js';
import type { StartMessage, WireMode } from '../protocol/messages.js';
import type { Identity } from '../security/gatekeeper.js';
import { ErrorReporter } from '../session/error-reporter.js';
import type { Adoption, SessionManager } from '../session/manager.js';
import { Outbox } from '../session/outbox.js';
import type { Session } from '../session/session.js';
import type { ConnectionHandler, WsConnection } from '../transport/types.js';
import type { ConnectionCounter } from './connections.js';
import { ReadGate } from './read-gate.js';

export interface ListenContext {
  readonly kind: 'listen';
  readonly mode: WireMode;
  /** Session parameters from the query string, if any. */
  readonly start: ClientEvent | null;
  readonly remoteAddress: string;
  /** The verified token, when auth is on. */
  readonly identity: Identity | null;
  /** Auth is on: meetings need a token that names them. */
  readonly authEnabled: boolean;
  /** `?resume=<token>&lastSeq=<n>`: take back a session whose connection dropped. */
  readonly resume: {
    readonly token: string;
    readonly lastSeq: number;
    /** The session is on another node's books: continue it here (found by the upgrade). */
    readonly adoption?: Adoption;
  } | null;
  /** The connection speaks Deepgram's live dialect (src/compat/deepgram) with these parameters. */
  readonly deepgram?: DeepgramParams;
  /** A place held across nodes for a token with maxSessions (Redis); the session takes it over. */
  readonly reservation?: Reservation | null;
  /** The session's engine stream settings (Deepgram's `endpointing`). */
  readonly stream?: StreamOptions;
}

/** RFC 6455 7.4.1: no close frame was received (the TCP connection just ended). */
const ABNORMAL_CLOSURE = 1006;

export interface ListenDeps {
  readonly config: Readonly<Config>;
  readonly manager: SessionManager;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
  readonly connections: ConnectionCounter;
}

/**
 * Applies the token to a start message: a token bound to a meeting puts
 * the session in that meeting (and no other); with auth on, a session may
 * only name a meeting its token allows; a token's `name` is the speaker.
 */
export function authorizeStart(ctx: ListenContext, start: StartMessage): StartMessage | GatewayError {
  const wanted = start.meta?.meetingId;
  const id = ctx.identity;
  let meta = start.meta ?? {};
  if (id?.meetingId !== undefined) {
    if (wanted !== undefined && wanted !== id.meetingId) return new GatewayError('CAP_ERR_FORBIDDEN', `this token does not allow meeting ${wanted}`);
    meta = { ...meta, meetingId: id.meetingId };
  } else if (ctx.authEnabled && wanted !== undefined) {
    return new GatewayError('CAP_ERR_FORBIDDEN', `this token does not allow meeting ${wanted} (no meetingId claim)`);
  }
  // The token says who speaks; the client cannot override it.
  if (id?.name !== undefined) meta = { ...meta, speaker: id.name };
  return meta === start.meta ? start : { ...start, meta };
}

export class ListenConnection implements ConnectionHandler {
  #deps: ListenDeps;
  #ctx: ListenContext;
  #outbox: Outbox;
  #errors: ErrorReporter;
  #session: Session | null = null;
  #closed = false;
  /** Binary frames in JSON mode are audio as they are: no decoding step. */
  #rawAudio: boolean;
  #maxControlBytes: number;
  #startTimer: NodeJS.Timeout | null = null;
  /** Backpressure for senders faster than real time (read-gate.ts). */
  #gate: ReadGate;
  /** Held until a session takes it, or released when none will. */
  #reservation: Reservation | null;

  constructor(deps: ListenDeps, conn: WsConnection, ctx: ListenContext) {
    this.#gate = new ReadGate(conn, deps.config.server.maxHeldAudioBytes, (data, isBinary) => this.message(data, isBinary));
    this.#deps = deps;
    this.#ctx = ctx;
    this.#reservation = ctx.reservation ?? null;
    const { server, limits } = deps.config;
    this.#outbox = new Outbox(conn, ctx.mode, {
      maxBufferedBytes: server.maxBackpressureBytes,
      maxQueuedBytes: server.maxBackpressureBytes,
    });
    this.#errors = new ErrorReporter(this.#outbox, deps.metrics, limits.maxErrorsPerSession);
    this.#rawAudio = ctx.mode === 'json';
    this.#maxControlBytes = limits.maxControlBytes;
    if (ctx.resume) {
      const { token, lastSeq, adoption } = ctx.resume;
      this.#guard(() => (adoption ? this.#adopt(adoption) : this.#resume(token, lastSeq)));
    } else if (ctx.start) {
      this.#guard(() => {
        const ev = ctx.start!;
        if (ev.kind === 'control' && ev.message.type === 'start') this.#start(ev.message);
        else if (ev.kind === 'error') this.#fatal('CAP_ERR_BAD_PARAMETER', `invalid session parameters in the URL: ${ev.message}`);
      });
    }
    // A connection may not sit here without starting a session.
    if (!this.#session && !this.#closed) {
      this.#startTimer = setTimeout(() => {
        this.#startTimer = null;
        if (!this.#session && !this.#closed) {
          this.#fatal('CAP_ERR_START_TIMEOUT', `no "start" within limits.startTimeoutSeconds (${limits.startTimeoutSeconds} s) of connecting`);
        }
      }, limits.startTimeoutSeconds * 1000);
      this.#startTimer.unref();
    }
  }

  message(data: Uint8Array, isBinary: boolean): void {
    // Closed here too when a resume elsewhere took the session over.
    if (this.#closed || this.#outbox.closed) return;
    const s = this.#session;
    if (s && !this.#gate.admit(data, isBinary)) return;
    if (s && isBinary && this.#rawAudio) {
      // The per-frame path: straight to the session.
      try {
        s.ingest(data);
        this.#gate.check(s);
      } catch (err) {
        this.#internal(err);
      }
      return;
    }
    this.#guard(() => this.#dispatch(decodeClientFrame(data, isBinary, this.#ctx.mode, { maxControlBytes: this.#maxControlBytes })));
  }

  #dispatch(ev: ClientEvent): void {
    const s = this.#session;
    switch (ev.kind) {
      case 'audio':
        if (s) {
          s.ingest(ev.data);
          this.#gate.check(s);
        }
        else this.#error('CAP_ERR_AUDIO_BEFORE_START', `audio before "start" was not accepted (${ev.data.byteLength} bytes)`);
        return;
      case 'error':
        if (s) s.error(ev.code, ev.message);
        else this.#error(ev.code, ev.message);
        return;
      case 'control': {
        const m = ev.message;
        if (s) {
          s.control(m.type);
          return;
        }
        if (m.type === 'start') this.#start(m);
        else if (m.type === 'stop') this.#outbox.closeWhenFlushed(1000, 'stopped before start');
        return;
      }
    }
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#internal(err);
    }
  }

  /** The fault boundary: this connection's session (or the connection) ends; nobody else notices. */
  #internal(err: unknown): void {
    const s = this.#session;
    if (s && !s.ended) {
      s.fail(err, 'message');
      return;
    }
    this.#deps.log.error({ err, boundary: 'message', remote: this.#ctx.remoteAddress }, 'internal error: closing this connection');
    this.#deps.metrics.internalErrors.inc({ boundary: 'message' });
    try {
      this.#fatal('CAP_ERR_INTERNAL', 'an internal error closed this connection; the server logged it');
    } catch {
      this.#outbox.close(closeCode('CAP_ERR_INTERNAL'), 'CAP_ERR_INTERNAL');
    }
  }

  #start(requested: StartMessage): void {
    const start = authorizeStart(this.#ctx, requested);
    if (start instanceof GatewayError) {
      this.#fatal(start.code, start.message, start.retryAfterMs);
      return;
    }
    const id = this.#ctx.identity;
    const r = this.#deps.manager.open(start, this.#outbox, this.#errors, this.#ctx.remoteAddress, {
      maxSessionSeconds: id?.maxSessionSeconds,
      identity: id?.key,
      sub: id?.sub,
      maxSessions: id?.maxSessions,
      hold: this.#reservation,
      resumable: !this.#ctx.deepgram,
      stream: this.#ctx.stream,
    });
    this.#reservation = null;
    if (r instanceof GatewayError) {
      this.#ctx.reservation?.release();
      // The manager counted the refusal already.
      if (ERRORS[r.code].fatal) this.#fatal(r.code, r.message, r.retryAfterMs, false);
      else this.#error(r.code, r.message);
      return;
    }
    this.#session = r;
    if (this.#startTimer) {
      clearTimeout(this.#startTimer);
      this.#startTimer = null;
    }
  }

  #resume(token: string, lastSeq: number): void {
    const r = this.#deps.manager.resume(token, lastSeq, this.#outbox, this.#ctx.remoteAddress, this.#ctx.identity?.key ?? null);
    if (r instanceof GatewayError) {
      this.#fatal(r.code, r.message, r.retryAfterMs, false);
      return;
    }
    this.#session = r;
  }

  #adopt(a: Adoption): void {
    const r = this.#deps.manager.adopt(a, this.#outbox, this.#errors, this.#ctx.remoteAddress, this.#reservation);
    this.#reservation = null;
    if (r instanceof GatewayError) {
      this.#ctx.reservation?.release();
      this.#fatal(r.code, r.message, r.retryAfterMs, false);
      return;
    }
    this.#session = r;
  }

  /** Pre-session, non-fatal error; too many become a protocol violation. */
  #error(code: ErrorCode, message: string): void {
    if (this.#errors.send(code, message)) this.#fatal('CAP_ERR_PROTOCOL_VIOLATION', this.#errors.exhaustedMessage);
  }

  #fatal(code: ErrorCode, message: string, retryAfterMs?: number, count = true): void {
    if (count) this.#errors.send(code, message, { retryAfterMs });
    else {
      const msg: Parameters<Outbox['send']>[0] = { type: 'error', code, message, fatal: true, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
      this.#outbox.send(msg);
    }
    this.#outbox.closeWhenFlushed(closeCode(code), code);
  }

  drain(): void {
    this.#outbox.drain();
  }

  /** Reading is paused: the session's backlog is full and its sender is ahead of real time. */
  get readPaused(): boolean {
    return this.#gate.paused;
  }
  /** Called when reading resumes (a dialect's own buffered audio goes on then). */
  onReadResumed(cb: () => void): void {
    this.#gate.onResumed(cb);
  }
  /** A dialect's own stage is full (true) or has room again: stop or resume reading the socket (ReadGate.block). */
  holdReading(on: boolean): void {
    this.#gate.block(on);
  }
  /** Audio to the session, with backpressure: for dialects that decode frames themselves (src/compat). */
  audio(data: Uint8Array): void {
    this.message(data, true);
  }

  /**
   * 1006: the connection dropped without a close frame, and the session
   * parks for a resume; any other code: it was closed. Deepgram's clients
   * do not resume, so a dropped Deepgram connection ends its session.
   */
  closed(code: number): void {
    this.#closed = true;
    this.#deps.connections.closed(this.#ctx.remoteAddress);
    if (this.#startTimer) {
      clearTimeout(this.#startTimer);
      this.#startTimer = null;
    }
    this.#gate.close();
    // A place held for a session that never started.
    if (!this.#session) this.#ctx.reservation?.release();
    const s = this.#session;
    if (s && !s.ended) {
      try {
        if (code === ABNORMAL_CLOSURE && !this.#ctx.deepgram) s.dropped(this.#outbox);
        else s.disconnected(this.#outbox);
      } catch (err) {
        this.#deps.log.error({ err, boundary: 'message' }, 'internal error while releasing a disconnected session');
        this.#deps.metrics.internalErrors.inc({ boundary: 'message' });
      }
    }
    this.#outbox.markClosed();
  }
}
