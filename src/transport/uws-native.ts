/**
 * uWebSockets.js as we load it (npm @trufflesuite/uws-js-unofficial, pinned)
 * and the structural types of the parts we use. The package silently falls
 * back to a slow pure-JS server when its native binary does not load (it
 * ships binaries for Node 16/18/20 only), so we load the binary ourselves
 * and report which path is in use.
 */
import { createRequire } from 'node:module';
import path from 'node:path';

export interface UwsWebSocket<U> {
  send(message: string | Uint8Array, isBinary?: boolean, compress?: boolean): number;
  getBufferedAmount(): number;
  end(code?: number, shortMessage?: string): void;
  close(): void;
  cork(cb: () => void): UwsWebSocket<U>;
  getUserData(): U;
}
export interface UwsHttpResponse {
  writeStatus(status: string): UwsHttpResponse;
  writeHeader(key: string, value: string): UwsHttpResponse;
  end(body?: string | Uint8Array, closeConnection?: boolean): UwsHttpResponse;
  onAborted(cb: () => void): UwsHttpResponse;
  onData(cb: (chunk: ArrayBuffer, isLast: boolean) => void): UwsHttpResponse;
  close(): UwsHttpResponse;
  cork(cb: () => void): UwsHttpResponse;
  upgrade(userData: object, key: string, protocol: string, extensions: string, context: unknown): void;
  getRemoteAddressAsText(): ArrayBuffer;
}
export interface UwsHttpRequest {
  getUrl(): string;
  getQuery(): string | undefined;
  getMethod(): string;
  getHeader(name: string): string;
  forEach(cb: (key: string, value: string) => void): void;
}
export interface UwsApp {
  ws(pattern: string, behavior: Record<string, unknown>): UwsApp;
  any(pattern: string, handler: (res: UwsHttpResponse, req: UwsHttpRequest) => void): UwsApp;
  listen(host: string, port: number, cb: (token: unknown) => void): UwsApp;
  listen_unix(cb: (token: unknown) => void, path: string): UwsApp;
}
export interface UwsModule {
  App(): UwsApp;
  DISABLED: number;
  us_listen_socket_close(token: unknown): void;
  us_socket_local_port(token: unknown): number;
}

export function loadUws(): { uws: UwsModule; native: boolean; detail: string } {
  const require = createRequire(import.meta.url);
  const pkgDir = path.dirname(require.resolve('@trufflesuite/uws-js-unofficial/package.json'));
  const binary = path.join(pkgDir, 'binaries', `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
  try {
    return { uws: require(binary) as UwsModule, native: true, detail: binary };
  } catch (err) {
    const fallback = require(path.join(pkgDir, 'dist', 'index.js')) as UwsModule;
    return { uws: fallback, native: false, detail: `native binary did not load (${(err as Error).message.split('\n')[0]})` };
  }
}
