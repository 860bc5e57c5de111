/**
 * One captioning session: a client's audio in, captions out. It owns the
 * session's lifecycle, its audio accounting and its captions; the
 * scheduler owns when its windows go to the engine.
 *
 *   ingest(bytes) ─► frame rules ─► convert (16 kHz mono f32) ─► ring ─► stream.wake()
 *   scheduler ─► window from the ring ─► engine ─► onResult ─► captions ─► outbox
 *
 * Lifecycle, one state and one way out:
 *   active ─► finishing (stop, max duration, idle, shutdown, a close frame:
 *             no new audio; everything received is decoded and finalized)
 *          ─► ended (end message, close code, slab and engine stream
 *             returned, exactly once, in #teardown).
 *   active ─► handing (the node drains, or a resume on another node asked
 *             for the session: what was received is decoded, the open
 *             utterance gets its final) ─► ended, without a message: the
 *             session goes on elsewhere (`movedAway`).
 *   active ─► parking (the connection dropped without a close frame: what
 *             was received is decoded, the open utterance gets its final)
 *          ─► parked (the slab and the engine stream are back in their
 *             pools; the replay log and the counts stay)
 *          ─► active again on resume (a new slab and stream, the clock
 *             going on from the last sample received), or finishing when
 *             the grace period passes.
 * `abort` skips finishing: the backlog is dropped and counted.
 *
 * Every message goes through the replay log, which stamps the session's
 * seq, so seq is continuous across connections.
 *
 * Invariant: received = decoded + dropped at the end, and the client is
 * told all three.
 */
import { randomBytes } from 'node:crypto';
// The global `performance` is a lazy accessor in Node 20 (a getter call per use); the per-frame path imports it.
import { performance } from 'node:perf_hooks';

import type { Logger } from 'pino';

import { AudioConverter, needsNoConversion, samplesOf } from '../audio/converter.js';
import { CaptionStabilizer, type CaptionEvent } from '../captions/stabilizer.js';
import type { Shapes } from '../config/derive.js';
import type { Config } from '../config/schema.js';
import { ENGINE_SAMPLE_RATE as RATE, type EngineInfo, type EngineResult } from '../engine/types.js';
import { closeCode, CloseCode, type EndReason, type ErrorCode } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { ServerMessage, SessionMeta, StartMessage, Unsequenced } from '../protocol/messages.js';
import type { RingBuffer } from '../pool/ring-buffer.js';
import type { Slab } from '../pool/slab-pool.js';
import type { ScheduledStream, StreamSink } from '../scheduler/scheduler.js';
import { type ArrivalLog, type ArrivalTable } from './arrival-log.js';
import type { ErrorReporter } from './error-reporter.js';
import type { Outbox } from './outbox.js';
import { ReplayLog } from './replay-log.js';

export const MIN_FRAME_MS = 10;
export const MAX_FRAME_MS = 1000;
/**
 * A sender whose audio runs more than this ahead of the wall clock is
 * uploading faster than real time: its backlog is its own doing, so it is
 * paused (src/gateway/read-gate.ts) rather than warned or ended for lag.
 */
export const AHEAD_SLACK_SECONDS = 1;
const ACK_INTERVAL_MS = 200;

/**
 * Test hooks at the fault boundaries. The wire cannot reach them: only code
 * that builds the gateway can pass them, and production passes none.
 */
export interface FaultHooks {
  /** Before a session handles a client message. */
  message?(sessionId: string): void;
  /** Before a session handles an engine result. */
  result?(sessionId: string): void;
}

export interface SessionDeps {
  readonly config: Readonly<Config>;
  readonly shapes: Shapes;
  readonly engine: EngineInfo;
  readonly metrics: GatewayMetrics;
  readonly log: Logger;
  /** Opens this session's engine stream through the scheduler. */
  openStream(ring: RingBuffer, sink: StreamSink): ScheduledStream;
  /** Takes back a slab the session no longer needs (parked, or ended). */
  releaseSlab(slab: Slab): void;
  /** Called once when the session has ended (bookkeeping goes back). */
  released(s: Session): void;
  /** Captions out, for meeting viewers and caption files. */
  published?(s: Session, ev: CaptionEvent): void;
  /** The session parked (its connection dropped and all it received is decoded). */
  parked?(s: Session): void;
  readonly faults?: FaultHooks | undefined;
  /** Scratch for conversion output, shared: the main thread is single-threaded. */
  readonly scratch: Int16Array;
  /** The arrival logs, a row per slab: the session's log is its slab's row. */
  readonly arrivals: ArrivalTable;
}

export type SessionState = 'active' | 'parking' | 'parked' | 'handing' | 'finishing' | 'ended';

/** Where a session stands, for another node to continue it (src/registry). */
export interface SessionCheckpoint {
  /** The last seq stamped. */
  readonly seq: number;
  /** The segment number of the next utterance. */
  readonly segment: number;
  /** Where a continuation starts: the audio decoded at the last final (all received, once parked). */
  readonly position: { receivedSamples: number; receivedFrames: number; decodedSamples: number; droppedSamples: number };
  /** 16 kHz samples received so far. */
  readonly heardSamples: number;
}

