/**
 * Gateway overhead against the bare uWS floor, both servers running at the
 * same time, each under its own copy of section 1's load (STREAMS sessions
 * of the LibriVox loop, real time, the overhead engine), and their CPU read
 * over the same windows:
 *
 *   npm run build && STREAMS=100 node dist/bench/overhead-paired.js
 *
 * Why: this VM's cost per frame drifts by minutes. Between runs minutes
 * apart, the same bare server measured 1.5% and 2.0% per 100 streams, and
 * the same gateway 2.0% and 3.5%, so a ratio of one gateway run and one
 * bare run taken one after the other (section 1) moves by more than the
 * margin it is judged by. Windows taken at the same time share the drift.
 * `PAIR=gateway,gateway` or `PAIR=bare,bare` runs the control: the ratio
 * of two equal servers, which shows what the pairing itself adds.
 *
 * CPU comes from schedstat (ServerProcess.cpuNanoseconds), not from clock
 * ticks: an 8 s window at 100 streams holds only about 14 ticks.
 */
import { librivoxLoop } from './lib/engines.js';
import { runLoadProcesses, sleep } from './lib/measure.js';
import { overheadEnv, startServer, type ServerProcess } from './lib/server.js';

const STREAMS = Number(process.env.STREAMS ?? 100);
const WARM_SECONDS = Number(process.env.WARM_SECONDS ?? 30);
const WINDOW_SECONDS = Number(process.env.WINDOW_SECONDS ?? 8);
const WINDOWS = Number(process.env.WINDOWS ?? 4);
const PAIR = (process.env.PAIR ?? 'gateway,bare').split(',') as ('gateway' | 'bare')[];

async function main(): Promise<void> {
  if (PAIR.length !== 2 || PAIR.some((k) => k !== 'gateway' && k !== 'bare')) throw new Error('PAIR is two of gateway, bare');
  const { file } = librivoxLoop();
  const servers: ServerProcess[] = [];
  for (const kind of PAIR) servers.push(kind === 'bare' ? await startServer({}, 'dist/bench/lib/bare-uws.js') : await startServer(overheadEnv(STREAMS, 'uws')));
  const ramp = Math.min(5000, STREAMS * 5);
  const seconds = WARM_SECONDS + WINDOW_SECONDS * WINDOWS + 4;
  const loads = servers.map((s) =>
    runLoadProcesses({ url: `ws://127.0.0.1:${s.port}/v1/listen`, sessions: STREAMS, seconds, files: [file], offsetStepSeconds: 0.37, rampMs: ramp }, STREAMS >= 500 ? 2 : 1),
  );
  await sleep(ramp + 1500 + WARM_SECONDS * 1000);
  const totals = [0, 0];
  console.log(`${STREAMS} streams each, both servers at once; CPU per 100 streams per ${WINDOW_SECONDS} s window`);
  console.log(`| window | ${PAIR[0]} | ${PAIR[1]} | ratio |\n|---|---|---|---|`);
  for (let k = 0; k < WINDOWS; k++) {
    const c0 = servers.map((s) => s.cpuNanoseconds());
    const t0 = performance.now();
    await sleep(WINDOW_SECONDS * 1000);
    const wallMs = performance.now() - t0;
    const per100 = servers.map((s, i) => ((s.cpuNanoseconds() - c0[i]!) / 1e6 / wallMs / STREAMS) * 1e4);
    per100.forEach((v, i) => (totals[i]! += v));
    console.log(`| ${k + 1} | ${per100[0]!.toFixed(2)}% | ${per100[1]!.toFixed(2)}% | ${(per100[0]! / per100[1]!).toFixed(3)}× |`);
  }
  console.log(`| all | ${(totals[0]! / WINDOWS).toFixed(2)}% | ${(totals[1]! / WINDOWS).toFixed(2)}% | **${(totals[0]! / totals[1]!).toFixed(3)}×** |`);
  const refused = (await Promise.all(loads)).reduce((n, l) => n + l.refused, 0);
  await Promise.all(servers.map((s) => s.stop()));
  if (refused) throw new Error(`${refused} sessions refused: the figures would not compare`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
