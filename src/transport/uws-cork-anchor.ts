/**
 * Completes WebSocket upgrades that were accepted after their upgrade
 * handler returned (the gatekeeper awaited a JWT check, Redis or another
 * node), without the uWebSockets.js bug that drops them.
 *
 * The bug (uWebSockets PR #1929, uWebSockets.js issue #1108; our pinned
 * v20.30 has it): the documented way, `res.cork(() => res.upgrade(...))`,
 * can close the new WebSocket a few milliseconds after `open`. The upgrade
 * shrinks the socket's memory in place, so `cork()` does not see that the
 * socket changed, reads HTTP state from memory that is no longer HTTP, and
 * may shut the socket down: 5 of 320 JWT-authenticated connections to one
 * gateway were lost this way (1006 right after `open`).
 *
 * `res.cork()` skips that code when another socket already holds the
 * loop's cork, and still counts as corked for uWS.js's "writes must be made
 * from within a corked callback" check (an upgrade without any cork is safe
 * too, but this build prints that warning on stderr for every one). The
 * anchor is that other socket: a WebSocket from this process to itself,
 * over a unix socket in a private folder that is removed as soon as the
 * connection is made. It carries nothing and has no timeout.
 *
 * Remove this module when the pinned uWebSockets.js has PR #1929.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import type { UwsHttpResponse, UwsModule, UwsWebSocket } from './uws-native.js';

const OPEN_TIMEOUT_MS = 5000;

export class CorkAnchor {
  readonly #uws: UwsModule;
  #ws: UwsWebSocket<unknown> | null = null;
  #client: net.Socket | null = null;
  #opening: Promise<void> | null = null;
  #closed = false;

  constructor(uws: UwsModule) {
    this.#uws = uws;
  }

  /** Whether the anchor socket is up (else upgrades take the uncorked path). */
  get held(): boolean {
    return this.#ws !== null;
  }

  /** Makes the anchor connection; resolves when it is open (at once if it is). */
  open(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the cork anchor is closed'));
    if (this.#ws) return Promise.resolve();
    this.#opening ??= this.#connect().finally(() => {
      this.#opening = null;
    });
    return this.#opening;
  }

  /**
   * Runs `upgrade` (which calls `res.upgrade`) for a response whose
   * handler has returned. With the anchor, inside its cork, then inside
   * `res.cork` (which then only counts the cork). Without it, uncorked: the
   * connection is safe and uWS prints its warning; the anchor is remade.
   */
  upgradeLate(res: UwsHttpResponse, upgrade: () => void): void {
    const ws = this.#ws;
    if (ws) {
      ws.cork(() => res.cork(upgrade));
      return;
    }
    upgrade();
    if (!this.#closed) this.open().catch(() => {});
  }

  close(): void {
    this.#closed = true;
    const ws = this.#ws;
    this.#ws = null;
    ws?.close();
    this.#client?.destroy();
    this.#client = null;
  }

  /** Rejects (never throws) when the anchor cannot be made, for instance with no writable temporary folder. */
  #connect(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'captiongate-uws-'));
      const socketPath = path.join(dir, 'anchor.sock');
      const app = this.#uws.App();
      let listenToken: unknown = null;
      // Nobody else can connect once the anchor is made: the listener and its folder go.
      const stopListening = () => {
        if (listenToken) this.#uws.us_listen_socket_close(listenToken);
        listenToken = null;
        fs.rmSync(dir, { recursive: true, force: true });
      };
      const fail = (err: Error) => {
        clearTimeout(timer);
        stopListening();
        client?.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error(`the cork anchor did not open in ${OPEN_TIMEOUT_MS} ms`)), OPEN_TIMEOUT_MS);
      let client: net.Socket | null = null;
      app.ws('/*', {
        compression: this.#uws.DISABLED,
        maxPayloadLength: 16,
        idleTimeout: 0,
        sendPingsAutomatically: false,
        open: (ws: UwsWebSocket<unknown>) => {
          clearTimeout(timer);
          stopListening();
          if (this.#closed || this.#ws || !client) {
            ws.close();
            client?.destroy();
            reject(new Error('the cork anchor was closed while it opened'));
            return;
          }
          this.#ws = ws;
          this.#client = client;
          resolve();
        },
        close: (ws: UwsWebSocket<unknown>) => {
          if (this.#ws === ws) {
            this.#ws = null;
            this.#client?.destroy();
            this.#client = null;
          }
        },
      });
      app.listen_unix((token) => {
        if (!token) {
          fail(new Error(`the cork anchor could not listen on ${socketPath}`));
          return;
        }
        listenToken = token;
        const socket = net.connect(socketPath, () => {
          socket.write(
            'GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
              `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
          );
        });
        client = socket;
        // The 101 is all that ever arrives; the client end must not keep the process alive.
        socket.on('data', () => {});
        socket.on('error', (err) => {
          if (this.#client === socket) socket.destroy();
          else fail(err);
        });
        socket.unref();
      }, socketPath);
    });
  }
}
