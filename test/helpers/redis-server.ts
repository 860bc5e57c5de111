/**
 * A real redis-server for tests (Debian's redis-server, a TEST_PACKAGE of
 * scripts/setup.sh), on 127.0.0.1 and a free port, in a temporary folder,
 * without persistence (`--save '' --appendonly no`) unless asked for the
 * append-only file (`{ persist: true }`, as production runs it). It can be stopped and
 * started again on the same port, which is an outage with the data lost:
 * what a Redis without persistence does when it restarts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { freePort } from './net.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

export interface RedisServer {
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  readonly running: boolean;
  /** Stops it (SIGTERM; no save) and waits for the exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty). */
  start(): Promise<void>;
  /** Stops it (if running) and removes its folder. */
  destroy(): Promise<void>;
  /** Runs one command over a plain connection (RESP), for checks: e.g. ['XLEN', key]. */
  command(args: string[]): Promise<string>;
}

export function redisAvailable(): boolean {
  return existsSync(REDIS_SERVER);
}

export async function startRedis(opts: { persist?: boolean } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-redis-'));
  const port = await freePort();
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let out = '';

  const launch = async () => {
    out = '';
    const c = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', opts.persist ? 'yes' : 'no', '--protected-mode', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    exited = new Promise((r) => c.once('exit', () => r()));
    const t0 = Date.now();
    // Ready when it answers PING (the port may be in TIME_WAIT briefly after a stop).
    for (;;) {
      if (c.exitCode !== null) throw new Error(`redis-server exited (${c.exitCode}):\n${out}`);
      if (await ping(port)) return;
      if (Date.now() - t0 > 15_000) throw new Error(`redis-server did not start on ${port}:\n${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await launch();

  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== null && child.exitCode === null && child.signalCode === null;
    },
    async stop() {
      if (!server.running) return;
      child!.kill('SIGTERM');
      await exited;
    },
    async start() {
      if (server.running) return;
      await launch();
    },
    async destroy() {
      if (server.running) {
        child!.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
    command: (args) => command(port, args),
  };
  return server;
}

async function ping(port: number): Promise<boolean> {
  try {
    return (await command(port, ['PING'], 500)) === 'PONG';
  } catch {
    return false;
  }
}

/** One command over a fresh socket; returns the reply flattened to text (enough for checks). */
function command(port: number, args: string[], timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    const t = setTimeout(() => {
      sock.destroy();
      reject(new Error('redis command timed out'));
    }, timeoutMs);
    sock.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
    sock.on('connect', () => sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`));
    sock.on('data', (d) => {
      buf += d.toString();
      const parsed = parseReply(buf);
      if (parsed !== null) {
        clearTimeout(t);
        sock.end();
        resolve(parsed);
      }
    });
  });
}

/** A complete simple reply (+, -, :, $), or null while incomplete; arrays are not needed by the tests. */
function parseReply(buf: string): string | null {
  const nl = buf.indexOf('\r\n');
  if (nl < 0) return null;
  const head = buf.slice(1, nl);
  switch (buf[0]) {
    case '+':
    case ':':
      return head;
    case '-':
      return `ERR ${head}`;
    case '$': {
      const n = Number(head);
      if (n < 0) return '';
      return buf.length >= nl + 2 + n + 2 ? buf.slice(nl + 2, nl + 2 + n) : null;
    }
    default:
      return buf;
  }
}
