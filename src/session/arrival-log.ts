/**
 * When did the audio at sample position P arrive? A fixed ring of
 * (write position, time) pairs, for admission control and latency metrics.
 *
 * Frames that arrive within `resolutionMs` of the entry before them share
 * it, keeping its (earlier) time, so a lookup can over-state a wait by at
 * most `resolutionMs`. Entries are at least `resolutionMs` apart, so the
 * ring spans at least `spanSeconds` of wall time at any frame rate; a
 * lookup older than the oldest entry gets the oldest entry's time, which
 * still reports a wait of at least `spanSeconds`.
 *
 * A log belongs to a ring, so to a slab: the manager's ArrivalTable holds
 * one row per slab of the pool, in one array allocated once. The per-frame
 * path writes into that shared array, which every session touches and so
 * stays in cache; an array per session costs two cache misses more per
 * frame (the view and its buffer; bench/ profile, docs/benchmarks.md §1).
 */

/** One row per slab, each `entries` (position, time) pairs; allocated once, resident as written. */
export class ArrivalTable {
  readonly rows: number;
  readonly entries: number;
  readonly resolutionMs: number;
  #data: Float64Array;

  constructor(rows: number, entries: number, resolutionMs: number) {
    this.rows = rows;
    this.entries = entries;
    this.resolutionMs = resolutionMs;
    this.#data = new Float64Array(rows * 2 * entries);
  }

  /** An empty log over row `row` (the slab's index); what the row held before is forgotten. */
  log(row: number): ArrivalLog {
    if (!Number.isInteger(row) || row < 0 || row >= this.rows) throw new RangeError(`Expected an arrival row 0-${this.rows - 1} but received ${row}`);
    return new ArrivalLog(this.#data, row * 2 * this.entries, this.entries, this.resolutionMs);
  }
}

export class ArrivalLog {
  /** Entry i is [base + 2i] = write position, [base + 2i + 1] = time. */
  #entries: Float64Array;
  #base: number;
  #capacity: number;
  #n = 0;
  /** The newest entry's index (valid when #n > 0). */
  #last = -1;
  #resolutionMs: number;

  /** Over `capacity` entries of `entries` from `base` (ArrivalTable.log). */
  constructor(entries: Float64Array, base: number, capacity: number, resolutionMs: number) {
    this.#entries = entries;
    this.#base = base;
    this.#capacity = capacity;
    this.#resolutionMs = resolutionMs;
  }

  /** After a write that ended at writePos, at time t. */
  record(writePos: number, t: number): void {
    const e = this.#entries;
    const b = this.#base;
    let i = this.#last;
    if (this.#n > 0 && t - e[b + 2 * i + 1]! < this.#resolutionMs) {
      e[b + 2 * i] = writePos;
      return;
    }
    i = i + 1 === this.#capacity ? 0 : i + 1;
    e[b + 2 * i] = writePos;
    e[b + 2 * i + 1] = t;
    this.#last = i;
    if (this.#n < this.#capacity) this.#n++;
  }

  /** The newest entry's time (the last frame's, or up to resolutionMs earlier); NaN when nothing was recorded yet. */
  get newestTime(): number {
    return this.#n > 0 ? this.#entries[this.#base + 2 * this.#last + 1]! : NaN;
  }

  /**
   * Arrival time of the audio at sample `pos`. Positions past the newest
   * entry get the newest time; positions older than the oldest get the
   * oldest (see the class comment). NaN when nothing was recorded yet.
   */
  timeOf(pos: number): number {
    if (this.#n === 0) return NaN;
    const cap = this.#capacity;
    const e = this.#entries;
    const b = this.#base;
    const oldest = (this.#last + 1 - this.#n + cap) % cap;
    // Binary search over entries in age order for the first writePos > pos.
    let lo = 0;
    let hi = this.#n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (e[b + 2 * ((oldest + mid) % cap)]! > pos) hi = mid;
      else lo = mid + 1;
    }
    return e[b + 2 * ((oldest + Math.min(lo, this.#n - 1)) % cap) + 1]!;
  }
}
