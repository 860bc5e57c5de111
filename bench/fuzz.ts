/**
 * Long fuzz run: `npm run bench:fuzz` (100,000 messages; --messages N).
 * The gateway runs as its own process; scripts come from eval/fuzz.ts
 * (the same generator the CI test uses, with a different seed).
 */
import { parseArgs } from 'node:util';

import { readWav, wavToInt16 } from '../src/audio/wav.js';
import { librivoxClips } from '../eval/corpus.js';
import { DOCUMENTED_CLOSE_CODES, fuzzScript, playScript, prng } from '../eval/fuzz.js';
import { INFO, startServer } from './lib/server.js';

async function main() {
  const { values } = parseArgs({ options: { messages: { type: 'string', default: '100000' }, seed: { type: 'string', default: '424242' }, transport: { type: 'string', default: 'uws' } } });
  const target = Number(values.messages);
  const clips = librivoxClips().map((c) => wavToInt16(readWav(c.file)));
  const speech = new Int16Array(clips.reduce((n, c) => n + c.length, 0));
  clips.reduce((o, c) => (speech.set(c, o), o + c.length), 0);
  const server = await startServer({
    ...INFO,
    CAPTIONGATE_SERVER_TRANSPORT: values.transport!,
    CAPTIONGATE_ENGINE_DECODERS: '2',
    CAPTIONGATE_RATE_LIMITS_OPENS_PER_MINUTE_PER_ADDRESS: '100000',
  });
  const url = `ws://127.0.0.1:${server.port}/v1/listen`;
  const rand = prng(Number(values.seed));
  const limits = { maxFrameBytes: 384000, maxControlBytes: 16384 };
  let sent = 0;
  let connections = 0;
  const undocumented = new Set<string>();
  const badClose = new Set<number>();
  const errors = new Map<string, number>();
  const t0 = Date.now();
  while (sent < target) {
    const batch = await Promise.all(Array.from({ length: 10 }, () => playScript(url, fuzzScript(rand, 110, limits, speech))));
    connections += batch.length;
    for (const r of batch) {
      sent += r.sent;
      r.undocumentedErrors.forEach((c) => undocumented.add(c));
      if (r.closeCode !== undefined && !DOCUMENTED_CLOSE_CODES.has(r.closeCode)) badClose.add(r.closeCode);
      for (const m of r.received) if (m.type === 'error') errors.set(m.code, (errors.get(m.code) ?? 0) + 1);
    }
    if (connections % 200 === 0) console.log(`fuzz: ${sent} messages, ${connections} connections, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  await new Promise((r) => setTimeout(r, 2000));
  const healthy = (await fetch(`http://127.0.0.1:${server.port}/healthz`)).status === 200;
  const slabs = await server.metric('captiongate_slabs_in_use');
  const decoders = await server.metric('captiongate_decoders_in_use');
  const code = await server.stop();
  console.log(`\n| figure | value |\n|---|---|`);
  console.log(`| messages sent | ${sent} over ${connections} connections in ${((Date.now() - t0) / 1000).toFixed(0)} s |`);
  console.log(`| error codes seen | ${[...errors].map(([k, v]) => `${k} ${v}`).join(', ')} |`);
  console.log(`| undocumented error codes / close codes | ${undocumented.size} / ${badClose.size} |`);
  console.log(`| server alive, slabs_in_use, decoders_in_use after | ${healthy} , ${slabs}, ${decoders} |`);
  console.log(`| server exit code on SIGTERM | ${code} |`);
  if (undocumented.size || badClose.size || !healthy || slabs !== 0 || decoders !== 0 || code !== 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
