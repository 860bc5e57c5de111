/**
 * Decodes an uploaded audio file with Debian's `ffmpeg`, run as a child
 * process with strict limits: the file goes in on stdin (no file on disk,
 * only the `pipe` protocol allowed, so a playlist or a concat list cannot
 * make ffmpeg open anything else), 16 kHz mono s16le comes out on stdout.
 *
 * - `-t` caps the decoded duration a little above maxDurationSeconds, and
 *   the output is counted: more than maxDurationSeconds of audio kills the
 *   process and is a DecodeError `too_long`.
 * - A wall-clock timeout kills it (`timeout`); so does the caller's abort
 *   signal (the client went away: `aborted`).
 * - It runs at a lower CPU priority than the gateway, so decoding a file
 *   yields to live sessions.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import os from 'node:os';

import { ENGINE_SAMPLE_RATE } from '../engine/types.js';

export type DecodeErrorKind = 'unsupported' | 'too_long' | 'timeout' | 'aborted' | 'unavailable' | 'empty';

export class DecodeError extends Error {
  readonly kind: DecodeErrorKind;
  constructor(kind: DecodeErrorKind, message: string) {
    super(message);
    this.name = 'DecodeError';
    this.kind = kind;
  }
}

export interface DecodeLimits {
  readonly maxDurationSeconds: number;
  readonly timeoutMs: number;
  /** Headerless input (Deepgram's `encoding`): its sample format, rate and channels; otherwise ffmpeg probes the container. */
  readonly raw?: { readonly format: 's16le' | 'mulaw' | 'alaw'; readonly sampleRate: number; readonly channels: number };
  /** The ffmpeg binary (default: `ffmpeg` on PATH). */
  readonly ffmpeg?: string;
}

export interface Decoded {
  /** 16 kHz mono. */
  readonly pcm: Int16Array;
  readonly seconds: number;
}

const STDERR_KEEP = 2048;
/** Nice increment for the decoder (it yields the CPU to the gateway and the engine). */
const NICE = 10;

/**
 * ffmpeg's arguments: stdin to 16 kHz mono s16le on stdout, only the `pipe`
 * protocol, one thread. `live`: a stream that arrives as it is recorded
 * (Deepgram live, no `encoding`): probe the container from its first bytes
 * instead of buffering up to 5 MB first, and write each decoded packet out
 * at once, so the decoder adds no latency of its own.
 */
export function ffmpegArgs(o: { raw?: DecodeLimits['raw']; maxSeconds?: number; live?: boolean }): string[] {
  return [
    '-hide_banner',
    '-nostdin',
    '-loglevel', 'error',
    '-protocol_whitelist', 'pipe',
    '-threads', '1',
    ...(o.live ? ['-fflags', 'nobuffer', '-probesize', '32', '-analyzeduration', '0'] : []),
    ...(o.raw ? ['-f', o.raw.format, '-ar', String(o.raw.sampleRate), '-ac', String(o.raw.channels)] : []),
    '-i', 'pipe:0',
    '-map', '0:a:0',
    '-vn', '-sn', '-dn',
    '-ac', '1',
    '-ar', String(ENGINE_SAMPLE_RATE),
    ...(o.maxSeconds !== undefined ? ['-t', o.maxSeconds.toFixed(3)] : []),
    '-f', 's16le',
    '-acodec', 'pcm_s16le',
    ...(o.live ? ['-flush_packets', '1'] : []),
    'pipe:1',
  ];
}

/** Runs ffmpeg with these arguments at a lower CPU priority than the gateway. */
export function spawnFfmpeg(args: readonly string[], ffmpeg = 'ffmpeg'): ChildProcessWithoutNullStreams {
  const child = spawn(ffmpeg, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  if (child.pid !== undefined) {
    try {
      os.setPriority(child.pid, Math.min(19, os.getPriority(0) + NICE));
    } catch {
      // Not permitted here: it decodes at the gateway's priority.
    }
  }
  return child;
}

/** A spawn error as a DecodeError (ENOENT: no ffmpeg on the server). */
export function spawnFailure(err: NodeJS.ErrnoException): DecodeError {
  return err.code === 'ENOENT'
    ? new DecodeError('unavailable', 'ffmpeg is not installed on the server (apt-get install ffmpeg)')
    : new DecodeError('unavailable', `could not run ffmpeg: ${err.message}`);
}

export function decodeAudio(input: Uint8Array, limits: DecodeLimits, signal?: AbortSignal): Promise<Decoded> {
  const maxBytes = Math.floor(limits.maxDurationSeconds * ENGINE_SAMPLE_RATE) * 2;
  const args = ffmpegArgs({ ...(limits.raw ? { raw: limits.raw } : {}), maxSeconds: limits.maxDurationSeconds + 0.5 });
  return new Promise<Decoded>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new DecodeError('aborted', 'the request was aborted'));
      return;
    }
    const child = spawnFfmpeg(args, limits.ffmpeg);
    let failure: DecodeError | null = null;
    const kill = (e: DecodeError) => {
      failure ??= e;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill(new DecodeError('timeout', `decoding took longer than ${limits.timeoutMs / 1000} s`)), limits.timeoutMs);
    const onAbort = () => kill(new DecodeError('aborted', 'the request was aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });

    // Preallocate for the whole allowed output; most files use a fraction of it, so grow instead.
    let out = Buffer.allocUnsafe(Math.min(maxBytes + 2, 1 << 20));
    let size = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      if (failure) return;
      if (size + chunk.length > maxBytes) {
        kill(new DecodeError('too_long', `the audio is longer than ${limits.maxDurationSeconds} s (files.maxDurationSeconds)`));
        return;
      }
      if (size + chunk.length > out.length) {
        const grown = Buffer.allocUnsafe(Math.min(maxBytes + 2, Math.max(out.length * 2, size + chunk.length)));
        out.copy(grown, 0, 0, size);
        out = grown;
      }
      chunk.copy(out, size);
      size += chunk.length;
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < STDERR_KEEP) stderr += chunk.toString('utf8').slice(0, STDERR_KEEP - stderr.length);
    });
    // ffmpeg may stop reading early (it found no audio, or -t was reached): that is not an error here.
    child.stdin.on('error', () => {});
    child.stdin.end(input);

    child.on('error', (err: NodeJS.ErrnoException) => {
      failure ??= spawnFailure(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (failure) {
        reject(failure);
        return;
      }
      if (code !== 0) {
        const detail = stderr.trim().split('\n').slice(-1)[0] ?? '';
        reject(new DecodeError('unsupported', `the file could not be decoded as audio${detail ? ` (ffmpeg: ${detail.replace(/pipe:0:\s*/, '')})` : ''}`));
        return;
      }
      const samples = size >> 1;
      if (samples === 0) {
        reject(new DecodeError('empty', 'the file holds no audio'));
        return;
      }
      const pcm = new Int16Array(samples);
      new Uint8Array(pcm.buffer).set(out.subarray(0, samples * 2));
      resolve({ pcm, seconds: samples / ENGINE_SAMPLE_RATE });
    });
  });
}
