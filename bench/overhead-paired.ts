/**
 * Gateway overhead against the bare uWS floor, both servers running at the
 * same time, each under its own copy of section 1's load (STREAMS sessions
 * of the LibriVox loop, real time, the overhead engine), window by window:
 *
 *   npm run build && STREAMS=100 node dist/bench/overhead-paired.js
 *
 * Section 1 of `npm run bench` measures the same way (bench/lib/overhead.ts
 * says why); this script prints each window, for longer or repeated looks.
 * `PAIR=gateway,gateway` or `PAIR=bare,bare` runs the control: the ratio of
 * two equal servers, which shows what the pairing itself adds.
 * `PAIR=gateway,gateway@/path/to/checkout` compares this build with another
 * revision's (built with `npm run build:ts` in that checkout), side by side.
 * `SWAP=1` runs the pair twice, in both start orders, as section 1 does
 * (bench/lib/overhead.ts, measureSwapped), and prints the combined ratio.
 */
import path from 'node:path';

import { librivoxLoop } from './lib/engines.js';
import { bareFloor, cpuRatio, measureSideBySide, measureSwapped, overheadGateway, type ServerSpec } from './lib/overhead.js';

const STREAMS = Number(process.env.STREAMS ?? 100);
const PAIR = (process.env.PAIR ?? 'gateway,bare').split(',');

function spec(kind: string): ServerSpec {
  if (kind === 'bare') return bareFloor;
  if (kind === 'gateway') return overheadGateway(STREAMS);
  const checkout = /^gateway@(.+)$/.exec(kind)?.[1];
  if (!checkout) throw new Error(`PAIR is two of gateway, bare, gateway@<checkout>; got ${kind}`);
  return { ...overheadGateway(STREAMS), label: kind, entry: path.resolve(checkout, 'dist', 'src', 'main.js') };
}

async function main(): Promise<void> {
  if (PAIR.length !== 2) throw new Error('PAIR is two servers');
  const options = {
    file: librivoxLoop().file,
    warmSeconds: Number(process.env.WARM_SECONDS ?? 30),
    windowSeconds: Number(process.env.WINDOW_SECONDS ?? 8),
    windows: Number(process.env.WINDOWS ?? 4),
  };
  const specs = PAIR.map(spec) as [ServerSpec, ServerSpec];
  if (process.env.SWAP === '1') {
    const r = await measureSwapped(STREAMS, specs, options);
    console.log(`${STREAMS} streams each: ${PAIR[0]} / ${PAIR[1]} = **${r.ratio.toFixed(3)}×** over both start orders (windows ${r.min.toFixed(3)}–${r.max.toFixed(3)}; ${r.a.cpuPer100.toFixed(2)}% / ${r.b.cpuPer100.toFixed(2)}% per 100 streams)`);
    if (r.a.refused + r.b.refused) throw new Error('sessions refused: the figures would not compare');
    return;
  }
  const r = await measureSideBySide(STREAMS, specs, options);
  const per100 = (ns: number, ms: number) => `${((ns / 1e6 / ms / STREAMS) * 100 * 100).toFixed(2)}%`;
  console.log(`${STREAMS} streams each, both servers at once; CPU per 100 streams per ${options.windowSeconds} s window`);
  console.log(`| window | ${PAIR[0]} | ${PAIR[1]} | ratio |\n|---|---|---|---|`);
  r.windowCpu.forEach((w, k) => console.log(`| ${k + 1} | ${per100(w[0]!, r.windowMs[k]!)} | ${per100(w[1]!, r.windowMs[k]!)} | ${(w[0]! / w[1]!).toFixed(3)}× |`));
  const { ratio } = cpuRatio(r);
  console.log(`| all | ${r.sides[0]!.cpuPer100.toFixed(2)}% | ${r.sides[1]!.cpuPer100.toFixed(2)}% | **${ratio.toFixed(3)}×** |`);
  const refused = r.sides.reduce((n, s) => n + s.refused, 0);
  if (refused) throw new Error(`${refused} sessions refused: the figures would not compare`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
