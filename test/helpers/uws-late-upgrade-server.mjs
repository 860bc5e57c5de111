// A uWS server whose upgrades are decided after the upgrade handler returns,
// for test/transport/uws-late-upgrade.test.ts. MODE=transport runs our
// transport (dist/); MODE=documented runs bare uWS the documented way,
// res.cork(() => res.upgrade(...)), the control that shows the bug.
// Either way: `?refuse` is refused late with 403, `?sync` is accepted in
// the handler, every open socket is greeted with "hello" and echoes.
// Plain JavaScript: it runs as its own process (with a poisoned heap), outside vitest.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = (p) => import(pathToFileURL(path.resolve('dist/src/transport', p)).href);
const later = (f) => new Promise((resolve) => setTimeout(() => resolve(f()), 1));

if (process.env.MODE === 'transport') {
  const { createUwsTransport } = await dist('uws.js');
  const transport = createUwsTransport(
    {
      upgrade: (req) => {
        if (req.query.has('sync')) return { accept: true, protocol: null, context: null };
        return later(() => (req.query.has('refuse') ? { accept: false, status: 403, body: '{"error":"refused"}' } : { accept: true, protocol: null, context: null }));
      },
      open: (conn) => {
        conn.send('hello', false);
        return { message: (data, isBinary) => conn.send(data, isBinary), drain: () => {}, closed: () => {} };
      },
      http: () => ({ status: 404, body: '' }),
    },
    {
      maxPayloadBytes: 1 << 20,
      maxBackpressureBytes: 1 << 20,
      maxBodyBytes: 1 << 16,
      onHandlerError: (err) => process.stderr.write(`handler error: ${err}\n`),
      onWarning: (message) => process.stderr.write(`warning: ${message}\n`),
      bodyTooLarge: () => ({ status: 413, body: '' }),
    },
  );
  const port = await transport.listen('127.0.0.1', 0);
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  process.on('SIGTERM', () => void transport.close().then(() => process.exit(0)));
} else {
  const { loadUws } = await dist('uws-native.js');
  const { uws } = loadUws();
  const app = uws.App();
  app.ws('/*', {
    idleTimeout: 120,
    upgrade: (res, req, context) => {
      const key = req.getHeader('sec-websocket-key');
      const ext = req.getHeader('sec-websocket-extensions');
      let aborted = false;
      res.onAborted(() => (aborted = true));
      void later(() => !aborted && res.cork(() => res.upgrade({}, key, '', ext, context)));
    },
    open: (ws) => ws.send('hello'),
    message: (ws, m, isBinary) => ws.send(m, isBinary),
  });
  app.listen('127.0.0.1', 0, (token) => process.stdout.write(`${JSON.stringify({ port: uws.us_socket_local_port(token) })}\n`));
  process.on('SIGTERM', () => process.exit(0));
}
