/**
 * `captiongate stream FILE.wav|-`: stream a WAV file or raw PCM on stdin to
 * a gateway and print captions.
 *
 * - Real-time pacing by default; --fast sends as fast as the server accepts
 *   (flow-controlled by acks, so nothing is dropped).
 * - On a TTY: a progress bar and the live partial; otherwise plain lines.
 * - --json: finals as JSON lines. --vtt/--srt OUT: caption files at the end.
 * - 48 kHz stereo s16le and friends go as they are: the server converts.
 */
import { createReadStream, writeFileSync } from 'node:fs';
import type { Readable } from 'node:stream';

import { buildCues, toSrt, toWebVTT } from '../captions/cues.js';
import { ENGINE_SAMPLE_RATE } from '../engine/types.js';
import { CaptionClientError, connect } from '../client/client.js';
import type { FinalMessage } from '../protocol/messages.js';
import { isWav, parseWavHeader } from '../audio/wav.js';

export interface StreamArgs {
  input: string;
  url: string;
  rate?: number | undefined;
  channels?: number | undefined;
  encoding?: 's16le' | 'f32le' | undefined;
  fast: boolean;
  json: boolean;
  vtt?: string | undefined;
  srt?: string | undefined;
  speaker?: string | undefined;
  meeting?: string | undefined;
  token?: string | undefined;
  msgpack: boolean;
  frameMs: number;
}

interface Format {
  sampleRate: number;
  channels: 1 | 2;
  encoding: 's16le' | 'f32le';
  dataBytes: number | null; // null: unknown (raw stdin)
}

