/**
 * Seeded protocol fuzzing against a real server (test/robustness and
 * bench/fuzz). Each connection gets a random script of valid and invalid
 * frames: text and binary, truncated and odd-length audio, tiny and huge
 * frames, wrong types and out-of-range parameters, repeated start, audio
 * after stop, abrupt closes. The same seed gives the same scripts.
 */
import WebSocket from 'ws';

import { CloseCode, ERRORS } from '../src/errors.js';
import { decodeServerMessage, encodeClientMessage } from '../src/protocol/codec.js';
import { SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, type WireMessage } from '../src/protocol/messages.js';

export function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type FuzzAction =
  | { readonly kind: 'text'; readonly data: string }
  | { readonly kind: 'binary'; readonly data: Uint8Array }
  | { readonly kind: 'close' };

export interface FuzzLimits {
  readonly maxFrameBytes: number;
  readonly maxControlBytes: number;
}

const RATES = [8000, 11025, 16000, 22050, 44100, 48000];

/** One connection's script. `speech` supplies real 16 kHz audio to embed. */
export function fuzzScript(rand: () => number, n: number, limits: FuzzLimits, speech: Int16Array): { mode: 'json' | 'msgpack'; actions: FuzzAction[] } {
  const mode = rand() < 0.2 ? 'msgpack' : 'json';
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const int = (a: number, b: number) => a + Math.floor(rand() * (b - a + 1));
  let fmt = { sampleRate: 16000, channels: 1, bytes: 2 };
  let speechPos = int(0, Math.max(0, speech.length - 16000));
  const actions: FuzzAction[] = [];

  const control = (o: Record<string, unknown>): FuzzAction =>
    mode === 'json' ? { kind: 'text', data: JSON.stringify(o) } : { kind: 'binary', data: encodeClientMessage(o as never, 'msgpack') as Uint8Array };
  const audio = (bytes: Uint8Array): FuzzAction =>
    mode === 'json' ? { kind: 'binary', data: bytes } : { kind: 'binary', data: encodeClientMessage({ type: 'audio', data: bytes }, 'msgpack') as Uint8Array };
  const validAudio = (): Uint8Array => {
    // Mostly the 10-60 ms frames browsers and bots send, some up to 250 ms:
    // every size is covered, and the engine (the fuzz's cost) decodes less.
    const ms = rand() < 0.8 ? int(10, 60) : int(61, 250);
    const frames = Math.max(1, Math.round((ms * fmt.sampleRate) / 1000));
    const out = new Uint8Array(frames * fmt.channels * fmt.bytes);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < frames; i++) {
      const v = speech[(speechPos + Math.floor((i * 16000) / fmt.sampleRate)) % speech.length]!;
      for (let c = 0; c < fmt.channels; c++) {
        const off = (i * fmt.channels + c) * fmt.bytes;
        if (fmt.bytes === 2) dv.setInt16(off, v, true);
        else dv.setFloat32(off, v / 32768, true);
      }
    }
    speechPos = (speechPos + Math.round((frames * 16000) / fmt.sampleRate)) % speech.length;
    return out;
  };
  const randomBytes = (len: number): Uint8Array => Uint8Array.from({ length: len }, () => Math.floor(rand() * 256));
  const validStart = (): Record<string, unknown> => {
    const sampleRate = pick(RATES);
    const channels = pick([1, 2]);
    const encoding = pick(['s16le', 'f32le']);
    fmt = { sampleRate, channels, bytes: encoding === 's16le' ? 2 : 4 };
    const o: Record<string, unknown> = { type: 'start', sampleRate, channels, encoding };
    if (rand() < 0.3) o.interim = rand() < 0.5;
    if (rand() < 0.2) o.ack = true;
    if (rand() < 0.2) o.meta = { speaker: `fuzz${int(0, 9)}` };
    return o;
  };
  const badStart = (): Record<string, unknown> => {
    const o: Record<string, unknown> = { type: 'start', sampleRate: 16000, channels: 1, encoding: 's16le' };
    switch (int(0, 9)) {
      case 0: o.sampleRate = pick([0, -1, 7999, 48001, 1e12, 16000.5, '16000', null, NaN]); break;
      case 1: o.channels = pick([0, 3, -1, 1.5, '1', true]); break;
      case 2: o.encoding = pick(['mulaw', '', 'S16LE', 42, null]); break;
      case 3: o.language = pick(['fr', '', 'x'.repeat(500), 1]); break;
      case 4: o.sessionId = pick(['has space', '', 'x'.repeat(200), '../etc/passwd', 5]); break;
      case 5: o.meta = pick(['str', [1, 2], { meetingId: '../x' }, { speaker: 'y'.repeat(300) }, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]))]); break;
      case 6: o.interim = pick(['yes', 1, null]); break;
      case 7: o.unexpected = true; break;
      case 8: delete o.sampleRate; break;
      default: o.type = pick(['START', 'start ', 'stArt']);
    }
    return o;
  };

  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.3) actions.push(audio(validAudio()));
    else if (r < 0.36) {
      const a = validAudio();
      actions.push(audio(a.subarray(0, Math.max(1, a.length - int(1, fmt.bytes * fmt.channels - 1))))); // partial sample
    } else if (r < 0.39) actions.push(audio(new Uint8Array(int(1, 3) * fmt.channels * fmt.bytes))); // far under 10 ms
    else if (r < 0.41) actions.push(audio(new Uint8Array(limits.maxFrameBytes + int(1, 1024)))); // too large, under ceiling
    else if (r < 0.412) actions.push(audio(new Uint8Array(limits.maxFrameBytes * 2 + 4096))); // beyond the transport ceiling
    else if (r < 0.46) actions.push(audio(randomBytes(int(1, 4000))));
    else if (r < 0.53) actions.push(control(validStart()));
    else if (r < 0.6) actions.push(control(badStart()));
    else if (r < 0.64) actions.push(control({ type: 'flush' }));
    else if (r < 0.67) actions.push(control({ type: 'keepalive' }));
    else if (r < 0.7) {
      actions.push(control({ type: 'stop' }));
      if (rand() < 0.5) actions.push(audio(validAudio())); // audio after stop
    } else if (r < 0.76) actions.push({ kind: 'text', data: pick(['{', '}', '[]', 'null', '"x"', '{"type":', 'ünïcödé', '\u0000', '{"type":"flush","x":1}', '{"type":null}', '{"type":"bogus"}', '{"type":"__proto__"}', '{"__proto__":{"type":"stop"}}']) });
    else if (r < 0.8) actions.push({ kind: 'text', data: String.fromCharCode(...Array.from({ length: int(0, 200) }, () => int(32, 0x2fff))) });
    else if (r < 0.81) actions.push({ kind: 'text', data: ' '.repeat(limits.maxControlBytes + int(1, 100)) });
    else if (r < 0.85) actions.push(control({ type: pick(['audio', 'ready', 'final', 'end', 'start', 'flush', 'stop']), extra: int(0, 9) }));
    else if (r < 0.86) actions.push({ kind: 'close' });
    else actions.push(audio(validAudio()));
  }
  return { mode, actions };
}

