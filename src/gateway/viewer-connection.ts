/**
 * One `/v1/meetings/:id/captions` WebSocket: a read-only viewer. It gets the
 * meeting's finals so far, then every participant's captions live. The only
 * message a viewer may send is `keepalive`.
 */
import type { Logger } from 'pino';

import type { Config } from '../config/schema.js';
import { closeCode, type ErrorCode } from '../errors.js';
import type { MeetingHub } from '../meetings/hub.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { decodeClientFrame } from '../protocol/codec.js';
import type { WireMode } from '../protocol/messages.js';
import type { Identity } from '../security/gatekeeper.js';
import { ErrorReporter } from '../session/error-reporter.js';
import { Outbox } from '../session/outbox.js';
import type { ConnectionHandler, WsConnection } from '../transport/types.js';
import type { ConnectionCounter } from './connections.js';

export interface ViewerContext {
  readonly kind: 'viewer';
  readonly mode: WireMode;
  readonly meetingId: string;
  readonly remoteAddress: string;
  /** The verified token, when auth is on. */
  readonly identity: Identity | null;
  /** `?lastSeq=`: a returning viewer's last meeting seq (replay only what came after). */
  readonly lastSeq: number | null;
}

export interface ViewerDeps {
  readonly hub: MeetingHub;
  readonly config: Readonly<Config>;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
  readonly connections: ConnectionCounter;
}

export class ViewerConnection implements ConnectionHandler {
  #deps: ViewerDeps;
  #ctx: ViewerContext;
  #outbox: Outbox;
  #errors: ErrorReporter;

  constructor(deps: ViewerDeps, conn: WsConnection, ctx: ViewerContext) {
    this.#deps = deps;
    this.#ctx = ctx;
    const { server, limits } = deps.config;
    this.#outbox = new Outbox(conn, ctx.mode, { maxBufferedBytes: server.maxBackpressureBytes, maxQueuedBytes: server.maxBackpressureBytes });
    this.#errors = new ErrorReporter(this.#outbox, deps.metrics, limits.maxErrorsPerSession);
    const identity = ctx.identity;
    const refused = deps.hub.addViewer(ctx.meetingId, this.#outbox, {
      address: ctx.remoteAddress,
      token: identity?.key ?? null,
      // A session's id is a handle on its caption file: shown only to viewers who may read that file anyway.
      canRead: (owner) => identity === null || (owner !== null && owner === identity.key),
    }, ctx.lastSeq);
    if (refused) this.#end(refused.code, refused.message, refused.retryAfterMs);
  }

  message(data: Uint8Array, isBinary: boolean): void {
    try {
      const ev = decodeClientFrame(data, isBinary, this.#ctx.mode, { maxControlBytes: this.#deps.config.limits.maxControlBytes });
      if (ev.kind === 'control' && ev.message.type === 'keepalive') return;
      const code = ev.kind === 'error' ? ev.code : 'CAP_ERR_INVALID_MESSAGE';
      const message = ev.kind === 'error' ? ev.message : 'viewers are read-only: only keepalive is accepted';
      if (this.#errors.send(code, message)) this.#end('CAP_ERR_PROTOCOL_VIOLATION', this.#errors.exhaustedMessage);
    } catch (err) {
      this.#deps.log.error({ err, boundary: 'message', meeting: this.#ctx.meetingId }, 'internal error: closing this viewer');
      this.#deps.metrics.internalErrors.inc({ boundary: 'message' });
      this.#end('CAP_ERR_INTERNAL', 'an internal error closed this connection; the server logged it');
    }
  }

  /** A fatal error, then the close code that goes with it. */
  #end(code: ErrorCode, message: string, retryAfterMs?: number): void {
    this.#errors.send(code, message, { retryAfterMs });
    this.#outbox.closeWhenFlushed(closeCode(code), code);
    this.#deps.hub.removeViewer(this.#ctx.meetingId, this.#outbox);
  }

  drain(): void {
    this.#outbox.drain();
    this.#deps.hub.drained(this.#ctx.meetingId, this.#outbox);
  }

  closed(): void {
    this.#outbox.markClosed();
    this.#deps.hub.removeViewer(this.#ctx.meetingId, this.#outbox);
    this.#deps.connections.closed(this.#ctx.remoteAddress);
  }
}
