/**
 * Word error rate, for tests and benches: (substitutions + deletions +
 * insertions) / reference words, after the same normalization on both sides.
 */

/** Lowercase, drop punctuation (keeping in-word apostrophes), collapse spaces. */
export function normalizeText(s: string): string[] {
  return s
    .toLowerCase()
    .replace(/<\/?s>|<sil>|\[[a-z]+\]/g, ' ')
    .replace(/[^a-z0-9' ]+/g, ' ')
    .replace(/(^|\s)'+|'+(\s|$)/g, ' ')
    .split(/\s+/)
    .filter(Boolean);
}

export function editDistance(ref: readonly string[], hyp: readonly string[]): number {
  let prev = Array.from({ length: hyp.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ref.length; i++) {
    const cur = [i];
    for (let j = 1; j <= hyp.length; j++) {
      const sub = prev[j - 1]! + (ref[i - 1] === hyp[j - 1] ? 0 : 1);
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, sub));
    }
    prev = cur;
  }
  return prev[hyp.length]!;
}

export interface WerResult {
  readonly errors: number;
  readonly words: number;
  /** Percent. */
  readonly wer: number;
}

/** Corpus WER over pairs of (reference, hypothesis). */
export function wer(pairs: readonly (readonly [string, string])[]): WerResult {
  let errors = 0;
  let words = 0;
  for (const [ref, hyp] of pairs) {
    const r = normalizeText(ref);
    errors += editDistance(r, normalizeText(hyp));
    words += r.length;
  }
  return { errors, words, wer: words === 0 ? 0 : (100 * errors) / words };
}
