/**
 * A TCP proxy on a free loopback port in front of a server, for cutting the
 * network under a live connection: `cut()` destroys every proxied
 * connection at both ends at once, so neither side gets a WebSocket close
 * frame (a drop, as when Wi-Fi goes). The proxy keeps listening, so a
 * client that reconnects comes through it again.
 */
import net from 'node:net';

export interface TcpProxy {
  /** ws://127.0.0.1:PORT */
  readonly base: string;
  readonly port: number;
  /** Connections proxied so far. */
  readonly accepted: number;
  /** Drops every open connection, both ends, without a close frame. */
  cut(): void;
  /**
   * New connections are accepted but not passed on (a reconnect waits, as
   * behind a slow network) until the returned function is called.
   */
  hold(): () => void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let accepted = 0;
  let held: (() => void)[] | null = null;
  const heldClients = new Set<net.Socket>();
  const server = net.createServer((client) => {
    accepted++;
    if (held) {
      client.pause();
      heldClients.add(client);
      client.on('error', () => client.destroy()).on('close', () => heldClients.delete(client));
      // What it sent stays buffered; pipe() starts it flowing.
      held.push(() => {
        heldClients.delete(client);
        if (!client.destroyed) pass(client);
      });
      return;
    }
    pass(client);
  });
  const pass = (client: net.Socket) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    base: `ws://127.0.0.1:${port}`,
    port,
    get accepted() {
      return accepted;
    },
    cut() {
      for (const [a, b] of [...pairs]) {
        // A reset, not a FIN: nothing more is read or written on either side.
        a.resetAndDestroy();
        b.resetAndDestroy();
      }
      pairs.clear();
    },
    hold() {
      const waiting: (() => void)[] = (held = []);
      return () => {
        if (held === waiting) held = null;
        for (const go of waiting) go();
      };
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [a, b] of pairs) {
          a.destroy();
          b.destroy();
        }
        // Held connections that were never passed on would keep the server open.
        held = null;
        for (const c of heldClients) c.destroy();
        server.close(() => resolve());
      }),
  };
}
