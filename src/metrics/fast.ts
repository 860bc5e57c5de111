/**
 * Counters and histograms for the per-frame and per-window paths. They are
 * plain numbers until a scrape reads them: an increment is one addition,
 * an observation a short bucket search, no label hashing. They register
 * with a prom-client Registry like its own metrics (the registry only asks
 * for name, help, type and get()), and sum across worker processes.
 */
import type { Registry } from 'prom-client';

interface MetricValue {
  value: number;
  /** Always present (empty without labels): prom-client's aggregation hashes it. */
  labels: Record<string, string | number>;
  metricName?: string;
}

abstract class FastMetric {
  readonly name: string;
  readonly help: string;
  abstract readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';

  constructor(name: string, help: string, registry: Registry) {
    this.name = name;
    this.help = help;
    // The registry's own metric classes are structurally the same.
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  abstract values(): MetricValue[];

  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: MetricValue[] }> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() });
  }
}

export class FastCounter extends FastMetric {
  readonly type = 'counter';
  #value = 0;

  inc(n = 1): void {
    this.#value += n;
  }
  get value(): number {
    return this.#value;
  }
  values(): MetricValue[] {
    return [{ value: this.#value, labels: {} }];
  }
  reset(): void {
    this.#value = 0;
  }
}

export class FastHistogram extends FastMetric {
  readonly type = 'histogram';
  readonly #bounds: Float64Array;
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(name: string, help: string, registry: Registry, buckets: readonly number[]) {
    super(name, help, registry);
    this.#bounds = Float64Array.from([...buckets].sort((a, b) => a - b));
    this.#counts = new Float64Array(this.#bounds.length);
  }

  observe(v: number): void {
    const b = this.#bounds;
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (v <= b[mid]!) hi = mid;
      else lo = mid + 1;
    }
    if (lo < b.length) this.#counts[lo]!++;
    this.#sum += v;
    this.#count++;
  }

  values(): MetricValue[] {
    const out: MetricValue[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      cumulative += this.#counts[i]!;
      out.push({ metricName: `${this.name}_bucket`, labels: { le: this.#bounds[i]! }, value: cumulative });
    }
    out.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf' }, value: this.#count });
    out.push({ metricName: `${this.name}_sum`, labels: {}, value: this.#sum });
    out.push({ metricName: `${this.name}_count`, labels: {}, value: this.#count });
    return out;
  }

  reset(): void {
    this.#counts.fill(0);
    this.#sum = 0;
    this.#count = 0;
  }
}
