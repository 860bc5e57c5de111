/**
 * TLS at a reverse proxy: Debian's nginx, configured with docs/deploy/nginx.conf,
 * in front of a real gateway on loopback. wss:// in, captions out.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect } from '../../src/client/client.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';
import { freePort } from '../helpers/net.js';
import { startNginx, type Nginx } from '../helpers/nginx.js';

describe('TLS termination at nginx', () => {
  let h: Harness;
  let nginx: Nginx | undefined;
  let tlsPort = 0;
  let cert = '';
  let certDir = '';

  beforeAll(async () => {
    h = await startGateway('uws', { server: { trustProxy: true }, engine: { decoders: 1, threads: 1 } });
    tlsPort = await freePort();
    certDir = mkdtempSync(path.join(tmpdir(), 'cg-tls-'));
    cert = path.join(certDir, 'cert.pem');
    const key = path.join(certDir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    nginx = await startNginx('nginx.conf', { GATEWAY_PORT: h.gw.port, TLS_PORT: tlsPort, CERT: cert, KEY: key }, tlsPort);
  });

  afterAll(async () => {
    await nginx?.stop();
    await h?.stop();
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  });

  it('serves wss:// and https:// through nginx with the documented config', async () => {
    const ca = readFileSync(cert);
    const health = await new Promise<number>((resolve, reject) => {
      // Node's fetch has no per-request CA; use https directly.
      import('node:https').then(({ get }) =>
        get({ host: '127.0.0.1', port: tlsPort, path: '/healthz', ca }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject),
      );
    });
    expect(health).toBe(200);

    const clip = librivoxClips()[4]!;
    const c = await connect(`wss://127.0.0.1:${tlsPort}/v1/listen`, { sampleRate: 16000, tls: { ca } });
    const finals: string[] = [];
    c.on('final', (f) => finals.push(f.text));
    await c.write(wavToInt16(readWav(clip.file)));
    const end = await c.stop();
    expect(end.reason).toBe('client_stop');
    expect(wer([[clip.text, finals.join(' ')]]).wer).toBeLessThan(60);
    // The gateway saw the client's address from nginx's X-Forwarded-For.
    const started = h.logs.find((l) => l.msg === 'session started') as { remote?: string } | undefined;
    expect(started?.remote).toBe('127.0.0.1');
    await settled(h.gw);
  });
});
