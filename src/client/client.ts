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
  type ServerMessage,
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

export class CaptionClient extends EventEmitter<CaptionClientEvents> {
  readonly ready: ReadyMessage;
  readonly ws: WebSocket;
  readonly mode: WireMode;
  #frameBytes: number;
  #minFrameBytes: number;
  #bytesPerFrame: number;
  #sampleRate: number;
  #pending: Buffer = Buffer.alloc(0);
  #sentSeconds = 0;
  #decodedSeconds = 0;
  #flow: boolean;
  #maxBacklog: number;
  #highWater: number;
  #waiters: (() => void)[] = [];
  #keepalive: NodeJS.Timeout | null = null;
  #keepaliveMs: number;
  #lastSend = Date.now();
  #end: EndMessage | null = null;
  #closed: { code: number; reason: string } | null = null;
  #stopped = false;

  /** Use connect(). */
  constructor(ws: WebSocket, ready: ReadyMessage, options: ConnectOptions, mode: WireMode) {
    super();
    this.ws = ws;
    this.ready = ready;
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
    this.#keepalive = setInterval(() => {
      if (Date.now() - this.#lastSend >= this.#keepaliveMs && this.ws.readyState === WebSocket.OPEN && !this.#stopped) {
        this.#sendControl({ type: 'keepalive' });
      }
    }, Math.max(250, Math.min(this.#keepaliveMs, 5000)));
    this.#keepalive.unref();
  }

  /** Seconds of audio sent and decoded so far (decoded from acks). */
  get sentSeconds(): number {
    return this.#sentSeconds;
  }
  get decodedSeconds(): number {
    return this.#decodedSeconds;
  }
  get ended(): EndMessage | null {
    return this.#end;
  }

  /** @internal */
  handle(msg: ServerMessage): void {
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

  /** @internal */
  handleClose(code: number, reason: string): void {
    this.#closed = { code, reason };
    if (this.#keepalive) clearInterval(this.#keepalive);
    this.emit('close', code, reason);
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  #blocked(): boolean {
    if (this.#closed || this.#end) return false;
    if (this.ws.bufferedAmount > this.#highWater) return true;
    return this.#flow && this.#sentSeconds - this.#decodedSeconds > this.#maxBacklog;
  }

  #sendControl(msg: Parameters<typeof encodeClientMessage>[0]): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(encodeClientMessage(msg, this.mode));
    this.#lastSend = Date.now();
  }

  #sendFrame(frame: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.mode === 'json') this.ws.send(frame, { binary: true });
    else this.ws.send(encodeClientMessage({ type: 'audio', data: frame }, 'msgpack'));
    this.#sentSeconds += frame.byteLength / this.#bytesPerFrame / this.#sampleRate;
    this.#lastSend = Date.now();
  }

  /** Queues audio (any length) and sends whole frames; returns false when backpressured. */
  send(pcm: Uint8Array | Int16Array | Float32Array): boolean {
    if (this.#stopped) throw new CaptionClientError('CLIENT_STOPPED', 'send after stop');
    const bytes = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, bytes]) : Buffer.from(bytes);
    while (this.#pending.length >= this.#frameBytes) {
      this.#sendFrame(this.#pending.subarray(0, this.#frameBytes));
      this.#pending = this.#pending.subarray(this.#frameBytes);
    }
    return !this.#blocked();
  }

  /**
   * Sends frame by frame, waiting before each one until the socket and the
   * server's backlog allow more: any amount can be written in one call.
   */
  async write(pcm: Uint8Array | Int16Array | Float32Array): Promise<void> {
    if (this.#stopped) throw new CaptionClientError('CLIENT_STOPPED', 'write after stop');
    const bytes = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, bytes]) : Buffer.from(bytes);
    while (this.#pending.length >= this.#frameBytes) {
      while (this.#blocked()) await new Promise<void>((r) => this.#waiters.push(r));
      if (this.#closed || this.#end) break;
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
    if (!this.#pending.length) return;
    let rest = this.#pending;
    this.#pending = Buffer.alloc(0);
    // The protocol's shortest frame is 10 ms: pad a shorter tail with silence.
    if (rest.length < this.#minFrameBytes) rest = Buffer.concat([rest, Buffer.alloc(this.#minFrameBytes - rest.length)]);
    this.#sendFrame(rest);
  }

  /** Sends what is buffered, asks the server to finish, resolves with `end`. */
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

  /** Closes the socket abruptly (no stop). */
  terminate(): void {
    this.ws.terminate();
  }

  close(): void {
    if (this.#keepalive) clearInterval(this.#keepalive);
    this.ws.close(1000);
  }
}

/** Opens a session; resolves once the server sends `ready`. */
export function connect(url: string, options: ConnectOptions): Promise<CaptionClient> {
  const mode = options.protocol ?? 'json';
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const ws = new WebSocket(url, [mode === 'msgpack' ? SUBPROTOCOL_MSGPACK : SUBPROTOCOL_JSON], {
    headers,
    perMessageDeflate: false,
    ...(options.tls?.ca !== undefined ? { ca: options.tls.ca } : {}),
    ...(options.tls?.rejectUnauthorized !== undefined ? { rejectUnauthorized: options.tls.rejectUnauthorized } : {}),
  });
  ws.binaryType = 'nodebuffer';
  return new Promise((resolve, reject) => {
    let client: CaptionClient | null = null;
    let earlyError: ErrorMessage | null = null;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new CaptionClientError('CLIENT_TIMEOUT', 'no ready message from the server'));
    }, options.connectTimeoutMs ?? 10_000);
    ws.on('open', () => {
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
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const msg = decodeServerMessage(isBinary ? new Uint8Array(data) : data.toString('utf8'));
      if (client) {
        client.handle(msg);
        return;
      }
      if (msg.type === 'ready') {
        clearTimeout(timer);
        client = new CaptionClient(ws, msg, options, mode);
        resolve(client);
      } else if (msg.type === 'error') {
        earlyError = msg;
      }
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (client) {
        client.handleClose(code, reason.toString());
        return;
      }
      clearTimeout(timer);
      reject(
        new CaptionClientError(
          earlyError?.code ?? 'CLIENT_CLOSED',
          earlyError?.message ?? `connection closed before ready (${code} ${reason.toString()})`,
          earlyError?.retryAfterMs,
          code,
        ),
      );
    });
    ws.on('unexpected-response', (req, res) => {
      clearTimeout(timer);
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
        reject(new CaptionClientError(code, `upgrade refused (${res.statusCode}): ${message}`));
        req.destroy();
        socket?.destroy();
      });
    });
    ws.on('error', (err) => {
      if (!client) {
        clearTimeout(timer);
        reject(err);
      }
    });
  });
}
