/**
 * What a transport offers the gateway, and what the gateway hands back.
 * Transports only move bytes: upgrade requests in, decisions out; frames
 * in, frames out; they know nothing of sessions or the protocol.
 */

export interface UpgradeRequest {
  readonly path: string;
  readonly query: URLSearchParams;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly remoteAddress: string;
  /** Requested subprotocols, in the client's order. */
  readonly protocols: readonly string[];
}

export type UpgradeDecision<C> =
  | { readonly accept: true; readonly protocol: string | null; readonly context: C }
  | { readonly accept: false; readonly status: number; readonly body: string; readonly headers?: Readonly<Record<string, string>> };

export interface WsConnection {
  readonly remoteAddress: string;
  /** Sends one frame. Never throws on a closed connection. */
  send(data: string | Uint8Array, isBinary: boolean): void;
  bufferedAmount(): number;
  /** Close handshake with a code and a short reason. */
  close(code: number, reason: string): void;
  /** Drop the TCP connection without a close frame. */
  terminate(): void;
  /**
   * Whether pause() really stops reading the socket (so TCP pushes back on
   * the sender). The pinned uWebSockets.js build (v20.30) has no WebSocket
   * pause; ws has.
   */
  readonly canPause?: boolean;
  /** Stop reading from the socket (no-op where canPause is false). Frames already read may still arrive. */
  pause?(): void;
  /** Read again. */
  resume?(): void;
}

export interface ConnectionHandler {
  /** `data` is only valid during the call. */
  message(data: Uint8Array, isBinary: boolean): void;
  drain(): void;
  closed(code: number, reason: string): void;
}

export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly headers: Readonly<Record<string, string>>;
  readonly remoteAddress: string;
  /**
   * The whole request body (empty for GET and HEAD), at most
   * TransportOptions.maxBodyBytes: a larger one is answered by
   * `bodyTooLarge` before more of it is buffered.
   */
  readonly body: Uint8Array;
  /** Called once if the client goes away before the response is written (long requests stop their work). */
  onAbort(listener: () => void): void;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body: string | Uint8Array;
}

export interface TransportHandlers<C> {
  upgrade(req: UpgradeRequest): UpgradeDecision<C> | Promise<UpgradeDecision<C>>;
  open(conn: WsConnection, context: C): ConnectionHandler;
  http(req: HttpRequest): HttpResponse | Promise<HttpResponse>;
}

export interface TransportOptions {
  /** Hard ceiling per WebSocket message; larger ones close the socket with 1009. */
  readonly maxPayloadBytes: number;
  /** The gateway keeps sockets below this; the transport must not drop before it. */
  readonly maxBackpressureBytes: number;
  /**
   * A connection's handler threw. The transport stays up and tells the
   * gateway, which logs it and closes that connection.
   */
  readonly onHandlerError: (err: unknown, conn: WsConnection) => void;
  /** Largest HTTP request body buffered; a larger one gets `bodyTooLarge` (413) and the connection is closed. */
  readonly maxBodyBytes: number;
  /** The 413 answer, in the dialect of the route asked for (the body is not handed to `http`). */
  readonly bodyTooLarge: (req: Omit<HttpRequest, 'body' | 'onAbort'>, limit: number) => HttpResponse;
  /** Something the operator should know that ends nothing (uws: the cork anchor could not be made). */
  readonly onWarning: (message: string, err: unknown) => void;
}

export interface Transport {
  readonly kind: 'uws' | 'ws';
  /** uws: whether the native build loaded (else the slow JS fallback). */
  readonly native: boolean;
  listen(host: string, port: number): Promise<number>;
  /** Stops accepting connections; open ones continue. */
  stopListening(): void;
  /** Stops listening, waits (bounded) for running HTTP handlers to answer, and terminates remaining connections. */
  close(): Promise<void>;
  /** Open WebSocket connections. */
  connections(): number;
}

export const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: 'OK',
  204: 'No Content',
  301: 'Moved Permanently',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Methods whose requests are read for a body. */
export function hasBody(method: string): boolean {
  return method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS' && method !== 'DELETE';
}

/** The declared Content-Length, or null (absent, chunked, or malformed). */
export function declaredLength(headers: Readonly<Record<string, string>>): number | null {
  const v = headers['content-length'];
  if (v === undefined || !/^\d{1,15}$/.test(v.trim())) return null;
  return Number(v.trim());
}

export function parseProtocols(header: string | undefined): string[] {
  return (header ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
