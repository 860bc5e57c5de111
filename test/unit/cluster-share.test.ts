/** A worker's share of the node's budgets (src/cluster/share.ts), and the cluster messages' validator. */
import { describe, expect, it } from 'vitest';

import { parseToPrimary, parseToWorker } from '../../src/cluster/messages.js';
import { DIVIDED_KEYS, shareOf, workerConfig } from '../../src/cluster/share.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';

const node = (over: Record<string, unknown>) => loadConfig({ ignoreEnv: true, overrides: { redis: { url: 'redis://127.0.0.1:6379' }, ...over } });

describe('a worker share of the node', () => {
  it('shares each divided budget out exactly: the workers add up to the node', () => {
    for (const [total, n] of [[256, 2], [257, 3], [5, 4], [1, 1], [100_000, 7]] as const) {
      const parts = Array.from({ length: n }, (_, i) => shareOf(total, n, i));
      expect(parts.reduce((a, b) => a + b, 0)).toBe(total);
      expect(Math.max(...parts) - Math.min(...parts)).toBeLessThanOrEqual(1);
    }
    // At least one thread or decoder each, even when the node has fewer than workers.
    expect(shareOf(2, 4, 3)).toBe(1);
    expect(shareOf(0, 3, 0, 0)).toBe(0);
  });

  it('gives each worker its part of pool.slabs, limits.maxParkedSessions, engine.threads and engine.decoders; the rest is unchanged', () => {
    const c = node({ server: { workers: 3 }, pool: { slabs: 100 }, limits: { maxParkedSessions: 10 }, engine: { threads: 4, decoders: 6 } });
    const w = [0, 1, 2].map((i) => workerConfig(c, i));
    expect(w.map((x) => x.pool.slabs)).toEqual([34, 33, 33]);
    expect(w.map((x) => x.limits.maxParkedSessions)).toEqual([4, 3, 3]);
    expect(w.map((x) => x.engine.threads)).toEqual([2, 1, 1]);
    expect(w.map((x) => x.engine.decoders)).toEqual([2, 2, 2]);
    expect(w[1]!.limits.maxSessionsPerAddress).toBe(c.limits.maxSessionsPerAddress);
    expect(w[1]!.server.workers).toBe(3);
    expect(Object.isFrozen(w[1]!.pool)).toBe(true);
    expect(DIVIDED_KEYS).toEqual(['pool.slabs', 'limits.maxParkedSessions', 'engine.threads', 'engine.decoders']);
    // One worker: the config as it is.
    const one = loadConfig({ ignoreEnv: true });
    expect(workerConfig(one, 0)).toBe(one);
  });

  it('refuses more than one worker without Redis, with the memory store, or with fewer slabs than workers', () => {
    const problems = (over: Record<string, unknown>) => {
      try {
        loadConfig({ ignoreEnv: true, overrides: over });
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    };
    expect(problems({ server: { workers: 2 } })).toEqual([expect.stringMatching(/^redis\.url: Redis is required when server\.workers is more than 1 \(it is 2\).*CAPTIONGATE_REDIS_URL/)]);
    expect(problems({ server: { workers: 1 } })).toEqual([]);
    expect(problems({ server: { workers: 2 }, redis: { url: 'redis://h:6379' }, store: { kind: 'memory' } })).toEqual([expect.stringMatching(/^store\.kind:/)]);
    expect(problems({ server: { workers: 4 }, redis: { url: 'redis://h:6379' }, pool: { slabs: 3 } })).toEqual([expect.stringMatching(/^pool\.slabs:/)]);
  });
});

describe('cluster messages', () => {
  it('takes ours and ignores anything else on the channel', () => {
    expect(parseToPrimary({ t: 'cg:ready', port: 8080, slabs: 128, poolBytes: 1 })).toEqual({ t: 'cg:ready', port: 8080, slabs: 128, poolBytes: 1 });
    expect(parseToPrimary({ t: 'cg:ready', port: '8080', slabs: 1, poolBytes: 1 })).toBeNull();
    expect(parseToPrimary({ type: 'prom-client:getMetricsRes' })).toBeNull();
    expect(parseToPrimary({ t: 'cg:metrics-json', id: 3, metrics: [] })).toEqual({ t: 'cg:metrics-json', id: 3, metrics: [] });
    expect(parseToWorker({ t: 'cg:node-metrics', id: 1, text: 'x' })).toEqual({ t: 'cg:node-metrics', id: 1, text: 'x' });
    expect(parseToWorker({ t: 'cg:node-metrics', id: 1, text: '', error: 'timeout' })).toEqual({ t: 'cg:node-metrics', id: 1, text: '', error: 'timeout' });
    expect(parseToWorker({ t: 'cg:collect', id: -1 })).toBeNull();
    expect(parseToWorker(null)).toBeNull();
  });
});

describe('node metrics: AggregatorRegistry over the workers', () => {
  it('sums counts and takes the worst worker for delays', async () => {
    const { AggregatorRegistry } = await import('prom-client');
    const { GatewayMetrics } = await import('../../src/metrics/metrics.js');
    const worker = (slabs: number, lag: number, received: number) => {
      const m = new GatewayMetrics(
        {
          pool: () => ({ slabs, inUse: 1, highWater: 2, refusals: 0, totalBytes: slabs * 10 }) as never,
          engine: () => ({ decoders: 1, decodersInUse: 0, streamsWaiting: 0, busyMs: 0, modelBytes: 0, streams: 0, queuedWindows: 0 }) as never,
          sessions: () => 1,
          parkedSessions: () => 0,
          batchesInFlight: () => 0,
          engineLagSeconds: () => lag,
          store: () => ({ ok: true, queuedWrites: 0, droppedWrites: 0 }),
        },
        { defaultMetrics: false },
      );
      m.samplesReceived.inc(received);
      m.ingestToSubmit.observe(0.001);
      return m;
    };
    const ws = [worker(64, 0.5, 1000), worker(64, 2, 500)];
    const node = AggregatorRegistry.aggregate(await Promise.all(ws.map((w) => w.registry.getMetricsAsJSON())));
    const text = await node.metrics();
    for (const w of ws) w.close();
    const v = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(v('captiongate_slabs_total')).toBe(128);
    expect(v('captiongate_sessions_active')).toBe(2);
    expect(v('captiongate_samples_received_total')).toBe(1500);
    expect(v('captiongate_ingest_to_submit_seconds_count')).toBe(2);
    expect(v('captiongate_engine_lag_seconds')).toBe(2);
  });
});
