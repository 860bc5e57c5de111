/**
 * TLS at a reverse proxy: Debian's nginx, configured with docs/deploy/nginx.conf,
 * in front of a real gateway on loopback. wss:// in, captions out.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect } from '../../src/client/client.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';

const NGINX = '/usr/sbin/nginx';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`nginx did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('TLS termination at nginx', () => {
  let h: Harness;
  let nginx: ChildProcess;
  let tlsPort = 0;
  let cert = '';
  let prefix = '';

  beforeAll(async () => {
    if (!existsSync(NGINX)) throw new Error(`${NGINX} not found: run scripts/setup.sh --test (installs nginx-light)`);
    h = await startGateway('uws', { server: { trustProxy: true }, engine: { decoders: 1, threads: 1 } });
    prefix = mkdtempSync(path.join(tmpdir(), 'cg-nginx-'));
    mkdirSync(path.join(prefix, 'client_body'));
    mkdirSync(path.join(prefix, 'proxy'));
    cert = path.join(prefix, 'cert.pem');
    const key = path.join(prefix, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    tlsPort = await freePort();
    const conf = readFileSync(new URL('../../docs/deploy/nginx.conf', import.meta.url), 'utf8')
      .replaceAll('${PREFIX}', prefix)
      .replaceAll('${GATEWAY_PORT}', String(h.gw.port))
      .replaceAll('${TLS_PORT}', String(tlsPort))
      .replaceAll('${CERT}', cert)
      .replaceAll('${KEY}', key);
    const confFile = path.join(prefix, 'nginx.conf');
    writeFileSync(confFile, `daemon off;\n${conf}`);
    nginx = spawn(NGINX, ['-e', path.join(prefix, 'startup.log'), '-p', prefix, '-c', confFile], { stdio: 'ignore' });
    await waitForPort(tlsPort);
  });

  afterAll(async () => {
    nginx?.kill('SIGTERM');
    await h?.stop();
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
