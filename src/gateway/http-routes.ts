/**
 * The HTTP side of the gateway: health and readiness probes (always open),
 * Prometheus metrics (here, or on a listener of their own: metrics.host),
 * caption files of sessions and meetings (only to who may read them, when
 * auth is on; live ones from memory, the rest from the store, so they
 * survive a restart), the caller's session list and deletion, file
 * transcription (OpenAI's POST /v1/audio/transcriptions, Deepgram's
 * pre-recorded POST /v1/listen: src/compat), and the web demo's static files.
 */
import path from 'node:path';

import type { CaptionArchive } from '../captions/archive.js';
import { buildCues, toSrt, toWebVTT, type CueSource } from '../captions/cues.js';
import { GatewayError, httpStatus } from '../errors.js';
import type { MeetingHub } from '../meetings/hub.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { SlabPool } from '../pool/slab-pool.js';
import { ID_CHARS } from '../protocol/messages.js';
import type { Gatekeeper } from '../security/gatekeeper.js';
import type { SessionManager } from '../session/manager.js';
import { StoreUnavailableError, type SessionRecord, type Store } from '../store/index.js';
import type { HttpRequest, HttpResponse } from '../transport/types.js';
import { packageRoot } from '../util/paths.js';
import { StaticFiles } from './static-files.js';
import { errorBody } from './upgrade.js';
import { TRANSCRIPTIONS_PATH } from '../compat/openai/transcriptions.js';

const SESSION_FILE = new RegExp(`^/v1/sessions/(${ID_CHARS})/captions\\.(vtt|srt|json)$`);
const MEETING_FILE = new RegExp(`^/v1/meetings/(${ID_CHARS})/captions\\.(vtt|srt|json)$`);
const SESSION = new RegExp(`^/v1/sessions/(${ID_CHARS})$`);
const LIST_LIMIT = 100;
/** When to try a stored file again while the store is unreachable (it retries every 2 s at most). */
const STORE_RETRY_AFTER_MS = 2000;

function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponse {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
}

export interface HttpRouteDeps {
  readonly manager: SessionManager;
  readonly pool: SlabPool;
  readonly metrics: GatewayMetrics;
  readonly archive: CaptionArchive;
  readonly hub: MeetingHub;
  readonly store: Store;
  readonly gatekeeper: Gatekeeper;
  /** Shared services that are down (e.g. "redis"): reported by /readyz, which stays 200. */
  readonly degraded?: () => string[];
  /** /metrics on this port (false when it has its own listener). */
  readonly serveMetrics: boolean;
  /** One worker of a node (server.workers > 1): /metrics answers for the whole node, /healthz names the worker. */
  readonly cluster?: NodeMetricsSource;
  /** POST /v1/audio/transcriptions (OpenAI). */
  readonly transcriptions: (req: HttpRequest) => Promise<HttpResponse>;
  /** POST /v1/listen (Deepgram pre-recorded). */
  readonly prerecorded: (req: HttpRequest) => Promise<HttpResponse>;
}

export interface NodeMetricsSource {
  readonly index: number;
  nodeMetrics(worker?: number): Promise<string>;
}

/**
 * Prometheus text, for the main port or the metrics listener. In a worker
 * of a node, the node's aggregate (whichever worker the scrape reaches);
 * `?worker=N` worker N's alone (through the primary), `?worker=self` the
 * answering worker's.
 */
export async function metricsResponse(metrics: GatewayMetrics, query: URLSearchParams, node?: NodeMetricsSource): Promise<HttpResponse> {
  const headers = { 'content-type': metrics.contentType };
  const which = query.get('worker');
  if (!node || which === 'self' || which === String(node.index)) return { status: 200, headers, body: await metrics.text() };
  if (which !== null && !/^\d{1,3}$/.test(which)) {
    return { status: 400, headers: { 'content-type': 'text/plain' }, body: `worker must be "self" or a worker index (0 to N-1), not ${JSON.stringify(which.slice(0, 20))}\n` };
  }
  try {
    return { status: 200, headers, body: await node.nodeMetrics(which === null ? undefined : Number(which)) };
  } catch (err) {
    return {
      status: 503,
      headers: { 'content-type': 'text/plain' },
      body: `the node's metrics are unavailable (${(err as Error).message}); this worker's own: /metrics?worker=self\n`,
    };
  }
}

