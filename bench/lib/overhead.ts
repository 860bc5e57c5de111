/**
 * Servers measured side by side: each under its own copy of the same
 * load (n sessions streaming a file at real-time pace), all running at the
 * same time, their CPU read over the same windows.
 *
 * Why at the same time: this VM's cost per frame drifts over minutes. The
 * same bare server measured 1.5% and 2.0% per 100 streams minutes apart,
 * and the same gateway 2.0% and 3.5%, so a ratio of two runs taken one
 * after the other moves by more than the margin it is judged by. Windows
 * taken at the same time share the drift (docs/benchmarks.md §1).
 *
 * CPU comes from schedstat (ServerProcess.cpuNanoseconds), not clock ticks:
 * an 8 s window at 100 streams holds only about 14 ticks.
 */
import { histogramQuantile, runLoadProcesses, sleep } from './measure.js';
import { metricValue, overheadEnv, startServer, type ServerProcess } from './server.js';

/** What runs on one side. */
export interface ServerSpec {
  readonly label: string;
  /** The gateway (it has /metrics), or the bare uWS floor. */
  readonly gateway: boolean;
  readonly env: Record<string, string>;
  /** The server's script, when not this checkout's (another revision's build, for an A/B). */
  readonly entry?: string;
}

export const bareFloor: ServerSpec = { label: 'bare', gateway: false, env: {} };
/** The gateway on the overhead engine, with room for `n` sessions. */
export const overheadGateway = (n: number, transport: 'uws' | 'ws' = 'uws', extraEnv: Record<string, string> = {}): ServerSpec => ({
  label: transport === 'uws' ? 'gateway' : `gateway (${transport})`,
  gateway: true,
  env: { ...overheadEnv(n, transport), ...extraEnv },
});

export interface SideResult {
  readonly label: string;
  /** Mean CPU per 100 streams over the windows, % of one core. */
  readonly cpuPer100: number;
  /** The gateway's own figures over the windows (NaN for the bare floor). */
  readonly ingestP50Ms: number;
  readonly ingestP99Ms: number;
  readonly loopP99Ms: number;
  readonly wordsPerSecond: number;
  readonly rssMb: number;
  readonly refused: number;
  readonly loadgenLateP99Ms: number;
}

export interface SideBySide {
  readonly n: number;
  readonly sides: readonly SideResult[];
  /** CPU nanoseconds per window, per side. */
  readonly windowCpu: readonly (readonly number[])[];
  /** Each window's wall time, ms. */
  readonly windowMs: readonly number[];
}

/** CPU of side `a` over side `b`: all windows together, and the range window by window (the measurement's spread). */
export function cpuRatio(r: SideBySide, a = 0, b = 1): { ratio: number; min: number; max: number } {
  const per = r.windowCpu.map((w) => w[a]! / w[b]!);
  const sum = (i: number) => r.windowCpu.reduce((t, w) => t + w[i]!, 0);
  return { ratio: sum(a) / sum(b), min: Math.min(...per), max: Math.max(...per) };
}

export interface SideBySideOptions {
  readonly file: string;
  readonly warmSeconds: number;
  readonly windowSeconds: number;
  readonly windows: number;
}

