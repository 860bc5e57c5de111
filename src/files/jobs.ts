/**
 * File jobs: an uploaded file, decoded by ffmpeg, transcribed through the
 * gateway's own engine and scheduler, behind the live sessions.
 *
 * - At most files.maxConcurrentJobs run at once (decoding included); up to
 *   files.maxQueuedJobs more wait their turn; beyond that a request is
 *   refused (429, retry later).
 * - A job's audio is one background stream of the scheduler
 *   (scheduler.ts): its windows go only when no live window is waiting,
 *   one at a time, and only while every live session's oldest undecoded
 *   audio has waited less than files.yieldLagSeconds. A file job
 *   therefore slows down when live sessions need the engine, and never
 *   pushes one into `lagging`.
 * - Windows are the engine's smallest (its policy's minSamples), so a
 *   live window that arrives while a file window decodes waits at most
 *   that one short decode.
 * - The client going away aborts the job (decoder killed, stream closed).
 */
import type { Logger } from 'pino';

import type { Config } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { Engine, Utterance } from '../engine/types.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import { transcribePcm } from '../scheduler/transcribe.js';
import { decodeAudio, type DecodeLimits } from './decode.js';

export interface FileTranscript {
  readonly finals: readonly Utterance[];
  /** Seconds of decoded audio. */
  readonly duration: number;
  readonly decodeMs: number;
  readonly transcribeMs: number;
  /** Time the job waited for a free slot. */
  readonly queuedMs: number;
}

/** The job queue is full. */
export class JobsBusyError extends Error {
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number) {
    super(message);
    this.name = 'JobsBusyError';
    this.retryAfterMs = retryAfterMs;
  }
}

export interface FileJobsDeps {
  readonly config: Readonly<Config>;
  readonly engine: Engine;
  readonly scheduler: Scheduler;
  readonly log: Logger;
}

const BUSY_RETRY_MS = 5_000;
/** How long stopped jobs get to settle before the shutdown goes on. */
const STOP_SETTLE_MS = 2_000;

export class FileJobs {
  #deps: FileJobsDeps;
  #running = 0;
  #waiting: { go: () => void; refuse: (e: Error) => void }[] = [];
  #idle: (() => void)[] = [];
  #closed = false;
  /** Set when the shutdown grace has run out: the running jobs are being stopped. */
  #stopping = false;
  /** One per running job: aborted by its client going away, or by #stopping. */
  #jobs = new Set<AbortController>();
  /** Jobs done and audio seconds transcribed (diagnostics, tests). */
  completed = 0;
  audioSeconds = 0;

  constructor(deps: FileJobsDeps) {
    this.#deps = deps;
  }

  get running(): number {
    return this.#running;
  }
  get queued(): number {
    return this.#waiting.length;
  }

  /**
   * Decodes `file` and transcribes it. Throws DecodeError, JobsBusyError,
   * GatewayError (shutting down, also when the grace ran out mid-job), or
   * the engine's error.
   */
  async transcribe(file: Uint8Array, signal: AbortSignal, raw?: DecodeLimits['raw']): Promise<FileTranscript> {
    const { config, engine, scheduler, log } = this.#deps;
    const files = config.files;
    const t0 = performance.now();
    await this.#acquire(signal);
    const t1 = performance.now();
    // The job's own signal (not AbortSignal.any with a long-lived one, which
    // keeps an entry per job for the life of the process).
    const job = new AbortController();
    const clientGone = () => job.abort(signal.reason);
    signal.addEventListener('abort', clientGone, { once: true });
    if (signal.aborted) clientGone();
    this.#jobs.add(job);
    try {
      job.signal.throwIfAborted();
      const decoded = await decodeAudio(file, { maxDurationSeconds: files.maxDurationSeconds, timeoutMs: files.decodeTimeoutSeconds * 1000, ...(raw ? { raw } : {}) }, job.signal);
      const t2 = performance.now();
      const r = await transcribePcm(engine, decoded.pcm, { scheduler, background: true, signal: job.signal });
      const t3 = performance.now();
      this.completed++;
      this.audioSeconds += decoded.seconds;
      const out = { finals: r.finals, duration: decoded.seconds, decodeMs: t2 - t1, transcribeMs: t3 - t2, queuedMs: t1 - t0 };
      log.info(
        { file: { bytes: file.byteLength, seconds: decoded.seconds, decodeMs: Math.round(out.decodeMs), transcribeMs: Math.round(out.transcribeMs), queuedMs: Math.round(out.queuedMs), windows: r.windows } },
        'file transcribed',
      );
      return out;
    } catch (err) {
      // Stopped by shutdown, wherever it was (decoding, transcribing, or the
      // engine already gone): the shutdown's 503, not an abort or a 500.
      if (this.#stopping && !signal.aborted) {
        throw new GatewayError('CAP_ERR_SERVER_SHUTDOWN', 'the server shut down before this file was transcribed (server.shutdownGraceSeconds)', BUSY_RETRY_MS);
      }
      throw err;
    } finally {
      signal.removeEventListener('abort', clientGone);
      this.#jobs.delete(job);
      this.#release();
    }
  }

  async #acquire(signal: AbortSignal): Promise<void> {
    const { maxConcurrentJobs, maxQueuedJobs } = this.#deps.config.files;
    if (this.#closed) throw new GatewayError('CAP_ERR_SERVER_SHUTDOWN', 'the server is shutting down', BUSY_RETRY_MS);
    if (this.#running < maxConcurrentJobs) {
      this.#running++;
      return;
    }
    if (this.#waiting.length >= maxQueuedJobs) {
      throw new JobsBusyError(
        `${this.#running} file jobs are running and ${this.#waiting.length} waiting (files.maxConcurrentJobs, files.maxQueuedJobs); retry later`,
        BUSY_RETRY_MS,
      );
    }
    await new Promise<void>((resolve, reject) => {
      const entry = {
        go: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        refuse: (e: Error) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        const i = this.#waiting.indexOf(entry);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(entry);
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next.go(); // the slot passes on
    else if (--this.#running === 0) for (const f of this.#idle.splice(0)) f();
  }

  /**
   * Shutdown: new and waiting jobs are refused (503); running ones get up
   * to `graceMs` to finish. Those still running then are stopped and
   * answered 503 too, before the transport closes their connections.
   */
  async close(graceMs: number): Promise<void> {
    this.#closed = true;
    // A waiting job never acquired a slot: refusing it releases nothing.
    for (const w of this.#waiting.splice(0)) {
      w.refuse(new GatewayError('CAP_ERR_SERVER_SHUTDOWN', 'the server is shutting down', BUSY_RETRY_MS));
    }
    if (!(await this.#idleWithin(graceMs))) {
      this.#stopping = true;
      for (const job of this.#jobs) job.abort(new Error('the shutdown grace ran out'));
      // A stopped job settles at once (its decoder is killed, its stream closed).
      await this.#idleWithin(STOP_SETTLE_MS);
    }
  }

  /** Whether no job runs, now or within `ms`. */
  async #idleWithin(ms: number): Promise<boolean> {
    if (this.#running === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const idle = await Promise.race([
      new Promise<boolean>((r) => this.#idle.push(() => r(true))),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
    ]);
    clearTimeout(timer);
    return idle;
  }
}
