/**
 * One `/v1/meetings/:id/captions` WebSocket: a read-only viewer. It gets the
 * meeting's finals so far, then every participant's captions live. The only
 * message a viewer may send is `keepalive`.
 */
import type { Config } from '../config/schema.js';
import { closeCode } from '../errors.js';
import type { MeetingHub } from '../meetings/hub.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { decodeClientFrame } from '../protocol/codec.js';
import type { WireMode } from '../protocol/messages.js';
import { Outbox } from '../session/outbox.js';
import type { ConnectionHandler, WsConnection } from '../transport/types.js';

export interface ViewerContext {
  readonly kind: 'viewer';
  readonly mode: WireMode;
  readonly meetingId: string;
  readonly remoteAddress: string;
}

export class ViewerConnection implements ConnectionHandler {
  #hub: MeetingHub;
  #config: Readonly<Config>;
  #metrics: GatewayMetrics;
  #ctx: ViewerContext;
  #outbox: Outbox;
  #errors = 0;

  constructor(deps: { hub: MeetingHub; config: Readonly<Config>; metrics: GatewayMetrics }, conn: WsConnection, ctx: ViewerContext) {
    this.#hub = deps.hub;
    this.#config = deps.config;
    this.#metrics = deps.metrics;
    this.#ctx = ctx;
    const { server } = deps.config;
    this.#outbox = new Outbox(conn, ctx.mode, { maxBufferedBytes: server.maxBackpressureBytes, maxQueuedBytes: server.maxBackpressureBytes });
    const refused = this.#hub.addViewer(ctx.meetingId, this.#outbox);
    if (refused) {
      this.#metrics.errors.inc({ code: refused.code });
      const msg: Parameters<Outbox['send']>[0] = { type: 'error', code: refused.code, message: refused.message, fatal: true };
      if (refused.retryAfterMs !== undefined) (msg as { retryAfterMs?: number }).retryAfterMs = refused.retryAfterMs;
      this.#outbox.send(msg);
      this.#outbox.closeWhenFlushed(closeCode(refused.code), refused.code);
    }
  }

  message(data: Uint8Array, isBinary: boolean): void {
    const ev = decodeClientFrame(data, isBinary, this.#ctx.mode, { maxControlBytes: this.#config.limits.maxControlBytes });
    if (ev.kind === 'control' && ev.message.type === 'keepalive') return;
    this.#errors++;
    const code = ev.kind === 'error' ? ev.code : 'CAP_ERR_INVALID_MESSAGE';
    this.#metrics.errors.inc({ code });
    this.#outbox.send({ type: 'error', code, message: ev.kind === 'error' ? ev.message : 'viewers are read-only: only keepalive is accepted', fatal: false });
    if (this.#errors > this.#config.limits.maxErrorsPerSession) {
      this.#outbox.send({ type: 'error', code: 'CAP_ERR_PROTOCOL_VIOLATION', message: 'too many errors', fatal: true });
      this.#outbox.closeWhenFlushed(4005, 'CAP_ERR_PROTOCOL_VIOLATION');
    }
  }

  drain(): void {
    this.#outbox.drain();
    this.#hub.drained(this.#ctx.meetingId, this.#outbox);
  }

  closed(): void {
    this.#outbox.markClosed();
    this.#hub.removeViewer(this.#ctx.meetingId, this.#outbox);
  }
}
