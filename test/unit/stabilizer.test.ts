import { describe, expect, it } from 'vitest';

import { CaptionStabilizer } from '../../src/captions/stabilizer.js';
import type { Utterance } from '../../src/engine/types.js';

const hyp = (text: string, start = 0, end = 1) => ({ partial: { text, start, end }, finals: [] as Utterance[] });
const fin = (text: string, start = 0, end = 1): Utterance => ({
  text,
  start,
  end,
  words: text ? text.split(' ').map((w, i) => ({ word: w, start: start + i * 0.1, end: start + i * 0.1 + 0.1, confidence: 0.9 })) : [],
});

describe('CaptionStabilizer', () => {
  it('sends a partial only when its text changed, with increasing revisions', () => {
    const s = new CaptionStabilizer({ interim: true });
    expect(s.accept(hyp('hello'))).toMatchObject([{ type: 'partial', segment: 0, revision: 1, text: 'hello' }]);
    expect(s.accept(hyp('hello'))).toEqual([]);
    expect(s.accept(hyp('hello world'))).toMatchObject([{ type: 'partial', segment: 0, revision: 2 }]);
    expect(s.accept({ partial: null, finals: [] })).toEqual([]);
  });

  it('commits each segment exactly once and never mentions it again', () => {
    const s = new CaptionStabilizer({ interim: true });
    s.accept(hyp('hello'));
    const out = s.accept({ partial: { text: 'next', start: 2, end: 2.2 }, finals: [fin('hello world', 0, 1.5)] });
    expect(out).toMatchObject([
      { type: 'final', segment: 0, text: 'hello world' },
      { type: 'partial', segment: 1, revision: 1, text: 'next' },
    ]);
    const seen = new Map<number, string>();
    // Drive a long random sequence; the invariant holds throughout.
    for (let i = 0; i < 500; i++) {
      const events = s.accept(
        i % 7 === 6 ? { partial: null, finals: [fin(i % 3 ? `w${i}` : '', i, i + 1)] } : hyp(`w${i % 5}`, i, i + 0.5),
      );
      for (const e of events) {
        expect(seen.get(e.segment)).not.toBe('final');
        seen.set(e.segment, e.type);
      }
    }
  });

  it('closes a shown partial with an empty final when the utterance decoded to nothing, and reuses the segment otherwise', () => {
    const s = new CaptionStabilizer({ interim: true });
    expect(s.accept({ partial: null, finals: [fin('')] })).toEqual([]);
    expect(s.accept(hyp('um'))).toMatchObject([{ type: 'partial', segment: 0 }]);
    expect(s.accept({ partial: null, finals: [fin('')] })).toMatchObject([{ type: 'final', segment: 0, text: '', words: [] }]);
    expect(s.accept(hyp('next'))).toMatchObject([{ type: 'partial', segment: 1 }]);
  });

  it('treats a punctuation-only final as empty: never sent as text, but still closes a shown partial', () => {
    const s = new CaptionStabilizer({ interim: true });
    expect(s.accept({ partial: null, finals: [fin('.')] })).toEqual([]);
    expect(s.accept(hyp('um'))).toMatchObject([{ type: 'partial', segment: 0, text: 'um' }]);
    expect(s.accept({ partial: null, finals: [fin(' ... ?! ')] })).toMatchObject([{ type: 'final', segment: 0, text: '', words: [] }]);
    expect(s.accept(hyp('…'))).toEqual([]);
    expect(s.accept({ partial: null, finals: [fin('Hello, world.')] })).toMatchObject([{ type: 'final', segment: 1, text: 'Hello, world.' }]);
  });

  it('sends no partials without interim, and tags the speaker', () => {
    const s = new CaptionStabilizer({ interim: false, speaker: 'alice' });
    expect(s.accept(hyp('hello'))).toEqual([]);
    expect(s.accept({ partial: null, finals: [fin('hello')] })).toMatchObject([{ type: 'final', speaker: 'alice' }]);
  });

  it('sends each changed partial once, then the final with its words', () => {
    const s = new CaptionStabilizer({ interim: true });
    const evs = [...s.accept(hyp('a')), ...s.accept(hyp('a')), ...s.accept(hyp('a b')), ...s.accept({ partial: null, finals: [fin('a b c')] })];
    expect(evs.filter((e) => e.type === 'partial').map((e) => e.text)).toEqual(['a', 'a b']);
    const finals = evs.filter((e) => e.type === 'final');
    expect(finals).toHaveLength(1);
    expect(finals[0]!.type === 'final' && finals[0]!.words.length).toBe(3);
  });
});
