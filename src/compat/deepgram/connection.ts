/**
 * One `/v1/listen` WebSocket in Deepgram's live dialect. It is a decoder and
 * an encoder around the native connection, nothing more:
 *
 *   client ─► DeepgramConnection ─► (µ-law/A-law → PCM, re-cut) ─► ListenConnection ─► Session
 *   client ◄─ DeepgramChannel (Results, Metadata, …) ◄──────────── Outbox ◄───────────── Session
 *
 * Client messages: binary audio of any size (an empty frame means
 * CloseStream), and JSON `KeepAlive`, `Finalize`, `CloseStream`.
 *
 * Containerized audio (no `encoding`) goes through a live decoder first
 * (src/files/live-decoder.ts, ffmpeg): the client's bytes and controls are
 * taken in order; a Finalize waits until the decoder has put out what came
 * before it (settle), a CloseStream until it has ended; then the decoded
 * 16 kHz PCM goes on exactly as linear16 would.
 *
 *   client ─► DeepgramConnection ─► ffmpeg (stdin → stdout) ─► re-cut ─► ListenConnection ─► Session
 */
import type { Logger } from 'pino';

import { closeCode } from '../../errors.js';
import { ListenConnection, type ListenContext, type ListenDeps } from '../../gateway/listen-connection.js';
import type { ConnectionHandler, WsConnection } from '../../transport/types.js';
import { LiveDecoder, type LiveDecoderSlots } from '../../files/live-decoder.js';
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
/**
 * Containerized audio waiting for the live decoder (queued here, or in
 * ffmpeg's stdin buffer): beyond this the connection is dropped. Opus at
 * 32 kbit/s is about 4 minutes of audio.
 */
export const MAX_DECODER_INFLIGHT_BYTES = 1024 * 1024;
/** Stop reading the socket while this much waits for the decoder (resume on drain). */
const DECODER_HIGH_WATER = 64 * 1024;

type Control = 'Finalize' | 'CloseStream';

export interface DeepgramDeps extends ListenDeps {
  /** Live decoders for containerized audio (files.maxLiveDecoders). */
  readonly liveDecoders: LiveDecoderSlots;
}

