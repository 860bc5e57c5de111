/**
 * Test and bench speech: LibriVox clips from Debian's pocketsphinx-testdata
 * (real human speech with reference transcripts) and flite speech generated
 * at run time from text we choose, cached under .cache/ (never committed).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { packageRoot } from '../src/util/paths.js';
import { encodeWav, readWav, wavToInt16 } from '../src/audio/wav.js';

export const LIBRIVOX_DIR = '/usr/share/pocketsphinx/test/data/librivox';

export interface Clip {
  readonly id: string;
  readonly file: string;
  readonly text: string;
}

export function librivoxClips(dir = LIBRIVOX_DIR): Clip[] {
  const tf = path.join(dir, 'transcription');
  if (!existsSync(tf)) {
    throw new Error(`LibriVox test clips not found in ${dir}. Install them with: apt-get install -y pocketsphinx-testdata`);
  }
  return readFileSync(tf, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((line) => {
      const m = /^(.*)\(([^)]+)\)\s*$/.exec(line);
      if (!m) throw new Error(`unexpected transcription line: ${line}`);
      const text = m[1]!.replace(/<\/?s>/g, ' ').replace(/\s+/g, ' ').trim();
      const id = m[2]!;
      return { id, file: path.join(dir, `${id}.wav`), text };
    });
}

/** Generated audio lives under the build directory (git-ignored, never committed). */
export function cacheDir(): string {
  const dir = path.join(packageRoot(), 'build', 'cache', 'audio');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export type FliteVoice = 'slt' | 'rms' | 'awb' | 'kal16';

/** A sentence in generated audio: its file span, and where the voice actually starts and stops. */
export interface SpeechSegment {
  readonly text: string;
  readonly start: number;
  readonly end: number;
  /** First and last sample above -40 dBFS, in seconds: the reference onset and offset. */
  readonly speechStart: number;
  readonly speechEnd: number;
}

function speechBounds(pcm: Int16Array): [number, number] {
  const thr = 328; // -40 dBFS
  let a = 0;
  while (a < pcm.length && Math.abs(pcm[a]!) < thr) a++;
  let b = pcm.length - 1;
  while (b > a && Math.abs(pcm[b]!) < thr) b--;
  return [a, b + 1];
}

/** Speaks `text` with flite into a 16 kHz mono WAV (cached by content). */
export function fliteWav(text: string, voice: FliteVoice = 'slt'): string {
  const key = createHash('sha1').update(`${voice}\0${text}`).digest('hex').slice(0, 16);
  const out = path.join(cacheDir(), `flite-${voice}-${key}.wav`);
  if (existsSync(out)) return out;
  const tmp = `${out}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp.wav`;
  try {
    execFileSync('flite', ['-voice', voice, '-t', text, '-o', tmp], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new Error(`flite failed (${(err as Error).message}). Install it with: apt-get install -y flite`);
  }
  renameSync(tmp, out);
  return out;
}

/**
 * Sentences separated by known silences: returns the WAV and the reference
 * intervals, so latency and segmentation can be measured against ground truth.
 */
export function fliteSession(
  sentences: readonly string[],
  opts: { voice?: FliteVoice; gapSeconds?: number; leadSeconds?: number; tailSeconds?: number } = {},
): { file: string; text: string; segments: SpeechSegment[] } {
  const voice = opts.voice ?? 'slt';
  const gap = opts.gapSeconds ?? 1.0;
  const lead = opts.leadSeconds ?? 0.5;
  const tail = opts.tailSeconds ?? 1.5;
  const key = createHash('sha1')
    .update(JSON.stringify({ sentences, voice, gap, lead, tail }))
    .digest('hex')
    .slice(0, 16);
  const out = path.join(cacheDir(), `session2-${voice}-${key}.wav`);
  const meta = `${out}.json`;
  if (existsSync(out) && existsSync(meta)) {
    const m = JSON.parse(readFileSync(meta, 'utf8')) as { segments: SpeechSegment[] };
    return { file: out, text: sentences.join(' '), segments: m.segments };
  }
  const rate = 16000;
  const parts: Int16Array[] = [new Int16Array(Math.round(lead * rate))];
  const segments: SpeechSegment[] = [];
  let pos = parts[0]!.length;
  sentences.forEach((s, i) => {
    const w = readWav(fliteWav(s, voice));
    if (w.sampleRate !== rate || w.channels !== 1) throw new Error('flite produced an unexpected format');
    const pcm = wavToInt16(w);
    const [a, b] = speechBounds(pcm);
    segments.push({ text: s, start: pos / rate, end: (pos + pcm.length) / rate, speechStart: (pos + a) / rate, speechEnd: (pos + b) / rate });
    parts.push(pcm);
    pos += pcm.length;
    const silence = new Int16Array(Math.round((i === sentences.length - 1 ? tail : gap) * rate));
    parts.push(silence);
    pos += silence.length;
  });
  const all = new Int16Array(pos);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  // Unique temp names: parallel test workers may build the same file at once.
  const tmp = `${out}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  writeFileSync(`${tmp}.json`, JSON.stringify({ segments }));
  renameSync(`${tmp}.json`, meta);
  writeFileSync(tmp, encodeWav(all, rate));
  renameSync(tmp, out);
  return { file: out, text: sentences.join(' '), segments };
}
