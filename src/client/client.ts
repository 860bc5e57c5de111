/**
 * Node client for captiongate (bots, CLI, tests).
 *
 *   const c = await connect('ws://host:8080/v1/listen', { sampleRate: 48000, channels: 2 });
 *   c.on('final', (f) => console.log(f.text));
 *   await c.write(pcm);        // resolves when the server can take more
 *   const end = await c.stop(); // all finals delivered, then `end`
 *
 * - Audio is cut into frames of `frameMs` (10 ms - 1 s as the protocol
 *   requires); any byte split is fine, samples are never split.
 * - Backpressure: `write` waits while the socket buffer is above
 *   `highWaterBytes` and, with flow control (`ack`, on by default), while more
 *   than `maxBacklogSeconds` of sent audio is not yet decoded. So a file can be
 *   sent faster than real time without the server ever dropping it.
 * - Keepalive: a `keepalive` message after `keepaliveMs` without traffic.
 * - Resume: when the connection drops without a close frame, or the server
 *   closes it with 4014 "reconnect" (its node is draining), the client
 *   reconnects with the session's resume token (backoff, within the
 *   server's grace period), gets what it missed, and sends again the audio
 *   the server never received. Audio written meanwhile waits. A WebSocket
 *   ping every `heartbeatMs` finds a connection that died silently.
 *   Behind a load balancer the same URL reaches another node; without one,
 *   `resume.urls` (or `resume.nextUrl`) names where to go.
 */
import { EventEmitter } from 'node:events';

import WebSocket from 'ws';

import { decodeServerMessage, encodeClientMessage } from '../protocol/codec.js';
import {
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_MSGPACK,
  type AckMessage,
  type EndMessage,
  type ErrorMessage,
  type FinalMessage,
  type PartialMessage,
  type ReadyMessage,
  type ResumedMessage,
  type ServerMessage,
  type WireMessage,
  type SessionMeta,
  type WarningMessage,
  type WireMode,
} from '../protocol/messages.js';

export interface ConnectOptions {
  sampleRate: number;
  channels?: 1 | 2;
  encoding?: 's16le' | 'f32le';
  interim?: boolean;
  language?: 'en';
  sessionId?: string;
  meta?: SessionMeta;
  /** Wire encoding of messages (default json). */
  protocol?: WireMode;
  /** Bearer token (sent as Authorization header). */
  token?: string;
  headers?: Record<string, string>;
  /** Frame length in ms (default 100). */
  frameMs?: number;
  /** Ask the server for acks and keep at most maxBacklogSeconds undecoded (default true). */
  flowControl?: boolean;
  maxBacklogSeconds?: number;
  highWaterBytes?: number;
  keepaliveMs?: number;
  /** Reject connect() after this long without `ready` (default 10 s). */
  connectTimeoutMs?: number;
  /** For wss:// behind your own TLS terminator: a CA to trust (PEM), or skip verification (tests only). */
  tls?: { ca?: string | Buffer; rejectUnauthorized?: boolean };
  /** Resume after a dropped connection (default on); false turns it off. */
  resume?: boolean | ResumeOptions;
  /** Ping the server this often; no pong by the next ping is a dead connection (default 15 s; 0: off). */
  heartbeatMs?: number;
}

export interface ResumeOptions {
  /** First retry delay (default 250 ms); each retry doubles it, up to maxDelayMs (default 4 s). */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this long (default: the server's resumeGraceSeconds). */
  giveUpAfterMs?: number;
  /** Audio kept to send again after a resume, and written while reconnecting, in seconds (default 30). */
  bufferSeconds?: number;
  /**
   * Gateway URLs to resume on, tried in turn from the one after the
   * current (several nodes without a load balancer). Default: the URL
   * connected to.
   */
  urls?: string[];
  /** Or choose each attempt's URL yourself (wins over `urls`). */
  nextUrl?: (attempt: number, current: string) => string;
}

export interface CaptionClientEvents {
  ready: [ReadyMessage];
  partial: [PartialMessage];
  final: [FinalMessage];
  warning: [WarningMessage];
  error: [ErrorMessage];
  ack: [AckMessage];
  end: [EndMessage];
  message: [ServerMessage];
  close: [number, string];
  /** The connection dropped; a resume is attempted after delayMs. */
  reconnecting: [{ attempt: number; delayMs: number; reason: string }];
  /** The session is back on a new connection. */
  resumed: [ResumedMessage];
  /** Audio that could not be kept for a resume (bufferSeconds passed), in seconds. */
  audioLost: [number];
}

export class CaptionClientError extends Error {
  readonly code: string;
  readonly retryAfterMs: number | undefined;
  readonly closeCode: number | undefined;
  constructor(code: string, message: string, retryAfterMs?: number, closeCode?: number) {
    super(message);
    this.name = 'CaptionClientError';
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    this.closeCode = closeCode;
  }
}

/** Sent audio kept for a resume: whole frames, with the position of the first. */
class SentAudio {
  #chunks: Buffer[] = [];
  #bytes = 0;
  /** Frame position (in sample frames) of the first byte kept. */
  #start = 0;
  #maxBytes: number;
  #bytesPerFrame: number;

