/** Serves web-demo/ at / (small files, cached in memory after first read). */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { HttpResponse } from '../transport/types.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json',
};

export class StaticFiles {
  #root: string;
  #cache = new Map<string, HttpResponse>();

  constructor(root: string) {
    this.#root = path.resolve(root);
  }

  async get(urlPath: string): Promise<HttpResponse | null> {
    let rel: string;
    try {
      rel = decodeURIComponent(urlPath);
    } catch {
      return null;
    }
    if (rel.endsWith('/')) rel += 'index.html';
    const file = path.resolve(this.#root, `.${path.posix.normalize(`/${rel}`)}`);
    if (file !== this.#root && !file.startsWith(this.#root + path.sep)) return null;
    const cached = this.#cache.get(file);
    if (cached) return cached;
    const type = TYPES[path.extname(file)];
    if (!type) return null;
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch {
      return null;
    }
    const resp: HttpResponse = { status: 200, headers: { 'content-type': type, 'cache-control': 'no-cache' }, body };
    this.#cache.set(file, resp);
    return resp;
  }
}
