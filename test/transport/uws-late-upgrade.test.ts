/**
 * Upgrades decided after uWS's upgrade handler returned (a JWT check, Redis,
 * another node) must give WebSockets that stay open. uWebSockets.js v20.30
 * can close them a few ms after `open` when they are upgraded inside
 * `res.cork()` (see src/transport/uws-cork-anchor.ts). Whether it does
 * depends on what the freed memory holds, so the server runs with glibc's
 * heap poisoned (tcache off, freed bytes set to 0x10, HTTP_CONNECTION_CLOSE
 * without HTTP_RESPONSE_PENDING): with the documented upgrade, every
 * connection is then lost. The control shows that; if it stops failing, the
 * pinned uWS has the fix and the anchor can go.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

const POISONED_HEAP = { GLIBC_TUNABLES: 'glibc.malloc.tcache_count=0', MALLOC_PERTURB_: '16' };

interface Server {
  readonly port: number;
  stderr(): string;
  stop(): Promise<void>;
}

const running: Server[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

async function startServer(mode: 'transport' | 'documented'): Promise<Server> {
  const child: ChildProcess = spawn(process.execPath, [path.resolve('test/helpers/uws-late-upgrade-server.mjs')], {
    env: { ...process.env, ...POISONED_HEAP, MODE: mode },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /\{"port":(\d+)\}/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(() => reject(new Error(`server exited before listening:\n${err}`)));
  });
  const server: Server = {
    port,
    stderr: () => err,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  running.push(server);
  return server;
}

type Outcome = 'echoed' | `closed ${number} ${'before' | 'after'} the greeting` | `http ${number}`;

/** Opens a WebSocket, waits for the greeting, sends one message, waits for its echo, closes. */
function roundTrip(port: number, query: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/x${query}`);
    let greeted = false;
    let done = false;
    ws.on('message', (m: Buffer) => {
      if (!greeted) {
        greeted = m.toString() === 'hello';
        // Not at once: the drop comes a few ms after open.
        setTimeout(() => ws.readyState === WebSocket.OPEN && ws.send('ping'), 20);
      } else if (m.toString() === 'ping') {
        done = true;
        ws.close(1000);
      }
    });
    ws.on('close', (code) => resolve(done ? 'echoed' : `closed ${code} ${greeted ? 'after' : 'before'} the greeting`));
    ws.on('unexpected-response', (_req, res) => {
      resolve(`http ${res.statusCode ?? 0}`);
      res.resume();
      ws.terminate();
    });
    ws.on('error', () => {});
  });
}

async function many(port: number, query: string, n: number): Promise<Map<Outcome, number>> {
  const counts = new Map<Outcome, number>();
  let next = 0;
  // Eight at a time: several upgrades in flight at once, as under load.
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next++ < n) {
        const o = await roundTrip(port, query);
        counts.set(o, (counts.get(o) ?? 0) + 1);
      }
    }),
  );
  return counts;
}

describe('uWS upgrades decided after the handler returned', () => {
  it('control: the documented res.cork(() => res.upgrade()) loses the connections on this heap', async () => {
    const s = await startServer('documented');
    const counts = await many(s.port, '', 20);
    // Upgraded (101), greeted, then dropped: not refused, and not a server that died.
    expect(Object.fromEntries(counts)).toEqual({ 'closed 1006 after the greeting': 20 });
    expect(s.stderr()).toBe('');
  });

  it('our transport keeps every one open, prints no uWS warning, and still refuses late with the status', async () => {
    const s = await startServer('transport');
    const late = await many(s.port, '', 200);
    expect(Object.fromEntries(late)).toEqual({ echoed: 200 });
    const sync = await many(s.port, '?sync', 20);
    expect(Object.fromEntries(sync)).toEqual({ echoed: 20 });
    const refused = await many(s.port, '?refuse', 10);
    expect(Object.fromEntries(refused)).toEqual({ 'http 403': 10 });
    expect(s.stderr()).not.toMatch(/corked callback|no cork anchor/);
  });
});
