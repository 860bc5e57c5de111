/**
 * Do file jobs yield to live sessions? A real-time live session (20 s of
 * LibriVox speech in 100 ms frames) runs on a gateway while files are
 * transcribed on the same engine, in four ways:
 *
 *   none         the live session alone (the machine's own baseline);
 *   background   N files as background streams (what file jobs use);
 *   foreground   N files as ordinary streams, in the engine's smallest windows;
 *   foreground+  N files as ordinary streams, in its largest windows.
 *
 * Reports the live session's longest wait of its oldest undecoded audio
 * (sampled every 25 ms), its `lagging` warnings, and how long the files took.
 *
 *   npm run build && node dist/bench/file-yield.js [--engine pocketsphinx|moonshine] [--files 3]
 *
 * In one process (the gateway, the live client and the files), so the
 * numbers include that contention; compare the rows, not the absolute waits.
 */
import { parseArgs } from 'node:util';

import { readWav, wavToInt16 } from '../src/audio/wav.js';
import { connect } from '../src/client/client.js';
import { loadConfig } from '../src/config/load.js';
import { createGateway } from '../src/gateway/gateway.js';
import { createLogger } from '../src/log.js';
import { transcribePcm } from '../src/scheduler/transcribe.js';
import { librivoxClips } from '../eval/corpus.js';

const { values } = parseArgs({ options: { engine: { type: 'string', default: 'pocketsphinx' }, files: { type: 'string', default: '3' } } });
const kind = values.engine!;
const nFiles = Number(values.files);

const parts = librivoxClips().map((c) => wavToInt16(readWav(c.file)));
const speech = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
parts.reduce((off, p) => (speech.set(p, off), off + p.length), 0);
const LIVE_SECONDS = 20;

type Mode = 'none' | 'background' | 'foreground' | 'foreground+';

async function run(mode: Mode): Promise<string> {
  const config = loadConfig({
    ignoreEnv: true,
    overrides: { server: { host: '127.0.0.1', port: 0 }, store: { kind: 'memory' }, engine: { kind }, log: { level: 'warn' } },
  });
  const gw = await createGateway({ config, logger: createLogger(config.log) });
  const port = await gw.listen();
  try {
    const live = await connect(`ws://127.0.0.1:${port}/v1/listen`, { sampleRate: 16000 });
    let warnings = 0;
    live.on('message', (m) => {
      if (m.type === 'warning' && m.code === 'lagging') warnings++;
    });
    const audio = speech.subarray(0, 16000 * LIVE_SECONDS);
    let maxWait = 0;
    const sampler = setInterval(() => (maxWait = Math.max(maxWait, gw.manager.liveLagSeconds())), 25);
    const speaking = (async () => {
      const t0 = performance.now();
      for (let i = 0; i * 1600 < audio.length; i++) {
        const wait = t0 + i * 100 - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        live.send(audio.subarray(i * 1600, (i + 1) * 1600));
      }
      await live.stop();
    })();
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = performance.now();
    const n = mode === 'none' ? 0 : nFiles;
    const policy = gw.engine.info.policy;
    await Promise.all(
      Array.from({ length: n }, () =>
        transcribePcm(gw.engine, speech, {
          scheduler: gw.scheduler,
          background: mode === 'background',
          windowSamples: mode === 'foreground+' ? policy.maxSamples : policy.minSamples,
        }),
      ),
    );
    const fileSeconds = (performance.now() - t0) / 1000;
    await speaking;
    clearInterval(sampler);
    return `| ${mode} | ${n} × ${(speech.length / 16000).toFixed(1)} s | ${n ? fileSeconds.toFixed(1) : '–'} | ${maxWait.toFixed(2)} | ${warnings} |`;
  } finally {
    await gw.shutdown();
  }
}

console.log(`engine ${kind}, a ${LIVE_SECONDS} s real-time live session\n`);
console.log('| files | audio | files took (s) | live max wait (s) | lagging warnings |\n|---|---|---|---|---|');
for (const mode of ['none', 'background', 'foreground', 'foreground+'] as Mode[]) console.log(await run(mode));
