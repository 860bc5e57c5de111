/**
 * A request being answered when the gateway shuts down gets its answer: the
 * transport waits (bounded) for running HTTP handlers before it drops the
 * connections. The request here is GET /v1/sessions on a real PostgreSQL
 * store, held up by a lock the test takes on the sessions table and lets go
 * of after the shutdown has begun. Both transports: ws dropped the
 * connection without the wait; uWS's close() leaves HTTP connections to the
 * process's exit, which follows the shutdown in main.ts.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startGateway, type TransportKind } from '../helpers/gateway.js';
import { postgresAvailable, startPostgres, type PostgresServer } from '../helpers/postgres-server.js';

let server: PostgresServer;
beforeAll(async () => {
  if (postgresAvailable()) server = await startPostgres();
}, 120_000);
afterAll(async () => {
  await server?.destroy();
});

describe.skipIf(!postgresAvailable()).each<TransportKind>(['ws', 'uws'])('shutdown with a request in flight (%s)', (transport) => {
  it('a request held up in the store when the shutdown begins is still answered, before the store closes', async () => {
    const url = await server.createDatabase(`inflight_${transport}`);
    const h = await startGateway(transport, { store: { kind: 'postgres', url } });
    const locker = new pg.Client({ connectionString: url });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE');
      const asked = fetch(`${h.http}/v1/sessions`).then(
        async (r) => ({ status: r.status, body: (await r.json()) as { sessions: unknown[] } }),
        (err: unknown) => err as Error,
      );
      // The gateway's query waits on the lock; then the gateway begins to shut down.
      const t0 = Date.now();
      for (;;) {
        const { rows } = await locker.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()");
        if (rows[0]!.n > 0) break;
        if (Date.now() - t0 > 30_000) throw new Error('the request never reached the store');
        await new Promise((r) => setTimeout(r, 20));
      }
      const stopping = h.gw.shutdown();
      // Past the drain (nothing to drain) and the transport's 50 ms flush: without the wait, the ws connection is gone by now.
      await new Promise((r) => setTimeout(r, 1000));
      await locker.query('ROLLBACK');
      const answer = await asked;
      expect(answer).toEqual({ status: 200, body: { sessions: [] } });
      await stopping;
    } finally {
      await locker.end();
      await h.stop();
    }
  }, 120_000);
});
