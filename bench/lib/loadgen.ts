/**
 * Load generator process: `node dist/bench/lib/loadgen.js CONFIG.json`.
 * Opens N sessions against a gateway and streams real speech at real-time
 * pace (one shared 100 ms tick, sessions spread across it), speaking the
 * real protocol. Prints one JSON result on stdout.
 *
 * Each session plays a list of 16 kHz mono s16le clips back to back
 * (cycling), optionally as 48 kHz stereo, and records when captions arrive
 * relative to the audio clock, so latency is measured against the audio
 * itself: audio time t was sent at wall time t0 + t.
 */
import { readFileSync, writeFileSync } from 'node:fs';

import WebSocket from 'ws';

export interface LoadConfig {
  url: string;
  sessions: number;
  seconds: number;
  /** Raw 16 kHz mono s16le files; session i plays files[i % n], cycling. */
  files: string[];
  /** Start offset into the file per session, seconds (spreads speech). */
  offsetStepSeconds?: number;
  stereo48?: boolean;
  interim?: boolean;
  /** Collect caption timing (small N); otherwise count only. */
  detail?: boolean;
  /** ms over which session opens are spread. */
  rampMs?: number;
  meta?: Record<string, string>;
  /** Frame length in ms, a multiple of 10 (default 100). */
  frameMs?: number;
}

export interface SessionTrace {
  index: number;
  t0: number; // wall ms when audio time 0 was sent
  partials: { at: number; start: number; end: number; text: string }[];
  finals: { at: number; start: number; end: number; text: string; words: { word: string; start: number; end: number }[] }[];
  end: { reason: string; audio: { receivedSamples: number; decodedSamples: number; droppedSamples: number } } | null;
  errors: string[];
  closeCode: number | null;
}

export interface LoadResult {
  opened: number;
  refused: number;
  framesSent: number;
  traces: SessionTrace[];
  clientCpuSeconds: number;
  sendLateMsP99: number;
}

function toFrames(pcm: Buffer, stereo48: boolean, FRAME: number): Buffer[] {
  const samples = new Int16Array(pcm.buffer, pcm.byteOffset, Math.floor(pcm.byteLength / 2));
  const frames: Buffer[] = [];
  for (let off = 0; off + FRAME <= samples.length; off += FRAME) {
    const src = samples.subarray(off, off + FRAME);
    if (!stereo48) {
      frames.push(Buffer.from(src.buffer, src.byteOffset, src.byteLength));
      continue;
    }
    const out = new Int16Array(FRAME * 6);
    for (let i = 0; i < FRAME * 3; i++) out[2 * i] = out[2 * i + 1] = src[Math.floor(i / 3)]!;
    frames.push(Buffer.from(out.buffer));
  }
  return frames;
}

