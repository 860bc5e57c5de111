/**
 * A worker's share of the node. The node's budgets (memory: pool.slabs and
 * the parked sessions that hold caption logs; CPU: engine threads and
 * decoders) are configured per node and divided among the workers, so that
 * `--workers 2` does not double the memory the operator sized. Every other
 * value (per-session and per-connection limits, timeouts) applies in each
 * worker as it is. docs/deploy.md lists both kinds.
 */
import { validateConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';

/** Worker `index` of `workers`: its part of `total`, the remainder to the first ones, at least `min`. */
export function shareOf(total: number, workers: number, index: number, min = 1): number {
  const base = Math.floor(total / workers) + (index < total % workers ? 1 : 0);
  return Math.max(min, base);
}

/** The node budgets that are divided among workers (config key → the node total). */
export const DIVIDED_KEYS = ['pool.slabs', 'limits.maxParkedSessions', 'engine.threads', 'engine.decoders'] as const;

/** The config worker `index` runs with: the node's config with its share of each divided budget. */
export function workerConfig(config: Readonly<Config>, index: number): Readonly<Config> {
  const n = config.server.workers;
  if (n <= 1) return config;
  return validateConfig({
    ...config,
    pool: { ...config.pool, slabs: shareOf(config.pool.slabs, n, index) },
    limits: { ...config.limits, maxParkedSessions: shareOf(config.limits.maxParkedSessions, n, index, 0) },
    engine: {
      ...config.engine,
      threads: shareOf(config.engine.threads, n, index),
      decoders: shareOf(config.engine.decoders, n, index),
    },
  });
}
