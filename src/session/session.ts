/**
 * One captioning session: a client's audio in, captions out.
 *
 *   ingest(bytes) ─► validate frame ─► convert (16 kHz mono f32) ─► ring ─► batcher.markReady
 *   batcher ─► nextWindow (cut from ring) ─► engine ─► onResult ─► ring.consume ─► captions ─► outbox
 *
 * Lifecycle: active ─► finishing (stop, max duration, idle, shutdown: no
 * new audio, everything received is decoded and finalized) ─► ended (end
 * message, close code, slab and engine stream returned). `abort` skips
 * finishing: the backlog is dropped and counted.
 *
 * Invariant: receivedSamples = decodedSamples + droppedSamples at the end,
 * and the client is told all three.
 */
import type { Logger } from 'pino';

import { AudioConverter, bytesPerFrame } from '../audio/converter.js';
import { CaptionStabilizer, type CaptionEvent } from '../captions/stabilizer.js';
import type { Shapes } from '../config/derive.js';
import type { Config } from '../config/schema.js';
import type { Engine, EngineResult, StreamId } from '../engine/types.js';
import { closeCode, CloseCode, ERRORS, type EndReason, type ErrorCode } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { ServerMessage, SessionMeta, StartMessage, Unsequenced } from '../protocol/messages.js';
import type { RingBuffer } from '../pool/ring-buffer.js';
import type { Slab } from '../pool/slab-pool.js';
import type { BatchedSession } from '../scheduler/window-batcher.js';
import { ArrivalLog } from './arrival-log.js';
import type { Outbox } from './outbox.js';

export const MIN_FRAME_MS = 10;
export const MAX_FRAME_MS = 1000;
const RATE = 16_000;
const ACK_INTERVAL_MS = 200;

export interface SessionDeps {
  readonly config: Readonly<Config>;
  readonly shapes: Shapes;
  readonly engine: Engine;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
  /** Batcher hook: this session may have a window ready. */
  markReady(s: Session): void;
  /** Called once when the session has ended (slab and bookkeeping go back). */
  released(s: Session): void;
  /** Captions out, for meeting viewers and caption files. */
  published?(s: Session, ev: CaptionEvent): void;
  /** Scratch for conversion output, shared: the main thread is single-threaded. */
  readonly scratch: Float32Array;
}

export type SessionState = 'active' | 'finishing' | 'ended';

interface Ending {
  reason: EndReason;
  close: number;
  message: string;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

export class Session implements BatchedSession {
  readonly id: string;
  readonly remoteAddress: string;
  readonly meta: SessionMeta;
  readonly format: { sampleRate: number; channels: number; encoding: 's16le' | 'f32le' };
  readonly streamId: StreamId;
  readonly ring: RingBuffer;
  readonly startedAt = Date.now();
  readonly log: Logger;

  // Scheduler-visible state (WindowSource / BatchedSession).
  inFlight = false;
  parked = false;
  flushPending = false;
  flushSubmitted = false;
  queued = false;
  readySince = 0;

  state: SessionState = 'active';
  receivedSamples = 0;
  decodedSamples = 0;
  droppedSamples = 0;
  errorsSent = 0;
  lastActivity = Date.now();

  #deps: SessionDeps;
  #slab: Slab;
  #outbox: Outbox;
  #converter: AudioConverter;
  #bytesPerFrame: number;
  #stabilizer: CaptionStabilizer;
  #ending: Ending | null = null;
  #lagWarned = false;
  #arrivals = new ArrivalLog(512);
  #afterStop = { frames: 0, bytes: 0, reportedAt: -Infinity };
  #firstPartialAt = new Map<number, number>();
  #wantAck: boolean;
  #lastAckAt = 0;
  #lastAckDecoded = -1;
  #readyLatched = false;
  #ackTimer: NodeJS.Timeout | null = null;
  #maxSessionSeconds: number;
  #maxSessionSamples: number;

