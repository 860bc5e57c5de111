/**
 * One `/v1/listen` WebSocket in Deepgram's live dialect. It is a decoder and
 * an encoder around the native connection, nothing more:
 *
 *   client ─► DeepgramConnection ─► (µ-law/A-law → PCM, re-cut) ─► ListenConnection ─► Session
 *   client ◄─ DeepgramChannel (Results, Metadata, …) ◄──────────── Outbox ◄───────────── Session
 *
 * Client messages: binary audio of any size (an empty frame means
 * CloseStream), and JSON `KeepAlive`, `Finalize`, `CloseStream`.
 */
import type { Logger } from 'pino';

import { closeCode } from '../../errors.js';
import { ListenConnection, type ListenContext, type ListenDeps } from '../../gateway/listen-connection.js';
import type { ConnectionHandler, WsConnection } from '../../transport/types.js';
import { DeepgramChannel } from './channel.js';
import { ALAW_TABLE, expandG711, ULAW_TABLE } from './g711.js';
import type { DeepgramParams } from './params.js';
import { Recutter } from './recut.js';

const enc = new TextEncoder();
const FLUSH = enc.encode('{"type":"flush"}');
const STOP = enc.encode('{"type":"stop"}');
const KEEPALIVE = enc.encode('{"type":"keepalive"}');
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Audio held back, so that a Finalize or CloseStream never has a tail shorter than a frame to pad (see Recutter). */
export const HOLD_MS = 10;
/** Largest frame passed to the session. */
const PIECE_MS = 100;
/** A client's audio waiting here while its session's backlog is full: beyond this the connection is dropped. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
const G711_CHUNK = 4096;

type Control = 'Finalize' | 'CloseStream';

export class DeepgramConnection implements ConnectionHandler {
  #inner: ListenConnection;
  #channel: DeepgramChannel;
  #recut: Recutter;
  #params: DeepgramParams;
  #log: Logger;
  #table: Int16Array | null;
  #scratch: Uint8Array | null;
  #bytesPerSecond: number;
  #closing = false;
  /**
   * A Finalize or CloseStream that arrived while audio before it was still
   * waiting here, and everything after it, in order.
   */
  #deferred: (Control | Uint8Array)[] = [];
  #deferredBytes = 0;
  #holdBytes: number;
  #errors = 0;
  #maxErrors: number;
  #emit = (frame: Uint8Array) => this.#inner.audio(frame);
  #accepting = () => !this.#inner.readPaused;

  constructor(deps: ListenDeps, conn: WsConnection, ctx: ListenContext, params: DeepgramParams) {
    this.#params = params;
    this.#log = deps.log;
    this.#maxErrors = deps.config.limits.maxErrorsPerSession;
    this.#channel = new DeepgramChannel(conn, params);
    const bytesPerFrame = 2 * params.channels;
    this.#bytesPerSecond = bytesPerFrame * params.sampleRate;
    this.#holdBytes = Math.ceil((params.sampleRate * HOLD_MS) / 1000) * bytesPerFrame;
    this.#recut = new Recutter({ bytesPerFrame, sampleRate: params.sampleRate, holdMs: HOLD_MS, maxPieceMs: PIECE_MS, maxBufferedBytes: MAX_BUFFERED_BYTES });
    this.#table = params.encoding === 'mulaw' ? ULAW_TABLE : params.encoding === 'alaw' ? ALAW_TABLE : null;
    this.#scratch = this.#table ? new Uint8Array(G711_CHUNK * 2) : null;
    this.#inner = new ListenConnection(deps, this.#channel, { ...ctx, mode: 'json' });
    // Audio waiting here goes on when the session has room again, then the controls that came after it.
    this.#inner.onReadResumed(() => this.#resumed());
  }

  /** Reading resumed: the audio waiting here goes on, then what came after it, in order. */
  #resumed(): void {
    this.#recut.pump(this.#emit, this.#accepting);
    while (this.#deferred.length) {
      const next = this.#deferred[0]!;
      if (typeof next === 'string') {
        if (this.#waiting()) return;
        this.#deferred.shift();
        this.#run(next);
      } else {
        this.#deferred.shift();
        this.#deferredBytes -= next.byteLength;
        this.#feed(next);
      }
    }
  }

  /** Audio is waiting here beyond the held-back tail (the session is full): controls must wait behind it. */
  #waiting(): boolean {
    return this.#inner.readPaused && this.#recut.buffered >= this.#recut.minBytes + this.#holdBytes;
  }

  #control(c: Control): void {
    if (this.#deferred.length || this.#waiting()) {
      this.#deferred.push(c);
      return;
    }
    this.#run(c);
  }

  #run(c: Control): void {
    if (c === 'Finalize') this.#finalize();
    else this.#closeStream();
  }

  message(data: Uint8Array, isBinary: boolean): void {
    if (isBinary) {
      if (data.byteLength === 0) this.#control('CloseStream');
      else this.#audio(data);
      return;
    }
    let msg: unknown;
    try {
      msg = JSON.parse(utf8.decode(data));
    } catch {
      this.#error('CAP_ERR_INVALID_JSON', 'text frame is not valid JSON; expected {"type":"KeepAlive"|"Finalize"|"CloseStream"}');
      return;
    }
    const type = typeof msg === 'object' && msg !== null ? (msg as { type?: unknown }).type : undefined;
    switch (type) {
      case 'KeepAlive':
        this.#inner.message(KEEPALIVE, false);
        return;
      case 'Finalize':
      case 'CloseStream':
        this.#control(type);
        return;
      default:
        this.#error(
          'CAP_ERR_UNKNOWN_TYPE',
          `unknown message type ${JSON.stringify(type ?? null).slice(0, 64)} (expected KeepAlive, Finalize or CloseStream)`,
        );
    }
  }

  #audio(data: Uint8Array): void {
    if (this.#deferred.length) {
      // Behind a Finalize or CloseStream that waits: keep the order.
      if (this.#deferredBytes + this.#recut.buffered + data.byteLength > MAX_BUFFERED_BYTES) {
        this.#overflow();
        return;
      }
      this.#deferred.push(data.slice());
      this.#deferredBytes += data.byteLength;
      return;
    }
    this.#feed(data);
  }

  #feed(data: Uint8Array): void {
    if (this.#closing) {
      // The session refuses it and says so (CAP_ERR_AUDIO_AFTER_STOP).
      this.#inner.message(data.subarray(0, data.byteLength - (data.byteLength % (2 * this.#params.channels))), true);
      return;
    }
    const t = this.#table;
    if (!t) {
      if (!this.#recut.push(data, this.#emit, this.#accepting)) this.#overflow();
      return;
    }
    const s = this.#scratch!;
    for (let off = 0; off < data.byteLength; off += G711_CHUNK) {
      const part = data.subarray(off, Math.min(data.byteLength, off + G711_CHUNK));
      const n = expandG711(t, part, s);
      if (!this.#recut.push(s.subarray(0, n), this.#emit, this.#accepting)) {
        this.#overflow();
        return;
      }
    }
  }

  /** Everything sent so far becomes final; the session stays open. */
  #finalize(): void {
    if (this.#closing) return;
    const slack = this.#params.sampleRate === 16000 ? 0.001 : 0.02;
    if (this.#recut.buffered > 0) this.#recut.drain(this.#emit, 10);
    this.#channel.finalizeRequested(this.#recut.forwarded / this.#bytesPerSecond, slack);
    this.#inner.message(FLUSH, false);
  }

  /** The last Results, then Metadata, then close 1000. */
  #closeStream(): void {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#recut.buffered > 0) this.#recut.drain(this.#emit, 10);
    this.#inner.message(STOP, false);
  }

  #overflow(): void {
    this.#log.warn({ remote: this.#channel.remoteAddress, bufferedBytes: this.#recut.buffered }, 'deepgram connection: audio buffer full; closing');
    this.#channel.clientError('CAP_ERR_ENGINE_OVERLOAD', 'too much audio is waiting for this session; the connection is closed', true);
    this.#channel.close(closeCode('CAP_ERR_ENGINE_OVERLOAD'), 'CAP_ERR_ENGINE_OVERLOAD');
  }

  #error(code: 'CAP_ERR_INVALID_JSON' | 'CAP_ERR_UNKNOWN_TYPE', message: string): void {
    this.#errors++;
    if (this.#errors > this.#maxErrors) {
      this.#channel.clientError('CAP_ERR_PROTOCOL_VIOLATION', `more than limits.maxErrorsPerSession (${this.#maxErrors}) errors`, true);
      this.#channel.close(closeCode('CAP_ERR_PROTOCOL_VIOLATION'), 'CAP_ERR_PROTOCOL_VIOLATION');
      return;
    }
    this.#channel.clientError(code, message, false);
  }

  drain(): void {
    this.#inner.drain();
  }

  closed(code: number): void {
    this.#channel.markClosed();
    this.#inner.closed(code);
  }
}
