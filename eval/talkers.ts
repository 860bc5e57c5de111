/**
 * Continuous talkers for the fair-decoders test and bench (issue 13): each
 * talker reads the LibriVox clips back to back (a different clip first), so
 * only the short pauses of reading aloud separate its utterances, and sends
 * them to a gateway at real-time pace in 100 ms frames. Measures what a
 * talker sees: the delay of each final (its arrival minus the wall time the
 * frame holding its last sample was sent), lagging warnings, errors, and
 * the end message.
 */
import { readWav, wavToInt16 } from '../src/audio/wav.js';
import { connect } from '../src/client/client.js';
import type { EndMessage, FinalMessage, ServerMessage } from '../src/protocol/messages.js';
import { librivoxClips } from './corpus.js';

const RATE = 16000;
const FRAME = RATE / 10; // 100 ms

export interface Talk {
  readonly pcm: Int16Array;
  /** The LibriVox transcripts of the clips, in order. */
  readonly text: string;
}

/** Talker `i`: whole clips back to back from clip i (every other pair backwards) until `seconds` are reached. */
export function continuousTalk(i: number, seconds: number): Talk {
  const clips = librivoxClips().map((c) => ({ text: c.text, pcm: wavToInt16(readWav(c.file)) }));
  const n = clips.length;
  const parts: (typeof clips)[number][] = [];
  let samples = 0;
  for (let k = 0; samples < seconds * RATE; k++) {
    const idx = Math.floor(i / 2) % 2 === 0 ? (i + k) % n : (((i - k) % n) + n) % n;
    parts.push(clips[idx]!);
    samples += clips[idx]!.pcm.length;
  }
  const pcm = new Int16Array(samples);
  let o = 0;
  for (const p of parts) {
    pcm.set(p.pcm, o);
    o += p.pcm.length;
  }
  return { pcm, text: parts.map((p) => p.text).join(' ') };
}

export interface TalkerRun {
  readonly finals: FinalMessage[];
  /** Per final: arrival wall time minus the wall time its audio's last frame was sent, ms. */
  readonly finalDelaysMs: number[];
  /** Arrival times of finals with words, ms from the talker's first frame. */
  readonly wordFinalTimesMs: number[];
  readonly lagWarnings: number;
  readonly errors: string[];
  readonly end: EndMessage;
  readonly talkMs: number;
}

/**
 * Streams `pcm` (truncated to `seconds`) to `url` at real time, in 100 ms
 * frames sent at their audio time (no client flow control: a real-time
 * talker does not wait for the server), then stops and waits for `end`.
 */
export async function talkRealtime(url: string, pcm: Int16Array, seconds: number): Promise<TalkerRun> {
  const audio = pcm.subarray(0, Math.min(pcm.length, Math.round(seconds * RATE)));
  const client = await connect(url, { sampleRate: RATE, flowControl: false });
  const sentAt: number[] = []; // wall time each frame was sent
  const finals: FinalMessage[] = [];
  const finalDelaysMs: number[] = [];
  const wordFinalTimesMs: number[] = [];
  const errors: string[] = [];
  let lagWarnings = 0;
  const t0 = performance.now();
  client.on('message', (m: ServerMessage) => {
    const now = performance.now();
    if (m.type === 'final') {
      finals.push(m);
      // The frame holding the final's last sample.
      const frame = Math.max(0, Math.ceil((m.end * RATE) / FRAME) - 1);
      const sent = sentAt[Math.min(frame, sentAt.length - 1)];
      if (sent !== undefined) finalDelaysMs.push(now - sent);
      if (m.text.trim()) wordFinalTimesMs.push(now - t0);
    } else if (m.type === 'warning' && m.code === 'lagging') {
      lagWarnings++;
    } else if (m.type === 'error') {
      errors.push(m.code);
    }
  });
  for (let off = 0, k = 0; off < audio.length; off += FRAME, k++) {
    const wait = t0 + k * 100 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    sentAt.push(performance.now());
    const chunk = audio.subarray(off, Math.min(audio.length, off + FRAME));
    client.send(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  }
  const talkMs = performance.now() - t0;
  const end = await client.stop();
  return { finals, finalDelaysMs, wordFinalTimesMs, lagWarnings, errors, end, talkMs };
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** Longest stretch (ms) a talker went without a final with words while it was talking. */
export function longestWithoutFinal(run: TalkerRun): number {
  let last = 0;
  let gap = 0;
  for (const t of run.wordFinalTimesMs) {
    if (t > run.talkMs) break;
    gap = Math.max(gap, t - last);
    last = t;
  }
  return Math.max(gap, run.talkMs - last);
}