  constructor(
    deps: SessionDeps,
    init: {
      id: string;
      start: StartMessage;
      slab: Slab;
      ring: RingBuffer;
      outbox: Outbox;
      remoteAddress: string;
      /** Lower than the server's limit when a token says so. */
      maxSessionSeconds?: number | undefined;
    },
  ) {
    this.#deps = deps;
    this.id = init.id;
    this.remoteAddress = init.remoteAddress;
    this.meta = init.start.meta ?? {};
    this.format = { sampleRate: init.start.sampleRate, channels: init.start.channels, encoding: init.start.encoding };
    this.#slab = init.slab;
    this.ring = init.ring;
    this.#outbox = init.outbox;
    this.log = deps.log.child({ session: this.id });
    this.#converter = new AudioConverter(this.format, deps.config.audio.resampleQuality);
    this.#bytesPerFrame = bytesPerFrame(this.format);
    this.#maxSessionSeconds = Math.min(deps.config.limits.maxSessionSeconds, init.maxSessionSeconds ?? Infinity);
    this.#maxSessionSamples = Math.round(this.#maxSessionSeconds * RATE);
    const interim = init.start.interim ?? deps.config.captions.interim;
    this.#wantAck = init.start.ack === true;
    this.#stabilizer = new CaptionStabilizer({ interim, speaker: this.meta.speaker });
    this.streamId = deps.engine.openStream();
    const { limits } = deps.config;
    this.#send({
      type: 'ready',
      sessionId: this.id,
      format: this.format,
      language: init.start.language ?? 'en',
      interim,
      ack: this.#wantAck,
      limits: {
        maxSessionSeconds: this.#maxSessionSeconds,
        idleTimeoutSeconds: limits.idleTimeoutSeconds,
        maxFrameBytes: limits.maxFrameBytes,
        minFrameMs: MIN_FRAME_MS,
        maxFrameMs: MAX_FRAME_MS,
      },
      engine: { name: deps.engine.info.name, version: deps.engine.info.version },
    });
    this.log.info({ format: this.format, meta: this.meta, remote: this.remoteAddress }, 'session started');
  }

  get ended(): boolean {
    return this.state === 'ended';
  }
  get outbox(): Outbox {
    return this.#outbox;
  }
  get backlogSeconds(): number {
    return this.ring.available / RATE;
  }
  /**
   * How long the oldest undecoded audio has waited, seconds. Unlike the
   * backlog, a burst from a client catching up does not inflate it: only
   * an engine that cannot keep up (or a stream waiting for a decoder) does.
   */
  waitingSeconds(now = performance.now()): number {
    if (this.ring.available === 0) return 0;
    const arrived = this.#arrivals.timeOf(this.ring.readPos);
    return arrived === undefined ? 0 : Math.max(0, (now - arrived) / 1000);
  }
  get stabilizer(): CaptionStabilizer {
    return this.#stabilizer;
  }

  // ------------------------------------------------------------------ input

  touch(): void {
    this.lastActivity = Date.now();
  }

  /** One binary audio frame. `bytes` is only valid during this call. */
  ingest(bytes: Uint8Array): void {
    if (this.state !== 'active') {
      if (this.state === 'finishing') this.#rejectAfterStop(bytes.byteLength);
      return;
    }
    this.touch();
    const { limits } = this.#deps.config;
    const n = bytes.byteLength;
    if (n > limits.maxFrameBytes) {
      this.error('CAP_ERR_FRAME_TOO_LARGE', `audio frame of ${n} bytes exceeds limits.maxFrameBytes (${limits.maxFrameBytes}); not accepted`);
      return;
    }
    if (n % this.#bytesPerFrame !== 0) {
      this.error(
        'CAP_ERR_PARTIAL_SAMPLE',
        `audio frame of ${n} bytes is not a whole number of ${this.#bytesPerFrame}-byte sample frames ` +
          `(${this.format.encoding}, ${this.format.channels} ch); not accepted`,
      );
      return;
    }
    const frames = n / this.#bytesPerFrame;
    const ms = (frames * 1000) / this.format.sampleRate;
    if (ms < MIN_FRAME_MS - 1e-9 || ms > MAX_FRAME_MS + 1e-9) {
      this.error(
        'CAP_ERR_FRAME_DURATION',
        `audio frame of ${ms.toFixed(1)} ms is outside ${MIN_FRAME_MS}-${MAX_FRAME_MS} ms; not accepted`,
      );
      return;
    }

    // Session length is policy: accept audio up to the limit, then end.
    const maxSamples = this.#maxSessionSamples;
    let accept = bytes;
    let refusedSeconds = 0;
    const expected = (frames * RATE) / this.format.sampleRate;
    if (this.receivedSamples + expected > maxSamples) {
      const allowedFrames = Math.max(0, Math.floor(((maxSamples - this.receivedSamples) * this.format.sampleRate) / RATE));
      accept = bytes.subarray(0, allowedFrames * this.#bytesPerFrame);
      refusedSeconds = (frames - allowedFrames) / this.format.sampleRate;
    }
    if (accept.byteLength > 0) this.#write(this.#converter.convert(accept, this.#deps.scratch));
    if (this.ended) return;
    if (refusedSeconds > 0 || this.receivedSamples >= maxSamples) {
      this.finish('max_duration', CloseCode.MAX_DURATION, `session reached its maximum duration (${this.#maxSessionSeconds} s)`, {
        code: 'CAP_ERR_MAX_DURATION',
        message:
          `session reached its maximum duration (${this.#maxSessionSeconds} s); ` +
          `${refusedSeconds.toFixed(3)} s of audio beyond the limit was not accepted`,
      });
    }
  }

  /** Writes n converted samples from scratch into the ring. */
  #write(n: number): void {
    if (n === 0) return;
    if (n > this.ring.free) {
      // Unreachable with a valid config (lagMaxSeconds leaves a window of
      // room); handled anyway: nothing is dropped silently.
      this.receivedSamples += n;
      this.droppedSamples += n;
      this.#deps.metrics.samplesReceived.inc(n);
      this.#overload();
      return;
    }
    this.ring.write(this.#deps.scratch.subarray(0, n));
    this.receivedSamples += n;
    this.#deps.metrics.samplesReceived.inc(n);
    this.#arrivals.record(this.ring.writePos, performance.now());
    this.#checkLag();
    this.#deps.markReady(this);
  }

  #checkLag(): void {
    const { shapes } = this.#deps;
    const backlog = this.ring.available;
    if (backlog > shapes.lagMaxSamples) {
      this.#overload();
      return;
    }
    if (backlog > shapes.lagWarnSamples && !this.#lagWarned) {
      this.#lagWarned = true;
      this.#deps.metrics.lagWarnings.inc();
      this.#send({
        type: 'warning',
        code: 'lagging',
        message: `captions are ${(backlog / RATE).toFixed(1)} s behind the audio; at ${this.#deps.config.limits.lagMaxSeconds} s the session ends`,
        lagSeconds: round3(backlog / RATE),
      });
    } else if (backlog < shapes.lagWarnSamples / 2) {
      this.#lagWarned = false;
    }
  }

  #overload(): void {
    this.abort('engine_overload', {
      code: 'CAP_ERR_ENGINE_OVERLOAD',
      message:
        `the engine fell more than ${this.#deps.config.limits.lagMaxSeconds} s behind this session; ` +
        'the backlog was not decoded (see end.audio.droppedSeconds)',
    });
  }

  control(type: 'flush' | 'stop' | 'keepalive' | 'start'): void {
    this.touch();
    switch (type) {
      case 'start':
        this.error('CAP_ERR_ALREADY_STARTED', 'the session has already started; this start was ignored');
        return;
      case 'keepalive':
        return;
      case 'flush':
        if (this.state !== 'active') return;
        this.flushPending = true;
        this.#deps.markReady(this);
        return;
      case 'stop':
        this.finish('client_stop', CloseCode.NORMAL, 'stopped by the client');
        return;
    }
  }

  // ----------------------------------------------------------------- engine

  onResult(r: EngineResult): void {
    if (this.ended) return;
    if (r.error) {
      this.log.warn({ engineError: r.error }, 'engine failed on a window');
      this.abort('engine_error', {
        code: 'CAP_ERR_ENGINE_FAILURE',
        message: `decoding failed (${r.error.code}: ${r.error.message}); the session ends`,
      });
      return;
    }
    if (r.consumed > 0) {
      this.ring.consume(r.consumed);
      this.decodedSamples += r.consumed;
      this.#deps.metrics.samplesDecoded.inc(r.consumed);
    }
    if (r.waiting) {
      // The engine's ready event can arrive before this result is handled.
      if (this.#readyLatched) this.#readyLatched = false;
      else this.parked = true;
    }
    if (this.flushSubmitted) {
      this.flushSubmitted = false;
      if (!r.flushed) this.flushPending = true; // parked before the flush ran; redo it
    }
    const now = performance.now();
    for (const ev of this.#stabilizer.accept(r)) {
      if (ev.type === 'partial') {
        this.#deps.metrics.partialRevisions.inc();
        if (ev.text && !this.#firstPartialAt.has(ev.segment)) this.#firstPartialAt.set(ev.segment, now);
      } else {
        this.#deps.metrics.committedWords.inc(ev.words.length);
        // Endpoint to final: from the arrival of the audio at the endpoint.
        const endArrived = this.#arrivals.timeOf(Math.round(ev.end * RATE));
        if (endArrived !== undefined) this.#deps.metrics.finalLatency.observe(Math.max(0, now - endArrived) / 1000);
        const firstAt = this.#firstPartialAt.get(ev.segment);
        const w0 = ev.words[0];
        if (firstAt !== undefined && w0) {
          const onset = this.#arrivals.timeOf(Math.round(w0.start * RATE));
          if (onset !== undefined) this.#deps.metrics.firstPartialLatency.observe(Math.max(0, firstAt - onset) / 1000);
        }
        this.#firstPartialAt.delete(ev.segment);
      }
      this.#send(ev);
      this.#deps.published?.(this, ev);
    }
    this.#maybeAck(false);
    this.#checkLag();
    this.#maybeComplete();
  }

  /** The engine reserved a decoder for this parked stream. */
  unpark(): void {
    if (!this.parked) {
      this.#readyLatched = true;
      return;
    }
    this.parked = false;
    this.#deps.markReady(this);
  }

  onEngineFailure(err: Error): void {
    if (this.ended) return;
    this.abort(this.state === 'finishing' && this.#ending?.reason === 'server_shutdown' ? 'server_shutdown' : 'engine_error', {
      code: 'CAP_ERR_ENGINE_FAILURE',
      message: `the engine failed: ${err.message}`,
    });
  }

  #maybeAck(force: boolean): void {
    if (!this.#wantAck || this.ended) return;
    const now = Date.now();
    if (!force && this.decodedSamples === this.#lastAckDecoded) return;
    if (!force && now - this.#lastAckAt < ACK_INTERVAL_MS && this.ring.available > 0) {
      // Throttled, not dropped: a sender waiting on this ack may have nothing
      // more to send until it arrives (a tail shorter than one window is not
      // decoded until more audio comes), so the ack must follow on its own.
      this.#ackTimer ??= setTimeout(() => {
        this.#ackTimer = null;
        this.#maybeAck(true);
      }, ACK_INTERVAL_MS - (now - this.#lastAckAt));
      return;
    }
    if (this.#ackTimer) {
      clearTimeout(this.#ackTimer);
      this.#ackTimer = null;
    }
    this.#lastAckAt = now;
    this.#lastAckDecoded = this.decodedSamples;
    this.#send({
      type: 'ack',
      receivedSeconds: round3(this.receivedSamples / RATE),
      decodedSeconds: round3(this.decodedSamples / RATE),
      backlogSeconds: round3(this.ring.available / RATE),
    });
  }

  // ---------------------------------------------------------------- ending

  /**
   * Graceful end: stop accepting audio, decode and finalize everything
   * received, then send `end` and close with `close`. An optional error
   * message goes first (max duration, idle timeout).
   */
  finish(reason: EndReason, close: number, message: string, error?: { code: ErrorCode; message: string }): void {
    if (this.state !== 'active') return;
    this.state = 'finishing';
    this.#ending = { reason, close, message };
    if (error) this.error(error.code, error.message, { force: true });
    // The resampler's tail belongs to the audio already accepted.
    const tail = this.#converter.flush(this.#deps.scratch);
    if (tail > 0) {
      if (tail <= this.ring.free) {
        this.ring.write(this.#deps.scratch.subarray(0, tail));
        this.receivedSamples += tail;
        this.#deps.metrics.samplesReceived.inc(tail);
      }
    }
    this.flushPending = true;
    this.#deps.markReady(this);
    this.#maybeComplete();
  }

  #maybeComplete(): void {
    if (this.state !== 'finishing') return;
    if (this.inFlight || this.flushPending || this.flushSubmitted || this.ring.available > 0) return;
    this.#end();
  }

  /**
   * Immediate end: the backlog is dropped and counted. With `error`, the
   * client gets the error and an `end`; without, nothing more is sent (the
   * client is gone or unreachable).
   */
  abort(
    reason: EndReason,
    error?: { code: ErrorCode; message: string },
    opts: { notify?: boolean; close?: number } = {},
  ): void {
    if (this.ended) return;
    const dropped = this.ring.discard();
    this.droppedSamples += dropped;
    this.#deps.metrics.samplesDropped.inc(dropped);
    const close = opts.close ?? (error ? closeCode(error.code) : CloseCode.SERVER_SHUTDOWN);
    this.#ending = { reason, close, message: error?.message ?? reason };
    if (error) this.error(error.code, error.message, { force: true });
    if (opts.notify === false) {
      this.#teardown();
      return;
    }
    this.#end();
  }

  /** The client went away: no messages, just release everything. */
  disconnected(): void {
    if (this.ended) return;
    this.#outbox.markClosed();
    const dropped = this.ring.discard();
    this.droppedSamples += dropped;
    this.#deps.metrics.samplesDropped.inc(dropped);
    this.log.info({ dropped }, 'client disconnected');
    this.#ending = { reason: 'client_stop', close: CloseCode.NORMAL, message: 'client disconnected' };
    this.#teardown('client_disconnect');
  }

  #end(): void {
    const e = this.#ending ?? { reason: 'server_shutdown' as EndReason, close: CloseCode.SERVER_SHUTDOWN, message: 'ended' };
    this.#maybeAck(true);
    this.#send({
      type: 'end',
      reason: e.reason,
      message: e.message,
      audio: {
        sampleRate: RATE,
        receivedSamples: this.receivedSamples,
        decodedSamples: this.decodedSamples,
        droppedSamples: this.droppedSamples,
        receivedSeconds: round3(this.receivedSamples / RATE),
        decodedSeconds: round3(this.decodedSamples / RATE),
        droppedSeconds: round3(this.droppedSamples / RATE),
      },
    });
    // Teardown first: closing can synchronously fire the transport's close
    // callback, which must find the session already ended.
    this.#teardown();
    this.#outbox.closeWhenFlushed(e.close, e.reason);
  }

  #teardown(label?: string): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    if (this.#ackTimer) {
      clearTimeout(this.#ackTimer);
      this.#ackTimer = null;
    }
    this.#deps.engine.closeStream(this.streamId);
    const reason = label ?? this.#ending?.reason ?? 'unknown';
    this.#deps.metrics.sessionsEnded.inc({ reason });
    this.log.info(
      {
        reason,
        receivedSeconds: round3(this.receivedSamples / RATE),
        decodedSeconds: round3(this.decodedSamples / RATE),
        droppedSeconds: round3(this.droppedSamples / RATE),
      },
      'session ended',
    );
    this.#deps.released(this);
  }

  /** For the manager: the slab to return, once. */
  get slab(): Slab {
    return this.#slab;
  }

  /**
   * A real-time client keeps sending until it sees `end`, and a server-side
   * end (shutdown, max duration) can take seconds to finish decoding. So the
   * refusal is reported at once, then at most once a second with running
   * totals, and does not count against the error budget: nothing is dropped
   * silently, and a well-behaved client is not cut off for it.
   */
  #rejectAfterStop(bytes: number): void {
    const r = this.#afterStop;
    r.frames++;
    r.bytes += bytes;
    const now = performance.now();
    if (now - r.reportedAt < 1000) return;
    r.reportedAt = now;
    this.error(
      'CAP_ERR_AUDIO_AFTER_STOP',
      `audio after the session began ending is not accepted: ${r.frames} frame${r.frames === 1 ? '' : 's'} (${r.bytes} bytes) so far`,
      { force: true },
    );
  }

  // ------------------------------------------------------------- messages

  error(code: ErrorCode, message: string, opts: { force?: boolean; retryAfterMs?: number } = {}): void {
    const spec = ERRORS[code];
    this.#deps.metrics.errors.inc({ code });
    this.errorsSent++;
    const msg: Unsequenced<Extract<ServerMessage, { type: 'error' }>> = { type: 'error', code, message, fatal: spec.fatal };
    if (opts.retryAfterMs !== undefined) msg.retryAfterMs = opts.retryAfterMs;
    this.#send(msg);
    if (!opts.force && !spec.fatal && this.errorsSent > this.#deps.config.limits.maxErrorsPerSession) {
      this.abort('protocol_violation', {
        code: 'CAP_ERR_PROTOCOL_VIOLATION',
        message: `more than ${this.#deps.config.limits.maxErrorsPerSession} errors in this session`,
      });
    }
  }

  #send(msg: Unsequenced<ServerMessage>): void {
    this.#outbox.send(msg);
  }
}
