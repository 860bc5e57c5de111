/**
 * The Redis connection every Redis user in the process shares (ioredis):
 * meetings (meeting-streams.ts), shared limits (shared-limits.ts) and,
 * later, the session registry. No Redis configured (`redis.url` empty) is
 * the embedded default: `openBus` returns null and every user keeps its
 * in-process path.
 *
 * Losing Redis never stops the gateway:
 * - the command client has no offline queue and does not resend commands
 *   that were in flight, so a command during an outage fails at once
 *   (callers fall back, or keep what they must write and retry it when the
 *   bus is healthy again: they know which writes are idempotent);
 * - ioredis reconnects on its own (backoff up to 2 s); each loss and return
 *   is logged once and counted, and `healthy()` / `onHealth` say where it
 *   stands (/readyz shows it as degraded, never as not ready);
 * - blocking reads (XREAD BLOCK) get a connection of their own
 *   (`blockingClient`), so they never hold up commands.
 *
 * Each process is a node with an id (server.nodeId, or hostname:pid and a random tail) and a lease in Redis (`nodeKey`),
 * renewed by the bus, deleted on a clean close.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';

import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';

import type { Config } from '../config/schema.js';

export interface Bus {
  /** This process's id on the bus (random per start): names its per-node keys. */
  readonly nodeId: string;
  /** `redis.keyPrefix`: every key this gateway writes starts with it. */
  readonly prefix: string;
  /**
   * A node's lease key (`<prefix>node:<id>`): it exists while the node is
   * alive. The bus renews this node's every `redis.heartbeatMs`, lasting
   * `redis.leaseMs`, so a node that died is gone from Redis's view within
   * `redis.leaseMs`; users key per-node state by node id and check it here.
   */
  nodeKey(nodeId: string): string;
  /** The shared command client. Commands fail fast while Redis is away. */
  readonly redis: Redis;
  /** Connected and ready for commands. */
  healthy(): boolean;
  /** Called on every change of health (true: back; false: lost). */
  onHealth(cb: (healthy: boolean) => void): () => void;
  /** A new connection for blocking commands (XREAD BLOCK), closed by `close()` too. */
  blockingClient(name: string): Redis;
  /** Resolves when healthy (at once if it is), or on close (then false). */
  whenHealthy(): Promise<boolean>;
  /** Times the connection was lost since start (metrics, tests). */
  readonly losses: number;
  close(): Promise<void>;
}

/** Backoff between reconnect attempts: 100 ms, growing to 2 s. */
const retryStrategy = (times: number): number => Math.min(100 * times, 2000);

/** A command that gets no reply in this long fails (a Redis that hangs without closing the connection). */
const COMMAND_TIMEOUT_MS = 2000;

function clientOptions(name: string, blocking = false): RedisOptions {
  return {
    // Blocking reads wait longer than any timeout on purpose.
    ...(blocking ? {} : { commandTimeout: COMMAND_TIMEOUT_MS }),
    connectionName: `captiongate:${name}`,
    // Fail fast during an outage: no queue of commands waiting for Redis.
    enableOfflineQueue: false,
    // A command whose reply was lost may or may not have run; the caller decides whether to send it again.
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    retryStrategy,
    connectTimeout: 2000,
    lazyConnect: false,
  };
}

/** Opens the bus when `redis.url` is set; null when it is not (one node, nothing shared). */
export function openBus(config: Readonly<Config>, log: Logger, registry?: Registry): Bus | null {
  if (!config.redis.url) return null;
  // server.nodeId, or hostname:pid with a random tail (unique across machines,
  // processes, and the buses of one process).
  const nodeId = config.server.nodeId || `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const blog = log.child({ component: 'redis', node: nodeId });
  const redis = new Redis(config.redis.url, clientOptions(`cmd:${nodeId}`));
  const extra = new Set<Redis>();
  const listeners = new Set<(h: boolean) => void>();
  let isHealthy = false;
  let losses = 0;
  let closing = false;
  let waiters: ((h: boolean) => void)[] = [];
  let lastError = '';

  const up = registry
    ? new Gauge({ name: 'captiongate_redis_up', help: 'The shared Redis connection is ready (1) or lost (0).', registers: [registry], collect() { this.set(isHealthy ? 1 : 0); } })
    : null;
  void up;
  const reconnects = registry
    ? new Counter({ name: 'captiongate_redis_connection_losses_total', help: 'Times the shared Redis connection was lost (each is followed by reconnect attempts).', registers: [registry] })
    : null;

  const setHealth = (h: boolean) => {
    if (h === isHealthy) return;
    isHealthy = h;
    if (h) {
      blog.info({ url: redactUrl(config.redis.url) }, losses ? 'redis is back: shared meetings and limits resume' : 'redis connected');
      const w = waiters;
      waiters = [];
      for (const f of w) f(true);
    } else {
      losses++;
      reconnects?.inc();
      blog.warn(
        { url: redactUrl(config.redis.url), err: lastError },
        'redis lost: this node keeps serving its own sessions; meeting fan-out across nodes pauses, finals are kept to publish later, limits count locally; reconnecting',
      );
    }
    for (const cb of listeners) {
      try {
        cb(h);
      } catch (err) {
        blog.error({ err }, 'a redis health listener threw');
      }
    }
  };
  const nodeKey = (id: string) => `${config.redis.keyPrefix}node:${id}`;
  const renewLease = () => {
    if (isHealthy) redis.set(nodeKey(nodeId), String(Date.now()), 'PX', config.redis.leaseMs).catch(() => {});
  };
  const lease = setInterval(renewLease, config.redis.heartbeatMs);
  lease.unref();
  redis.on('ready', () => {
    setHealth(true);
    renewLease();
  });
  redis.on('close', () => {
    if (!closing) setHealth(false);
  });
  let everHealthy = false;
  let warnedStart = false;
  redis.on('ready', () => (everHealthy = true));
  redis.on('error', (err: Error) => {
    // ioredis reports every failed attempt; a loss is logged once in setHealth, a Redis that is away from the start once here.
    lastError = err.message;
    if (!everHealthy && !warnedStart) {
      warnedStart = true;
      blog.warn(
        { url: redactUrl(config.redis.url), err: err.message },
        'redis is not reachable: this node serves its own sessions; meeting events wait for it (redis.outageBufferBytes), limits count locally; retrying',
      );
    }
  });

  return {
    nodeId,
    prefix: config.redis.keyPrefix,
    nodeKey,
    redis,
    healthy: () => isHealthy,
    get losses() {
      return losses;
    },
    onHealth(cb) {
      listeners.add(cb);
      return () => listeners.delete(cb);
    },
    blockingClient(name) {
      const c = new Redis(config.redis.url, clientOptions(`${name}:${nodeId}`, true));
      c.on('error', () => {});
      extra.add(c);
      return c;
    },
    whenHealthy() {
      if (isHealthy) return Promise.resolve(true);
      if (closing) return Promise.resolve(false);
      return new Promise((r) => waiters.push(r));
    },
    async close() {
      if (closing) return;
      closing = true;
      clearInterval(lease);
      const w = waiters;
      waiters = [];
      for (const f of w) f(false);
      isHealthy = false;
      for (const c of extra) c.disconnect();
      extra.clear();
      // This node is gone now, not at lease expiry. QUIT lets replies in flight arrive; a dead Redis gets a plain disconnect.
      if (redis.status === 'ready') {
        await redis.del(nodeKey(nodeId)).catch(() => {});
        await redis.quit().catch(() => redis.disconnect());
      }
      else redis.disconnect();
    },
  };
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis://(unparsable url)';
  }
}