function captionBody(format: string, finals: readonly CueSource[], extra: Record<string, unknown>): HttpResponse {
  if (format === 'json') return json(200, { ...extra, finals }, { 'cache-control': 'no-store' });
  const cues = buildCues(finals);
  const vtt = format === 'vtt';
  return {
    status: 200,
    headers: { 'content-type': vtt ? 'text/vtt; charset=utf-8' : 'application/x-subrip; charset=utf-8', 'cache-control': 'no-store' },
    body: vtt ? toWebVTT(cues) : toSrt(cues),
  };
}

const sessionJson = (r: SessionRecord) => ({
  sessionId: r.id,
  meetingId: r.meetingId,
  speaker: r.speaker,
  startedAt: new Date(r.startedAt).toISOString(),
  endedAt: r.endedAt === null ? null : new Date(r.endedAt).toISOString(),
  endReason: r.endReason,
  audio: { receivedSamples: r.receivedSamples, decodedSamples: r.decodedSamples, droppedSamples: r.droppedSamples },
});

export function createHttpRoutes(deps: HttpRouteDeps): (req: HttpRequest) => Promise<HttpResponse> {
  const { manager, pool, metrics, archive, hub, store, gatekeeper } = deps;
  const staticFiles = new StaticFiles(path.join(packageRoot(), 'web-demo'));
  const cuesModule = new StaticFiles(path.join(packageRoot(), 'dist', 'src', 'captions'));

  const refuse = (e: GatewayError): HttpResponse => {
    metrics.errors.inc({ code: e.code });
    return json(httpStatus(e.code), errorBody(e.code, e.message, e.retryAfterMs));
  };
  const notFound = (what: string) => json(404, errorBody('CAP_ERR_NOT_FOUND', what));

  /** Who a session belongs to, from memory (live or recently ended) or the store. */
  const sessionOf = async (id: string) => {
    const live = archive.get(id);
    if (live) return { owner: live.owner, meetingId: live.meetingId, live };
    const rec = await store.getSession(id);
    return rec ? { owner: rec.owner, meetingId: rec.meetingId, rec } : null;
  };

  /** A stranger learns nothing: who asks is checked before whether the thing exists. */
  const authorize = async (req: HttpRequest, of: { owner: string | null; meetingId: string | null } | null): Promise<HttpResponse | null> => {
    const denied = await gatekeeper.authorizeRead(req, of ?? { owner: null, meetingId: null });
    if (denied && (denied.code === 'CAP_ERR_UNAUTHORIZED' || of)) return refuse(denied);
    return null;
  };

  const sessionFile = async (req: HttpRequest, id: string, format: string): Promise<HttpResponse> => {
    const s = await sessionOf(id);
    const denied = await authorize(req, s);
    if (denied) return denied;
    if (!s) return notFound(`no captions for session ${id}`);
    if (s.live) {
      const r = captionBody(format, s.live.finals, { sessionId: id, live: s.live.live, droppedFinals: s.live.dropped });
      return { ...r, headers: { ...r.headers, 'x-captiongate-live': String(s.live.live), 'x-captiongate-dropped-finals': String(s.live.dropped) } };
    }
    const finals = await store.getFinals(id);
    const r = captionBody(format, finals, { ...sessionJson(s.rec!), live: false });
    return { ...r, headers: { ...r.headers, 'x-captiongate-live': 'false', 'x-captiongate-dropped-finals': '0' } };
  };

  const meetingFile = async (req: HttpRequest, id: string, format: string): Promise<HttpResponse> => {
    // A meeting's file is covered by a token whose meeting claim names it (scope view).
    const denied = await authorize(req, { owner: null, meetingId: id });
    if (denied) return denied;
    const stored = await store.getMeeting(id);
    const finals = stored ? stored.finals : await hub.meetingFinals(id);
    if (!finals) return notFound(`no captions for meeting ${id}`);
    return captionBody(format, finals, { meetingId: id, ...(stored ? { startedAt: new Date(stored.startedAt).toISOString() } : {}) });
  };

  const list = async (req: HttpRequest): Promise<HttpResponse> => {
    let owner: string | undefined;
    if (gatekeeper.authEnabled) {
      const who = await gatekeeper.verifyRequest(req);
      if (who instanceof GatewayError) return refuse(who);
      owner = who.key;
    }
    const limit = Math.min(LIST_LIMIT, Math.max(1, Number(req.query.get('limit') ?? LIST_LIMIT) || LIST_LIMIT));
    const before = req.query.has('before') ? Date.parse(req.query.get('before')!) : undefined;
    if (store.kind === 'memory') {
      // Nothing is stored: the live sessions are all there is.
      const live = manager.list().filter((s) => owner === undefined || s.owner === owner);
      return json(200, { sessions: live.slice(0, limit).map((s) => ({ sessionId: s.id, meetingId: s.meta.meetingId ?? null, speaker: s.meta.speaker ?? null, startedAt: new Date(s.startedAt).toISOString(), endedAt: null })) });
    }
    const rows = await store.listSessions(owner, { limit, ...(before !== undefined && Number.isFinite(before) ? { before } : {}) });
    return json(200, { sessions: rows.map(sessionJson) }, { 'cache-control': 'no-store' });
  };

  const remove = async (req: HttpRequest, id: string): Promise<HttpResponse> => {
    const s = await sessionOf(id);
    // Deleting is the owner's alone (a meeting claim lets a token read, not delete).
    if (gatekeeper.authEnabled) {
      const who = await gatekeeper.verifyRequest(req);
      if (who instanceof GatewayError) return refuse(who);
      if (s && s.owner !== who.key) return refuse(new GatewayError('CAP_ERR_FORBIDDEN', 'only the token that owns a session may delete it'));
    }
    if (!s) return notFound(`no session ${id}`);
    if (manager.get(id)) return json(409, errorBody('CAP_ERR_BAD_PARAMETER', `session ${id} is live; stop it first`));
    archive.forget(id);
    await store.deleteSession(id);
    return { status: 204, body: '' };
  };

  const route = async (req: HttpRequest): Promise<HttpResponse> => {
    if (req.path === TRANSCRIPTIONS_PATH) return deps.transcriptions(req);
    if (req.path === '/v1/listen' && req.method === 'POST') return deps.prerecorded(req);
    if (req.method === 'DELETE') {
      const m = SESSION.exec(req.path);
      return m ? remove(req, m[1]!) : json(405, errorBody('CAP_ERR_NOT_FOUND', 'DELETE is only for /v1/sessions/:id'));
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, errorBody('CAP_ERR_NOT_FOUND', 'only GET and DELETE are served'));
    switch (req.path) {
      case '/healthz':
        return json(200, deps.cluster ? { status: 'ok', worker: deps.cluster.index, pid: process.pid } : { status: 'ok' });
      case '/readyz': {
        const refused = manager.admissible('readyz', true);
        // A shared service down is reported, not a reason to take the node out of rotation.
        const degraded = deps.degraded?.() ?? [];
        return refused
          ? json(503, { status: 'not_ready', ready: false, code: refused.code, reason: refused.message, degraded })
          : json(200, { status: 'ready', ready: true, degraded, sessions: manager.size, slabsFree: pool.available });
      }
      case '/metrics':
        if (deps.serveMetrics) return metricsResponse(metrics, req.query, deps.cluster);
        break;
      case '/v1/listen':
        return json(426, errorBody('CAP_ERR_NOT_FOUND', 'this route is a WebSocket (connect with ws:// and Upgrade), or takes a POST of audio (Deepgram pre-recorded)'));
      case '/v1/sessions':
        return list(req);
      case '/lib/cues.js':
        // The browser demo builds its .vtt with the server's own cue code.
        return (await cuesModule.get('/cues.js')) ?? json(404, errorBody('CAP_ERR_NOT_FOUND', 'run npm run build'));
    }
    const sf = SESSION_FILE.exec(req.path);
    if (sf) return sessionFile(req, sf[1]!, sf[2]!);
    const mf = MEETING_FILE.exec(req.path);
    if (mf) return meetingFile(req, mf[1]!, mf[2]!);
    return (await staticFiles.get(req.path)) ?? json(404, errorBody('CAP_ERR_NOT_FOUND', `no route ${req.path}`));
  };

  return async (req) => {
    try {
      return await route(req);
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      const r = refuse(new GatewayError('CAP_ERR_STORE_UNAVAILABLE', err.message, STORE_RETRY_AFTER_MS));
      return { ...r, headers: { ...r.headers, 'retry-after': String(STORE_RETRY_AFTER_MS / 1000) } };
    }
  };
}
