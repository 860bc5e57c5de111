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
  #pos: Float64Array;
  #time: Float64Array;
  #n = 0;
  #next = 0;
  #resolutionMs: number;

  constructor(spanSeconds: number, resolutionMs = 50) {
    const capacity = Math.ceil((spanSeconds * 1000) / resolutionMs) + 4;
    this.#pos = new Float64Array(capacity);
    this.#time = new Float64Array(capacity);
    this.#resolutionMs = resolutionMs;
  }

  /** After a write that ended at writePos, at time t. */
  record(writePos: number, t: number): void {
    const cap = this.#pos.length;
    if (this.#n > 0) {
      const last = (this.#next - 1 + cap) % cap;
      if (t - this.#time[last]! < this.#resolutionMs) {
        this.#pos[last] = writePos;
        return;
      }
    }
    this.#pos[this.#next] = writePos;
    this.#time[this.#next] = t;
    this.#next = (this.#next + 1) % cap;
    if (this.#n < cap) this.#n++;
  }

  /**
   * Arrival time of the audio at sample `pos`. Positions past the newest
   * entry get the newest time; positions older than the oldest get the
   * oldest (see the class comment). NaN when nothing was recorded yet.
   */
  timeOf(pos: number): number {
    const cap = this.#pos.length;
    const oldest = (this.#next - this.#n + cap) % cap;
    // Binary search over entries in age order for the first writePos > pos.
    let lo = 0;
    let hi = this.#n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#pos[(oldest + mid) % cap]! > pos) hi = mid;
      else lo = mid + 1;
    }
    if (this.#n === 0) return NaN;
    return this.#time[(oldest + Math.min(lo, this.#n - 1)) % cap]!;
  }
}
