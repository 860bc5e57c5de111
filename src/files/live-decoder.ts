/**
 * Containerized live audio (Deepgram's live dialect with no `encoding`:
 * WebM/Opus or Ogg/Opus, as a browser's MediaRecorder sends it) through the
 * same ffmpeg as files (decode.ts), streaming: one long-lived child per
 * session, the client's bytes on its stdin as they come, 16 kHz mono s16le
 * out of its stdout, with the same restrictions (only the `pipe` protocol,
 * one thread, niced).
 *
 * Bounds:
 * - LiveDecoderSlots: at most files.maxLiveDecoders children at once. A slot
 *   is held from the spawn until the child has exited and been reaped, so
 *   the count is of real processes.
 * - In flight: bytes written to stdin that ffmpeg has not taken yet
 *   (`inFlight`); the caller holds it under its own limit, and stops
 *   reading its socket while `write` says the pipe is full.
 * - Output: `pauseOutput()` stops reading stdout; ffmpeg then blocks on its
 *   output, stops reading its input, and the pipe fills (see above).
 * - `kill()` (SIGKILL) on every end of the session; idempotent.
 */
import type { ChildProcessWithoutNullStreams } from 'node:child_process';

import { DecodeError, ffmpegArgs, spawnFailure, spawnFfmpeg } from './decode.js';

/** The concurrent live decoders (files.maxLiveDecoders). */
export class LiveDecoderSlots {
  readonly max: number;
  #inUse = 0;

  constructor(max: number) {
    this.max = max;
  }

  get inUse(): number {
    return this.#inUse;
  }
  get available(): number {
    return this.max - this.#inUse;
  }

  /** A slot, or null when all are in use. The returned release is idempotent. */
  acquire(): (() => void) | null {
    if (this.#inUse >= this.max) return null;
    this.#inUse++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#inUse--;
    };
  }
}

export interface LiveDecoderEvents {
  /** Decoded audio: 16 kHz mono s16le, whole samples; valid during the call only. */
  data(pcm: Uint8Array): void;
  /** stdin took what was waiting: the caller may read its socket again. */
  drain(): void;
  /**
   * The child is gone (exited and reaped; its slot is free). null: it ended
   * cleanly after end(). A DecodeError: it failed, or never started. Not
   * called after kill().
   */
  exit(error: DecodeError | null): void;
}

const STDERR_KEEP = 2048;
/** Nothing new for this long after the last byte in and out: what the decoder holds is out (settle()). */
export const SETTLE_MS = 80;
/** settle() gives up waiting after this long (a client that never stops sending). */
const SETTLE_MAX_MS = 1000;
const SETTLE_POLL_MS = 10;

export class LiveDecoder {
  #child: ChildProcessWithoutNullStreams;
  #events: LiveDecoderEvents;
  #release: () => void;
  #stderr = '';
  #carry: number | null = null;
  #ending = false;
  #killed = false;
  #gone = false;
  #failure: DecodeError | null = null;
  #settleTimer: NodeJS.Timeout | null = null;
  #lastActivity = performance.now();
  /** Bytes in (container) and out (PCM): metrics and tests. */
  bytesIn = 0;
  bytesOut = 0;

