/**
 * This process's child processes, read from /proc (Linux): to check that a
 * child the gateway started (the live decoder's ffmpeg) is gone, reaped and
 * not a zombie, without any hook in the product.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ChildProcessInfo {
  readonly pid: number;
  readonly comm: string;
  /** R, S, D, Z (zombie), … */
  readonly state: string;
  /** CPU time so far, seconds (user + system). */
  readonly cpuSeconds: number;
  /** Resident memory, bytes (0 for a zombie). */
  readonly rssBytes: number;
}

const TICKS = 100; // USER_HZ on Linux

export function childProcesses(parent = process.pid, comm?: string): ChildProcessInfo[] {
  const out: ChildProcessInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid …: comm may hold spaces and parentheses.
    const close = stat.lastIndexOf(')');
    const c = stat.slice(stat.indexOf('(') + 1, close);
    const f = stat.slice(close + 2).split(' ');
    if (Number(f[1]) !== parent || (comm !== undefined && c !== comm)) continue;
    let rss = 0;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${name}/status`, 'utf8'));
      rss = m ? Number(m[1]) * 1024 : 0;
    } catch {
      // gone meanwhile
    }
    out.push({ pid: Number(name), comm: c, state: f[0]!, cpuSeconds: (Number(f[11]) + Number(f[12])) / TICKS, rssBytes: rss });
  }
  return out;
}

/** Waits until no child named `comm` is left (not even a zombie); returns what is left on timeout. */
export async function childrenGone(comm: string, timeoutMs = 10_000): Promise<ChildProcessInfo[]> {
  const t0 = Date.now();
  for (;;) {
    const left = childProcesses(process.pid, comm);
    if (!left.length || Date.now() - t0 > timeoutMs) return left;
    await new Promise((r) => setTimeout(r, 25));
  }
}
