/**
 * Token buckets keyed by address or token: `perMinute` opens, refilled
 * continuously, burst of the same size. Memory is bounded: full (idle)
 * buckets are forgotten, and at most MAX_KEYS are tracked (the oldest go).
 * With Redis configured, the same buckets are kept in Redis across nodes
 * (src/bus/shared-limits.ts) and this one counts only during an outage.
 */
const MAX_KEYS = 100_000;

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  #perMs: number;
  #burst: number;
  #buckets = new Map<string, Bucket>();
  #timer: NodeJS.Timeout;

  constructor(perMinute: number) {
    this.#burst = perMinute;
    this.#perMs = perMinute / 60_000;
    this.#timer = setInterval(() => this.#prune(), 30_000);
    this.#timer.unref();
  }

  /** Takes one token; returns 0 if allowed, else ms until one is available. */
  take(key: string, now = Date.now()): number {
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= MAX_KEYS) this.#buckets.delete(this.#buckets.keys().next().value as string);
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(key, b);
    }
    b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMs);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) / this.#perMs);
  }

  get size(): number {
    return this.#buckets.size;
  }

  #prune(now = Date.now()): void {
    for (const [k, b] of this.#buckets) {
      if (b.tokens + (now - b.at) * this.#perMs >= this.#burst) this.#buckets.delete(k);
    }
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
