/**
 * Limits that count across nodes, in Redis:
 *
 * - **Open rates** (rateLimits.*): one token bucket per address and per
 *   token, kept in Redis and taken in one Lua step with Redis's own clock,
 *   so an open counts once whichever node it hits.
 * - **Concurrent sessions per token** (the token's `maxSessions` claim):
 *   each node writes how many places it holds for an identity into one hash
 *   field (`<prefix>caps:<identity>`, field = node id), and a Lua step sums
 *   the fields of live nodes before it grants one more. A node is live while
 *   its lease key (`Bus.nodeKey`, renewed every `redis.heartbeatMs`, lasting
 *   `redis.leaseMs`) exists, so a node that died stops counting
 *   within `redis.leaseMs`: its fields are dropped the next time anyone
 *   counts. Every write is the node's absolute count, so the heartbeat also
 *   repairs what an outage left stale.
 *
 * While Redis is away both fall back to counting on this node alone (the
 * same limits, per node): service goes on, and a token may get up to one
 * share per node until Redis is back. The fallback is logged by the bus and
 * counted (`captiongate_shared_limit_fallbacks_total`).
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';

import { GatewayError } from '../errors.js';
import type { RateLimiter } from '../security/rate-limit.js';
import type { Bus } from './bus.js';

const RATE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local burst, perMs = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * perMs)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / perMs) end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / perMs) + 1000)
return wait
`;

const RESERVE_LUA = `
local fields = redis.call('HGETALL', KEYS[1])
local node, mine, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local others = 0
for i = 1, #fields, 2 do
  local f = fields[i]
  if f ~= node then
    if redis.call('EXISTS', ARGV[4] .. f) == 1 then others = others + tonumber(fields[i + 1])
    else redis.call('HDEL', KEYS[1], f) end
  end
end
if others + mine > max then return {0, others} end
redis.call('HSET', KEYS[1], node, mine)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, others}
`;

/** A place held for a session of a capped token; release it exactly when the session (or the attempt) ends. */
export interface Reservation {
  /** A session now holds the place: the start-time backstop no longer frees it. */
  claim(): void;
  /** Idempotent. */
  release(): void;
}

type Scripted = Redis & {
  captiongateRate(key: string, burst: number, perMs: number): Promise<number>;
  captiongateReserve(key: string, node: string, mine: number, max: number, nodePrefix: string, ttlMs: number): Promise<[number, number]>;
};

export interface SharedLimitsOptions {
  readonly heartbeatMs: number;
  readonly leaseMs: number;
  /** An unclaimed reservation is freed after this long (a connection that never started a session). */
  readonly unclaimedMs: number;
}

export class SharedLimits {
  #bus: Bus;
  #redis: Scripted;
  #log: Logger;
  #opts: SharedLimitsOptions;
  /** Places this node holds, per identity. */
  #held = new Map<string, number>();
  /** Identities whose field in Redis may be stale (a write failed, or the count fell to 0). */
  #dirty = new Set<string>();
  #timer: NodeJS.Timeout;
  #offHealth: () => void;
  #fallbacks: Counter<'limit'> | null = null;

