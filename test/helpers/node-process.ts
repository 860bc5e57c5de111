/**
 * The gateway as a real process (dist/src/main.js, what `npm start` runs),
 * for tests of what only a process shows: server.workers (a cluster primary
 * and its workers), signals, the port being freed. Each gets its own
 * temporary folder for the caption store.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { spawnGateway, type GatewayProcess } from './gateway-process.js';

export interface NodeProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly dir: string;
  readonly exited: Promise<number | null>;
  out(): string;
  /** SIGTERM (if still running), wait for the exit, remove the folder. */
  stop(): Promise<number | null>;
}

/** Starts `node dist/src/main.js` with `env` and waits for `ready` (a log line with the port; with server.workers > 1, pass the primary's "node ready"). */
export async function startNode(env: Record<string, string>, ready = /"port":(\d+),"msg":"listening/): Promise<NodeProcess> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-node-'));
  let g: GatewayProcess;
  try {
    g = await spawnGateway({ CAPTIONGATE_STORE_PATH: path.join(dir, 'captions.db'), ...env }, { ready });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    child: g.child,
    port: g.port,
    dir,
    exited: g.exited,
    out: g.output,
    async stop() {
      const code = await g.stop('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** Child pids of a process (Linux /proc). */
export function childPids(pid: number): number[] {
  const file = `/proc/${pid}/task/${pid}/children`;
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** GET over the given agent (one kept-alive socket: the same worker answers every request on it). */
export function get(port: number, urlPath: string, agent: http.Agent | false = false): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

/** Every sample of a metric in a Prometheus text scrape, with its labels. */
export function samples(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`).exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ labels, value: Number(m[2]) });
  }
  return out;
}

/** The one unlabelled sample of a metric (NaN when absent). */
export function value(text: string, name: string): number {
  return samples(text, name).find((s) => Object.keys(s.labels).length === 0)?.value ?? NaN;
}
