/**
 * A session's messages, as sent, for a client that resumes after a dropped
 * connection. The log stamps the session's `seq` (so seq is continuous
 * across connections), encodes each message once (the bytes sent are the
 * bytes kept), and keeps the newest ones within a byte bound.
 *
 * Over the bound, superseded messages go first: every partial but the
 * newest, and every ack but the newest, become tombstones (their seq and
 * type, no bytes), so a replay can say how many it skipped. Only if that is
 * not enough do the oldest entries go, whatever their type; a replay from
 * before them is incomplete and says so.
 */
import { decodeServerMessage, encodeServerMessage } from '../protocol/codec.js';
import type { ServerMessage, Unsequenced, WireMode } from '../protocol/messages.js';
import { byteLength } from './outbox.js';

type Encoded = string | Uint8Array;

interface Entry {
  readonly seq: number;
  readonly type: ServerMessage['type'];
  /** null: a tombstone (evicted partial or ack). */
  data: Encoded | null;
}

/** What a tombstone counts for, against the bound: an entry's own fields. */
const TOMBSTONE_BYTES = 32;

export interface Replay {
  /** The messages after lastSeq that are kept, in order, as encoded. */
  readonly messages: { readonly type: ServerMessage['type']; readonly data: Encoded }[];
  readonly skippedPartials: number;
  readonly skippedAcks: number;
  /** Messages after lastSeq that are no longer kept at all (0 unless the bound was passed by finals alone). */
  readonly lost: number;
}

export class ReplayLog {
  #mode: WireMode;
  #maxBytes: number;
  #entries: Entry[] = [];
  /** Index of the first live entry (dropping from the head is O(1)). */
  #head = 0;
  /** Entries compacted away from the front of #entries (absolute index = array index + #dropped). */
  #dropped = 0;
  #bytes = 0;
  #seq: number;
  /** Entries with seq <= this are gone entirely. */
  #floor: number;
  /** The seq before the session's first message (errors before `start` are the connection's, not kept). */
  #first: number;
  /** Indices of partials and acks a newer one of their type has superseded, oldest first, not yet tombstoned. */
  #superseded: number[] = [];
  #supersededHead = 0;
  /** Index of the newest partial and the newest ack (-1: none). */
  #newest: { partial: number; ack: number } = { partial: -1, ack: -1 };

  constructor(opts: { mode: WireMode; maxBytes: number; seq: number }) {
    this.#mode = opts.mode;
    this.#maxBytes = opts.maxBytes;
    this.#seq = opts.seq;
    this.#floor = opts.seq;
    this.#first = opts.seq;
  }

  /** The last seq stamped. */
  get seq(): number {
    return this.#seq;
  }
  get bytes(): number {
    return this.#bytes;
  }
  get mode(): WireMode {
    return this.#mode;
  }

  /** Stamps the next seq, encodes once, keeps it; returns the bytes to send. */
  append(unsequenced: Unsequenced<ServerMessage>): Encoded {
    const msg = { ...unsequenced, seq: ++this.#seq } as ServerMessage;
    const data = encodeServerMessage(msg, this.#mode);
    const index = this.#entries.length + this.#dropped;
    if (msg.type === 'partial' || msg.type === 'ack') {
      const prev = this.#newest[msg.type];
      if (prev >= 0) this.#superseded.push(prev);
      this.#newest[msg.type] = index;
    }
    this.#entries.push({ seq: msg.seq, type: msg.type, data });
    this.#bytes += byteLength(data);
    if (this.#bytes > this.#maxBytes) this.#evict();
    return data;
  }

  /** Everything after lastSeq; null when lastSeq is ahead of the session (the client cannot have seen it). */
  after(lastSeq: number): Replay | null {
    if (!Number.isInteger(lastSeq) || lastSeq < 0 || lastSeq > this.#seq) return null;
    const messages: { type: ServerMessage['type']; data: Encoded }[] = [];
    let skippedPartials = 0;
    let skippedAcks = 0;
    for (let i = this.#head; i < this.#entries.length; i++) {
      const e = this.#entries[i]!;
      if (e.seq <= lastSeq) continue;
      if (e.data !== null) messages.push({ type: e.type, data: e.data });
      else if (e.type === 'partial') skippedPartials++;
      else skippedAcks++;
    }
    return { messages, skippedPartials, skippedAcks, lost: Math.max(0, this.#floor - Math.max(lastSeq, this.#first)) };
  }

  /** A resumed connection speaks another subprotocol: re-encode what is kept (rare). */
  setMode(mode: WireMode): void {
    if (mode === this.#mode) return;
    this.#mode = mode;
    this.#bytes = 0;
    for (let i = this.#head; i < this.#entries.length; i++) {
      const e = this.#entries[i]!;
      if (e.data !== null) e.data = encodeServerMessage(decodeServerMessage(e.data), mode);
      this.#bytes += e.data === null ? TOMBSTONE_BYTES : byteLength(e.data);
    }
    if (this.#bytes > this.#maxBytes) this.#evict();
  }

  /** Amortized O(1) per message: each entry is tombstoned at most once and dropped at most once. */
  #evict(): void {
    // Superseded first, oldest first: partials and acks a newer one replaced.
    while (this.#bytes > this.#maxBytes && this.#supersededHead < this.#superseded.length) {
      const e = this.#entries[this.#superseded[this.#supersededHead++]! - this.#dropped];
      if (!e || e.data === null) continue; // already dropped from the head
      this.#bytes += TOMBSTONE_BYTES - byteLength(e.data);
      e.data = null;
    }
    // Then the oldest, whatever they are.
    while (this.#bytes > this.#maxBytes && this.#head < this.#entries.length) {
      const e = this.#entries[this.#head++]!;
      this.#bytes -= e.data === null ? TOMBSTONE_BYTES : byteLength(e.data);
      this.#floor = e.seq;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#dropped += this.#head;
      this.#head = 0;
    }
    if (this.#supersededHead > 1024 && this.#supersededHead * 2 > this.#superseded.length) {
      this.#superseded = this.#superseded.slice(this.#supersededHead);
      this.#supersededHead = 0;
    }
  }
}
