/**
 * The floor for gateway overhead: a bare uWebSockets.js server with the
 * gateway's WebSocket settings that accepts /v1/listen, sends `ready`, and
 * drops every audio frame. Same load, side by side, in one bench run.
 */
import { loadUws } from '../../src/transport/uws-native.js';

const { uws } = loadUws();
const app = uws.App();
app.ws('/*', {
  compression: uws.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 4 * 1024 * 1024,
  closeOnBackpressureLimit: false,
  idleTimeout: 120,
  sendPingsAutomatically: true,
  open: (ws: { send(m: string): void }) => ws.send('{"type":"ready","seq":1}'),
  // Text frames are control messages (the load generator's final `stop`): close, so it need not time out.
  message: (ws: { end(code: number): void }, _msg: ArrayBuffer, isBinary: boolean) => {
    if (!isBinary) ws.end(1000);
  },
  close: () => {},
});
app.listen('127.0.0.1', 0, (token: unknown) => {
  if (!token) process.exit(1);
  process.stdout.write(`${JSON.stringify({ port: uws.us_socket_local_port(token), msg: 'listening (bare uWS floor)' })}\n`);
});