  constructor(maxBytes: number, bytesPerFrame: number) {
    this.#maxBytes = maxBytes;
    this.#bytesPerFrame = bytesPerFrame;
  }

  push(frame: Buffer): void {
    this.#chunks.push(frame);
    this.#bytes += frame.length;
    while (this.#bytes - (this.#chunks[0]?.length ?? 0) >= this.#maxBytes && this.#chunks.length > 1) {
      const c = this.#chunks.shift()!;
      this.#bytes -= c.length;
      this.#start += c.length / this.#bytesPerFrame;
    }
  }

  /** The audio from frame `from` on, and how many frames before it are no longer kept. */
  since(from: number): { audio: Buffer; missing: number } {
    const all = Buffer.concat(this.#chunks);
    const skip = Math.max(0, from - this.#start) * this.#bytesPerFrame;
    return { audio: all.subarray(Math.min(skip, all.length)), missing: Math.max(0, this.#start - from) };
  }

  /** After a resume: what is sent again is pushed again. */
  clear(position: number): void {
    this.#chunks = [];
    this.#bytes = 0;
    this.#start = position;
  }
}

const ABNORMAL_CLOSURE = 1006;
/** The server's node is draining: resume elsewhere (docs/protocol.md). */
const RECONNECT = 4014;

export class CaptionClient extends EventEmitter<CaptionClientEvents> {
  readonly ready: ReadyMessage;
  readonly mode: WireMode;
  #ws: WebSocket;
  #url: string;
  #options: ConnectOptions;
  #frameBytes: number;
  #minFrameBytes: number;
  #bytesPerFrame: number;
  #sampleRate: number;
  #pending: Buffer = Buffer.alloc(0);
  /** Sample frames sent on any connection (a resume rolls it back to what the server has). */
  #sentFrames = 0;
  #decodedSeconds = 0;
  #flow: boolean;
  #maxBacklog: number;
  #highWater: number;
  #waiters: (() => void)[] = [];
  #keepalive: NodeJS.Timeout | null = null;
  #keepaliveMs: number;
  #heartbeat: NodeJS.Timeout | null = null;
  #heartbeatMs: number;
  #lastSend = Date.now();
  #end: EndMessage | null = null;
  #closed: { code: number; reason: string } | null = null;
  #stopped = false;
  #lastSeq = 0;
  #resume: (Required<Omit<ResumeOptions, 'urls' | 'nextUrl'>> & Pick<ResumeOptions, 'urls' | 'nextUrl'>) | null;
  #sent: SentAudio | null;
  /** Reconnecting: no socket to send on; audio waits in #pending. */
  #reconnecting = false;
  #closing = false;

  /** Use connect(). */
  constructor(ws: WebSocket, ready: ReadyMessage, url: string, options: ConnectOptions, mode: WireMode) {
    super();
    this.#ws = ws;
    this.ready = ready;
    this.#lastSeq = ready.seq;
    this.#url = url;
    this.#options = options;
    this.mode = mode;
    const channels = options.channels ?? 1;
    this.#sampleRate = options.sampleRate;
    this.#bytesPerFrame = channels * ((options.encoding ?? 's16le') === 's16le' ? 2 : 4);
    const frames = Math.max(1, Math.round(((options.frameMs ?? 100) * options.sampleRate) / 1000));
    this.#frameBytes = Math.min(frames, options.sampleRate) * this.#bytesPerFrame;
    this.#minFrameBytes = Math.ceil((10 * options.sampleRate) / 1000) * this.#bytesPerFrame;
    this.#flow = options.flowControl !== false;
    this.#maxBacklog = options.maxBacklogSeconds ?? 1.0;
    this.#highWater = options.highWaterBytes ?? 256 * 1024;
    this.#keepaliveMs = options.keepaliveMs ?? 10_000;
    this.#heartbeatMs = options.heartbeatMs ?? 15_000;
    const r = options.resume === false ? null : options.resume === true || options.resume === undefined ? {} : options.resume;
    this.#resume = r && {
      initialDelayMs: r.initialDelayMs ?? 250,
      maxDelayMs: r.maxDelayMs ?? 4000,
      giveUpAfterMs: r.giveUpAfterMs ?? (ready.limits.resumeGraceSeconds ?? 0) * 1000,
      bufferSeconds: r.bufferSeconds ?? 30,
      ...(r.urls ? { urls: r.urls } : {}),
      ...(r.nextUrl ? { nextUrl: r.nextUrl } : {}),
    };
    this.#sent = this.#resume ? new SentAudio(Math.ceil(this.#resume.bufferSeconds * options.sampleRate) * this.#bytesPerFrame, this.#bytesPerFrame) : null;
    this.#keepalive = setInterval(() => {
      if (Date.now() - this.#lastSend >= this.#keepaliveMs && this.#open && !this.#stopped) {
        this.#sendControl({ type: 'keepalive' });
      }
    }, Math.max(250, Math.min(this.#keepaliveMs, 5000)));
    this.#keepalive.unref();
    this.#attach(ws);
  }

  /** The current connection (a new one after each resume). */
  get ws(): WebSocket {
    return this.#ws;
  }
  /** Seconds of audio sent and decoded so far (decoded from acks). */
  get sentSeconds(): number {
    return this.#sentFrames / this.#sampleRate;
  }
  get decodedSeconds(): number {
    return this.#decodedSeconds;
  }
  get ended(): EndMessage | null {
    return this.#end;
  }
  /** The URL of the current connection's gateway (another after a resume elsewhere). */
  get url(): string {
    return this.#url;
  }
  /** The last session seq received. */
  get lastSeq(): number {
    return this.#lastSeq;
  }
  get #open(): boolean {
    return !this.#reconnecting && this.#ws.readyState === WebSocket.OPEN;
  }

  #attach(ws: WebSocket): void {
    this.#ws = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (ws !== this.#ws) return;
      this.handle(decodeServerMessage(isBinary ? new Uint8Array(data) : data.toString('utf8')));
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (ws === this.#ws) this.#onClose(code, reason.toString());
    });
    ws.on('error', () => {}); // a close follows
    if (this.#heartbeatMs > 0) {
      let alive = true;
      ws.on('pong', () => (alive = true));
      if (this.#heartbeat) clearInterval(this.#heartbeat);
      this.#heartbeat = setInterval(() => {
        if (ws !== this.#ws || ws.readyState !== WebSocket.OPEN) return;
        // No pong since the last ping: the network is gone (no FIN will come).
        if (!alive) ws.terminate();
        else {
          alive = false;
          ws.ping();
        }
      }, this.#heartbeatMs);
      this.#heartbeat.unref();
    }
  }

  /** @internal */
  handle(msg: WireMessage): void {
    if (msg.type === 'resumed') return;
    // A replay never repeats what was seen; this only guards against a server that would.
    if (msg.seq <= this.#lastSeq && msg.type !== 'ready') return;
    this.#lastSeq = Math.max(this.#lastSeq, msg.seq);
    this.emit('message', msg);
    switch (msg.type) {
      case 'partial':
        this.emit('partial', msg);
        break;
      case 'final':
        this.emit('final', msg);
        break;
      case 'warning':
        this.emit('warning', msg);
        break;
      case 'error':
        if (this.listenerCount('error') > 0) this.emit('error', msg);
        break;
      case 'ack':
        this.#decodedSeconds = msg.decodedSeconds;
        this.emit('ack', msg);
        this.#wake();
        break;
      case 'end':
        this.#end = msg;
        this.emit('end', msg);
        this.#wake();
        break;
      case 'ready':
        break;
    }
  }

  #onClose(code: number, reason: string): void {
    if (!this.#end && !this.#closing && this.#resume && (code === ABNORMAL_CLOSURE || code === RECONNECT)) {
      void this.#reconnect(code === RECONNECT ? 'the server asked to reconnect (4014: its node is draining)' : reason || 'connection dropped');
      return;
    }
    this.#finalClose(code, reason);
  }

  #finalClose(code: number, reason: string): void {
    this.#closed = { code, reason };
    this.#reconnecting = false;
    if (this.#keepalive) clearInterval(this.#keepalive);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.emit('close', code, reason);
    this.#wake();
  }

  /** Reconnects with backoff until the session is back, the server refuses, or the grace period has passed. */
  async #reconnect(why: string): Promise<void> {
    const r = this.#resume!;
    this.#reconnecting = true;
    const since = Date.now();
    let delay = r.initialDelayMs;
    let last = why;
    for (let attempt = 1; ; attempt++) {
      if (this.#closing) return this.#finalClose(ABNORMAL_CLOSURE, 'closed while reconnecting');
      if (Date.now() - since + delay > r.giveUpAfterMs) break;
      this.emit('reconnecting', { attempt, delayMs: delay, reason: last });
      await new Promise((res) => setTimeout(res, delay));
      if (this.#closing) return this.#finalClose(ABNORMAL_CLOSURE, 'closed while reconnecting');
      const base = this.#nextUrl(attempt);
      const url = new URL(base);
      url.searchParams.set('resume', this.ready.resumeToken);
      url.searchParams.set('lastSeq', String(this.#lastSeq));
      try {
        const ws = openSocket(url.toString(), this.#options, this.mode);
        const opened = await firstMessage(ws, 'resumed', this.#options.connectTimeoutMs ?? 10_000);
        this.#url = base;
        this.#resumed(ws, opened);
        return;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
        // The session is gone (ended, expired): retrying cannot help.
        if (err instanceof CaptionClientError && err.code === 'CAP_ERR_RESUME_REFUSED') {
          return this.#finalClose(err.closeCode ?? 4012, last);
        }
      }
      delay = Math.min(r.maxDelayMs, delay * 2);
    }
    this.#finalClose(ABNORMAL_CLOSURE, `could not resume within ${r.giveUpAfterMs} ms: ${last}`);
  }

  /** Where attempt n goes: `nextUrl`, else the next of `urls` after the current one, else the same URL. */
  #nextUrl(attempt: number): string {
    const r = this.#resume!;
    if (r.nextUrl) return r.nextUrl(attempt, this.#url);
    const urls = r.urls;
    if (!urls?.length) return this.#url;
    const at = urls.indexOf(this.#url);
    return urls[(at + attempt) % urls.length]!;
  }

  #resumed(ws: WebSocket, opened: Opened<ResumedMessage>): void {
    this.#reconnecting = false;
    const msg = opened.first;
    this.emit('resumed', msg);
    // The replay, in order: what came with `resumed`, then the live socket.
    for (const m of opened.takeRest()) this.handle(m);
    this.#attach(ws);
    // Audio the server never got goes again, ahead of what waited.
    const { audio, missing } = this.#sent!.since(msg.receivedFrames);
    if (missing > 0) this.emit('audioLost', missing / this.#sampleRate);
    this.#sentFrames = msg.receivedFrames + missing;
    this.#sent!.clear(this.#sentFrames);
    if (audio.length) this.#pending = Buffer.concat([audio, this.#pending]);
    this.#drainPending();
    if (this.#stopped) {
      // The stop may have been lost with the connection; a second one is harmless.
      this.#sendRemainder();
      this.#sendControl({ type: 'stop' });
    }
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  #blocked(): boolean {
    if (this.#closed || this.#end) return false;
    if (this.#reconnecting) return true;
    if (this.#ws.bufferedAmount > this.#highWater) return true;
    return this.#flow && this.sentSeconds - this.#decodedSeconds > this.#maxBacklog;
  }

  #sendControl(msg: Parameters<typeof encodeClientMessage>[0]): void {
    if (!this.#open) return;
    this.#ws.send(encodeClientMessage(msg, this.mode));
    this.#lastSend = Date.now();
  }

  #sendFrame(frame: Buffer): void {
    if (this.mode === 'json') this.#ws.send(frame, { binary: true });
    else this.#ws.send(encodeClientMessage({ type: 'audio', data: frame }, 'msgpack'));
    this.#sent?.push(Buffer.from(frame));
    this.#sentFrames += frame.byteLength / this.#bytesPerFrame;
    this.#lastSend = Date.now();
  }

  /** Sends the whole frames waiting in #pending (none while reconnecting: they wait). */
  #drainPending(): void {
    while (this.#open && this.#pending.length >= this.#frameBytes) {
      this.#sendFrame(this.#pending.subarray(0, this.#frameBytes));
      this.#pending = this.#pending.subarray(this.#frameBytes);
    }
    this.#boundPending();
  }

  /** While reconnecting, audio waits, up to bufferSeconds; older audio beyond that is lost (and reported). */
  #boundPending(): void {
    if (!this.#reconnecting || !this.#resume) return;
    const max = Math.ceil(this.#resume.bufferSeconds * this.#sampleRate) * this.#bytesPerFrame;
    if (this.#pending.length <= max) return;
    const cut = this.#pending.length - max;
    this.#pending = this.#pending.subarray(cut);
    this.emit('audioLost', cut / this.#bytesPerFrame / this.#sampleRate);
  }

  #queue(pcm: Uint8Array | Int16Array | Float32Array): void {
    const bytes = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, bytes]) : Buffer.from(bytes);
  }

  /** Queues audio (any length) and sends whole frames; returns false when backpressured. */
  send(pcm: Uint8Array | Int16Array | Float32Array): boolean {
    if (this.#stopped) throw new CaptionClientError('CLIENT_STOPPED', 'send after stop');
    this.#queue(pcm);
    this.#drainPending();
    return !this.#blocked();
  }

  /**
   * Sends frame by frame, waiting before each one until the socket and the
   * server's backlog allow more: any amount can be written in one call.
   * While a resume is under way it waits for it.
   */
  async write(pcm: Uint8Array | Int16Array | Float32Array): Promise<void> {
    if (this.#stopped) throw new CaptionClientError('CLIENT_STOPPED', 'write after stop');
    this.#queue(pcm);
    while (this.#pending.length >= this.#frameBytes) {
      while (this.#blocked()) await new Promise<void>((r) => this.#waiters.push(r));
      if (this.#closed || this.#end) break;
      // A resume during the wait may have sent what was pending (#drainPending):
      // never send a short (or empty) frame in its place.
      if (this.#pending.length < this.#frameBytes) break;
      this.#sendFrame(this.#pending.subarray(0, this.#frameBytes));
      this.#pending = this.#pending.subarray(this.#frameBytes);
    }
    while (this.#blocked()) await new Promise<void>((r) => this.#waiters.push(r));
    if (this.#closed && !this.#end) throw new CaptionClientError('CLIENT_CLOSED', `connection closed (${this.#closed.code} ${this.#closed.reason})`);
  }

  /** Finalize the current utterance now. */
  flush(): void {
    this.#sendRemainder();
    this.#sendControl({ type: 'flush' });
  }

  #sendRemainder(): void {
    if (!this.#open) return;
    this.#drainPending();
    if (!this.#pending.length) return;
    let rest = this.#pending;
    this.#pending = Buffer.alloc(0);
    // The protocol's shortest frame is 10 ms: pad a shorter tail with silence.
    if (rest.length < this.#minFrameBytes) rest = Buffer.concat([rest, Buffer.alloc(this.#minFrameBytes - rest.length)]);
    this.#sendFrame(rest);
  }

  /** Sends what is buffered, asks the server to finish, resolves with `end` (after a resume if need be). */
  async stop(): Promise<EndMessage> {
    if (!this.#stopped) {
      this.#sendRemainder();
      this.#stopped = true;
      this.#sendControl({ type: 'stop' });
    }
    while (!this.#end && !this.#closed) await new Promise<void>((r) => this.#waiters.push(r));
    if (this.#end) return this.#end;
    throw new CaptionClientError('CLIENT_CLOSED', `connection closed before end (${this.#closed!.code} ${this.#closed!.reason})`, undefined, this.#closed!.code);
  }

  /** Closes the socket abruptly (no stop); with resume on, the client then resumes. */
  terminate(): void {
    this.#ws.terminate();
  }

  /** Closes the connection (a close frame: the server ends the session). */
  close(): void {
    this.#closing = true;
    if (this.#keepalive) clearInterval(this.#keepalive);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#ws.close(1000);
  }
}

function openSocket(url: string, options: ConnectOptions, mode: WireMode): WebSocket {
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const ws = new WebSocket(url, [mode === 'msgpack' ? SUBPROTOCOL_MSGPACK : SUBPROTOCOL_JSON], {
    headers,
    perMessageDeflate: false,
    ...(options.tls?.ca !== undefined ? { ca: options.tls.ca } : {}),
    ...(options.tls?.rejectUnauthorized !== undefined ? { rejectUnauthorized: options.tls.rejectUnauthorized } : {}),
  });
  ws.binaryType = 'nodebuffer';
  return ws;
}

/**
 * Opens a socket and waits for its first message: `ready` (a new session)
 * or `resumed` (then its replay, up to the first live message, is collected
 * by the caller's handler). Rejects with the server's error.
 */
function firstMessage<T extends WireMessage['type']>(
  ws: WebSocket,
  want: T,
  timeoutMs: number,
  onOpen?: () => void,
): Promise<Opened<Extract<WireMessage, { type: T }>>> {
  return new Promise((resolve, reject) => {
    let earlyError: ErrorMessage | null = null;
    let settled = false;
    const done = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.off('message', onMessage);
      f();
    };
    const timer = setTimeout(() => done(() => (ws.terminate(), reject(new CaptionClientError('CLIENT_TIMEOUT', `no ${want} message from the server`)))), timeoutMs);
    const onMessage = (data: Buffer, isBinary: boolean) => {
      const msg = decodeServerMessage(isBinary ? new Uint8Array(data) : data.toString('utf8'));
      if (msg.type === want) {
        // What follows in the same read arrives before the caller attaches:
        // it is kept, in order, until the caller takes it.
        const rest: WireMessage[] = [];
        const keep = (d: Buffer, b: boolean) => rest.push(decodeServerMessage(b ? new Uint8Array(d) : d.toString('utf8')));
        ws.on('message', keep);
        done(() =>
          resolve({
            first: msg as Extract<WireMessage, { type: T }>,
            takeRest: () => (ws.off('message', keep), rest),
          }),
        );
      } else if (msg.type === 'error') earlyError = msg;
    };
    if (onOpen) ws.on('open', onOpen);
    ws.on('message', onMessage);
    ws.on('close', (code: number, reason: Buffer) =>
      done(() =>
        reject(
          new CaptionClientError(
            earlyError?.code ?? (code === 4012 ? 'CAP_ERR_RESUME_REFUSED' : 'CLIENT_CLOSED'),
            earlyError?.message ?? `connection closed before ${want} (${code} ${reason.toString()})`,
            earlyError?.retryAfterMs,
            code,
          ),
        ),
      ),
    );
    ws.on('unexpected-response', (req, res) => {
      // Node 20's global agent keeps sockets alive; this one must not linger.
      const socket = res.socket;
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        let code = `HTTP_${res.statusCode}`;
        let message = body;
        try {
          const j = JSON.parse(body) as { error?: { code?: string; message?: string } };
          code = j.error?.code ?? code;
          message = j.error?.message ?? body;
        } catch {}
        done(() => reject(new CaptionClientError(code, `upgrade refused (${res.statusCode}): ${message}`)));
        req.destroy();
        socket?.destroy();
      });
    });
    ws.on('error', (err) => done(() => reject(err)));
  });
}

interface Opened<M> {
  first: M;
  /** Messages received after `first` and before the caller attached; stops collecting. */
  takeRest(): WireMessage[];
}

/** Opens a session; resolves once the server sends `ready`. */
export async function connect(url: string, options: ConnectOptions): Promise<CaptionClient> {
  const mode = options.protocol ?? 'json';
  const ws = openSocket(url, options, mode);
  const opened = await firstMessage(ws, 'ready', options.connectTimeoutMs ?? 10_000, () => {
    const start: Record<string, unknown> = {
      type: 'start',
      sampleRate: options.sampleRate,
      channels: options.channels ?? 1,
      encoding: options.encoding ?? 's16le',
      ack: options.flowControl !== false,
    };
    if (options.interim !== undefined) start.interim = options.interim;
    if (options.language) start.language = options.language;
    if (options.sessionId) start.sessionId = options.sessionId;
    if (options.meta) start.meta = options.meta;
    ws.send(encodeClientMessage(start as Parameters<typeof encodeClientMessage>[0], mode));
  });
  const client = new CaptionClient(ws, opened.first, url, options, mode);
  for (const m of opened.takeRest()) client.handle(m);
  return client;
}
