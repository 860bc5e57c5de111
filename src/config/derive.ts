/**
 * Every derived shape, computed from durations in one place. Element counts
 * are always computed from seconds x rate, never from byte counts; bytes are
 * computed from element counts (see ARCHITECTURE.md section 8, "shapes
 * derived from bytes").
 */
import { ENGINE_SAMPLE_RATE, type WindowPolicy } from '../engine/types.js';
import type { Config } from './schema.js';

/** Rings hold 16-bit samples: what every recognizer decodes from, and half the memory of float32. */
export const BYTES_PER_ENGINE_SAMPLE = Int16Array.BYTES_PER_ELEMENT;

export interface Shapes {
  /** Ring capacity per session (samples of backlog a slab holds). */
  readonly ringSamples: number;
  /** Extra samples mirrored after the ring so any window is contiguous. */
  readonly mirrorSamples: number;
  /** Samples per slab = ringSamples + mirrorSamples. */
  readonly slabSamples: number;
  readonly slabBytes: number;
  readonly poolBytes: number;
  readonly slabs: number;
  readonly lagWarnSamples: number;
  readonly lagMaxSamples: number;
  /**
   * Entries per slab in the arrival log (src/session/arrival-log.ts): it
   * spans the longest wait any decision looks for (limits.lagMaxSeconds,
   * admission.maxEngineLagSeconds) at ARRIVAL_RESOLUTION_MS, plus slack.
   */
  readonly arrivalEntries: number;
  /** The arrival logs of every slab: 16 bytes per entry. */
  readonly arrivalBytes: number;
}

/** Frames closer together than this share an arrival entry. */
export const ARRIVAL_RESOLUTION_MS = 50;

export function secondsToSamples(seconds: number, rate = ENGINE_SAMPLE_RATE): number {
  return Math.round(seconds * rate);
}

export function deriveShapes(config: Readonly<Config>, policy: WindowPolicy): Shapes {
  const ringSamples = secondsToSamples(config.pool.slabSeconds);
  // Any window is one contiguous view: the mirror holds the longest one.
  const mirrorSamples = policy.maxSamples;
  const slabSamples = ringSamples + mirrorSamples;
  const slabBytes = slabSamples * BYTES_PER_ENGINE_SAMPLE;
  const arrivalSpanSeconds = Math.max(config.limits.lagMaxSeconds, config.admission.maxEngineLagSeconds);
  const arrivalEntries = Math.ceil((arrivalSpanSeconds * 1000) / ARRIVAL_RESOLUTION_MS) + 4;
  return Object.freeze({
    ringSamples,
    mirrorSamples,
    slabSamples,
    slabBytes,
    poolBytes: slabBytes * config.pool.slabs,
    slabs: config.pool.slabs,
    lagWarnSamples: secondsToSamples(config.limits.lagWarnSeconds),
    lagMaxSamples: secondsToSamples(config.limits.lagMaxSeconds),
    arrivalEntries,
    arrivalBytes: arrivalEntries * 2 * Float64Array.BYTES_PER_ELEMENT * config.pool.slabs,
  });
}

export function formatBytes(n: number): string {
  if (n >= 1024 * 1024 * 1024) return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