/** Reads bytes from a stream, with a small pushback buffer for header parsing. */
class ByteReader {
  #it: AsyncIterator<Buffer>;
  #buf = Buffer.alloc(0);
  #done = false;
  constructor(stream: Readable) {
    this.#it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }
  async #fill(n: number): Promise<void> {
    while (this.#buf.length < n && !this.#done) {
      const r = await this.#it.next();
      if (r.done) this.#done = true;
      else this.#buf = Buffer.concat([this.#buf, r.value]);
    }
  }
  async peek(n: number): Promise<Buffer> {
    await this.#fill(n);
    return this.#buf.subarray(0, Math.min(n, this.#buf.length));
  }
  async read(n: number): Promise<Buffer> {
    await this.#fill(n);
    const out = this.#buf.subarray(0, Math.min(n, this.#buf.length));
    this.#buf = this.#buf.subarray(out.length);
    return out;
  }
  /** Up to `max` bytes, whatever is available next (empty at end). */
  async chunk(max: number): Promise<Buffer> {
    if (!this.#buf.length) await this.#fill(1);
    return this.read(Math.min(max, Math.max(this.#buf.length, 1)));
  }
}

async function readFormat(r: ByteReader, args: StreamArgs): Promise<Format> {
  if (isWav(await r.peek(12))) {
    // Grow the look-ahead until the header reaches the data chunk.
    for (let n = 64; ; n *= 2) {
      const head = await r.peek(n);
      const h = parseWavHeader(head);
      if (h) {
        await r.read(h.dataOffset);
        return { sampleRate: h.sampleRate, channels: h.channels === 2 ? 2 : 1, encoding: h.encoding, dataBytes: h.dataBytes };
      }
      if (head.length < n) throw new Error('WAV has no data chunk');
    }
  }
  return {
    sampleRate: args.rate ?? ENGINE_SAMPLE_RATE,
    channels: (args.channels ?? 1) === 2 ? 2 : 1,
    encoding: args.encoding ?? 's16le',
    dataBytes: null,
  };
}

function bar(fraction: number, width = 24): string {
  const n = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}]`;
}

export async function runStream(args: StreamArgs, out = process.stdout, err = process.stderr): Promise<number> {
  const input: Readable = args.input === '-' ? process.stdin : createReadStream(args.input);
  const reader = new ByteReader(input);
  const fmt = await readFormat(reader, args);
  const bytesPerSecond = fmt.sampleRate * fmt.channels * (fmt.encoding === 's16le' ? 2 : 4);
  const tty = out.isTTY === true && !args.json;
  // Several gateways (comma-separated): connect to the first; a resume (a
  // drop, or 4014 from a draining node) tries the others in turn.
  const urls = args.url.split(',').map((u) => u.trim()).filter(Boolean);
  const client = await connect(urls[0] ?? args.url, {
    ...(urls.length > 1 ? { resume: { urls } } : {}),
    sampleRate: fmt.sampleRate,
    channels: fmt.channels,
    encoding: fmt.encoding,
    frameMs: args.frameMs,
    protocol: args.msgpack ? 'msgpack' : 'json',
    ...(args.token ? { token: args.token } : {}),
    ...(args.speaker || args.meeting
      ? { meta: { ...(args.speaker ? { speaker: args.speaker } : {}), ...(args.meeting ? { meetingId: args.meeting } : {}) } }
      : {}),
  }).catch((e: unknown) => {
    input.destroy();
    if (e instanceof CaptionClientError) {
      err.write(`captiongate: ${e.code}: ${e.message}${e.retryAfterMs ? ` (retry in ${e.retryAfterMs} ms)` : ''}\n`);
      return null;
    }
    throw e;
  });
  if (!client) return 3;

  const finals: FinalMessage[] = [];
  let partial = '';
  let sent = 0;
  const total = fmt.dataBytes;
  const status = () => {
    if (!tty) return;
    const secs = sent / bytesPerSecond;
    const prog = total ? `${bar(sent / total)} ${secs.toFixed(1)}/${(total / bytesPerSecond).toFixed(1)} s` : `${secs.toFixed(1)} s`;
    const cols = (out as NodeJS.WriteStream).columns ?? 100;
    const line = `${prog}  ${partial}`;
    out.write(`\r\x1b[2K${line.length > cols - 1 ? `…${line.slice(line.length - cols + 2)}` : line}`);
  };
  client.on('partial', (p) => {
    partial = p.text;
    status();
  });
  client.on('final', (f) => {
    partial = '';
    if (!f.text) return;
    finals.push(f);
    if (args.json) out.write(`${JSON.stringify(f)}\n`);
    else {
      if (tty) out.write('\r\x1b[2K');
      out.write(`[${f.start.toFixed(2)}-${f.end.toFixed(2)}]${f.speaker ? ` ${f.speaker}:` : ''} ${f.text}\n`);
      status();
    }
  });
  client.on('warning', (w) => err.write(`\ncaptiongate: warning: ${w.message}\n`));
  // A dropped connection is resumed by the SDK; the transcript goes on in place.
  client.on('reconnecting', (r) => err.write(`\ncaptiongate: connection dropped (${r.reason}); reconnecting in ${r.delayMs} ms (attempt ${r.attempt})…\n`));
  client.on('resumed', (r) => err.write(`captiongate: resumed session ${r.sessionId} on ${new URL(client.url).host} after ${r.gapSeconds.toFixed(1)} s\n`));
  client.on('audioLost', (s) => err.write(`captiongate: ${s.toFixed(1)} s of audio could not be kept for the resume\n`));
  client.on('error', (e) => err.write(`\ncaptiongate: ${e.code}: ${e.message}\n`));

  const frameBytes = Math.max(1, Math.round((args.frameMs * fmt.sampleRate) / 1000)) * fmt.channels * (fmt.encoding === 's16le' ? 2 : 4);
  const t0 = performance.now();
  for (;;) {
    if (total !== null && sent >= total) break;
    const want = total !== null ? Math.min(frameBytes, total - sent) : frameBytes;
    const chunk = await reader.chunk(want);
    if (!chunk.length) break;
    if (!args.fast) {
      const due = t0 + (sent / bytesPerSecond) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      client.send(chunk);
    } else {
      await client.write(chunk);
    }
    sent += chunk.length;
    status();
    if (client.ended) break;
  }
  const end = await client.stop();
  if (tty) out.write('\r\x1b[2K');
  if (args.vtt) writeFileSync(args.vtt, toWebVTT(buildCues(finals)));
  if (args.srt) writeFileSync(args.srt, toSrt(buildCues(finals)));
  const a = end.audio;
  err.write(
    `captiongate: ${end.reason}: ${a.receivedSeconds.toFixed(2)} s received, ${a.decodedSeconds.toFixed(2)} s decoded, ${a.droppedSeconds.toFixed(2)} s dropped` +
      `${args.vtt ? `; wrote ${args.vtt}` : ''}${args.srt ? `; wrote ${args.srt}` : ''}\n`,
  );
  return end.reason === 'client_stop' ? 0 : 4;
}
