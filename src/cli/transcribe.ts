/**
 * `captiongate transcribe FILE.wav`: the engine demo. Streams a WAV file
 * through the native engine in 100 ms windows, printing partials as they
 * change and each final with its word times. No server involved.
 */
import { readWav } from '../audio/wav.js';
import { wavTo16k } from '../audio/decode.js';
import { loadConfig } from '../config/load.js';
import { createEngine } from '../engine/index.js';
import { ENGINE_SAMPLE_RATE } from '../engine/types.js';
import { transcribePcm } from '../scheduler/transcribe.js';
import type { Utterance } from '../engine/types.js';

export interface TranscribeArgs {
  file: string;
  realtime: boolean;
  json: boolean;
  windowMs: number;
}

const fmt = (s: number) => s.toFixed(2).padStart(6);

export async function runTranscribe(args: TranscribeArgs, out = process.stdout): Promise<void> {
  const config = loadConfig();
  const wav = readWav(args.file);
  const pcm = wavTo16k(wav, config.audio.resampleQuality);
  const t0 = performance.now();
  const engine = await createEngine(config);
  const loadMs = performance.now() - t0;
  const tty = out.isTTY === true && !args.json;
  if (!args.json) {
    out.write(
      `${args.file}: ${wav.sampleRate} Hz, ${wav.channels} ch, ${wav.encoding}, ${wav.durationSeconds.toFixed(2)} s ` +
        `(engine ${engine.info.name}, loaded in ${loadMs.toFixed(0)} ms)\n`,
    );
  }
  let lastPartial = '';
  const clearLine = () => {
    if (tty && lastPartial) out.write('\r\x1b[2K');
  };
  const onFinal = (u: Utterance) => {
    if (args.json) {
      out.write(`${JSON.stringify({ type: 'final', ...u })}\n`);
      return;
    }
    clearLine();
    lastPartial = '';
    if (!u.text) return;
    out.write(`final  [${fmt(u.start)} - ${fmt(u.end)}] ${u.text}\n`);
    for (const w of u.words) {
      out.write(`         ${fmt(w.start)} - ${fmt(w.end)}  ${w.word.padEnd(16)} conf ${w.confidence.toFixed(2)}\n`);
    }
  };
  const t1 = performance.now();
  try {
    await transcribePcm(engine, pcm, {
      windowSamples: Math.round((args.windowMs * ENGINE_SAMPLE_RATE) / 1000),
      realtime: args.realtime,
      onFinal,
      onPartial: (h) => {
        if (!h.text || h.text === lastPartial) return;
        lastPartial = h.text;
        if (args.json) out.write(`${JSON.stringify({ type: 'partial', ...h })}\n`);
        else if (tty) out.write(`\r\x1b[2Kpartial ${h.text}`);
        else out.write(`partial [${fmt(h.start)} - ${fmt(h.end)}] ${h.text}\n`);
      },
    });
  } finally {
    await engine.shutdown();
  }
  const wall = (performance.now() - t1) / 1000;
  if (!args.json) {
    out.write(`done: ${wav.durationSeconds.toFixed(2)} s of audio in ${wall.toFixed(2)} s (${(wav.durationSeconds / wall).toFixed(1)}x real time)\n`);
  }
}
