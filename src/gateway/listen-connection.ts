/**
 * One `/v1/listen` WebSocket: decodes frames (protocol), starts the session
 * (manager), and routes audio and control to it. Before a session exists it
 * answers errors itself.
 */
import type { Config } from '../config/schema.js';
import type { Identity } from '../security/gatekeeper.js';
import { closeCode, ERRORS, type ErrorCode, GatewayError } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { decodeClientFrame, type ClientEvent } from '../protocol/codec.js';
import type { StartMessage, WireMode } from '../protocol/messages.js';
import type { SessionManager } from '../session/manager.js';
import { Outbox } from '../session/outbox.js';
import type { Session } from '../session/session.js';
import type { ConnectionHandler, WsConnection } from '../transport/types.js';

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
}

export interface ListenDeps {
  readonly config: Readonly<Config>;
  readonly manager: SessionManager;
  readonly metrics: GatewayMetrics;
}

/**
 * Applies the token to a start message: a token bound to a meeting puts
 * the session in that meeting (and no other); with auth on, a session may
 * only name a meeting its token allows.
 */
export function authorizeStart(ctx: ListenContext, start: StartMessage): StartMessage | GatewayError {
  const wanted = start.meta?.meetingId;
  const allowed = ctx.identity?.meetingId;
  if (allowed !== undefined) {
    if (wanted !== undefined && wanted !== allowed) return new GatewayError('CAP_ERR_FORBIDDEN', `this token does not allow meeting ${wanted}`);
    return { ...start, meta: { ...(start.meta ?? {}), meetingId: allowed } };
  }
  if (ctx.authEnabled && wanted !== undefined) {
    return new GatewayError('CAP_ERR_FORBIDDEN', `this token does not allow meeting ${wanted} (no meetingId claim)`);
  }
  return start;
}

export class ListenConnection implements ConnectionHandler {
  #deps: ListenDeps;
  #conn: WsConnection;
  #ctx: ListenContext;
  #outbox: Outbox;
  #session: Session | null = null;
  #errors = 0;
  #closed = false;

  constructor(deps: ListenDeps, conn: WsConnection, ctx: ListenContext) {
    this.#deps = deps;
    this.#conn = conn;
    this.#ctx = ctx;
    const { server } = deps.config;
    this.#outbox = new Outbox(conn, ctx.mode, {
      maxBufferedBytes: server.maxBackpressureBytes,
      maxQueuedBytes: server.maxBackpressureBytes,
    });
    if (ctx.start) {
      if (ctx.start.kind === 'control' && ctx.start.message.type === 'start') this.#start(ctx.start.message);
      else if (ctx.start.kind === 'error') this.#fatal('CAP_ERR_BAD_PARAMETER', `invalid session parameters in the URL: ${ctx.start.message}`);
    }
  }

  get session(): Session | null {
    return this.#session;
  }

  message(data: Uint8Array, isBinary: boolean): void {
    if (this.#closed) return;
    const ev = decodeClientFrame(data, isBinary, this.#ctx.mode, { maxControlBytes: this.#deps.config.limits.maxControlBytes });
    const s = this.#session;
    switch (ev.kind) {
      case 'audio':
        if (s) s.ingest(ev.data);
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

  #start(requested: StartMessage): void {
    const start = authorizeStart(this.#ctx, requested);
    if (start instanceof GatewayError) {
      this.#fatal(start.code, start.message, start.retryAfterMs);
      return;
    }
    const id = this.#ctx.identity;
    const r = this.#deps.manager.open(start, this.#outbox, this.#ctx.remoteAddress, {
      maxSessionSeconds: id?.maxSessionSeconds,
      identity: id?.key,
      maxSessions: id?.maxSessions,
    });
    if (r instanceof GatewayError) {
      if (ERRORS[r.code].fatal) this.#fatal(r.code, r.message, r.retryAfterMs, false);
      else this.#error(r.code, r.message);
      return;
    }
    this.#session = r;
  }

  /** Pre-session, non-fatal error; too many become a protocol violation. */
  #error(code: ErrorCode, message: string): void {
    this.#errors++;
    this.#deps.metrics.errors.inc({ code });
    this.#outbox.send({ type: 'error', code, message, fatal: false });
    if (this.#errors > this.#deps.config.limits.maxErrorsPerSession) {
      this.#fatal('CAP_ERR_PROTOCOL_VIOLATION', `more than ${this.#deps.config.limits.maxErrorsPerSession} errors`);
    }
  }

  #fatal(code: ErrorCode, message: string, retryAfterMs?: number, count = true): void {
    if (count) this.#deps.metrics.errors.inc({ code });
    const msg: Parameters<Outbox['send']>[0] = { type: 'error', code, message, fatal: true };
    if (retryAfterMs !== undefined) (msg as { retryAfterMs?: number }).retryAfterMs = retryAfterMs;
    this.#outbox.send(msg);
    this.#outbox.closeWhenFlushed(closeCode(code), code);
  }

  drain(): void {
    this.#outbox.drain();
  }

  closed(): void {
    this.#closed = true;
    this.#outbox.markClosed();
    if (this.#session && !this.#session.ended) this.#session.disconnected();
  }
}
