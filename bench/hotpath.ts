/**
 * The gateway's per-frame cost without sockets: `node dist/bench/hotpath.js`.
 * Drives ListenConnection.message() for many sessions with the overhead
 * engine and reports microseconds of main-thread time per audio frame
 * (conversion, ring, scheduling, batching, engine round trip, accounting).
 * Run with --cpu-prof to see where it goes.
 */
import { pino } from 'pino';

import { loadConfig } from '../src/config/load.js';
import { createOverheadEngine } from '../src/engine/overhead.js';
import { createGateway } from '../src/gateway/gateway.js';
import type { ConnectionHandler, WsConnection } from '../src/transport/types.js';

const SESSIONS = Number(process.env.SESSIONS ?? 200);
const SECONDS = Number(process.env.SECONDS ?? 20);

class NullConn implements WsConnection {
  remoteAddress = '127.0.0.1';
  sent = 0;
  send(): void {
    this.sent++;
  }
  bufferedAmount(): number {
    return 0;
  }
  close(): void {}
  terminate(): void {}
}

async function main() {
  const config = loadConfig({
    ignoreEnv: true,
    overrides: { server: { port: 0, host: '127.0.0.1' }, pool: { slabs: SESSIONS + 10 }, limits: { maxSessionsPerAddress: SESSIONS + 10 }, log: { level: 'silent' } },
  });
  const engine = createOverheadEngine(config.engine);
  const logger = pino({ level: 'silent' });
  const gw = await createGateway({ config, engine, logger });
  // The connection handler the transport would call.
  const { ListenConnection } = await import('../src/gateway/listen-connection.js');
  const { ConnectionCounter } = await import('../src/gateway/connections.js');
  const { startFromQuery } = await import('../src/protocol/query.js');
  const conns: ConnectionHandler[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    conns.push(
      new ListenConnection({ config, manager: gw.manager, metrics: gw.metrics, log: logger, connections: new ConnectionCounter(SESSIONS) }, new NullConn(), {
        kind: 'listen',
        mode: 'json',
        resume: null,
        start: startFromQuery(new URLSearchParams('sampleRate=16000&channels=1&encoding=s16le')),
        remoteAddress: '127.0.0.1',
        identity: null,
        authEnabled: false,
      }),
    );
  }
  const frame = new Uint8Array(3200);
  for (let i = 0; i < frame.length; i += 2) frame[i] = (i * 37) & 0xff;
  // Real time, compressed: every 10 ms, a tenth of the sessions send a frame.
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let frames = 0;
  for (let tick = 0; tick < SECONDS * 100; tick++) {
    for (let i = tick % 10; i < SESSIONS; i += 10) {
      conns[i]!.message(frame, true);
      frames++;
    }
    // PACED=1: real time (10 ms ticks), so batches are as small as in production.
    if (process.env.PACED === '1') await new Promise((r) => setTimeout(r, Math.max(0, t0 + (tick + 1) * 10 - performance.now())));
    else await new Promise((r) => setImmediate(r));
  }
  await gw.scheduler.whenIdle();
  const c = process.cpuUsage(cpu0);
  const wall = performance.now() - t0;
  const us = ((c.user + c.system) / frames).toFixed(2);
  console.log(`${SESSIONS} sessions, ${frames} frames in ${(wall / 1000).toFixed(1)} s (${process.env.PACED === '1' ? 'paced' : 'not paced'}): ${us} µs CPU per frame, batches ${gw.scheduler.batches}, windows ${gw.scheduler.windows}`);
  console.log(`=> at real time (10 frames/s per stream): ${((Number(us) * 10 * 100) / 1e4).toFixed(2)}% of a core per 100 streams (JS + N-API, no sockets)`);
  for (const conn of conns) conn.closed(1000, '');
  await gw.shutdown();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