/** A session continued from another node's checkpoint (resume across nodes). */
export interface Restored {
  readonly startedAt: number;
  readonly seq: number;
  readonly segment: number;
  readonly position: SessionCheckpoint['position'];
}

/** What a resuming connection brings. */
export interface Reattach {
  readonly outbox: Outbox;
  readonly lastSeq: number;
  readonly remoteAddress: string;
  /** A fresh slab when the session is parked (the manager acquired it). */
  readonly slab: Slab | null;
  readonly ring: RingBuffer | null;
}

interface Ending {
  reason: EndReason;
  close: number;
  message: string;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

export class Session implements StreamSink {
  readonly id: string;
  /** The identity that opened it (a token's identity key); null with auth off. */
  readonly owner: string | null;
  readonly meta: SessionMeta;
  readonly format: { sampleRate: number; channels: 1 | 2; encoding: 's16le' | 'f32le' };
  /** The token's sub (auth on), for logs. */
  readonly sub: string | null;
  /** Its client can resume it (not Deepgram's dialect): only such a session moves to another node. */
  readonly resumable: boolean;
  /** The start parameters a continuation on another node needs besides the format. */
  readonly settings: { readonly interim: boolean; readonly ack: boolean; readonly language: string };
  readonly startedAt: number;
  readonly log: Logger;
  /** Lets a reconnecting client take the session back (see resume); kept when the session moves to another node. */
  readonly resumeToken: string;

  #state: SessionState = 'active';
  #remoteAddress: string;
  #received = 0;
  /** Sample frames of the client's format taken (a resuming client resends from here). */
  #receivedFrames = 0;
  #dropped = 0;
  /** Decoded by engine streams this session has closed (parking). */
  #decodedBefore = 0;
  /** Session sample at which the current ring (and engine stream) began. */
  #ringBase = 0;
  #lastActivity = Date.now();
  /** When the first audio arrived (performance.now()); a continued session's start (see the constructor). */
  #firstAudioAt = 0;
  /** Received samples not counted against that clock (a continued session's, see the constructor). */
  #clockFromSample = 0;
  /** Set with #firstAudioAt: a flag the per-frame path can test without loading a boxed double. */
  #sawAudio = false;
  /** The last speech: wall-clock time, and where in the audio (received samples). */
  #lastSpeechAt = Date.now();
  #lastSpeechSample = 0;
  /** When the connection dropped (parking and parked). */
  #droppedAt = 0;
  #deps: SessionDeps;
  // Null while parked: a parked session holds no audio memory and no engine stream.
  #slab: Slab | null;
  #ring: RingBuffer | null;
  #stream: ScheduledStream | null;
  /** The connection; null while it is gone. */
  #outbox: Outbox | null;
  #log: ReplayLog;
  #errors: ErrorReporter;
  #converter: AudioConverter;
  // The format's facts the per-frame path needs, kept here so that it does
  // not load the format and converter objects for every frame.
  #rate: number;
  #asIs: boolean;
  #stabilizer: CaptionStabilizer;
  #ending: Ending | null = null;
  #lagWarned = false;
  /** Where another node would continue: updated at each final, on park and on hand-over. */
  #position: SessionCheckpoint['position'] = { receivedSamples: 0, receivedFrames: 0, decodedSamples: 0, droppedSamples: 0 };
  #handed: (() => void) | null = null;
  #movedAway = false;
  /** The arrival times of the ring's audio: the slab's row of the arrival table, null while the session holds no slab. */
  #arrivals: ArrivalLog | null;
  /** When the engine last gave this stream a decoder after a wait (performance.now()). */
  #unparkedAt = -Infinity;
  #afterStop = { frames: 0, bytes: 0, reportedAt: -Infinity };
  #firstPartialAt = new Map<number, number>();
  #wantAck: boolean;
  #lastAckAt = 0;
  #lastAckDecoded = -1;
  #ackTimer: NodeJS.Timeout | null = null;
  #maxSessionSeconds: number;
  #maxSessionSamples: number;
  // Frame rules, precomputed: the per-frame path only compares numbers.
  #maxFrameBytes: number;
  #bytesPerFrame: number;
  #minFrames: number;
  #maxFrames: number;