/** The live decoder's side of one connection: its queue of client bytes and controls, in order. */
interface Container {
  decoder: LiveDecoder | null;
  queue: (Uint8Array | Control)[];
  queuedBytes: number;
  /** A control waiting for the decoder (settle or end). */
  busy: Control | null;
  /** CloseStream taken: no more input for the decoder. */
  ending: boolean;
}

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
  /** Containerized audio only. */
  #container: Container | null = null;

  constructor(deps: DeepgramDeps, conn: WsConnection, ctx: ListenContext, params: DeepgramParams) {
    this.#params = params;
    this.#log = deps.log;
    this.#maxErrors = deps.config.limits.maxErrorsPerSession;
    this.#channel = new DeepgramChannel(conn, params);
    // A decoder slot before the session: without one, no session starts.
    let release: (() => void) | null = null;
    if (params.encoding === 'container') {
      release = deps.liveDecoders.acquire();
      if (!release) ctx = { ...ctx, start: null };
    }
    const bytesPerFrame = 2 * params.channels;
    this.#bytesPerSecond = bytesPerFrame * params.sampleRate;
    this.#holdBytes = Math.ceil((params.sampleRate * HOLD_MS) / 1000) * bytesPerFrame;
    this.#recut = new Recutter({ bytesPerFrame, sampleRate: params.sampleRate, holdMs: HOLD_MS, maxPieceMs: PIECE_MS, maxBufferedBytes: MAX_BUFFERED_BYTES });
    this.#table = params.encoding === 'mulaw' ? ULAW_TABLE : params.encoding === 'alaw' ? ALAW_TABLE : null;
    this.#scratch = this.#table ? new Uint8Array(G711_CHUNK * 2) : null;
    this.#inner = new ListenConnection(deps, this.#channel, { ...ctx, mode: 'json' });
    // Audio waiting here goes on when the session has room again, then the controls that came after it.
    this.#inner.onReadResumed(() => this.#resumed());
    if (params.encoding === 'container') {
      if (!release) {
        const max = deps.liveDecoders.max;
        this.#channel.clientError('CAP_ERR_CAPACITY', `all ${max} live audio decoders (files.maxLiveDecoders) are in use; retry later`, true);
        this.#channel.close(closeCode('CAP_ERR_CAPACITY'), 'CAP_ERR_CAPACITY');
        return;
      }
      this.#startDecoder(release);
    }
  }

  // ------------------------------------------------------ containerized audio

  #startDecoder(release: () => void): void {
    const c: Container = { decoder: null, queue: [], queuedBytes: 0, busy: null, ending: false };
    this.#container = c;
    c.decoder = new LiveDecoder(
      release,
      {
        data: (pcm) => {
          this.#audio(pcm);
          // The session is full: stop taking decoder output (ffmpeg then stops reading, and its pipe fills).
          if (this.#inner.readPaused) c.decoder?.pauseOutput();
        },
        drain: () => {
          if (c.decoder && c.decoder.inFlight + c.queuedBytes < DECODER_HIGH_WATER) this.#inner.holdReading(false);
        },
        exit: (err) => {
          this.#inner.holdReading(false);
          if (err) {
            this.#log.warn({ remote: this.#channel.remoteAddress, err: err.message, kind: err.kind }, 'deepgram connection: live decoder failed');
            this.#channel.clientError('CAP_ERR_AUDIO_DECODE', err.message, true);
            this.#channel.close(closeCode('CAP_ERR_AUDIO_DECODE'), 'CAP_ERR_AUDIO_DECODE');
            return;
          }
          // Ended after a CloseStream: everything it held is out.
          this.#containerDone();
        },
      },
    );
    // Every end of the session, whatever ended it, ends the decoder.
    this.#channel.onEnd = () => this.#killDecoder();
  }

  #killDecoder(): void {
    const c = this.#container;
    if (!c) return;
    c.decoder?.kill();
    c.queue = [];
    c.queuedBytes = 0;
  }

  /** Client bytes or a control, in arrival order, into the decoder. */
  #containerIn(item: Uint8Array | Control): void {
    const c = this.#container!;
    if (c.ending) {
      // After CloseStream: the session refuses audio (CAP_ERR_AUDIO_AFTER_STOP); a control has nothing left to do.
      if (typeof item !== 'string') this.#inner.message(item.subarray(0, item.byteLength & ~1), true);
      return;
    }
    if (typeof item !== 'string') {
      const d = c.decoder!;
      if (d.inFlight + c.queuedBytes + item.byteLength > MAX_DECODER_INFLIGHT_BYTES) {
        this.#overflow();
        return;
      }
      if (c.busy || c.queue.length) {
        c.queue.push(item.slice());
        c.queuedBytes += item.byteLength;
        this.#inner.holdReading(c.queuedBytes + d.inFlight >= DECODER_HIGH_WATER);
        return;
      }
      if (!d.write(item)) this.#inner.holdReading(true);
      return;
    }
    if (c.busy || c.queue.length) {
      c.queue.push(item);
      return;
    }
    this.#containerControl(item);
  }

  /** A control waits for the decoder: Finalize until what came before is out, CloseStream until it has ended. */
  #containerControl(ctl: Control): void {
    const c = this.#container!;
    c.busy = ctl;
    if (ctl === 'CloseStream') {
      c.ending = true;
      c.decoder!.end();
    } else c.decoder!.settle(() => this.#containerDone());
  }

  /** The decoder caught up with the waiting control: run it, then what queued behind it. */
  #containerDone(): void {
    const c = this.#container!;
    const ctl = c.busy;
    c.busy = null;
    if (ctl) this.#control(ctl);
    while (c.queue.length && !c.busy && !c.ending) {
      const next = c.queue.shift()!;
      if (typeof next === 'string') {
        this.#containerControl(next);
        break;
      }
      c.queuedBytes -= next.byteLength;
      if (!c.decoder!.write(next)) this.#inner.holdReading(true);
    }
    if (c.decoder && c.decoder.inFlight + c.queuedBytes < DECODER_HIGH_WATER) this.#inner.holdReading(false);
  }

  /** Reading resumed: the audio waiting here goes on, then what came after it, in order. */
  #resumed(): void {
    this.#container?.decoder?.resumeOutput();
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
      if (this.#container) this.#containerIn(data.byteLength === 0 ? 'CloseStream' : data);
      else if (data.byteLength === 0) this.#control('CloseStream');
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
        if (this.#container) this.#containerIn(type);
        else this.#control(type);
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
    this.#killDecoder();
    this.#channel.markClosed();
    this.#inner.closed(code);
  }
}
