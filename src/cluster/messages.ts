/**
 * The messages between the cluster primary and its workers (Node's cluster
 * IPC), with one validator. The primary only manages processes and gathers
 * metrics; it never handles a connection.
 */
import type { Registry } from 'prom-client';

/** One registry's metrics as prom-client's AggregatorRegistry.aggregate takes them. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

export type ToPrimary =
  /** The worker listens: its port (uWS: the others bind the same one) and its share of the pool. */
  | { readonly t: 'cg:ready'; readonly port: number; readonly slabs: number; readonly poolBytes: number }
  /** A worker answering /metrics asks for the whole node's, or for one worker's (`worker`: its index). */
  | { readonly t: 'cg:node-metrics'; readonly id: number; readonly worker?: number }
  /** A worker's own metrics, for the primary to aggregate (answer to cg:collect). */
  | { readonly t: 'cg:metrics-json'; readonly id: number; readonly metrics: MetricsJson };

export type ToWorker =
  /** Finish your sessions and exit (the node is stopping). The same as a SIGTERM, and counted once with one. */
  | { readonly t: 'cg:stop' }
  | { readonly t: 'cg:collect'; readonly id: number }
  | { readonly t: 'cg:node-metrics'; readonly id: number; readonly text: string; readonly error?: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/** A message from a worker, or null (not ours: prom-client and Node use the same channel). */
export function parseToPrimary(m: unknown): ToPrimary | null {
  if (!isObj(m)) return null;
  switch (m.t) {
    case 'cg:ready':
      return isInt(m.port) && isInt(m.slabs) && isInt(m.poolBytes) ? { t: m.t, port: m.port, slabs: m.slabs, poolBytes: m.poolBytes } : null;
    case 'cg:node-metrics':
      if (!isInt(m.id) || (m.worker !== undefined && !isInt(m.worker))) return null;
      return m.worker === undefined ? { t: m.t, id: m.id } : { t: m.t, id: m.id, worker: m.worker };
    case 'cg:metrics-json':
      return isInt(m.id) && Array.isArray(m.metrics) ? { t: m.t, id: m.id, metrics: m.metrics as MetricsJson } : null;
    default:
      return null;
  }
}

/** A message from the primary, or null. */
export function parseToWorker(m: unknown): ToWorker | null {
  if (!isObj(m)) return null;
  switch (m.t) {
    case 'cg:stop':
      return { t: m.t };
    case 'cg:collect':
      return isInt(m.id) ? { t: m.t, id: m.id } : null;
    case 'cg:node-metrics':
      return isInt(m.id) && typeof m.text === 'string'
        ? { t: m.t, id: m.id, text: m.text, ...(typeof m.error === 'string' ? { error: m.error } : {}) }
        : null;
    default:
      return null;
  }
}