  constructor(bus: Bus, log: Logger, opts: SharedLimitsOptions, registry?: Registry) {
    this.#bus = bus;
    this.#log = log.child({ component: 'shared-limits' });
    this.#opts = opts;
    this.#redis = bus.redis as Scripted;
    bus.redis.defineCommand('captiongateRate', { numberOfKeys: 1, lua: RATE_LUA });
    bus.redis.defineCommand('captiongateReserve', { numberOfKeys: 1, lua: RESERVE_LUA });
    this.#timer = setInterval(() => void this.#heartbeat(), opts.heartbeatMs);
    this.#timer.unref();
    this.#offHealth = bus.onHealth((h) => {
      if (h) void this.#heartbeat();
    });
    void this.#heartbeat();
    if (registry) {
      this.#fallbacks = new Counter({
        name: 'captiongate_shared_limit_fallbacks_total',
        help: 'Limit checks counted on this node alone because Redis was unavailable (limit=rate|sessions).',
        labelNames: ['limit'],
        registers: [registry],
      });
    }
  }

  #capsKey(identity: string): string {
    return `${this.#bus.prefix}caps:${identity}`;
  }

  /**
   * Takes one open from the shared bucket `kind:key` (perMinute, burst of
   * the same size). Returns 0 if allowed, else ms until one is available.
   * Without Redis, the local limiter decides.
   */
  async take(kind: string, key: string, perMinute: number, local: RateLimiter): Promise<number> {
    if (this.#bus.healthy()) {
      try {
        return await this.#redis.captiongateRate(`${this.#bus.prefix}rate:${kind}:${key}`, perMinute, perMinute / 60_000);
      } catch (err) {
        this.#log.debug({ err }, 'shared rate limit failed: counting locally');
      }
    }
    this.#fallbacks?.inc({ limit: 'rate' });
    return local.take(key);
  }

  /** Places this node holds for an identity (tests). */
  held(identity: string): number {
    return this.#held.get(identity) ?? 0;
  }

  /**
   * Holds one of the identity's `max` places across every node, or says
   * why not (CAP_ERR_TOO_MANY_SESSIONS). Without Redis the place is held
   * locally and the session manager's own per-node count decides.
   */
  async reserve(identity: string, max: number): Promise<Reservation | GatewayError> {
    const mine = this.#change(identity, +1);
    if (this.#bus.healthy()) {
      try {
        const [ok, others] = await this.#redis.captiongateReserve(this.#capsKey(identity), this.#bus.nodeId, mine, max, this.#bus.nodeKey(''), this.#opts.leaseMs);
        if (!ok) {
          this.#change(identity, -1);
          this.#write(identity);
          return new GatewayError(
            'CAP_ERR_TOO_MANY_SESSIONS',
            `this token already holds ${others + mine - 1} sessions across the gateway's nodes (its maxSessions is ${max})`,
            5000,
          );
        }
        return this.#reservation(identity);
      } catch (err) {
        this.#log.debug({ err }, 'shared session cap failed: counting locally');
      }
    }
    this.#fallbacks?.inc({ limit: 'sessions' });
    this.#dirty.add(identity);
    return this.#reservation(identity);
  }

  #reservation(identity: string): Reservation {
    let done = false;
    const timer = setTimeout(() => release(), this.#opts.unclaimedMs);
    timer.unref();
    const release = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.#change(identity, -1);
      this.#write(identity);
    };
    return { claim: () => clearTimeout(timer), release };
  }

  #change(identity: string, delta: number): number {
    const n = Math.max(0, (this.#held.get(identity) ?? 0) + delta);
    if (n) this.#held.set(identity, n);
    else this.#held.delete(identity);
    return n;
  }

  /** Writes this node's absolute count for one identity (or marks it for the heartbeat). */
  #write(identity: string): void {
    if (!this.#bus.healthy()) {
      this.#dirty.add(identity);
      return;
    }
    const n = this.#held.get(identity) ?? 0;
    const key = this.#capsKey(identity);
    const p = n ? this.#redis.multi().hset(key, this.#bus.nodeId, n).pexpire(key, this.#opts.leaseMs).exec() : this.#redis.hdel(key, this.#bus.nodeId);
    p.catch(() => this.#dirty.add(identity));
  }

  /** Rewrites this node's counts (repairs anything stale after an outage); the bus renews the node's lease. */
  async #heartbeat(): Promise<void> {
    if (!this.#bus.healthy()) return;
    if (!this.#held.size && !this.#dirty.size) return;
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    const pipe = this.#redis.pipeline();
    for (const [identity, n] of this.#held) {
      const key = this.#capsKey(identity);
      pipe.hset(key, this.#bus.nodeId, n).pexpire(key, this.#opts.leaseMs);
    }
    for (const identity of dirty) if (!this.#held.has(identity)) pipe.hdel(this.#capsKey(identity), this.#bus.nodeId);
    try {
      const r = await pipe.exec();
      if (r?.some(([err]) => err)) throw new Error('heartbeat write failed');
    } catch {
      for (const d of dirty) this.#dirty.add(d);
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.#offHealth();
    // This node's places go now, not at lease expiry (best effort).
    if (this.#bus.healthy()) {
      const pipe = this.#redis.pipeline();
      for (const identity of this.#held.keys()) pipe.hdel(this.#capsKey(identity), this.#bus.nodeId);
      pipe.exec().catch(() => {});
    }
  }
}
