/**
 * When did the audio at sample position P arrive? A fixed ring of
 * (write position, time) pairs, one per frame, for latency metrics.
 */
export class ArrivalLog {
  #pos: Float64Array;
  #time: Float64Array;
  #n = 0;
  #next = 0;

  constructor(capacity: number) {
    this.#pos = new Float64Array(capacity);
    this.#time = new Float64Array(capacity);
  }

  /** After a write that ended at writePos, at time t. */
  record(writePos: number, t: number): void {
    this.#pos[this.#next] = writePos;
    this.#time[this.#next] = t;
    this.#next = (this.#next + 1) % this.#pos.length;
    if (this.#n < this.#pos.length) this.#n++;
  }

  /** Arrival time of the frame containing sample `pos`, or undefined if too old/new. */
  timeOf(pos: number): number | undefined {
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
    if (lo === this.#n) return this.#n ? this.#time[(oldest + this.#n - 1) % cap] : undefined;
    return this.#time[(oldest + lo) % cap];
  }
}
