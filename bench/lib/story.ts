/**
 * The speech load the capacity and latency benchmarks share: a flite story
 * with known pauses, looped, N real-time sessions each starting at its own
 * offset, against a gateway process; and the analysis that reads onsets and
 * offsets from the flite reference.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { cacheDir, fliteSession, type SpeechSegment } from '../../eval/corpus.js';
import { STORY } from '../../eval/texts.js';
import { wer } from '../../eval/wer.js';
import type { LoadResult, SessionTrace } from './loadgen.js';
import { runLoadProcesses } from './measure.js';
import { INFO, startServer } from './server.js';

const RATE = 16000;

export function storyBench(frameMs: number) {
  const FPS = 1000 / frameMs;
  const story = fliteSession(STORY, { voice: 'slt', gapSeconds: 1.5 });
  const storyPcm = wavToInt16(readWav(story.file));
  const storyFile = path.join(cacheDir(), 'bench-story.s16');
  writeFileSync(storyFile, Buffer.from(storyPcm.buffer, storyPcm.byteOffset, storyPcm.byteLength));
  const storySeconds = storyPcm.length / RATE;

  /** Session time ↔ story time: session i started `offset` seconds into the (looping) story. */
  function storyAnalysis(traces: SessionTrace[], offsetStep: number, seconds: number) {
    const segs: SpeechSegment[] = story.segments;
    const finalLat: number[] = [];
    const endpointLat: number[] = [];
    const firstPartialLat: number[] = [];
    let partials = 0;
    let words = 0;
    const pairs: [string, string][] = [];
    for (const t of traces) {
      const offsetFrames = Math.floor((offsetStep * t.index * FPS) % Math.max(1, Math.floor((storyPcm.length / RATE) * FPS)));
      const offset = offsetFrames / FPS;
      partials += t.partials.length;
      for (const f of t.finals) words += f.text ? f.text.split(' ').length : 0;
      // Every sentence instance fully inside the played window.
      for (let cycle = -1; cycle <= Math.ceil(seconds / storySeconds) + 1; cycle++) {
        for (const s of segs) {
          const a = s.speechStart + cycle * storySeconds - offset;
          const b = s.speechEnd + cycle * storySeconds - offset;
          if (a < 0.5 || b > seconds - 1) continue;
          // Finals overlapping this sentence (session audio time).
          const mine = t.finals.filter((f) => f.text && Math.min(f.end, b) - Math.max(f.start, a) > 0.1);
          pairs.push([s.text, mine.map((f) => f.text).join(' ')]);
          const last = mine.filter((f) => f.end >= b - 0.05).sort((x, y) => x.at - y.at)[0];
          if (last) {
            finalLat.push(last.at - (t.t0 + b * 1000));
            endpointLat.push(last.at - (t.t0 + last.end * 1000));
          }
          const fp = t.partials.filter((p) => p.text && p.end >= a && p.start <= b && p.at >= t.t0 + a * 1000).sort((x, y) => x.at - y.at)[0];
          if (fp) firstPartialLat.push(fp.at - (t.t0 + a * 1000));
        }
      }
    }
    return { finalLat, endpointLat, firstPartialLat, revisionsPerWord: words ? partials / words : NaN, wer: wer(pairs) };
  }

  async function storyLoad(n: number, seconds: number, extraEnv: Record<string, string> = {}) {
    const server = await startServer({
      ...INFO,
      CAPTIONGATE_ENGINE_DECODERS: String(Math.max(2, n)),
      CAPTIONGATE_POOL_SLABS: String(n + 10),
      ...extraEnv,
    });
    const offsetStep = storySeconds / Math.max(1, n);
    const c0 = server.cpuSeconds();
    const t0 = performance.now();
    const load: LoadResult = await runLoadProcesses(
      { url: `ws://127.0.0.1:${server.port}/v1/listen`, sessions: n, seconds, files: [storyFile], offsetStepSeconds: offsetStep, detail: true, rampMs: 500, frameMs },
      1,
    );
    const cpu = (server.cpuSeconds() - c0) / ((performance.now() - t0) / 1000);
    const dropped = await server.metric('captiongate_samples_dropped_total');
    const warnings = await server.metric('captiongate_lag_warnings_total');
    await server.stop();
    return { load, a: storyAnalysis(load.traces, offsetStep, seconds), cpu, dropped, warnings, offsetStep, seconds };
  }

  return { story, storyPcm, storyFile, storySeconds, storyAnalysis, storyLoad };
}