  constructor(
    deps: SessionDeps,
    init: {
      id: string;
      start: StartMessage;
      slab: Slab;
      ring: RingBuffer;
      outbox: Outbox;
      errors: ErrorReporter;
      remoteAddress: string;
      /** The token's identity and sub (auth on). */
      owner?: string | null;
      sub?: string | null;
      /** Lower than the server's limit when a token says so. */
      maxSessionSeconds?: number | undefined;
      /** false: its client never resumes (Deepgram's dialect). */
      resumable?: boolean;
      /** Continue a session from another node: its token, counts, seq and clock; no `ready` is sent. */
      restore?: Restored & { readonly resumeToken: string };
    },
  ) {
    this.#deps = deps;
    this.id = init.id;
    const restore = init.restore;
    this.startedAt = restore?.startedAt ?? Date.now();
    this.resumeToken = restore?.resumeToken ?? randomBytes(24).toString('base64url');
    this.owner = init.owner ?? null;
    this.sub = init.sub ?? null;
    this.resumable = init.resumable ?? true;
    this.#remoteAddress = init.remoteAddress;
    this.meta = init.start.meta ?? {};
    this.format = { sampleRate: init.start.sampleRate, channels: init.start.channels, encoding: init.start.encoding };
    this.#slab = init.slab;
    this.#ring = init.ring;
    this.#outbox = init.outbox;
    // The log goes on from the connection's seq (errors before `start` used some).
    this.#log = new ReplayLog({ mode: init.outbox.mode, maxBytes: deps.config.limits.resumeBufferBytes, seq: restore?.seq ?? init.outbox.seq });
    this.#errors = init.errors;
    this.log = deps.log.child(init.sub ? { session: this.id, sub: init.sub } : { session: this.id });
    const { limits, captions, audio } = deps.config;
    this.#arrivals = deps.arrivals.log(init.slab.index);
    this.#converter = new AudioConverter(this.format, audio.resampleQuality);
    this.#rate = this.format.sampleRate;
    this.#asIs = needsNoConversion(this.format);
    this.#bytesPerFrame = this.#converter.bytesPerFrame;
    this.#maxFrameBytes = limits.maxFrameBytes;
    // A frame's duration must lie within [MIN_FRAME_MS, MAX_FRAME_MS]; in sample frames (with float slack).
    this.#minFrames = (this.format.sampleRate * MIN_FRAME_MS) / 1000 - 1e-6;
    this.#maxFrames = (this.format.sampleRate * MAX_FRAME_MS) / 1000 + 1e-6;
    this.#maxSessionSeconds = Math.min(limits.maxSessionSeconds, init.maxSessionSeconds ?? Infinity);
    this.#maxSessionSamples = Math.round(this.#maxSessionSeconds * RATE);
    const interim = init.start.interim ?? captions.interim;
    this.#wantAck = init.start.ack === true;
    this.settings = { interim, ack: this.#wantAck, language: init.start.language ?? 'en' };
    this.#stabilizer = new CaptionStabilizer({ interim, speaker: this.meta.speaker, ...(restore ? { segment: restore.segment } : {}) });
    if (restore) {
      // The counts and the clock go on from where the other node's checkpoint stands.
      const p = restore.position;
      this.#position = { ...p };
      this.#received = p.receivedSamples;
      this.#receivedFrames = p.receivedFrames;
      this.#decodedBefore = p.decodedSamples;
      this.#dropped = p.droppedSamples;
      this.#ringBase = p.receivedSamples;
      this.#lastSpeechSample = p.receivedSamples;
      this.#stabilizer.startsAt(p.receivedSamples / RATE);
      // The received count includes the other node's audio, so the clock it
      // is measured against starts with the session too, not with this
      // node's first frame: otherwise a real-time sender would read as that
      // much ahead of real time (aheadSeconds), and get neither `lagging` nor
      // the hard bound when this node's engine falls behind. The nodes'
      // clocks are assumed in step (NTP); one behind the session's start,
      // or a session with no audio yet, counts from this node's first frame
      // and this node's audio only.
      const elapsedMs = Date.now() - this.startedAt;
      if (p.receivedSamples > 0 && elapsedMs >= 0) {
        this.#sawAudio = true;
        this.#firstAudioAt = performance.now() - elapsedMs;
      } else {
        this.#clockFromSample = p.receivedSamples;
        if (elapsedMs < 0) this.log.warn({ startedAt: this.startedAt, behindMs: -elapsedMs }, "this node's clock is behind the session's start: are the nodes' clocks synchronized (NTP)?");
      }
      this.#stream = deps.openStream(init.ring, this);
      this.log.info({ format: this.format, meta: this.meta, remote: this.#remoteAddress, seq: restore.seq }, 'session continued from another node');
      return;
    }
    this.#stream = deps.openStream(init.ring, this);
    this.#send({
      type: 'ready',
      sessionId: this.id,
      resumeToken: this.resumeToken,
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
        resumeGraceSeconds: limits.resumeGraceSeconds,
      },
      engine: { name: deps.engine.name, version: deps.engine.version, ...(deps.engine.model !== undefined ? { model: deps.engine.model } : {}) },
    });
    this.log.info({ format: this.format, meta: this.meta, remote: this.#remoteAddress }, 'session started');
  }

  get state(): SessionState {
    return this.#state;
  }
  get ended(): boolean {
    return this.#state === 'ended';
  }
  /** The client's address (the latest connection's, after a resume). */
  get remoteAddress(): string {
    return this.#remoteAddress;
  }
  /** The current connection's outbox; null while the connection is gone. */
  get outbox(): Outbox | null {
    return this.#outbox;
  }
  /** The engine stream (tests inject engine faults by it); -1 while parked. */
  get streamId(): number {
    return this.#stream?.id ?? -1;
  }
  /** Wall-clock ms of the last client message: a control message, or audio (its arrival, to within the log's 50 ms). */
  get lastActivity(): number {
    const audioAt = this.#arrivals?.newestTime ?? NaN;
    return audioAt > 0 ? Math.max(this.#lastActivity, performance.timeOrigin + audioAt) : this.#lastActivity;
  }
  /** Wall-clock ms when the connection dropped; 0 while connected. */
  get droppedAt(): number {
    return this.#droppedAt;
  }
  /** The audio limit of this session, seconds. */
  get maxSessionSeconds(): number {
    return this.#maxSessionSeconds;
  }
  /** The last seq stamped (a final's own seq, right after `published`). */
  get seq(): number {
    return this.#log.seq;
  }
  /** The session ended here because it goes on on another node (no `end` was sent). */
  get movedAway(): boolean {
    return this.#movedAway;
  }
  /** What another node needs to continue this session. */
  checkpoint(): SessionCheckpoint {
    return { seq: this.#log.seq, segment: this.#stabilizer.nextSegment, position: { ...this.#position }, heardSamples: this.#received };
  }
  /** Bytes the replay log holds (memory accounting). */
  get replayBytes(): number {
    return this.#log.bytes;
  }
  /** Why it ended (or is ending); null while active. */
  get endReason(): EndReason | null {
    return this.#ending?.reason ?? null;
  }
  /** Samples decoded: counted by the scheduler as they leave the ring, so a fault here cannot lose them. */
  get #decoded(): number {
    return this.#decodedBefore + (this.#stream?.consumed ?? 0);
  }
  /** Audio counts so far, in 16 kHz samples. */
  get audio(): { received: number; decoded: number; dropped: number } {
    return { received: this.#received, decoded: this.#decoded, dropped: this.#dropped };
  }
  /**
   * How long the session has gone without speech, seconds: the longer of
   * the audio received since the last speech and the wall-clock time since
   * it (which keeps counting while no audio arrives at all).
   */
  silentSeconds(now = Date.now()): number {
    return Math.max((this.#received - this.#lastSpeechSample) / RATE, (now - this.#lastSpeechAt) / 1000);
  }
  /** Audio waiting to be decoded, seconds. */
  get backlogSeconds(): number {
    return (this.#ring?.available ?? 0) / RATE;
  }
  /**
   * How far the audio received runs ahead of the wall clock since the first
   * frame (a session continued from another node: since the session
   * began), seconds: above AHEAD_SLACK_SECONDS only for a sender faster
   * than real time; a live sender stays at or below 0.
   */
  aheadSeconds(now = performance.now()): number {
    return this.#sawAudio ? (this.#received - this.#clockFromSample) / RATE - (now - this.#firstAudioAt) / 1000 : 0;
  }
  /**
   * How long the oldest undecoded audio has waited, seconds. Unlike the
   * backlog, a burst from a client catching up does not inflate it: only
   * an engine that cannot keep up does.
   */
  waitingSeconds(now = performance.now()): number {
    // Waiting for a decoder is not engine lag: the engine hands decoders on
    // (PocketSphinx's bounded hold), and the wait says nothing about the CPU.
    // Nor is the backlog a wait left behind: lag counts from when the
    // stream got its decoder back, so catching up counts, the wait does not.
    const ring = this.#ring;
    if (!ring || ring.available === 0 || this.#stream!.parked) return 0;
    // A ring comes with its slab's arrival log.
    const arrivals = this.#arrivals!;
    return Math.max(0, (now - Math.max(arrivals.timeOf(this.#ringBase + ring.readPos), this.#unparkedAt)) / 1000);
  }

  // ------------------------------------------------------------------ input

  /** A client message arrived (keeps the session from idling out). */
  touch(): void {
    this.#lastActivity = Date.now();
  }

  /** One binary audio frame. `bytes` is only valid during this call. */
  ingest(bytes: Uint8Array): void {
    this.#deps.faults?.message?.(this.id);
    if (this.#state !== 'active') {
      if (this.#state === 'finishing') this.#rejectAfterStop(bytes.byteLength);
      return;
    }
    // An accepted frame's activity is its arrival (the arrival log), not a field written per frame.
    const n = bytes.byteLength;
    const frames = n / this.#bytesPerFrame;
    if (n > this.#maxFrameBytes || frames !== Math.floor(frames) || frames < this.#minFrames || frames > this.#maxFrames) {
      this.#lastActivity = Date.now();
      this.#refuseFrame(n, frames);
      return;
    }
    // Session length is policy: accept audio up to the limit, then end.
    let accept = bytes;
    let acceptFrames = frames;
    let refusedSeconds = 0;
    const rate = this.#rate;
    if (this.#received + (frames * RATE) / rate > this.#maxSessionSamples) {
      acceptFrames = Math.max(0, Math.floor(((this.#maxSessionSamples - this.#received) * rate) / RATE));
      accept = bytes.subarray(0, acceptFrames * this.#bytesPerFrame);
      refusedSeconds = (frames - acceptFrames) / rate;
    }
    this.#receivedFrames += acceptFrames;
    if (accept.byteLength > 0) {
      const asIs = this.#asIs ? samplesOf(accept) : null;
      if (asIs) this.#write(asIs, asIs.length);
      else this.#write(this.#deps.scratch, this.#converter.convert(accept, this.#deps.scratch));
    }
    if (this.#state !== 'active') return;
    if (refusedSeconds > 0 || this.#received >= this.#maxSessionSamples) {
      this.finish('max_duration', CloseCode.MAX_DURATION, `session reached its maximum duration (${this.#maxSessionSeconds} s)`, {
        code: 'CAP_ERR_MAX_DURATION',
        message:
          `session reached its maximum duration (${this.#maxSessionSeconds} s); ` +
          `${refusedSeconds.toFixed(3)} s of audio beyond the limit was not accepted`,
      });
    }
  }

  #refuseFrame(n: number, frames: number): void {
    const limit = this.#maxFrameBytes;
    if (n > limit) this.error('CAP_ERR_FRAME_TOO_LARGE', `audio frame of ${n} bytes exceeds limits.maxFrameBytes (${limit}); not accepted`);
    else if (frames !== Math.floor(frames)) {
      this.error(
        'CAP_ERR_PARTIAL_SAMPLE',
        `audio frame of ${n} bytes is not a whole number of ${this.#bytesPerFrame}-byte sample frames ` +
          `(${this.format.encoding}, ${this.format.channels} ch); not accepted`,
      );
    } else {
      const ms = (frames * 1000) / this.format.sampleRate;
      this.error('CAP_ERR_FRAME_DURATION', `audio frame of ${ms.toFixed(1)} ms is outside ${MIN_FRAME_MS}-${MAX_FRAME_MS} ms; not accepted`);
    }
  }

  /** Writes the first n converted samples of `src` into the ring (active: the ring is there). */
  #write(src: Int16Array, n: number): void {
    if (n === 0) return;
    const ring = this.#ring!;
    // One clock read per frame: the arrival log and the lag check share it.
    const now = performance.now();
    if (!this.#sawAudio) {
      this.#sawAudio = true;
      this.#firstAudioAt = now;
    }
    this.#received += n;
    this.#deps.metrics.samplesReceived.inc(n);
    if (n > ring.free) {
      // The ring holds lagMaxSeconds plus at least a window, and the lag
      // check ends the session before the backlog passes lagMaxSeconds; a
      // config whose slab is smaller than that still loses nothing silently.
      this.#dropped += n;
      this.#deps.metrics.samplesDropped.inc(n);
      this.#overload();
      return;
    }
    ring.write(src, n);
    this.#arrivals!.record(this.#ringBase + ring.writePos, now);
    this.#checkLag(now);
    if (this.#state === 'active') this.#stream!.wake();
  }

  #checkLag(now: number): void {
    const ring = this.#ring;
    if (!ring) return;
    const { shapes } = this.#deps;
    const backlog = ring.available;
    // The common case, a backlog well under the warning: the only change
    // is to re-arm the warning, which is skipped for a fast sender as below.
    if (backlog < shapes.lagWarnSamples / 2) {
      if (this.#lagWarned && this.aheadSeconds(now) <= AHEAD_SLACK_SECONDS) this.#lagWarned = false;
      return;
    }
    // Faster than real time: its connection stops reading instead (read-gate.ts); the ring's size is still the hard limit (#write).
    if (this.aheadSeconds(now) > AHEAD_SLACK_SECONDS) return;
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
    this.#deps.faults?.message?.(this.id);
    this.touch();
    switch (type) {
      case 'start':
        this.error('CAP_ERR_ALREADY_STARTED', 'the session has already started; this start was ignored');
        return;
      case 'keepalive':
        return;
      case 'flush':
        if (this.#state === 'active') this.#stream!.flush();
        return;
      case 'stop':
        this.finish('client_stop', CloseCode.NORMAL, 'stopped by the client');
        return;
    }
  }

  // ----------------------------------------------------------------- engine

  onResult(r: EngineResult): void {
    if (this.#state === 'ended') return;
    this.#deps.faults?.result?.(this.id);
    if (r.error) {
      this.log.warn({ engineError: r.error }, 'engine failed on a window');
      this.abort('engine_error', {
        code: 'CAP_ERR_ENGINE_FAILURE',
        message: `decoding failed (${r.error.code}: ${r.error.message}); the session ends`,
      });
      return;
    }
    if (r.partial !== null || r.finals.length > 0) this.#captions(r);
    if (this.#wantAck) this.#maybeAck(false);
    this.#checkLag(performance.now());
    if (this.#state === 'finishing') this.#maybeComplete();
    else if (this.#state === 'parking') this.#maybePark();
    else if (this.#state === 'handing') this.#maybeHanded();
  }

  /**
   * The continuation point: what the engine has consumed (the audio still
   * in the ring is sent again by the client after a move, from
   * receivedFrames). For resampled input the frame count is the nearest.
   */
  #markPosition(): void {
    const backlog = this.#ring?.available ?? 0;
    const backlogFrames = Math.round((backlog * this.format.sampleRate) / RATE);
    this.#position = {
      receivedSamples: this.#received - backlog,
      receivedFrames: Math.max(0, this.#receivedFrames - backlogFrames),
      decodedSamples: this.#decoded,
      droppedSamples: this.#dropped,
    };
  }

  #captions(r: EngineResult): void {
    const now = performance.now();
    const { metrics } = this.#deps;
    for (const ev of this.#stabilizer.accept(r)) {
      if (ev.text) {
        this.#lastSpeechAt = Date.now();
        this.#lastSpeechSample = Math.max(this.#lastSpeechSample, Math.round(ev.end * RATE));
      }
      if (ev.type === 'partial') {
        metrics.partialRevisions.inc();
        if (ev.text && !this.#firstPartialAt.has(ev.segment)) this.#firstPartialAt.set(ev.segment, now);
      } else {
        metrics.committedWords.inc(ev.words.length);
        // Endpoint to final: from the arrival of the audio at the endpoint.
        const arrivals = this.#arrivals;
        if (arrivals) metrics.finalLatency.observe(Math.max(0, now - arrivals.timeOf(Math.round(ev.end * RATE))) / 1000);
        const firstAt = this.#firstPartialAt.get(ev.segment);
        const w0 = ev.words[0];
        if (arrivals && firstAt !== undefined && w0) {
          const onset = arrivals.timeOf(Math.round(w0.start * RATE));
          metrics.firstPartialLatency.observe(Math.max(0, firstAt - onset) / 1000);
        }
        this.#firstPartialAt.delete(ev.segment);
      }
      if (ev.type === 'final') this.#markPosition();
      this.#send(ev);
      this.#deps.published?.(this, ev);
    }
  }

  onEngineFailure(err: Error): void {
    if (this.#state === 'ended') return;
    this.abort(this.#ending?.reason === 'server_shutdown' ? 'server_shutdown' : 'engine_error', {
      code: 'CAP_ERR_ENGINE_FAILURE',
      message: `the engine failed: ${err.message}`,
    });
  }

  onInternalError(err: unknown): void {
    this.fail(err, 'result');
  }

  /** The engine gave this stream a decoder after a wait. */
  onUnparked(): void {
    this.#unparkedAt = performance.now();
  }

  /**
   * The fault boundary: something threw while handling this session's
   * messages or results. This session ends (CAP_ERR_INTERNAL, then an `end`
   * with exact counts, close 4011); the process and every other session
   * carry on.
   */
  fail(err: unknown, boundary: 'message' | 'result'): void {
    if (this.#state === 'ended') return;
    this.log.error({ err, boundary }, 'internal error: ending this session');
    this.#deps.metrics.internalErrors.inc({ boundary });
    this.abort('internal_error', {
      code: 'CAP_ERR_INTERNAL',
      message: 'an internal error ended this session; the server logged it',
    });
  }

  #maybeAck(force: boolean): void {
    if (!this.#wantAck || this.#state === 'ended') return;
    const now = Date.now();
    const backlog = this.#ring?.available ?? 0;
    if (!force && this.#decoded === this.#lastAckDecoded) return;
    if (!force && now - this.#lastAckAt < ACK_INTERVAL_MS && backlog > 0) {
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
    this.#lastAckDecoded = this.#decoded;
    this.#send({
      type: 'ack',
      receivedSeconds: round3(this.#received / RATE),
      decodedSeconds: round3(this.#decoded / RATE),
      backlogSeconds: round3(backlog / RATE),
    });
  }

  // ------------------------------------------------------- drop and resume

  /**
   * The connection dropped without a close frame: the client may come
   * back. What it sent is decoded and the open utterance ends with a
   * final, as at any end; then the slab and the engine stream go back
   * (#maybePark). The log keeps what the client may have missed.
   */
  dropped(outbox: Outbox): void {
    if (outbox !== this.#outbox) return;
    outbox.markClosed();
    this.#outbox = null;
    this.#droppedAt = Date.now();
    if (this.#state !== 'active') return; // finishing: it goes on, and ends as it would have
    const { resumeGraceSeconds, maxParkedSessions } = this.#deps.config.limits;
    if (resumeGraceSeconds === 0 || maxParkedSessions === 0) {
      this.finish('client_gone', CloseCode.NORMAL, 'the connection dropped (resume is off)');
      return;
    }
    this.#state = 'parking';
    this.#flushConverter();
    this.log.info({ backlogSeconds: round3((this.#ring?.available ?? 0) / RATE) }, 'connection dropped: decoding what it sent, then parking');
    this.#stream!.flush();
    this.#maybePark();
  }

  /**
   * The client closed the connection (a close frame): the session ends as
   * at `stop`, unless it was already ending. Nothing it sent is lost.
   */
  disconnected(outbox: Outbox): void {
    if (outbox !== this.#outbox) return;
    outbox.markClosed();
    this.#outbox = null;
    if (this.#state === 'ended') return;
    this.log.info({ backlogSeconds: round3((this.#ring?.available ?? 0) / RATE) }, 'client disconnected: decoding what it sent');
    this.finish('client_gone', CloseCode.NORMAL, 'the client closed the connection');
  }

  #maybePark(): void {
    const stream = this.#stream;
    if (this.#state !== 'parking' || !stream?.settled) return;
    this.#state = 'parked';
    this.#releaseAudio();
    this.#markPosition();
    this.#deps.parked?.(this);
    this.log.info({ receivedSeconds: round3(this.#received / RATE) }, 'parked: waiting for a resume');
  }

  /** The engine stream and the slab go back; the counts stay. */
  #releaseAudio(): void {
    if (this.#stream) {
      this.#decodedBefore += this.#stream.consumed;
      this.#stream.close();
      this.#stream = null;
    }
    this.#ring = null;
    // The row goes with the slab, to the next session on it.
    this.#arrivals = null;
    const slab = this.#slab;
    this.#slab = null;
    if (slab) this.#deps.releaseSlab(slab);
  }

  /**
   * The session is to go on on another node (this node drains, or a resume
   * there asked for it). Like a drop: audio stops being taken (a client
   * sends again what was not taken, from receivedFrames), what was received
   * is decoded and the open utterance ends with its final; then the slab
   * and the engine stream go back. Resolves when the checkpoint is final;
   * `moveAway` then ends the session here. A session already ending
   * resolves false (it ends as it would have).
   */
  handOver(): Promise<boolean> {
    const was = this.#state;
    if (was === 'finishing' || was === 'ended') return Promise.resolve(false);
    if (was === 'parked') return Promise.resolve(true);
    if (was === 'handing') return new Promise((resolve) => this.#onHanded(() => resolve(!this.ended)));
    if (was === 'active') this.#flushConverter();
    this.#state = 'handing';
    const p = new Promise<boolean>((resolve) => this.#onHanded(() => resolve(!this.ended)));
    this.#stream?.flush();
    this.#maybeHanded();
    return p;
  }

  #onHanded(f: () => void): void {
    const prev = this.#handed;
    this.#handed = prev ? () => (prev(), f()) : f;
  }

  #maybeHanded(): void {
    if (this.#state !== 'handing' || !(this.#stream?.settled ?? true)) return;
    this.#releaseAudio();
    this.#markPosition();
    const f = this.#handed;
    this.#handed = null;
    f?.();
  }

  /**
   * Ends the session here without a message to the client: it goes on on
   * another node. The connection, if any, is closed with `close` (4014 on
   * a drain, 4013 when a resume elsewhere took it over).
   */
  moveAway(close: { code: number; reason: string } | null): void {
    if (this.#state === 'ended') return;
    this.#movedAway = true;
    this.#ending = { reason: 'server_shutdown', close: close?.code ?? CloseCode.SERVER_SHUTDOWN, message: 'moved to another node' };
    const outbox = this.#outbox;
    this.#teardown('moved');
    if (outbox && close) outbox.closeWhenFlushed(close.code, close.reason);
  }

  /**
   * A client came back with this session's resume token. `resumed` goes
   * first (no seq), then every message after lastSeq with its own seq,
   * then the live session. A connection still attached is taken over
   * (close 4013). Returns false, changing nothing, when lastSeq is ahead of
   * the session; the manager has checked the rest.
   */
  resume(r: Reattach): boolean {
    if (this.#state === 'ended') return false;
    this.#log.setMode(r.outbox.mode);
    const replay = this.#log.after(r.lastSeq);
    if (!replay) return false;
    const old = this.#outbox;
    if (old) {
      this.#outbox = null;
      old.close(CloseCode.TAKEN_OVER, 'CAP_ERR_TAKEN_OVER');
    }
    const gapMs = this.#droppedAt === 0 ? 0 : Date.now() - this.#droppedAt;
    this.#droppedAt = 0;
    this.#remoteAddress = r.remoteAddress;
    this.#outbox = r.outbox;
    r.outbox.sendUnsequenced({
      type: 'resumed',
      sessionId: this.id,
      lastSeq: r.lastSeq,
      gapSeconds: round3(gapMs / 1000),
      skippedPartials: replay.skippedPartials,
      skippedAcks: replay.skippedAcks,
      receivedFrames: this.#receivedFrames,
    });
    for (const m of replay.messages) r.outbox.sendEncoded(m.data, m.type);
    if (replay.lost > 0) {
      this.warn(
        'replay_incomplete',
        `${replay.lost} message(s) after seq ${r.lastSeq} are no longer kept (limits.resumeBufferBytes); ` +
          `every final is in /v1/sessions/${this.id}/captions.json`,
      );
    }
    this.#lastActivity = Date.now();
    if (this.#state === 'parked' || this.#state === 'parking') {
      if (this.#state === 'parked') {
        // A new slab and engine stream; the clock goes on from the last sample received.
        this.#slab = r.slab;
        this.#ring = r.ring;
        this.#arrivals = this.#deps.arrivals.log(r.slab!.index);
        this.#ringBase = this.#received;
        this.#stabilizer.startsAt(this.#received / RATE);
        this.#stream = this.#deps.openStream(r.ring!, this);
      }
      this.#converter = new AudioConverter(this.format, this.#deps.config.audio.resampleQuality);
      this.#state = 'active';
    }
    this.log.info({ gapSeconds: round3(gapMs / 1000), lastSeq: r.lastSeq, replayed: replay.messages.length, remote: r.remoteAddress }, 'resumed');
    return true;
  }

  /** The resampler's tail belongs to the audio already accepted. */
  #flushConverter(): void {
    const ring = this.#ring;
    if (!ring) return;
    const tail = this.#converter.flush(this.#deps.scratch);
    if (tail > 0 && tail <= ring.free) {
      ring.write(this.#deps.scratch, tail);
      this.#received += tail;
      this.#deps.metrics.samplesReceived.inc(tail);
    }
  }

  // ---------------------------------------------------------------- ending

  /**
   * Graceful end: stop accepting audio, decode and finalize everything
   * received, then send `end` and close with `close`. An optional error
   * message goes first (max duration, idle timeout). A parked session has
   * nothing left to decode and ends at once.
   */
  finish(reason: EndReason, close: number, message: string, error?: { code: ErrorCode; message: string }): void {
    const was = this.#state;
    if (was === 'finishing' || was === 'ended') return;
    this.#state = 'finishing';
    this.#ending = { reason, close, message };
    if (error) this.error(error.code, error.message, { force: true });
    if (was === 'active') this.#flushConverter();
    this.#stream?.flush();
    this.#maybeComplete();
  }

  #maybeComplete(): void {
    if (this.#state === 'finishing' && (this.#stream?.settled ?? true)) this.#end();
  }

  /**
   * Immediate end: the backlog is dropped and counted. With `error`, the
   * client gets the error and an `end`; without, nothing more is sent (the
   * client is gone or unreachable).
   */
  abort(reason: EndReason, error?: { code: ErrorCode; message: string }, opts: { notify?: boolean; close?: number } = {}): void {
    if (this.#state === 'ended') return;
    try {
      const dropped = this.#ring?.discard() ?? 0;
      this.#dropped += dropped;
      this.#deps.metrics.samplesDropped.inc(dropped);
      const close = opts.close ?? (error ? closeCode(error.code) : CloseCode.SERVER_SHUTDOWN);
      this.#ending = { reason, close, message: error?.message ?? reason };
      if (error) this.error(error.code, error.message, { force: true });
    } finally {
      if (opts.notify === false) this.#teardown();
      else this.#end();
    }
  }

  /** A warning that is not about lag (see WarningMessage). */
  warn(code: 'meeting_unavailable' | 'replay_incomplete', message: string): void {
    this.#send({ type: 'warning', code, message });
  }

  #end(): void {
    const e = this.#ending ?? { reason: 'server_shutdown' as EndReason, close: CloseCode.SERVER_SHUTDOWN, message: 'ended' };
    try {
      this.#maybeAck(true);
      this.#send({
        type: 'end',
        reason: e.reason,
        message: e.message,
        audio: {
          sampleRate: RATE,
          receivedSamples: this.#received,
          decodedSamples: this.#decoded,
          droppedSamples: this.#dropped,
          receivedSeconds: round3(this.#received / RATE),
          decodedSeconds: round3(this.#decoded / RATE),
          droppedSeconds: round3(this.#dropped / RATE),
        },
      });
    } finally {
      // Teardown first: closing can synchronously fire the transport's close
      // callback, which must find the session already ended.
      this.#teardown();
      this.#outbox?.closeWhenFlushed(e.close, e.reason);
    }
  }

  /** The one way out: runs once, whatever ended the session. */
  #teardown(label?: string): void {
    if (this.#state === 'ended') return;
    this.#state = 'ended';
    try {
      // A hand-over under way learns that the session ended instead.
      const handed = this.#handed;
      this.#handed = null;
      handed?.();
      if (this.#ackTimer) {
        clearTimeout(this.#ackTimer);
        this.#ackTimer = null;
      }
      const decoded = this.#decoded;
      this.#releaseAudio();
      const reason = label ?? this.#ending?.reason ?? 'unknown';
      this.#deps.metrics.sessionsEnded.inc({ reason });
      this.log.info(
        {
          reason,
          receivedSeconds: round3(this.#received / RATE),
          decodedSeconds: round3(decoded / RATE),
          droppedSeconds: round3(this.#dropped / RATE),
        },
        'session ended',
      );
    } finally {
      this.#deps.released(this);
    }
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

  /** Sends an error; too many non-fatal ones end the session as a protocol violation. */
  error(code: ErrorCode, message: string, opts: { force?: boolean; retryAfterMs?: number } = {}): void {
    const { msg, exhausted } = this.#errors.report(code, message, opts);
    this.#send(msg);
    if (exhausted) {
      this.abort('protocol_violation', { code: 'CAP_ERR_PROTOCOL_VIOLATION', message: this.#errors.exhaustedMessage });
    }
  }

  /** Stamped and kept by the log (encoded once), then sent if the client is connected. */
  #send(msg: Unsequenced<ServerMessage>): void {
    const data = this.#log.append(msg);
    this.#outbox?.sendEncoded(data, msg.type);
  }
}
