/**
 * HTTP request bodies on both transports: read whole when within
 * files.maxUploadBytes, 413 from a declared Content-Length before reading,
 * and 413 as soon as a body without a declared length (chunked) grows past
 * the limit.
 */
import http from 'node:http';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { settled, startGateway, type Harness, type TransportKind } from '../helpers/gateway.js';

const LIMIT = 100_000;

/** A raw request: chunked when `chunks` is given, else with Content-Length. Resolves with the status and body, or the socket error. */
function post(base: string, path: string, headers: Record<string, string>, body: Buffer | Buffer[]): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const u = new URL(path, base);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('error', (e) => resolve({ error: e.message }));
    if (Array.isArray(body)) {
      // Chunked, slowly enough that the server answers before the end.
      let i = 0;
      const next = () => {
        if (i === body.length) return req.end();
        if (req.destroyed) return;
        req.write(body[i++]!, () => setTimeout(next, 5));
      };
      next();
    } else req.end(body);
  });
}

const form = (boundary: string, fields: Record<string, string>) =>
  Buffer.from(Object.entries(fields).map(([k, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`).join('') + `--${boundary}--\r\n`);

for (const transport of ['uws', 'ws'] as TransportKind[]) {
  describe(`HTTP request bodies (${transport})`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startGateway(transport, { files: { maxUploadBytes: LIMIT }, store: { kind: 'memory' } });
    });
    afterAll(async () => {
      await h?.stop();
    });

    it('reads a body within the limit (the route sees its fields)', async () => {
      const r = await post(h.http, '/v1/audio/transcriptions', { 'content-type': 'multipart/form-data; boundary=b0' }, form('b0', { model: 'whisper-1' }));
      expect(r).toMatchObject({ status: 400 });
      expect(JSON.parse((r as { body: string }).body)).toMatchObject({ error: { param: 'file', code: 'missing_required_parameter' } });
    });

    it('a declared Content-Length above the limit is 413 at once', async () => {
      const r = await post(h.http, '/v1/audio/transcriptions', { 'content-type': 'multipart/form-data; boundary=b0', 'content-length': String(LIMIT * 10) }, [Buffer.alloc(1000)]);
      expect(r).toMatchObject({ status: 413 });
      expect(JSON.parse((r as { body: string }).body)).toMatchObject({ error: { code: 'file_too_large', type: 'invalid_request_error' } });
    });

    it('a chunked body that grows past the limit is 413 (Deepgram shape on /v1/listen)', async () => {
      const chunks = Array.from({ length: 40 }, () => Buffer.alloc(16 * 1024, 1));
      const r = await post(h.http, '/v1/listen?model=nova-3', { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }, chunks);
      if ('error' in r) throw new Error(`no answer: ${r.error}`);
      expect(r.status).toBe(413);
      expect(JSON.parse(r.body)).toMatchObject({ err_code: 'PAYLOAD_TOO_LARGE' });
      await settled(h.gw);
      expect(h.gw.diagnostics()).toMatchObject({ fileJobsRunning: 0, fileJobsQueued: 0 });
    });
  });
}
