// AudioWorklet: microphone (at the device rate, 44.1/48 kHz) -> 16 kHz mono
// Int16 frames of about 100 ms, posted to the page. The resampler is a
// windowed-sinc low-pass (cutoff just under 8 kHz) evaluated at fractional
// positions, so nothing above the new Nyquist folds back into speech.

const OUT_RATE = 16000;
const FRAME = 1600; // 100 ms at 16 kHz
const HALF_TAPS = 24; // kernel half-width in output samples
const PHASES = 128; // fractional positions tabulated

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.cutoff = Math.min(1, OUT_RATE / sampleRate) * 0.92; // normalized to the input rate's Nyquist
    this.half = Math.ceil(HALF_TAPS * Math.max(1, this.step));
    this.buf = new Float32Array(8192);
    this.len = 0; // valid samples in buf
    this.pos = this.half; // next output position, in input samples (fractional), relative to buf[0]
    this.out = new Int16Array(FRAME);
    this.outLen = 0;
    // Kernel table: for each phase p (fraction p/PHASES), taps at integer
    // offsets j = -half+1 .. half from floor(center).
    this.taps = 2 * this.half;
    this.table = new Float32Array((PHASES + 1) * this.taps);
    for (let p = 0; p <= PHASES; p++) {
      for (let t = 0; t < this.taps; t++) {
        const j = t - this.half + 1;
        this.table[p * this.taps + t] = this.kernel(j - p / PHASES);
      }
    }
    this.port.onmessage = (e) => {
      if (e.data === 'flush') this.flush();
    };
  }

  kernel(x) {
    // sinc(cutoff * x) * Blackman window over [-half, half]
    if (Math.abs(x) >= this.half) return 0;
    if (x === 0) return this.cutoff;
    const a = Math.PI * x;
    const w = 0.42 + 0.5 * Math.cos((Math.PI * x) / this.half) + 0.08 * Math.cos((2 * Math.PI * x) / this.half);
    return (Math.sin(this.cutoff * a) / a) * w;
  }

  push(sample) {
    const v = Math.max(-1, Math.min(1, sample));
    this.out[this.outLen++] = v < 0 ? v * 32768 : v * 32767;
    if (this.outLen === FRAME) {
      this.port.postMessage(this.out.buffer, [this.out.buffer]);
      this.out = new Int16Array(FRAME);
      this.outLen = 0;
    }
  }

  flush() {
    if (this.outLen > 0) {
      const rest = this.out.slice(0, this.outLen);
      this.port.postMessage(rest.buffer, [rest.buffer]);
      this.out = new Int16Array(FRAME);
      this.outLen = 0;
    }
    this.port.postMessage('flushed');
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    if (this.len + n > this.buf.length) {
      const bigger = new Float32Array((this.len + n) * 2);
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    // Downmix to mono.
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let c = 0; c < input.length; c++) s += input[c][i];
      this.buf[this.len + i] = s / input.length;
    }
    this.len += n;
    // Produce every output sample whose kernel support is available.
    while (this.pos + this.half + 1 < this.len) {
      const base = Math.floor(this.pos);
      const phase = Math.round((this.pos - base) * PHASES);
      const k = phase * this.taps;
      const i0 = base - this.half + 1;
      let acc = 0;
      for (let t = 0; t < this.taps; t++) acc += this.buf[i0 + t] * this.table[k + t];
      this.push(acc);
      this.pos += this.step;
    }
    // Drop consumed input, keeping the kernel's left context.
    const keep = Math.floor(this.pos - this.half);
    if (keep > 0) {
      this.buf.copyWithin(0, keep, this.len);
      this.len -= keep;
      this.pos -= keep;
    }
    return true;
  }
}

registerProcessor('capture-processor', CaptureProcessor);
