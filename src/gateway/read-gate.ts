/**
 * Backpressure for senders faster than real time that do not do flow
 * control (a file uploaded through Deepgram's SDK, a native client without
 * `ack`): instead of letting the backlog reach limits.lagMaxSeconds and
 * ending the session with engine_overload, the connection stops reading the
 * socket, so TCP pushes back on the sender, and reads again once the engine
 * has caught up. Every word is decoded; the upload just takes as long as the
 * engine needs.
 *
 * Telling the two cases apart: a sender is *ahead of real time* when the
 * audio it has sent runs more than AHEAD_SLACK_SECONDS ahead of the wall
 * clock since its first frame, or since the session began for one continued
 * from another node (Session.aheadSeconds). Only such a sender is
 * paused, and only such a sender's backlog is exempt from `lagging` and the
 * hard bound (Session#checkLag): it is its own doing, not the engine's. A
 * live real-time sender is never ahead, so an engine that cannot keep up
 * with it still shows as `lagging` and ends at the hard bound, as before.
 *
 * Pause at PAUSE_BACKLOG_SECONDS of backlog; read again at
 * RESUME_BACKLOG_SECONDS, or when the sender is no longer ahead.
 *
 * A dialect's own stage can also stop reading (`block`): the live decoder
 * of containerized Deepgram audio, while its stdin pipe is full. Reading
 * resumes when neither holds it.
 *
 * Transports: ws pauses the socket. The pinned uWebSockets.js (v20.30) has
 * no WebSocket pause, so there the frames that arrive while paused are held
 * here, up to server.maxHeldAudioBytes, and ingested on resume; past that
 * bound they go to the session as before (and the hard bound applies).
 */
import { AHEAD_SLACK_SECONDS, type Session } from '../session/session.js';
import type { WsConnection } from '../transport/types.js';

export const PAUSE_BACKLOG_SECONDS = 1;
export const RESUME_BACKLOG_SECONDS = 0.5;
const POLL_MS = 20;

export class ReadGate {
  #conn: WsConnection;
  #session: Session | null = null;
  #paused = false;
  /** A dialect's stage cannot take more (block()). */
  #blocked = false;
  #held: { data: Uint8Array; isBinary: boolean }[] = [];
  #heldBytes = 0;
  #maxHeldBytes: number;
  #timer: NodeJS.Timeout | null = null;
  #resumed: (() => void)[] = [];
  /** Pauses so far (metrics, tests). */
  pauses = 0;

  #replay: (data: Uint8Array, isBinary: boolean) => void;
  #replaying = false;

  /** `replay` handles a held message on resume (the connection's own message handler). */
  constructor(conn: WsConnection, maxHeldBytes: number, replay: (data: Uint8Array, isBinary: boolean) => void) {
    this.#conn = conn;
    this.#maxHeldBytes = maxHeldBytes;
    this.#replay = replay;
  }

  get paused(): boolean {
    return this.#paused;
  }
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** Called when reading resumes (a dialect's own buffer goes on). */
  onResumed(cb: () => void): void {
    this.#resumed.push(cb);
  }

  /**
   * A client message arrived. Returns false when it was held here: paused on
   * a transport that cannot stop reading, so this message and every one
   * after it wait, in order, until reading resumes (a `stop` must not
   * overtake the audio before it). True: the caller handles it now.
   */
  admit(data: Uint8Array, isBinary: boolean): boolean {
    // Not paused means nothing is held (#poll drains the queue before it
    // stops pausing), so the per-frame path reads two flags and nothing else.
    if (this.#replaying || !this.#paused) return true;
    if (this.#held.length === 0 && (this.#conn.canPause === true || !isBinary)) return true;
    if (this.#heldBytes + data.byteLength > this.#maxHeldBytes) return true;
    this.#held.push({ data: data.slice(), isBinary });
    this.#heldBytes += data.byteLength;
    return false;
  }

  /**
   * A dialect's own stage (the live decoder) is full (true) or has room
   * again (false): stop or resume reading the socket, independently of the
   * session's backlog. On a transport that cannot pause, the dialect bounds
   * what it takes meanwhile itself.
   */
  block(on: boolean): void {
    if (on === this.#blocked) return;
    this.#blocked = on;
    if (this.#paused) return;
    if (on) this.#conn.pause?.();
    else this.#conn.resume?.();
  }

  /** After audio was ingested: pause if this sender is ahead of real time and its backlog is full. */
  check(s: Session): void {
    if (this.#paused || s.state !== 'active') return;
    if (s.backlogSeconds < PAUSE_BACKLOG_SECONDS || s.aheadSeconds() <= AHEAD_SLACK_SECONDS) return;
    this.#paused = true;
    this.pauses++;
    this.#session = s;
    if (!this.#blocked) this.#conn.pause?.();
    this.#timer = setInterval(() => this.#poll(), POLL_MS);
    this.#timer.unref();
  }

  #poll(): void {
    const s = this.#session;
    if (!s) return;
    if (s.state === 'active' && s.backlogSeconds > RESUME_BACKLOG_SECONDS && s.aheadSeconds() > AHEAD_SLACK_SECONDS) return;
    this.#paused = false;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (!this.#blocked) this.#conn.resume?.();
    // Held messages first, in order; they may pause us again.
    this.#replaying = true;
    try {
      while (this.#held.length && !this.#paused) {
        const m = this.#held.shift()!;
        this.#heldBytes -= m.data.byteLength;
        this.#replay(m.data, m.isBinary);
      }
    } finally {
      this.#replaying = false;
    }
    if (!this.#paused) for (const cb of this.#resumed) cb();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#held = [];
    this.#heldBytes = 0;
    this.#session = null;
  }
}
