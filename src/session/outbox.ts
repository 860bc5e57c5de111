/**
 * Per-connection send queue with a backpressure policy (uWebSockets.js
 * examples/Backpressure.js: send while the socket buffer is below a limit,
 * resume on drain). While the socket is backed up:
 *
 * - partial captions are coalesced: only the newest one per connection is
 *   kept (it supersedes the older ones anyway);
 * - everything else (finals, errors, end) queues, up to a byte bound.
 *
 * A reader that stays backed up for server.stalledReaderSeconds, or whose
 * queue passes the bound, is a slow reader: the owner drops it. Memory per
 * socket is therefore bounded by the transport buffer limit plus the queue
 * bound. One slow socket never delays another: nothing here blocks.
 */
import { encodeServerMessage } from '../protocol/codec.js';
import type { ResumedMessage, ServerMessage, Unsequenced, WireMessage, WireMode } from '../protocol/messages.js';

/** What a transport connection must offer (both transports implement it). */
export interface MessageChannel {
  send(data: string | Uint8Array, isBinary: boolean): void;
  bufferedAmount(): number;
  close(code: number, reason: string): void;
}

export interface OutboxOptions {
  readonly maxBufferedBytes: number;
  readonly maxQueuedBytes: number;
}

export class Outbox {
  readonly mode: WireMode;
  #channel: MessageChannel;
  #opts: OutboxOptions;
  #queue: (string | Uint8Array)[] = [];
  #queuedBytes = 0;
  #pendingPartial: string | Uint8Array | null = null;
  #congestedSince = 0;
  #closed = false;
  #closeAfterFlush: { code: number; reason: string } | null = null;
  #seq = 0;
  /** Messages sent, coalesced away, and queued (for metrics and tests). */
  sent = 0;
  coalesced = 0;
  discarded = 0;
  #overflowed = false;

  constructor(channel: MessageChannel, mode: WireMode, opts: OutboxOptions) {
    this.#channel = channel;
    this.mode = mode;
    this.#opts = opts;
  }

  get congested(): boolean {
    return this.#congestedSince !== 0;
  }
  /** ms since the socket backed up, or 0. */
  congestedFor(now: number): number {
    return this.#congestedSince === 0 ? 0 : now - this.#congestedSince;
  }
  get queuedBytes(): number {
    return this.#queuedBytes + (this.#pendingPartial ? byteLength(this.#pendingPartial) : 0);
  }
  /** A message did not fit in the queue: this reader must be dropped. */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  /** The last seq this connection stamped (a session's log goes on from it). */
  get seq(): number {
    return this.#seq;
  }

  /** Stamps the connection's next sequence number and sends or queues (before a session, and for viewers). */
  send(unsequenced: Unsequenced<ServerMessage>): void {
    if (this.#closed) return;
    const msg = { ...unsequenced, seq: ++this.#seq } as ServerMessage;
    this.sendEncoded(encodeServerMessage(msg, this.mode), msg.type);
  }

  /** Sends with a seq the caller owns (a meeting's, for its viewers). */
  sendAt(unsequenced: Unsequenced<ServerMessage>, seq: number): void {
    if (this.#closed) return;
    const msg = { ...unsequenced, seq } as ServerMessage;
    this.sendEncoded(encodeServerMessage(msg, this.mode), msg.type);
  }

  /** A message without a seq: about the connection, not the session (`resumed`). */
  sendUnsequenced(msg: ResumedMessage): void {
    if (this.#closed) return;
    this.sendEncoded(encodeServerMessage(msg, this.mode), msg.type);
  }

  /** A message already stamped and encoded (by a session's replay log). */
  sendEncoded(data: string | Uint8Array, type: WireMessage['type']): void {
    if (this.#closed) return;
    if (!this.congested && this.#channel.bufferedAmount() < this.#opts.maxBufferedBytes) {
      this.#write(data);
      return;
    }
    if (!this.congested) this.#congestedSince = Date.now();
    if (type === 'partial') {
      if (this.#pendingPartial) this.coalesced++;
      this.#pendingPartial = data;
    } else {
      // A final supersedes the pending partial of its segment.
      if (type === 'final' && this.#pendingPartial) {
        this.#pendingPartial = null;
        this.coalesced++;
      }
      // Past the bound the reader is lost anyway (its owner drops it on the
      // next sweep); stop queueing so memory stays bounded until then.
      if (this.#queuedBytes + byteLength(data) > this.#opts.maxQueuedBytes) {
        this.#overflowed = true;
        this.discarded++;
        return;
      }
      this.#queue.push(data);
      this.#queuedBytes += byteLength(data);
    }
  }

  /** Call when the transport reports the socket drained. */
  drain(): void {
    if (this.#closed) return;
    while (this.#queue.length && this.#channel.bufferedAmount() < this.#opts.maxBufferedBytes) {
      const d = this.#queue.shift()!;
      this.#queuedBytes -= byteLength(d);
      this.#write(d);
    }
    if (!this.#queue.length && this.#pendingPartial && this.#channel.bufferedAmount() < this.#opts.maxBufferedBytes) {
      const d = this.#pendingPartial;
      this.#pendingPartial = null;
      this.#write(d);
    }
    if (!this.#queue.length && !this.#pendingPartial) {
      this.#congestedSince = 0;
      if (this.#closeAfterFlush) this.close(this.#closeAfterFlush.code, this.#closeAfterFlush.reason);
    }
  }

  /** Closes once queued messages (e.g. the final `end`) reach the transport. */
  closeWhenFlushed(code: number, reason: string): void {
    if (this.#closed) return;
    if (this.flushed) this.close(code, reason);
    else this.#closeAfterFlush = { code, reason };
  }

  close(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#pendingPartial = null;
    this.#channel.close(code, reason);
  }

  /** Closed by us, or the peer went away. */
  markClosed(): void {
    this.#closed = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#pendingPartial = null;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True when everything handed to send() has reached the transport. */
  get flushed(): boolean {
    return this.#queue.length === 0 && this.#pendingPartial === null;
  }

  #write(data: string | Uint8Array): void {
    this.sent++;
    this.#channel.send(data, typeof data !== 'string');
  }
}

/** Heap bytes of an encoded message (UTF-16 strings: 2 per char). */
export function byteLength(d: string | Uint8Array): number {
  return typeof d === 'string' ? d.length * 2 : d.byteLength;
}