  /** Spawns ffmpeg. `release` frees the slot once the child is gone. */
  constructor(release: () => void, events: LiveDecoderEvents, ffmpeg?: string) {
    this.#events = events;
    this.#release = release;
    this.#child = spawnFfmpeg(ffmpegArgs({ live: true }), ffmpeg);
    const child = this.#child;
    child.stdout.on('data', (chunk: Buffer) => this.#output(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      if (this.#stderr.length < STDERR_KEEP) this.#stderr += chunk.toString('utf8').slice(0, STDERR_KEEP - this.#stderr.length);
    });
    // EPIPE after ffmpeg stopped reading: its exit says why.
    child.stdin.on('error', () => {});
    child.stdin.on('drain', () => {
      if (!this.#killed) this.#events.drain();
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      this.#failure ??= spawnFailure(err);
      // A spawn failure may emit no 'close'.
      if (child.pid === undefined) this.#exited(null);
    });
    child.on('close', (code) => this.#exited(code));
  }

  /** The child's pid (tests); undefined if it never started. */
  get pid(): number | undefined {
    return this.#child.pid;
  }
  /** Container bytes written that ffmpeg has not taken yet. */
  get inFlight(): number {
    return this.#child.stdin.writableLength;
  }
  get gone(): boolean {
    return this.#gone;
  }

  /** Container bytes in. Returns false when stdin's buffer is full: stop reading until `drain`. */
  write(data: Uint8Array): boolean {
    if (this.#ending || this.#killed || this.#gone) return true;
    this.bytesIn += data.byteLength;
    this.#lastActivity = performance.now();
    // Copied: the transport reuses its buffer after the call.
    return this.#child.stdin.write(Buffer.from(data));
  }

  /** No more input: ffmpeg decodes what it holds, writes it out and exits (then `exit(null)`). */
  end(): void {
    if (this.#ending || this.#killed) return;
    this.#ending = true;
    this.#child.stdin.end();
  }

  pauseOutput(): void {
    this.#child.stdout.pause();
  }
  resumeOutput(): void {
    if (!this.#killed) this.#child.stdout.resume();
  }

  /**
   * Calls `done` once the decoder has written out what it was given: stdin
   * is drained and nothing came in or out for SETTLE_MS (at most
   * SETTLE_MAX_MS). A container cannot be flushed without ending it, so this
   * is how a Finalize knows the audio before it has come out.
   */
  settle(done: () => void): void {
    if (this.#settleTimer) clearInterval(this.#settleTimer);
    const since = performance.now();
    this.#settleTimer = setInterval(() => {
      const now = performance.now();
      const quiet = this.inFlight === 0 && now - this.#lastActivity >= SETTLE_MS;
      if (!quiet && !this.#gone && now - since < SETTLE_MAX_MS) return;
      clearInterval(this.#settleTimer!);
      this.#settleTimer = null;
      if (!this.#killed) done();
    }, SETTLE_POLL_MS);
  }

  /** Ends the child at once (the session is over). Idempotent; the slot frees when it is reaped. */
  kill(): void {
    if (this.#killed) return;
    this.#killed = true;
    if (this.#settleTimer) clearInterval(this.#settleTimer);
    this.#settleTimer = null;
    if (!this.#gone) this.#child.kill('SIGKILL');
  }

  #output(chunk: Buffer): void {
    if (this.#killed) return;
    this.#lastActivity = performance.now();
    this.bytesOut += chunk.byteLength;
    // Whole 16-bit samples only: a chunk may end inside one.
    let data: Uint8Array = chunk;
    if (this.#carry !== null) {
      const joined = new Uint8Array(chunk.byteLength + 1);
      joined[0] = this.#carry;
      joined.set(chunk, 1);
      data = joined;
      this.#carry = null;
    }
    if (data.byteLength % 2) {
      this.#carry = data[data.byteLength - 1]!;
      data = data.subarray(0, data.byteLength - 1);
    }
    if (data.byteLength) this.#events.data(data);
  }

  #exited(code: number | null): void {
    if (this.#gone) return;
    this.#gone = true;
    if (this.#settleTimer) clearInterval(this.#settleTimer);
    this.#settleTimer = null;
    this.#release();
    if (this.#killed) return;
    if (this.#failure) {
      this.#events.exit(this.#failure);
      return;
    }
    if (code === 0 && this.#ending) {
      this.#events.exit(null);
      return;
    }
    const detail = this.#stderr.trim().split('\n').slice(-1)[0]?.replace(/pipe:0:\s*/, '') ?? '';
    this.#events.exit(
      new DecodeError(
        'unsupported',
        code !== 0
          ? `the audio could not be decoded (no encoding: expected a container such as WebM/Opus or Ogg/Opus${detail ? `; ffmpeg: ${detail}` : ''})`
          : 'the audio decoder stopped before the stream ended',
      ),
    );
  }
}
