/**
 * The HTTP side of the gateway: health and readiness probes (always open),
 * Prometheus metrics (here, or on a listener of their own: metrics.host),
 * caption files (only to who may read them, when auth is on), and the web
 * demo's static files.
 */
import path from 'node:path';

import type { CaptionArchive } from '../captions/archive.js';
import { buildCues, toSrt, toWebVTT } from '../captions/cues.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { SlabPool } from '../pool/slab-pool.js';
import { ID_CHARS } from '../protocol/messages.js';
import { httpStatus } from '../errors.js';
import type { Gatekeeper } from '../security/gatekeeper.js';
import type { SessionManager } from '../session/manager.js';
import type { HttpRequest, HttpResponse } from '../transport/types.js';
import { packageRoot } from '../util/paths.js';
import { StaticFiles } from './static-files.js';
import { errorBody } from './upgrade.js';

const CAPTION_FILE_ROUTE = new RegExp(`^/v1/sessions/(${ID_CHARS})/captions\\.(vtt|srt)$`);

function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponse {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
}

export interface HttpRouteDeps {
  readonly manager: SessionManager;
  readonly pool: SlabPool;
  readonly metrics: GatewayMetrics;
  readonly archive: CaptionArchive;
  readonly gatekeeper: Gatekeeper;
  /** /metrics on this port (false when it has its own listener). */
  readonly serveMetrics: boolean;
}

/** Prometheus text, for the main port or the metrics listener. */
export async function metricsResponse(metrics: GatewayMetrics): Promise<HttpResponse> {
  return { status: 200, headers: { 'content-type': metrics.contentType }, body: await metrics.text() };
}

export function createHttpRoutes(deps: HttpRouteDeps): (req: HttpRequest) => Promise<HttpResponse> {
  const { manager, pool, metrics, archive, gatekeeper } = deps;
  const staticFiles = new StaticFiles(path.join(packageRoot(), 'web-demo'));
  const cuesModule = new StaticFiles(path.join(packageRoot(), 'dist', 'src', 'captions'));

  const captionFile = async (req: HttpRequest, id: string, format: string): Promise<HttpResponse> => {
    const got = archive.get(id);
    // Who asks is checked before whether the file exists, so a stranger learns nothing.
    const denied = await gatekeeper.authorizeRead(req, got ?? { owner: null, meetingId: null });
    if (denied && (denied.code === 'CAP_ERR_UNAUTHORIZED' || got)) {
      metrics.errors.inc({ code: denied.code });
      return json(httpStatus(denied.code), errorBody(denied.code, denied.message));
    }
    if (!got) return json(404, errorBody('CAP_ERR_NOT_FOUND', `no captions for session ${id}`));
    const cues = buildCues(got.finals);
    const vtt = format === 'vtt';
    return {
      status: 200,
      headers: {
        'content-type': vtt ? 'text/vtt; charset=utf-8' : 'application/x-subrip; charset=utf-8',
        'cache-control': 'no-store',
        'x-captiongate-live': String(got.live),
        'x-captiongate-dropped-finals': String(got.dropped),
      },
      body: vtt ? toWebVTT(cues) : toSrt(cues),
    };
  };

  return async (req) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, errorBody('CAP_ERR_NOT_FOUND', 'only GET is served'));
    switch (req.path) {
      case '/healthz':
        return json(200, { status: 'ok' });
      case '/readyz': {
        const refused = manager.admissible('readyz', true);
        return refused
          ? json(503, { status: 'not_ready', code: refused.code, reason: refused.message })
          : json(200, { status: 'ready', sessions: manager.size, slabsFree: pool.available });
      }
      case '/metrics':
        if (deps.serveMetrics) return metricsResponse(metrics);
        break;
      case '/v1/listen':
        return json(426, errorBody('CAP_ERR_NOT_FOUND', 'this route is a WebSocket; connect with ws:// and Upgrade'));
      case '/lib/cues.js':
        // The browser demo builds its .vtt with the server's own cue code.
        return (await cuesModule.get('/cues.js')) ?? json(404, errorBody('CAP_ERR_NOT_FOUND', 'run npm run build'));
    }
    const file = CAPTION_FILE_ROUTE.exec(req.path);
    if (file) return captionFile(req, file[1]!, file[2]!);
    return (await staticFiles.get(req.path)) ?? json(404, errorBody('CAP_ERR_NOT_FOUND', `no route ${req.path}`));
  };
}
