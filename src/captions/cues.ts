/**
 * Caption cues (WebVTT and SRT) from finals.
 *
 * Self-contained on purpose: the browser demo loads the compiled file
 * directly (/lib/cues.js), so the page and the server build identical files.
 *
 * Rules (common broadcast/web practice):
 * - at most 2 lines of at most ~42 characters, wrapped at word boundaries;
 * - a cue never spans two finals and never lasts longer than 7 s;
 * - timing comes from the words: start of the first, end of the last;
 * - reading rate: a cue stays up at least chars / 17 s (and at least 1 s)
 *   when the next cue leaves room; times are monotonic, cues never overlap.
 */

export interface CueSourceWord {
  readonly word: string;
  readonly start: number;
  readonly end: number;
}

export interface CueSource {
  readonly text: string;
  readonly start: number;
  readonly end: number;
  readonly words: readonly CueSourceWord[];
  readonly speaker?: string | undefined;
}

export interface Cue {
  start: number;
  end: number;
  lines: string[];
  speaker?: string | undefined;
}

export interface CueOptions {
  maxLineChars?: number;
  maxLines?: number;
  maxCueSeconds?: number;
  minCueSeconds?: number;
  maxCharsPerSecond?: number;
}

export function buildCues(finals: readonly CueSource[], options: CueOptions = {}): Cue[] {
  const maxLineChars = options.maxLineChars ?? 42;
  const maxLines = options.maxLines ?? 2;
  const maxCue = options.maxCueSeconds ?? 7;
  const minCue = options.minCueSeconds ?? 1;
  const cps = options.maxCharsPerSecond ?? 17;
  const cues: Cue[] = [];

  for (const f of finals) {
    const words = f.words.length ? f.words : f.text ? [{ word: f.text, start: f.start, end: f.end }] : [];
    let cur: Cue | null = null;
    const close = () => {
      if (cur && cur.lines.length) cues.push(cur);
      cur = null;
    };
    for (const w of words) {
      if (cur) {
        const c: Cue = cur;
        const last = c.lines[c.lines.length - 1]!;
        const fitsLine = last.length + 1 + w.word.length <= maxLineChars;
        const tooLong = w.end - c.start > maxCue;
        if (tooLong || (!fitsLine && c.lines.length >= maxLines)) close();
      }
      if (!cur) {
        cur = { start: w.start, end: w.end, lines: [w.word], speaker: f.speaker };
        continue;
      }
      const c: Cue = cur;
      const last = c.lines[c.lines.length - 1]!;
      if (last.length + 1 + w.word.length <= maxLineChars) c.lines[c.lines.length - 1] = `${last} ${w.word}`;
      else c.lines.push(w.word);
      c.end = w.end;
    }
    close();
  }

  // Monotonic, non-overlapping, and long enough to read.
  for (let i = 0; i < cues.length; i++) {
    const c = cues[i]!;
    const prev = cues[i - 1];
    if (prev && c.start < prev.end) c.start = prev.end;
    if (c.end <= c.start) c.end = c.start + 0.04;
    const chars = c.lines.join(' ').length;
    const want = Math.max(minCue, chars / cps);
    const next = cues[i + 1];
    const limit = next ? next.start : Infinity;
    if (c.end - c.start < want) c.end = Math.max(c.end, Math.min(c.start + want, limit));
  }
  return cues;
}

function stamp(seconds: number, sep: '.' | ','): string {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = Math.floor((ms % 60_000) / 1000);
  const r = ms % 1000;
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(h)}:${p(m)}:${p(s)}${sep}${p(r, 3)}`;
}

function escapeVtt(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function toWebVTT(cues: readonly Cue[]): string {
  const out = ['WEBVTT', ''];
  cues.forEach((c, i) => {
    out.push(String(i + 1));
    out.push(`${stamp(c.start, '.')} --> ${stamp(c.end, '.')}`);
    const text = c.lines.map(escapeVtt);
    if (c.speaker) text[0] = `<v ${escapeVtt(c.speaker)}>${text[0]}`;
    out.push(...text, '');
  });
  return out.join('\n');
}

export function toSrt(cues: readonly Cue[]): string {
  const out: string[] = [];
  cues.forEach((c, i) => {
    out.push(String(i + 1));
    out.push(`${stamp(c.start, ',')} --> ${stamp(c.end, ',')}`);
    const text = [...c.lines];
    if (c.speaker) text[0] = `${c.speaker}: ${text[0]}`;
    out.push(...text, '');
  });
  return out.join('\n');
}
