/** Small helpers shared by the bench sections. */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { packageRoot } from '../../src/util/paths.js';
import type { LoadConfig, LoadResult } from './loadgen.js';

export function percentile(xs: readonly number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** Quantile of a Prometheus histogram (linear within the bucket). */
export function histogramQuantile(metricsText: string, name: string, q: number): number {
  const buckets: [number, number][] = [];
  for (const line of metricsText.split('\n')) {
    const m = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`).exec(line);
    if (m) buckets.push([m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
  }
  if (!buckets.length) return NaN;
  const total = buckets.at(-1)![1];
  if (total === 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      const frac = count === prevCount ? 0 : (rank - prevCount) / (count - prevCount);
      return prevLe + (le - prevLe) * frac;
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

/** Runs the load generator as separate processes, splitting the sessions. */
export async function runLoadProcesses(cfg: LoadConfig, processes: number): Promise<LoadResult> {
  const dir = path.join(packageRoot(), 'build', 'bench', 'tmp');
  mkdirSync(dir, { recursive: true });
  const parts = Array.from({ length: processes }, (_, p) => Math.floor(cfg.sessions / processes) + (p < cfg.sessions % processes ? 1 : 0)).filter((n) => n > 0);
  const results = await Promise.all(
    parts.map((n, p) => {
      const file = path.join(dir, `load-${process.pid}-${Date.now()}-${p}.json`);
      writeFileSync(file, JSON.stringify({ ...cfg, sessions: n }));
      return new Promise<LoadResult>((resolve, reject) => {
        const child = spawn(process.execPath, [path.join(packageRoot(), 'dist', 'bench', 'lib', 'loadgen.js'), file], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.on('close', (code) => {
          if (code !== 0) reject(new Error(`loadgen failed (${code}): ${err}${out}`));
          else resolve(JSON.parse(readFileSync(`${file}.out.json`, 'utf8')) as LoadResult);
        });
      });
    }),
  );
  return {
    opened: results.reduce((s, r) => s + r.opened, 0),
    refused: results.reduce((s, r) => s + r.refused, 0),
    framesSent: results.reduce((s, r) => s + r.framesSent, 0),
    traces: results.flatMap((r) => r.traces),
    clientCpuSeconds: results.reduce((s, r) => s + r.clientCpuSeconds, 0),
    sendLateMsP99: Math.max(...results.map((r) => r.sendLateMsP99)),
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
