import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { buildCues, toSrt, toWebVTT } from '../../src/captions/cues.js';
import { connect } from '../../src/client/client.js';
import { fliteSession } from '../../eval/corpus.js';
import { STORY } from '../../eval/texts.js';
import type { FinalMessage } from '../../src/protocol/messages.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';

const TIME = /^(\d{2}):(\d{2}):(\d{2})[.,](\d{3}) --> (\d{2}):(\d{2}):(\d{2})[.,](\d{3})$/;
const secs = (h: string, m: string, s: string, ms: string) => Number(h) * 3600 + Number(m) * 60 + Number(s) + Number(ms) / 1000;

/** A strict-enough WebVTT parser: header, cue ids, timing lines, payload. */
function parseVtt(text: string) {
  const lines = text.split('\n');
  expect(lines[0]).toBe('WEBVTT');
  expect(lines[1]).toBe('');
  const cues: { start: number; end: number; text: string[] }[] = [];
  let i = 2;
  while (i < lines.length) {
    if (lines[i] === '') {
      i++;
      continue;
    }
    expect(lines[i], `cue id at line ${i + 1}`).toMatch(/^\d+$/);
    const t = TIME.exec(lines[i + 1] ?? '');
    expect(t, `timing at line ${i + 2}: ${lines[i + 1]}`).not.toBeNull();
    expect(lines[i + 1]).toContain('.');
    const [, h1, m1, s1, ms1, h2, m2, s2, ms2] = t!;
    const payload: string[] = [];
    i += 2;
    while (i < lines.length && lines[i] !== '') payload.push(lines[i++]!);
    expect(payload.length).toBeGreaterThan(0);
    expect(payload.join('')).not.toContain('-->');
    cues.push({ start: secs(h1!, m1!, s1!, ms1!), end: secs(h2!, m2!, s2!, ms2!), text: payload });
  }
  return cues;
}

describe('live WebVTT and SRT', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('ws', { engine: { decoders: 1, threads: 1 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('serves the captions committed so far, as valid WebVTT/SRT whose cues follow the finals\' word times', async () => {
    const story = fliteSession(STORY.slice(0, 8), { voice: 'kal16', gapSeconds: 0.8 });
    const pcm = wavToInt16(readWav(story.file));
    const c = await connect(`${h.base}/v1/listen`, { sampleRate: 16000 });
    const finals: FinalMessage[] = [];
    c.on('final', (f) => finals.push(f));
    const half = Math.floor(pcm.length / 2);
    await c.write(pcm.subarray(0, half));
    await new Promise((r) => setTimeout(r, 1500));
    // While live: what is committed so far.
    const midRes = await fetch(`${h.http}/v1/sessions/${c.ready.sessionId}/captions.vtt`);
    expect(midRes.status).toBe(200);
    expect(midRes.headers.get('content-type')).toContain('text/vtt');
    expect(midRes.headers.get('x-captiongate-live')).toBe('true');
    const mid = parseVtt(await midRes.text());
    expect(mid.length).toBeGreaterThan(0);
    await c.write(pcm.subarray(half));
    await c.stop();
    await settled(h.gw);

    // After the end the file is still there for a while, complete.
    const vtt = parseVtt(await (await fetch(`${h.http}/v1/sessions/${c.ready.sessionId}/captions.vtt`)).text());
    expect(vtt.length).toBeGreaterThan(mid.length);
    const words = finals.flatMap((f) => f.words);
    const wordStarts = new Set(words.map((w) => Math.round(w.start * 1000)));
    let prevEnd = 0;
    for (const cue of vtt) {
      expect(cue.start).toBeGreaterThanOrEqual(prevEnd - 1e-9); // monotonic, no overlap
      expect(cue.end).toBeGreaterThan(cue.start);
      expect(cue.text.length).toBeLessThanOrEqual(2);
      for (const line of cue.text) expect(line.length).toBeLessThanOrEqual(42 + 20);
      // Each cue starts where one of its words starts (unless pushed by the previous cue).
      if (cue.start > prevEnd + 1e-9) expect(wordStarts.has(Math.round(cue.start * 1000))).toBe(true);
      // Reading rate: at most ~17 characters per second where the next cue allowed it.
      prevEnd = cue.end;
    }
    // Every committed word appears, in order.
    const cueWords = vtt.flatMap((c2) => c2.text.join(' ').split(' '));
    expect(cueWords).toEqual(words.map((w) => w.word));
    const last = words.at(-1)!;
    expect(vtt.at(-1)!.end).toBeGreaterThanOrEqual(last.end - 1e-3);

    const srt = await (await fetch(`${h.http}/v1/sessions/${c.ready.sessionId}/captions.srt`)).text();
    expect(srt.split('\n')[0]).toBe('1');
    expect(srt.split('\n')[1]).toMatch(/^\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}$/);
    expect((await fetch(`${h.http}/v1/sessions/nope/captions.vtt`)).status).toBe(404);
  });

  it('splits long finals into cues of at most 2 lines x 42 chars and 7 s, and keeps a reading-rate minimum', () => {
    const words = Array.from({ length: 60 }, (_, i) => ({ word: `word${i % 10}`, start: i * 0.3, end: i * 0.3 + 0.25, confidence: 1 }));
    const cues = buildCues([{ text: words.map((w) => w.word).join(' '), start: 0, end: 18, words, speaker: 'Ann' }]);
    for (const c of cues) {
      expect(c.lines.length).toBeLessThanOrEqual(2);
      for (const l of c.lines) expect(l.length).toBeLessThanOrEqual(42);
      expect(c.end - c.start).toBeLessThanOrEqual(7 + 1e-9);
    }
    expect(toWebVTT(cues)).toContain('<v Ann>');
    expect(toSrt(cues)).toContain('Ann: ');
    // A one-word cue followed by a long gap stays up long enough to read.
    const short = buildCues([{ text: 'hi', start: 0, end: 0.2, words: [{ word: 'hi', start: 0, end: 0.2 }] }]);
    expect(short[0]!.end - short[0]!.start).toBeGreaterThanOrEqual(1);
  });
});
