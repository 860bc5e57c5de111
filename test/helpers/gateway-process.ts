/**
 * The real server as its users run it: `node dist/src/main.js` in a child
 * process, configured only through CAPTIONGATE_* variables, its log kept
 * for assertions. For tests that kill, drain or cluster whole nodes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly base: string;
  readonly ws: string;
  /** Every log line so far, parsed (lines that are not JSON are skipped). */
  logs(): Record<string, unknown>[];
  /** The raw output so far, for failure messages. */
  output(): string;
  readonly exited: Promise<number | null>;
  /** SIGTERM (graceful) or SIGKILL; resolves when the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts a gateway on a free loopback port (PORT=0 unless env sets it) and
 * resolves once it listens. `env` adds to or overrides the defaults.
 */
export async function spawnGateway(
  env: Record<string, string>,
  opts: { startTimeoutMs?: number; /** The log line that says it is up, its port in group 1 (with server.workers > 1: the primary's "node ready"). */ ready?: RegExp } = {},
): Promise<GatewayProcess> {
  const ready = opts.ready ?? /"port":(\d+),"msg":"listening/;
  const child = spawn(process.execPath, [path.resolve('dist/src/main.js')], {
    env: {
      ...process.env,
      PORT: '0',
      CAPTIONGATE_SERVER_HOST: '127.0.0.1',
      CAPTIONGATE_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const onData = (d: Buffer) => (out += d.toString());
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gateway did not start:\n${out}`)), opts.startTimeoutMs ?? 60_000);
    const check = () => {
      const m = ready.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`gateway exited (${code}) before listening:\n${out}`));
    });
  });
  return {
    child,
    port,
    base: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    logs: () =>
      out.split('\n').flatMap((l) => {
        if (!l.startsWith('{')) return [];
        try {
          return [JSON.parse(l) as Record<string, unknown>];
        } catch {
          return [];
        }
      }),
    output: () => out,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
