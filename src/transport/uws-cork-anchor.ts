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

import type { UwsApp, UwsHttpResponse, UwsModule, UwsWebSocket } from './uws-native.js';

const OPEN_TIMEOUT_MS = 5000;
/** After a failed attempt, the next waits this long (late upgrades go uncorked meanwhile). */
const RETRY_MS = 30_000;
const HANDSHAKE =
  'GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ';

export class CorkAnchor {
  readonly #uws: UwsModule;
  readonly #warn: (message: string, err: unknown) => void;
  /** One uWS app for every attempt (an app cannot be freed). */
  #app: UwsApp | null = null;
  /** Ends the attempt to connect that is under way (the anchor app's `open` calls it). */
  #attemptDone: ((err: Error | null, ws?: UwsWebSocket<unknown>) => void) | null = null;
  #ws: UwsWebSocket<unknown> | null = null;
  #client: net.Socket | null = null;
  #opening: Promise<void> | null = null;
  #retryAt = 0;
  #closed = false;

  constructor(uws: UwsModule, warn: (message: string, err: unknown) => void) {
    this.#uws = uws;
    this.#warn = warn;
  }

  /** Makes the anchor connection; resolves when it is open (at once if it is). */
  open(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the cork anchor is closed'));
    if (this.#ws) return Promise.resolve();
    this.#opening ??= this.#connect()
      .catch((err: unknown) => {
        this.#retryAt = Date.now() + RETRY_MS;
        if (!this.#closed) this.#warn(`no cork anchor (${(err as Error).message}): upgrades decided after their handler are made uncorked (uWS prints a warning for each); retrying in ${RETRY_MS / 1000} s`, err);
        throw err;
      })
      .finally(() => {
        this.#opening = null;
      });
    return this.#opening;
  }

  /**
   * Runs `upgrade` (which calls `res.upgrade`) for a response whose
   * handler has returned. With the anchor, inside its cork, then inside
   * `res.cork` (which then only counts the cork). Without it, uncorked: the
   * connection is safe and uWS prints its warning; the anchor is remade
   * (at most every RETRY_MS after a failure).
   */
  upgradeLate(res: UwsHttpResponse, upgrade: () => void): void {
    const ws = this.#ws;
    if (ws) {
      ws.cork(() => res.cork(upgrade));
      return;
    }
    upgrade();
    if (!this.#closed && !this.#opening && Date.now() >= this.#retryAt) this.open().catch(() => {});
  }

  close(): void {
    this.#closed = true;
    this.#attemptDone?.(new Error('the cork anchor was closed while it opened'));
    const ws = this.#ws;
    this.#ws = null;
    ws?.close();
    this.#client?.destroy();
    this.#client = null;
  }

  #anchorApp(): UwsApp {
    if (this.#app) return this.#app;
    const app = this.#uws.App();
    app.ws('/*', {
      compression: this.#uws.DISABLED,
      maxPayloadLength: 16,
      idleTimeout: 0,
      sendPingsAutomatically: false,
      open: (ws: UwsWebSocket<unknown>) => {
        const done = this.#attemptDone;
        if (done) done(null, ws);
        else ws.close();
      },
      close: (ws: UwsWebSocket<unknown>) => {
        if (this.#ws !== ws) return;
        this.#ws = null;
        this.#client?.destroy();
        this.#client = null;
      },
    });
    this.#app = app;
    return app;
  }

  /** Rejects (never throws) when the anchor cannot be made, for instance with no writable temporary folder. */
  #connect(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const app = this.#anchorApp();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'captiongate-uws-'));
      const socketPath = path.join(dir, 'anchor.sock');
      let listenToken: unknown = null;
      let settled = false;
      // Nobody else can connect once the anchor is made (or not): the listener and its folder go.
      const stopListening = () => {
        if (listenToken) this.#uws.us_listen_socket_close(listenToken);
        listenToken = null;
        fs.rmSync(dir, { recursive: true, force: true });
      };
      const client = new net.Socket();
      const done = (err: Error | null, ws?: UwsWebSocket<unknown>) => {
        if (settled) {
          ws?.close();
          return;
        }
        settled = true;
        clearTimeout(timer);
        stopListening();
        this.#attemptDone = null;
        if (err || !ws || this.#closed) {
          ws?.close();
          client.destroy();
          reject(err ?? new Error('the cork anchor was closed while it opened'));
          return;
        }
        this.#ws = ws;
        this.#client = client;
        resolve();
      };
      const timer = setTimeout(() => done(new Error(`it did not open in ${OPEN_TIMEOUT_MS} ms`)), OPEN_TIMEOUT_MS);
      timer.unref();
      this.#attemptDone = done;
      // The 101 is all that ever arrives; the client end must not keep the process alive.
      client.on('data', () => {});
      client.on('error', (err) => {
        if (this.#client === client) client.destroy();
        else done(err);
      });
      client.unref();
      app.listen_unix((token) => {
        if (!token) {
          done(new Error(`could not listen on ${socketPath}`));
          return;
        }
        listenToken = token;
        client.connect(socketPath, () => client.write(`${HANDSHAKE}${randomBytes(16).toString('base64')}\r\n\r\n`));
      }, socketPath);
    });
  }
}
