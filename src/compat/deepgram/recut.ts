/**
 * Re-cuts a byte stream of 16-bit PCM into frames the session accepts:
 * whole sample frames, 10 ms to `maxPieceMs` long. Deepgram clients send
 * frames of any size (a partial sample included); the native protocol's
 * frame rules stay as they are behind this.
 *
 * It holds back `holdMs` of the newest audio, so that what a Finalize or a
 * CloseStream passes on is at least one frame long and needs no padding
 * (the session then gets exactly the client's audio). Held-back audio waits
 * for the next frame, a Finalize or a CloseStream; it adds holdMs of
 * latency and nothing else.
 *
 * While the consumer says it cannot take more (`accepting()` false: the
 * session's backlog is full and the connection is paused), audio stays here,
 * in a buffer that grows up to `maxBufferedBytes`.
 */
export interface RecutOptions {
  readonly bytesPerFrame: number;
  readonly sampleRate: number;
  readonly holdMs: number;
  readonly maxPieceMs: number;
  readonly maxBufferedBytes: number;
}

export class Recutter {
  #buf: Uint8Array;
  #fill = 0;
  #bpf: number;
  #minBytes: number;
  #holdBytes: number;
  #maxPiece: number;
  #max: number;
  /** Bytes passed on so far. */
  forwarded = 0;

  constructor(o: RecutOptions) {
    this.#bpf = o.bytesPerFrame;
    this.#minBytes = Math.ceil((o.sampleRate * 10) / 1000) * o.bytesPerFrame;
    this.#holdBytes = Math.ceil((o.sampleRate * o.holdMs) / 1000) * o.bytesPerFrame;
    this.#maxPiece = Math.max(this.#minBytes, Math.floor((o.sampleRate * o.maxPieceMs) / 1000) * o.bytesPerFrame);
    this.#max = o.maxBufferedBytes;
    this.#buf = new Uint8Array(this.#maxPiece + this.#holdBytes + o.bytesPerFrame);
  }

  /** Bytes waiting here. */
  get buffered(): number {
    return this.#fill;
  }
  /** The smallest frame the session takes (10 ms). */
  get minBytes(): number {
    return this.#minBytes;
  }

  /**
   * Appends `data` (valid only during the call: it is copied) and passes on
   * what is ready. Returns false when the buffer would pass its bound.
   */
  push(data: Uint8Array, emit: (frame: Uint8Array) => void, accepting: () => boolean): boolean {
    if (this.#fill + data.byteLength > this.#buf.byteLength) {
      if (this.#fill + data.byteLength > this.#max) return false;
      this.#grow(this.#fill + data.byteLength);
    }
    this.#buf.set(data, this.#fill);
    this.#fill += data.byteLength;
    this.pump(emit, accepting);
    return true;
  }

  /** Passes on every whole piece beyond the held-back tail, while the consumer accepts. */
  pump(emit: (frame: Uint8Array) => void, accepting: () => boolean): void {
    let off = 0;
    while (accepting()) {
      const avail = this.#fill - off - this.#holdBytes;
      if (avail < this.#minBytes) break;
      const n = Math.min(this.#maxPiece, avail - (avail % this.#bpf));
      emit(this.#buf.subarray(off, off + n));
      this.forwarded += n;
      off += n;
    }
    this.#shift(off);
  }

  /**
   * Passes on everything held (Finalize, CloseStream), padded with silence to
   * at least `minMs` and to whole sample frames. Returns the padding, bytes.
   */
  drain(emit: (frame: Uint8Array) => void, minMs = 10): number {
    const min = Math.max(this.#minBytes, Math.ceil(((minMs / 10) * this.#minBytes) / this.#bpf) * this.#bpf);
    let pad = 0;
    const rem = this.#fill % this.#bpf;
    if (rem) pad += this.#bpf - rem;
    if (this.#fill + pad < min) pad = min - this.#fill;
    if (this.#fill + pad > this.#buf.byteLength) this.#grow(this.#fill + pad);
    this.#buf.fill(0, this.#fill, this.#fill + pad);
    this.#fill += pad;
    let off = 0;
    while (off < this.#fill) {
      let n = Math.min(this.#maxPiece, this.#fill - off);
      // Never leave a tail shorter than a frame may be.
      if (this.#fill - off - n > 0 && this.#fill - off - n < this.#minBytes) n -= this.#minBytes;
      emit(this.#buf.subarray(off, off + n));
      this.forwarded += n;
      off += n;
    }
    this.#fill = 0;
    return pad;
  }

  #shift(off: number): void {
    if (off === 0) return;
    this.#buf.copyWithin(0, off, this.#fill);
    this.#fill -= off;
  }

  #grow(need: number): void {
    let cap = this.#buf.byteLength;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(Math.min(cap, Math.max(need, this.#max)));
    next.set(this.#buf.subarray(0, this.#fill));
    this.#buf = next;
  }
}
