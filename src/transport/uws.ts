/**
 * The uWebSockets.js transport (the default): routes, upgrades and
 * WebSocket events onto the gateway's transport handlers.
 */
import {
  declaredLength,
  hasBody,
  parseProtocols,
  STATUS_TEXT,
  type ConnectionHandler,
  type HttpRequest,
  type HttpResponse,
  type Transport,
  type TransportHandlers,
  type TransportOptions,
  type UpgradeDecision,
  type UpgradeRequest,
  type WsConnection,
} from './types.js';
import { HTTP_SETTLE_MS, InFlight } from './in-flight.js';
import { CorkAnchor } from './uws-cork-anchor.js';
import { loadUws, type UwsHttpRequest, type UwsHttpResponse, type UwsWebSocket as NativeWebSocket } from './uws-native.js';

interface UserData {
  context: unknown;
  conn: UwsConnection | null;
  handler: ConnectionHandler | null;
  /** The socket closed while its handler was being made (see open). */
  closedEarly: { code: number; reason: string } | null;
}

type UwsWebSocket = NativeWebSocket<UserData>;

const textDecoder = new TextDecoder();

class UwsConnection implements WsConnection {
  readonly remoteAddress: string;
  #ws: UwsWebSocket;
  #open = true;
  constructor(ws: UwsWebSocket, remoteAddress: string) {
    this.#ws = ws;
    this.remoteAddress = remoteAddress;
  }
  markClosed(): void {
    this.#open = false;
  }
  send(data: string | Uint8Array, isBinary: boolean): void {
    if (this.#open) this.#ws.send(data, isBinary, false);
  }
  bufferedAmount(): number {
    return this.#open ? this.#ws.getBufferedAmount() : 0;
  }
  close(code: number, reason: string): void {
    if (!this.#open) return;
    this.#open = false;
    this.#ws.end(code, reason.slice(0, 120));
  }
  terminate(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#ws.close();
  }
  /** uWebSockets.js v20.30's WebSocket has no pause()/resume() (later versions do); the gateway holds frames instead. */
  readonly canPause = false;
  pause(): void {}
  resume(): void {}
}

function httpHeaders(req: UwsHttpRequest): Record<string, string> {
  const h: Record<string, string> = {};
  req.forEach((k, v) => {
    h[k.toLowerCase()] = v;
  });
  return h;
}

function writeResponse(res: UwsHttpResponse, r: HttpResponse, closeConnection = false): void {
  res.writeStatus(`${r.status} ${STATUS_TEXT[r.status] ?? ''}`);
  for (const [k, v] of Object.entries(r.headers ?? {})) res.writeHeader(k, v);
  res.end(r.body, closeConnection);
}

export function createUwsTransport<C>(handlers: TransportHandlers<C>, opts: TransportOptions): Transport {
  const { uws, native } = loadUws();
  const app = uws.App();
  // The JS fallback has no cork bug (its cork is a plain call) and no unix listener.
  const anchor = native ? new CorkAnchor(uws, opts.onWarning) : null;
  const connections = new Set<UwsConnection>();
  const inFlight = new InFlight();
  let listenToken: unknown = null;
  let closed = false;

  app.ws('/*', {
    compression: uws.DISABLED,
    maxPayloadLength: opts.maxPayloadBytes,
    // The gateway's outbox keeps each socket below maxBackpressureBytes; uWS
    // must never drop before that.
    maxBackpressure: opts.maxBackpressureBytes * 4,
    closeOnBackpressureLimit: false,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade: (res: UwsHttpResponse, req: UwsHttpRequest, context: unknown) => {
      // Everything from req must be read now; it is invalid after return.
      const headers = httpHeaders(req);
      const key = req.getHeader('sec-websocket-key');
      const extensions = req.getHeader('sec-websocket-extensions');
      const up: UpgradeRequest = {
        path: req.getUrl(),
        query: new URLSearchParams(req.getQuery() ?? ''),
        headers,
        remoteAddress: textDecoder.decode(res.getRemoteAddressAsText()),
        protocols: parseProtocols(headers['sec-websocket-protocol']),
      };
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      const finish = (d: UpgradeDecision<C>, late: boolean) => {
        if (aborted) return;
        if (!d.accept) {
          res.cork(() => writeResponse(res, { status: d.status, headers: { 'content-type': 'application/json', ...(d.headers ?? {}) }, body: d.body }));
          return;
        }
        const upgrade = () =>
          res.upgrade({ context: d.context, conn: null, handler: null, closedEarly: null } satisfies UserData, key, d.protocol ?? '', extensions, context);
        // Inside this handler uWS has the socket corked and finishes the upgrade itself; after it, see uws-cork-anchor.ts.
        if (late && anchor) anchor.upgradeLate(res, upgrade);
        else res.cork(upgrade);
      };
      let decision: UpgradeDecision<C> | Promise<UpgradeDecision<C>>;
      try {
        decision = handlers.upgrade(up);
      } catch (err) {
        decision = { accept: false, status: 500, body: JSON.stringify({ error: (err as Error).message }) };
      }
      if (decision instanceof Promise) {
        decision.then(
          (d) => finish(d, true),
          (err: unknown) => finish({ accept: false, status: 500, body: JSON.stringify({ error: (err as Error).message }) }, true),
        );
      } else finish(decision, false);
    },
    open: (ws: UwsWebSocket) => {
      const ud = ws.getUserData();
      const conn = new UwsConnection(ws, textDecoder.decode((ws as unknown as UwsHttpResponse).getRemoteAddressAsText()));
      ud.conn = conn;
      connections.add(conn);
      try {
        ud.handler = handlers.open(conn, ud.context as C);
      } catch (err) {
        opts.onHandlerError(err, conn);
      }
      // uWS runs the close handler synchronously inside end()/close(): a
      // handler that closed its own socket while it was being made (a
      // refusal) was not there to hear it. It hears it now.
      const early = ud.closedEarly;
      if (early && ud.handler) {
        ud.closedEarly = null;
        try {
          ud.handler.closed(early.code, early.reason);
        } catch (err) {
          opts.onHandlerError(err, conn);
        }
      }
    },
    message: (ws: UwsWebSocket, message: ArrayBuffer, isBinary: boolean) => {
      const ud = ws.getUserData();
      try {
        ud.handler?.message(new Uint8Array(message), isBinary);
      } catch (err) {
        if (ud.conn) opts.onHandlerError(err, ud.conn);
      }
    },
    drain: (ws: UwsWebSocket) => {
      const ud = ws.getUserData();
      try {
        ud.handler?.drain();
      } catch (err) {
        if (ud.conn) opts.onHandlerError(err, ud.conn);
      }
    },
    close: (ws: UwsWebSocket, code: number, message: ArrayBuffer) => {
      const ud = ws.getUserData();
      if (ud.conn) {
        ud.conn.markClosed();
        connections.delete(ud.conn);
      }
      if (!ud.handler) {
        ud.closedEarly = { code, reason: textDecoder.decode(message) };
        return;
      }
      try {
        ud.handler.closed(code, textDecoder.decode(message));
      } catch (err) {
        if (ud.conn) opts.onHandlerError(err, ud.conn);
      }
    },
  });

  app.any('/*', (res, req) => {
    const head = {
      method: req.getMethod().toUpperCase(),
      path: req.getUrl(),
      query: new URLSearchParams(req.getQuery() ?? ''),
      headers: httpHeaders(req),
      remoteAddress: textDecoder.decode(res.getRemoteAddressAsText()),
    };
    let aborted = false;
    let answered = false;
    const abortListeners: (() => void)[] = [];
    res.onAborted(() => {
      aborted = true;
      for (const f of abortListeners.splice(0)) f();
    });
    const done = (resp: HttpResponse, close = false) => {
      if (aborted || answered) return;
      answered = true;
      // close: the rest of the body is not read, so the connection cannot carry another request; uWS closes it after the answer.
      res.cork(() => writeResponse(res, resp, close));
    };
    const run = (body: Uint8Array) => {
      const r: HttpRequest = { ...head, body, onAbort: (f) => (aborted ? f() : abortListeners.push(f)) };
      const ended = inFlight.begin();
      // The client went away: nobody waits for the answer.
      if (aborted) ended();
      else abortListeners.push(ended);
      Promise.resolve()
        .then(() => handlers.http(r))
        .then(done, (err: unknown) => done({ status: 500, body: `internal error: ${(err as Error).message}` }))
        .finally(ended);
    };
    if (!hasBody(head.method) || (declaredLength(head.headers) ?? (head.headers['transfer-encoding'] ? -1 : 0)) === 0) {
      run(new Uint8Array(0));
      return;
    }
    const limit = opts.maxBodyBytes;
    const declared = declaredLength(head.headers);
    if (declared !== null && declared > limit) {
      done(opts.bodyTooLarge(head, limit), true);
      return;
    }
    // uWS lends each chunk only for the call: copy it. Memory grows with what arrives (doubling), never
    // with what is declared: a client declaring a large body and sending nothing costs 64 KiB.
    let buf = new Uint8Array(Math.min(declared ?? limit, 64 * 1024));
    let size = 0;
    res.onData((chunk, isLast) => {
      if (answered || aborted) return;
      const n = chunk.byteLength;
      if (size + n > limit) {
        done(opts.bodyTooLarge(head, limit), true);
        return;
      }
      if (size + n > buf.length) {
        const grown = new Uint8Array(Math.min(limit, Math.max(buf.length * 2, size + n)));
        grown.set(buf.subarray(0, size));
        buf = grown;
      }
      buf.set(new Uint8Array(chunk), size);
      size += n;
      if (isLast) run(buf.subarray(0, size));
    });
  });

  return {
    kind: 'uws',
    native,
    async listen(host, port) {
      // Without the anchor, late upgrades are still safe (uWS prints a warning for each): not a reason to refuse to start.
      await anchor?.open().catch(() => {});
      if (closed) throw new Error('the transport was closed before it listened');
      return new Promise((resolve, reject) => {
        app.listen(host, port, (token) => {
          if (!token) {
            reject(new Error(`uWebSockets.js could not listen on ${host}:${port}`));
            return;
          }
          listenToken = token;
          resolve(uws.us_socket_local_port(token));
        });
      });
    },
    connections() {
      return connections.size;
    },
    stopListening() {
      if (listenToken) {
        uws.us_listen_socket_close(listenToken);
        listenToken = null;
      }
    },
    async close() {
      closed = true;
      if (listenToken) {
        uws.us_listen_socket_close(listenToken);
        listenToken = null;
      }
      await inFlight.settled(HTTP_SETTLE_MS);
      for (const c of [...connections]) c.terminate();
      connections.clear();
      anchor?.close();
    },
  };
}