export async function runLoad(cfg: LoadConfig): Promise<LoadResult> {
  const cpu0 = process.cpuUsage();
  const frameMs = cfg.frameMs ?? 100;
  const period = frameMs / 10; // ticks per frame
  const sources = cfg.files.map((f) => toFrames(readFileSync(f), cfg.stereo48 === true, frameMs * 16));
  const q = new URLSearchParams({
    sampleRate: cfg.stereo48 ? '48000' : '16000',
    channels: cfg.stereo48 ? '2' : '1',
    encoding: 's16le',
    interim: String(cfg.interim !== false),
    ...(cfg.meta ?? {}),
  });
  const traces: SessionTrace[] = [];
  let refused = 0;
  let framesSent = 0;
  const late: number[] = [];

  interface Live {
    ws: WebSocket;
    trace: SessionTrace;
    frames: Buffer[];
    pos: number;
    slot: number; // which 10 ms slice of the frame period
    done: boolean;
  }
  const live: Live[] = [];
  const ramp = cfg.rampMs ?? Math.min(5000, cfg.sessions * 5);

  await Promise.all(
    Array.from({ length: cfg.sessions }, async (_, i) => {
      await new Promise((r) => setTimeout(r, (ramp * i) / cfg.sessions));
      const ws = new WebSocket(`${cfg.url}?${q}`, { perMessageDeflate: false });
      const trace: SessionTrace = { index: i, t0: 0, partials: [], finals: [], end: null, errors: [], closeCode: null };
      const ready = await new Promise<boolean>((resolve) => {
        ws.once('message', (d: Buffer) => resolve((JSON.parse(d.toString()) as { type: string }).type === 'ready'));
        ws.once('close', () => resolve(false));
        ws.on('error', () => resolve(false));
      });
      if (!ready) {
        refused++;
        ws.terminate();
        return;
      }
      ws.on('message', (d: Buffer) => {
        const at = performance.now();
        const m = JSON.parse(d.toString()) as { type: string; text?: string; start?: number; end?: number; words?: never[]; code?: string; reason?: string; audio?: never };
        if (m.type === 'partial' && cfg.detail) trace.partials.push({ at, start: m.start!, end: m.end!, text: m.text! });
        else if (m.type === 'final') trace.finals.push({ at, start: m.start!, end: m.end!, text: m.text!, words: cfg.detail ? (m.words ?? []) : [] });
        else if (m.type === 'error') trace.errors.push(m.code!);
        else if (m.type === 'end') trace.end = { reason: m.reason!, audio: m.audio! };
      });
      ws.on('close', (code) => {
        trace.closeCode = code;
      });
      const src = sources[i % sources.length]!;
      const offset = Math.floor(((cfg.offsetStepSeconds ?? 0) * i * (1000 / frameMs)) % Math.max(1, src.length));
      traces.push(trace);
      live.push({ ws, trace, frames: src, pos: offset, slot: i % period, done: false });
    }),
  );

  // One clock for everybody: every 10 ms, the sessions in that slot send
  // their next frame if its audio time has come.
  const start = performance.now();
  // Frame f carries audio [f, f+1) x 100 ms and is sent at start + f x 100 ms
  // (+ its slot): as a real capture would send it the moment its last sample
  // arrived. So audio time t was captured at t0 + t with t0 = send time - 100 ms.
  for (const s of live) s.trace.t0 = start + s.slot * 10 - frameMs;
  const total = Math.floor((cfg.seconds * 1000) / frameMs);
  await new Promise<void>((resolve) => {
    let tick = 0;
    const step = () => {
      const now = performance.now();
      const slot = tick % period;
      const frameIdx = Math.floor(tick / period);
      if (frameIdx >= total) {
        resolve();
        return;
      }
      const due = start + tick * 10;
      late.push(now - due);
      for (const s of live) {
        if (s.slot !== slot || s.done) continue;
        if (s.ws.readyState !== WebSocket.OPEN) {
          s.done = true;
          continue;
        }
        s.ws.send(s.frames[(s.pos + frameIdx) % s.frames.length]!);
        framesSent++;
      }
      tick++;
      const next = start + tick * 10 - performance.now();
      setTimeout(step, Math.max(0, next));
    };
    step();
  });
  // Finish: stop every session, wait for its end (or close).
  await Promise.all(
    live.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.ws.readyState !== WebSocket.OPEN) {
            resolve();
            return;
          }
          const t = setTimeout(() => {
            s.ws.terminate();
            resolve();
          }, 30_000);
          s.ws.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          s.ws.send(JSON.stringify({ type: 'stop' }));
        }),
    ),
  );
  late.sort((a, b) => a - b);
  const c = process.cpuUsage(cpu0);
  return {
    opened: live.length,
    refused,
    framesSent,
    traces,
    clientCpuSeconds: (c.user + c.system) / 1e6,
    sendLateMsP99: late[Math.floor(late.length * 0.99)] ?? 0,
  };
}

if (process.argv[1]?.endsWith('loadgen.js')) {
  const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as LoadConfig;
  runLoad(cfg).then(
    (r) => {
      // A file, not stdout: a large result piped to stdout can be cut off at exit.
      writeFileSync(`${process.argv[2]!}.out.json`, JSON.stringify(r));
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack}\n`);
      process.exit(1);
    },
  );
}
