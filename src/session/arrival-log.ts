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
 */
export class ArrivalLog {
  /** Entry i is [2i] = write position, [2i + 1] = time: one array, so a frame touches one cache line of it. */
  #entries: Float64Array;
  #capacity: number;
  #n = 0;
  /** The newest entry's index (valid when #n > 0). */
  #last = -1;
  #resolutionMs: number;

  constructor(spanSeconds: number, resolutionMs = 50) {
    this.#capacity = Math.ceil((spanSeconds * 1000) / resolutionMs) + 4;
    this.#entries = new Float64Array(2 * this.#capacity);
    this.#resolutionMs = resolutionMs;
  }

  /** After a write that ended at writePos, at time t. */
  record(writePos: number, t: number): void {
    const e = this.#entries;
    let i = this.#last;
    if (this.#n > 0 && t - e[2 * i + 1]! < this.#resolutionMs) {
      e[2 * i] = writePos;
      return;
    }
    i = i + 1 === this.#capacity ? 0 : i + 1;
    e[2 * i] = writePos;
    e[2 * i + 1] = t;
    this.#last = i;
    if (this.#n < this.#capacity) this.#n++;
  }

  /** The newest entry's time (the last frame's, or up to resolutionMs earlier); NaN when nothing was recorded yet. */
  get newestTime(): number {
    return this.#n > 0 ? this.#entries[2 * this.#last + 1]! : NaN;
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
    const oldest = (this.#last + 1 - this.#n + cap) % cap;
    // Binary search over entries in age order for the first writePos > pos.
    let lo = 0;
    let hi = this.#n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (e[2 * ((oldest + mid) % cap)]! > pos) hi = mid;
      else lo = mid + 1;
    }
    return e[2 * ((oldest + Math.min(lo, this.#n - 1)) % cap) + 1]!;
  }
}
