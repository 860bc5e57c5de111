/**
 * A WebSocket client on a bare TCP socket that can stop reading: the
 * slow/stalled reader the `ws` client cannot imitate.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';

export class StalledClient {
  readonly socket: net.Socket;
  readonly upgraded: Promise<void>;

  constructor(port: number, path: string) {
    this.socket = net.connect(port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    this.upgraded = new Promise((resolve, reject) => {
      let head = '';
      const onData = (d: Buffer) => {
        head += d.toString('latin1');
        if (head.includes('\r\n\r\n')) {
          this.socket.off('data', onData);
          if (!head.startsWith('HTTP/1.1 101')) reject(new Error(head.split('\r\n')[0]));
          else resolve();
          // From here on, never read: the kernel buffers fill, then the server's.
          this.socket.pause();
        }
      };
      this.socket.on('data', onData);
      this.socket.on('error', reject);
    });
    this.socket.on('connect', () => {
      this.socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
  }

  /** Sends one masked frame (opcode 1 text, 2 binary). */
  send(payload: Uint8Array | string, opcode: 1 | 2 = 2): void {
    const data = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    const mask = randomBytes(4);
    const len = data.length;
    const header = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    if (len < 126) header[1] = 0x80 | len;
    else if (len < 65536) {
      header[1] = 0x80 | 126;
      header.writeUInt16BE(len, 2);
    } else {
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(len), 2);
    }
    const masked = Buffer.alloc(len);
    for (let i = 0; i < len; i++) masked[i] = data[i]! ^ mask[i & 3]!;
    this.socket.write(Buffer.concat([header, mask, masked]));
  }

  destroy(): void {
    this.socket.destroy();
  }
}