export const DOCUMENTED_CLOSE_CODES: ReadonlySet<number> = new Set([...Object.values(CloseCode), 1005, 1006]);

export interface FuzzConnectionResult {
  sent: number;
  received: WireMessage[];
  closeCode: number | undefined;
  undocumentedErrors: string[];
}

/** Plays one script against `url`; finishes with stop (or the script's close). */
export async function playScript(url: string, script: { mode: 'json' | 'msgpack'; actions: FuzzAction[] }, timeoutMs = 30_000): Promise<FuzzConnectionResult> {
  const ws = new WebSocket(url, [script.mode === 'msgpack' ? SUBPROTOCOL_MSGPACK : SUBPROTOCOL_JSON], { perMessageDeflate: false });
  const received: WireMessage[] = [];
  let closeCode: number | undefined;
  const closed = new Promise<void>((resolve) => {
    ws.on('close', (code) => {
      closeCode = code;
      resolve();
    });
  });
  ws.on('error', () => {});
  ws.on('message', (d: Buffer, isBinary: boolean) => {
    try {
      received.push(decodeServerMessage(isBinary ? new Uint8Array(d) : d.toString('utf8')));
    } catch {
      received.push({ type: 'error', seq: -1, code: 'UNPARSEABLE_SERVER_MESSAGE' as never, message: 'client could not parse', fatal: false });
    }
  });
  await new Promise<void>((resolve) => {
    ws.once('open', () => resolve());
    ws.once('close', () => resolve());
  });
  let sent = 0;
  for (const a of script.actions) {
    if (ws.readyState !== WebSocket.OPEN) break;
    if (a.kind === 'close') {
      ws.terminate();
      break;
    }
    ws.send(a.data, { binary: a.kind === 'binary' });
    sent++;
    if (sent % 8 === 0) await new Promise((r) => setImmediate(r));
  }
  if (ws.readyState === WebSocket.OPEN) {
    ws.send(script.mode === 'json' ? JSON.stringify({ type: 'stop' }) : encodeClientMessage({ type: 'stop' }, 'msgpack'));
    sent++;
  }
  const timer = setTimeout(() => ws.terminate(), timeoutMs);
  await closed;
  clearTimeout(timer);
  const undocumentedErrors = received
    .filter((m) => m.type === 'error' && !Object.hasOwn(ERRORS, m.code))
    .map((m) => (m as { code: string }).code);
  return { sent, received, closeCode, undocumentedErrors };
}
