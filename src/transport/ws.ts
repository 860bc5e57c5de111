/**
 * ws-based transport: the fallback, selectable with server.transport = "ws".
 * Same contract as the uWS transport; the same test suite runs on both.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';

import { WebSocketServer, type WebSocket } from 'ws';

import { HTTP_SETTLE_MS, InFlight } from './in-flight.js';
import {
  declaredLength,
  hasBody,
  type ConnectionHandler,
  parseProtocols,
  STATUS_TEXT,
  type HttpRequest,
  type HttpResponse,
  type Transport,
  type TransportHandlers,
  type TransportOptions,
  type UpgradeDecision,
  type UpgradeRequest,
  type WsConnection,
} from './types.js';

const PING_MS = 30_000;

class WsConn implements WsConnection {
  readonly remoteAddress: string;
  #ws: WebSocket;
  #drainWanted = false;
  #onDrain: () => void = () => {};
  #threshold: number;
  alive = true;

  constructor(ws: WebSocket, remoteAddress: string, threshold: number) {
    this.#ws = ws;
    this.remoteAddress = remoteAddress;
    this.#threshold = threshold;
  }
  setDrainHandler(f: () => void): void {
    this.#onDrain = f;
  }
  #open(): boolean {
    return this.#ws.readyState === this.#ws.OPEN;
  }
  send(data: string | Uint8Array, isBinary: boolean): void {
    if (!this.#open()) return;
    this.#ws.send(data, { binary: isBinary }, (err) => {
      // Written to the socket: the browser-style "drain" signal.
      if (!err && this.#drainWanted && this.#ws.bufferedAmount < this.#threshold) {
        this.#drainWanted = false;
        this.#onDrain();
      }
    });
    if (this.#ws.bufferedAmount >= this.#threshold) this.#drainWanted = true;
  }
  bufferedAmount(): number {
    const n = this.#ws.bufferedAmount;
    if (n > 0) this.#drainWanted = true;
    return n;
  }
  close(code: number, reason: string): void {
    if (this.#ws.readyState === this.#ws.OPEN || this.#ws.readyState === this.#ws.CONNECTING) {
      this.#ws.close(code, reason.slice(0, 120));
    }
  }
  terminate(): void {
    this.#ws.terminate();
  }
  readonly canPause = true;
  pause(): void {
    this.#ws.pause();
  }
  resume(): void {
    this.#ws.resume();
  }
  ping(): void {
    if (this.#open()) this.#ws.ping();
  }
}

function headersOf(req: http.IncomingMessage): Record<string, string> {
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) h[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  return h;
}

function rejectUpgrade(socket: Duplex, status: number, body: string, headers: Readonly<Record<string, string>> = {}): void {
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}`,
    'Connection: close',
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

export function createWsTransport<C>(handlers: TransportHandlers<C>, opts: TransportOptions): Transport {
  const chosen = new WeakMap<http.IncomingMessage, string | null>();
  const conns = new Set<WsConn>();
  const inFlight = new InFlight();
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: opts.maxPayloadBytes,
    perMessageDeflate: false,
    clientTracking: false,
    // Text frames are validated by the protocol codec, which answers invalid
    // UTF-8 with CAP_ERR_INVALID_JSON instead of a bare 1007 close.
    skipUTF8Validation: true,
    handleProtocols: (_protocols, req) => chosen.get(req) ?? false,
  });

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const head = {
      method: (req.method ?? 'GET').toUpperCase(),
      path: url.pathname,
      query: url.searchParams,
      headers: headersOf(req),
      remoteAddress: req.socket.remoteAddress ?? '',
    };
    let answered = false;
    const abortListeners: (() => void)[] = [];
    // The response closing before it was written: the client went away.
    res.on('close', () => {
      if (!res.writableFinished) for (const f of abortListeners.splice(0)) f();
    });
    const done = (resp: HttpResponse, close = false) => {
      if (answered || res.destroyed) return;
      answered = true;
      const headers = { ...(resp.headers ?? {}), ...(close ? { connection: 'close' } : {}) };
      res.writeHead(resp.status, headers as http.OutgoingHttpHeaders);
      res.end(resp.body);
      // The rest of the body is not read: stop reading it and drop the connection once the answer is out.
      if (close) {
        req.pause();
        res.on('finish', () => req.socket.destroy());
      }
    };
    const run = (body: Uint8Array) => {
      const r: HttpRequest = { ...head, body, onAbort: (f) => (res.destroyed ? f() : abortListeners.push(f)) };
      // Counted out when the answer has gone out (or the client has gone), not when it was handed to Node.
      const ended = inFlight.begin();
      if (res.destroyed) ended();
      else res.once('close', ended);
      Promise.resolve()
        .then(() => handlers.http(r))
        .then(done, (err: unknown) => done({ status: 500, body: `internal error: ${(err as Error).message}` }));
    };
    if (!hasBody(head.method)) {
      req.resume();
      run(new Uint8Array(0));
      return;
    }
    const limit = opts.maxBodyBytes;
    const declared = declaredLength(head.headers);
    if (declared !== null && declared > limit) {
      done(opts.bodyTooLarge(head, limit), true);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (answered) return;
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        done(opts.bodyTooLarge(head, limit), true);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!answered) run(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    req.on('error', () => {
      for (const f of abortListeners.splice(0)) f();
    });
  });

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const headers = headersOf(req);
    const up: UpgradeRequest = {
      path: url.pathname,
      query: url.searchParams,
      headers,
      remoteAddress: req.socket.remoteAddress ?? '',
      protocols: parseProtocols(headers['sec-websocket-protocol']),
    };
    socket.on('error', () => socket.destroy());
    const finish = (d: UpgradeDecision<C>) => {
      if (socket.destroyed) return;
      if (!d.accept) {
        rejectUpgrade(socket, d.status, d.body, d.headers);
        return;
      }
      chosen.set(req, d.protocol);
      wss.handleUpgrade(req, socket, head, (ws) => {
        const conn = new WsConn(ws, up.remoteAddress, opts.maxBackpressureBytes);
        conns.add(conn);
        const guard = (fn: () => void) => {
          try {
            fn();
          } catch (err) {
            opts.onHandlerError(err, conn);
          }
        };
        let handler: ConnectionHandler | null = null;
        guard(() => (handler = handlers.open(conn, d.context)));
        conn.setDrainHandler(() => guard(() => handler?.drain()));
        ws.on('message', (data: Buffer, isBinary: boolean) => guard(() => handler?.message(data, isBinary)));
        ws.on('pong', () => {
          conn.alive = true;
        });
        ws.on('error', () => {});
        ws.on('close', (code: number, reason: Buffer) => {
          conns.delete(conn);
          guard(() => handler?.closed(code, reason.toString()));
        });
      });
    };
    let d: UpgradeDecision<C> | Promise<UpgradeDecision<C>>;
    try {
      d = handlers.upgrade(up);
    } catch (err) {
      d = { accept: false, status: 500, body: JSON.stringify({ error: (err as Error).message }) };
    }
    if (d instanceof Promise) d.then(finish, (err: unknown) => finish({ accept: false, status: 500, body: JSON.stringify({ error: (err as Error).message }) }));
    else finish(d);
  });

  // Find dead TCP peers (uWS does this with sendPingsAutomatically).
  const pinger = setInterval(() => {
    for (const c of conns) {
      if (!c.alive) {
        c.terminate();
        continue;
      }
      c.alive = false;
      c.ping();
    }
  }, PING_MS);
  pinger.unref();

  return {
    kind: 'ws',
    native: true,
    listen(host, port) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const addr = server.address();
          resolve(typeof addr === 'object' && addr ? addr.port : port);
        });
      });
    },
    connections() {
      return conns.size;
    },
    stopListening() {
      server.close();
    },
    async close() {
      clearInterval(pinger);
      await inFlight.settled(HTTP_SETTLE_MS);
      for (const c of conns) c.terminate();
      conns.clear();
      server.closeAllConnections();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