/** Runs every spec at once, each under n sessions of its own, and measures them over the same windows. */
export async function measureSideBySide(n: number, specs: readonly ServerSpec[], o: SideBySideOptions): Promise<SideBySide> {
  const servers: ServerProcess[] = [];
  try {
    for (const s of specs) servers.push(await startServer(s.env, s.entry ?? (s.gateway ? undefined : 'dist/bench/lib/bare-uws.js')));
    const ramp = Math.min(5000, n * 5);
    const seconds = o.warmSeconds + o.windowSeconds * o.windows + 4;
    const loads = servers.map((s) =>
      runLoadProcesses({ url: `ws://127.0.0.1:${s.port}/v1/listen`, sessions: n, seconds, files: [o.file], offsetStepSeconds: 0.37, rampMs: ramp }, n >= 500 ? 2 : 1),
    );
    // JIT compilation and the first major GCs are one-time costs, not per-frame
    // overhead (at 100 streams they were a third of the gateway's CPU in its first 15 s).
    await sleep(ramp + 1500 + o.warmSeconds * 1000);
    // A scrape opens the gateway's event-loop window; the words count from here.
    const words0 = await Promise.all(specs.map((s, i) => (s.gateway ? servers[i]!.metric('captiongate_committed_words_total') : 0)));
    const windowCpu: number[][] = [];
    const windowMs: number[] = [];
    for (let k = 0; k < o.windows; k++) {
      const c0 = servers.map((s) => s.cpuNanoseconds());
      const t0 = performance.now();
      await sleep(o.windowSeconds * 1000);
      windowCpu.push(servers.map((s, i) => s.cpuNanoseconds() - c0[i]!));
      windowMs.push(performance.now() - t0);
    }
    const wallMs = windowMs.reduce((t, ms) => t + ms, 0);
    const measured = await Promise.all(
      specs.map(async (s, i): Promise<Omit<SideResult, 'refused' | 'loadgenLateP99Ms'>> => {
        const server = servers[i]!;
        const cpuPer100 = (windowCpu.reduce((t, w) => t + w[i]!, 0) / 1e6 / wallMs / n) * 1e4;
        if (!s.gateway) return { label: s.label, cpuPer100, ingestP50Ms: NaN, ingestP99Ms: NaN, loopP99Ms: NaN, wordsPerSecond: NaN, rssMb: server.rssMb() };
        // One scrape: the event-loop figure covers the time since the previous one.
        const text = await server.metricsText();
        return {
          label: s.label,
          cpuPer100,
          ingestP50Ms: histogramQuantile(text, 'captiongate_ingest_to_submit_seconds', 0.5) * 1000,
          ingestP99Ms: histogramQuantile(text, 'captiongate_ingest_to_submit_seconds', 0.99) * 1000,
          loopP99Ms: metricValue(text, 'captiongate_event_loop_lag_p99_seconds') * 1000,
          wordsPerSecond: (metricValue(text, 'captiongate_committed_words_total') - words0[i]!) / (wallMs / 1000),
          rssMb: server.rssMb(),
        };
      }),
    );
    const done = await Promise.all(loads);
    return { n, sides: measured.map((s, i) => ({ ...s, refused: done[i]!.refused, loadgenLateP99Ms: done[i]!.sendLateMsP99 })), windowCpu, windowMs };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

export interface SwappedPair {
  readonly n: number;
  /** The first run starts `a` first; the second starts `b` first. */
  readonly runs: readonly [SideBySide, SideBySide];
  /** a's CPU over b's: the geometric mean of the two runs' ratios. */
  readonly ratio: number;
  /** The window-by-window range of a/b over both runs. */
  readonly min: number;
  readonly max: number;
  /** Each side over both runs: CPU averaged, tail latencies the worse of the two, refusals summed. */
  readonly a: SideResult;
  readonly b: SideResult;
}

/**
 * A pair measured twice, the second time with the servers started in the
 * other order. Which server starts first (and so which PIDs and cores it
 * and its load generators get) moved a ratio by several percent here, as
 * much between two equal gateways as between different servers; the order
 * is not what is being measured, and swapping it cancels it.
 */
export async function measureSwapped(n: number, [a, b]: readonly [ServerSpec, ServerSpec], o: SideBySideOptions): Promise<SwappedPair> {
  const first = await measureSideBySide(n, [a, b], o);
  const second = await measureSideBySide(n, [b, a], o);
  const r1 = cpuRatio(first, 0, 1);
  const r2 = cpuRatio(second, 1, 0);
  return {
    n,
    runs: [first, second],
    ratio: Math.sqrt(r1.ratio * r2.ratio),
    min: Math.min(r1.min, r2.min),
    max: Math.max(r1.max, r2.max),
    a: merge(first.sides[0]!, second.sides[1]!),
    b: merge(first.sides[1]!, second.sides[0]!),
  };
}

function merge(x: SideResult, y: SideResult): SideResult {
  return {
    label: x.label,
    cpuPer100: (x.cpuPer100 + y.cpuPer100) / 2,
    ingestP50Ms: (x.ingestP50Ms + y.ingestP50Ms) / 2,
    ingestP99Ms: Math.max(x.ingestP99Ms, y.ingestP99Ms),
    loopP99Ms: Math.max(x.loopP99Ms, y.loopP99Ms),
    wordsPerSecond: (x.wordsPerSecond + y.wordsPerSecond) / 2,
    rssMb: Math.max(x.rssMb, y.rssMb),
    refused: x.refused + y.refused,
    loadgenLateP99Ms: Math.max(x.loadgenLateP99Ms, y.loadgenLateP99Ms),
  };
}
