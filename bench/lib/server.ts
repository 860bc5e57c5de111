/**
 * Runs the gateway as its own process for benchmarks (the load generator is
 * another process), and reads its CPU and RSS from /proc: the process and
 * its children, so a node of several workers (server.workers) counts whole.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { packageRoot } from '../../src/util/paths.js';

export interface ServerProcess {
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** User+system CPU seconds so far (all threads). */
  cpuSeconds(): number;
  /** Nanoseconds on the CPU so far (all threads), from schedstat: precise over windows of a few seconds, where clock ticks are not. */
  cpuNanoseconds(): number;
  rssMb(): number;
  metric(name: string, labels?: string): Promise<number>;
  metricsText(): Promise<string>;
  log(): string;
  stop(): Promise<number | null>;
}

const CLK_TCK = 100;

export async function startServer(env: Record<string, string>, entry = 'dist/src/main.js'): Promise<ServerProcess> {
  // The caption store (SQLite, the default) in a fresh temporary folder.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-bench-'));
  const child = spawn(process.execPath, [path.resolve(packageRoot(), entry)], {
    env: { ...process.env, PORT: '0', CAPTIONGATE_SERVER_HOST: '127.0.0.1', CAPTIONGATE_LOG_LEVEL: 'warn', CAPTIONGATE_STORE_PATH: path.join(dir, 'captions.db'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  // Port from the (warn-level) listening line is not logged; read it from info-level instead.
  // Several workers: the primary's "node ready" line, once every worker listens.
  const ready = Number(env.CAPTIONGATE_SERVER_WORKERS ?? 1) > 1 ? /"port":(\d+),"msg":"node ready/ : /"port":(\d+),"msg":"listening/;
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 60_000);
    const check = () => {
      const m = ready.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', check);
    child.on('exit', (code) => reject(new Error(`server exited (${code}):\n${out}`)));
  });
  const pid = child.pid!;
  const base = `http://127.0.0.1:${port}`;
  const metricsText = async () => (await fetch(`${base}/metrics`)).text();
  return {
    port,
    pid,
    child,
    cpuSeconds() {
      return tree(pid).reduce((sum, p) => sum + cpuOf(p), 0);
    },
    cpuNanoseconds() {
      return tree(pid).reduce((sum, p) => sum + cpuNsOf(p), 0);
    },
    rssMb() {
      return tree(pid).reduce((sum, p) => sum + rssOf(p), 0);
    },
    async metric(name, labels = '') {
      return metricValue(await metricsText(), name, labels);
    },
    metricsText,
    log: () => out,
    stop() {
      return new Promise((resolve) => {
        const done = (code: number | null) => {
          rmSync(dir, { recursive: true, force: true });
          resolve(code);
        };
        if (child.exitCode !== null) {
          done(child.exitCode);
          return;
        }
        child.once('exit', (code) => done(code));
        child.kill('SIGTERM');
      });
    },
  };
}

const readOr = (file: string, fallback: string) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback; // the process just exited
  }
};
/** The process and its children (a cluster primary's workers). */
function tree(pid: number): number[] {
  const children = readOr(`/proc/${pid}/task/${pid}/children`, '').trim();
  return [pid, ...(children ? children.split(/\s+/).map(Number) : [])];
}
function cpuOf(pid: number): number {
  const stat = readOr(`/proc/${pid}/stat`, '');
  if (!stat) return 0;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}
function cpuNsOf(pid: number): number {
  let sum = 0;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0; // the process just exited
  }
  for (const tid of tids) sum += Number(readOr(`/proc/${pid}/task/${tid}/schedstat`, '0').split(' ')[0]);
  return sum;
}
function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readOr(`/proc/${pid}/status`, ''));
  return m ? Number(m[1]) / 1024 : 0;
}

/** A sample's value in a Prometheus text scrape (0 when absent). */
export function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}} ` : `${name} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** The server logs its port at info level; benches that want quiet logs still need that line. */
export const INFO = { CAPTIONGATE_LOG_LEVEL: 'info' } as const;

/** The gateway on the overhead-measurement engine, with room and limits for `n` sessions from one address. */
export const overheadEnv = (n: number, transport: string): Record<string, string> => ({
  ...INFO,
  CAPTIONGATE_ENGINE_KIND: 'overhead',
  CAPTIONGATE_ALLOW_OVERHEAD_ENGINE: '1',
  CAPTIONGATE_SERVER_TRANSPORT: transport,
  CAPTIONGATE_POOL_SLABS: String(n + 50),
  CAPTIONGATE_LIMITS_MAX_SESSIONS_PER_ADDRESS: String(n + 50),
  // Every load generator connects from 127.0.0.1.
  CAPTIONGATE_LIMITS_MAX_CONNECTIONS_PER_ADDRESS: String(n + 50),
  CAPTIONGATE_RATE_LIMITS_OPENS_PER_MINUTE_PER_ADDRESS: '1000000',
  CAPTIONGATE_ADMISSION_MAX_ENGINE_LAG_SECONDS: '600',
});
