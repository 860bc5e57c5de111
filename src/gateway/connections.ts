/**
 * Open WebSocket connections per client address: sessions, meeting viewers
 * and connections that have not started a session yet all count toward
 * limits.maxConnectionsPerAddress. Checked at upgrade (HTTP 429 before
 * anything is allocated), and again when the socket opens (upgrades that
 * were in flight together cannot overshoot).
 */
import { closeCode, GatewayError } from '../errors.js';
import type { WireMode } from '../protocol/messages.js';
import { encodeServerMessage } from '../protocol/codec.js';
import type { ConnectionHandler, WsConnection } from '../transport/types.js';

const RETRY_MS = 5000;

export class ConnectionCounter {
  readonly max: number;
  #perAddress = new Map<string, number>();

  constructor(max: number) {
    this.max = max;
  }

  /** Why a new connection from this address is refused, if it is. */
  check(address: string): GatewayError | null {
    const n = this.#perAddress.get(address) ?? 0;
    if (n < this.max) return null;
    return new GatewayError(
      'CAP_ERR_TOO_MANY_CONNECTIONS',
      `this address already has ${n} open connections (limits.maxConnectionsPerAddress = ${this.max})`,
      RETRY_MS,
    );
  }

  /** Counts an opened connection, or refuses it. */
  open(address: string): GatewayError | null {
    const refused = this.check(address);
    if (refused) return refused;
    this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1);
    return null;
  }

  closed(address: string): void {
    const n = (this.#perAddress.get(address) ?? 1) - 1;
    if (n <= 0) this.#perAddress.delete(address);
    else this.#perAddress.set(address, n);
  }

  /** Addresses with open connections (leak checks). */
  get addresses(): number {
    return this.#perAddress.size;
  }
}

/** A socket refused as it opened: the error, then its close code. */
export function refusedConnection(conn: WsConnection, mode: WireMode, e: GatewayError): ConnectionHandler {
  conn.send(encodeServerMessage({ type: 'error', seq: 1, code: e.code, message: e.message, fatal: true, ...(e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}) }, mode), mode === 'msgpack');
  conn.close(closeCode(e.code), e.code);
  return { message() {}, drain() {}, closed() {} };
}
