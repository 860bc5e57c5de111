/**
 * The composition root: config in, a listening gateway out. Everything else
 * is wired here and nowhere else.
 *
 *   transport ─► ListenConnection ─► protocol codec ─► Session ─► RingBuffer (SlabPool)
 *                                                        │
 *                 WindowBatcher ◄── WindowScheduler ◄────┘
 *                      │
 *                   Engine (native) ─► Session.onResult ─► CaptionStabilizer ─► Outbox ─► transport
 */
import path from 'node:path';

import type { Logger } from 'pino';

import type { CaptionEvent } from '../captions/stabilizer.js';
import { deriveShapes, formatBytes, type Shapes } from '../config/derive.js';
import type { Config } from '../config/schema.js';
import { createEngine } from '../engine/index.js';
import type { Engine } from '../engine/types.js';
import { ERRORS, GatewayError, httpStatus } from '../errors.js';
import { createLogger } from '../log.js';
import { GatewayMetrics } from '../metrics/metrics.js';
import { SlabPool } from '../pool/slab-pool.js';
import { SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, type WireMode } from '../protocol/messages.js';
import { startFromQuery } from '../protocol/query.js';
import { WindowBatcher } from '../scheduler/window-batcher.js';
import { WindowScheduler } from '../scheduler/window-scheduler.js';
import { SessionManager } from '../session/manager.js';
import type { Session } from '../session/session.js';
import type {
  ConnectionHandler,
  HttpRequest,
  HttpResponse,
  Transport,
  TransportHandlers,
  UpgradeDecision,
  UpgradeRequest,
  WsConnection,
} from '../transport/types.js';
import { createUwsTransport } from '../transport/uws.js';
import { createWsTransport } from '../transport/ws.js';
import { packageRoot } from '../util/paths.js';
import { CaptionArchive } from '../captions/archive.js';
import { buildCues, toSrt, toWebVTT } from '../captions/cues.js';
import { MeetingHub } from '../meetings/hub.js';
import { ListenConnection, type ListenContext } from './listen-connection.js';
import { StaticFiles } from './static-files.js';
import { ViewerConnection, type ViewerContext } from './viewer-connection.js';
import { Gatekeeper } from '../security/gatekeeper.js';

export interface GatewayOptions {
  readonly config: Readonly<Config>;
  /** Inject an engine (tests, bench); otherwise created from config. */
  readonly engine?: Engine;
  readonly logger?: Logger;
  /** Observe every caption (meetings, tests). */
  readonly onCaption?: (session: Session, ev: CaptionEvent) => void;
}

type Context = ListenContext | ViewerContext;

const MEETING_ROUTE = /^\/v1\/meetings\/([A-Za-z0-9._-]{1,128})\/captions$/;
const CAPTION_FILE_ROUTE = /^\/v1\/sessions\/([A-Za-z0-9._-]{1,128})\/captions\.(vtt|srt)$/;

export interface Gateway {
  readonly config: Readonly<Config>;
  readonly shapes: Shapes;
  readonly engine: Engine;
  readonly pool: SlabPool;
  readonly manager: SessionManager;
  readonly batcher: WindowBatcher;
  readonly metrics: GatewayMetrics;
  readonly transport: Transport;
  readonly hub: MeetingHub;
  readonly archive: CaptionArchive;
  readonly log: Logger;
  /** The port actually bound (after listen). */
  readonly port: number;
  listen(): Promise<number>;
  /** Every internal count a leak would show in (all zero when idle, except bookkeeping noted). */
  diagnostics(): Record<string, number>;
  /** Graceful: stop accepting, finish sessions (finals + end), close, free the engine. */
  shutdown(): Promise<void>;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponse {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
}

function errorBody(code: keyof typeof ERRORS, message: string, retryAfterMs?: number) {
  return { error: { code, message, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) } };
}

export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const { config } = options;
  const log = options.logger ?? createLogger(config.log);
  const engine = options.engine ?? (await createEngine(config));
  const shapes = deriveShapes(config, engine.info.policy);
  const pool = new SlabPool({ slabs: shapes.slabs, slabSamples: shapes.slabSamples });
  const scheduler = new WindowScheduler(engine.info.policy);

  let manager: SessionManager | undefined;
  let batcher: WindowBatcher | undefined;
  const metrics = new GatewayMetrics({
    pool: () => pool.stats(),
    engine: () => engine.stats(),
    sessions: () => manager?.size ?? 0,
    batchesInFlight: () => batcher?.inFlight ?? 0,
    engineLagSeconds: () => manager?.engineLagSeconds ?? 0,
  });
  batcher = new WindowBatcher(engine, scheduler, config.scheduler, {
    batch: (n) => metrics.batchSize.observe(n),
    submitLatency: (s) => metrics.ingestToSubmit.observe(s),
  });
  const archive = new CaptionArchive(config.captions);
  const hub = new MeetingHub({
    ...config.meetings,
    stalledReaderSeconds: config.server.stalledReaderSeconds,
    onSlowViewer: () => metrics.errors.inc({ code: 'CAP_ERR_SLOW_READER' }),
  });
  const meetingOf = (s: Session) => (typeof s.meta.meetingId === 'string' ? s.meta.meetingId : null);
  manager = new SessionManager({
    config,
    shapes,
    engine,
    pool,
    batcher,
    metrics,
    log,
    started: (s) => {
      archive.started(s.id);
      const m = meetingOf(s);
      if (m) hub.joined(m, { sessionId: s.id, speaker: s.meta.speaker ?? s.id, startedAt: s.startedAt });
    },
    published: (s, ev) => {
      if (ev.type === 'final') archive.record(s.id, { ...ev, seq: 0 });
      const m = meetingOf(s);
      if (m) hub.publish(m, s.id, ev);
      options.onCaption?.(s, ev);
    },
    ended: (s) => {
      archive.ended(s.id);
      const m = meetingOf(s);
      if (m) hub.left(m, s.id);
    },
  });
  const sessions = manager;
  const gatekeeper = new Gatekeeper(config);
  const staticFiles = new StaticFiles(path.join(packageRoot(), 'web-demo'));
  const cuesModule = new StaticFiles(path.join(packageRoot(), 'dist', 'src', 'captions'));

  const handlers: TransportHandlers<Context> = {
    async upgrade(req: UpgradeRequest): Promise<UpgradeDecision<Context>> {
      const meeting = MEETING_ROUTE.exec(req.path);
      if (req.path !== '/v1/listen' && !meeting) {
        return { accept: false, status: 404, body: JSON.stringify(errorBody('CAP_ERR_NOT_FOUND', `no WebSocket route ${req.path}`)) };
      }
      if (sessions.shuttingDown) {
        return {
          accept: false,
          status: 503,
          body: JSON.stringify(errorBody('CAP_ERR_SERVER_SHUTDOWN', 'the server is shutting down', 2000)),
          headers: { 'retry-after': '2' },
        };
      }
      let mode: WireMode = 'json';
      let protocol: string | null = null;
      if (req.protocols.length) {
        const pick = req.protocols.find((p) => p === SUBPROTOCOL_JSON || p === SUBPROTOCOL_MSGPACK);
        if (!pick) {
          return {
            accept: false,
            status: 400,
            body: JSON.stringify(
              errorBody('CAP_ERR_UNSUPPORTED_PROTOCOL', `supported subprotocols: ${SUBPROTOCOL_JSON}, ${SUBPROTOCOL_MSGPACK}`),
            ),
          };
        }
        protocol = pick;
        mode = pick === SUBPROTOCOL_MSGPACK ? 'msgpack' : 'json';
      }
      // Origin, rate limits and the token, before anything is allocated.
      const admitted = await gatekeeper.admit(req, meeting ? meeting[1]! : null);
      if (admitted instanceof GatewayError) {
        metrics.errors.inc({ code: admitted.code });
        metrics.sessionsRefused.inc({ code: admitted.code });
        const status = httpStatus(admitted.code);
        return {
          accept: false,
          status,
          body: JSON.stringify(errorBody(admitted.code, admitted.message, admitted.retryAfterMs)),
          ...(admitted.retryAfterMs !== undefined ? { headers: { 'retry-after': String(Math.ceil(admitted.retryAfterMs / 1000)) } } : {}),
        };
      }
      if (meeting) {
        return { accept: true, protocol, context: { kind: 'viewer', mode, meetingId: meeting[1]!, remoteAddress: admitted.remoteAddress } };
      }
      return {
        accept: true,
        protocol,
        context: {
          kind: 'listen',
          mode,
          start: startFromQuery(req.query),
          remoteAddress: admitted.remoteAddress,
          identity: admitted.identity,
          authEnabled: gatekeeper.authEnabled,
        },
      };
    },
    open(conn: WsConnection, ctx: Context): ConnectionHandler {
      if (ctx.kind === 'viewer') return new ViewerConnection({ hub, config, metrics }, conn, ctx);
      return new ListenConnection({ config, manager: sessions, metrics }, conn, ctx);
    },
    async http(req: HttpRequest): Promise<HttpResponse> {
      if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, errorBody('CAP_ERR_NOT_FOUND', 'only GET is served'));
      switch (req.path) {
        case '/healthz':
          return json(200, { status: 'ok' });
        case '/readyz': {
          const refused = sessions.admissible('readyz', true);
          return refused
            ? json(503, { status: 'not_ready', code: refused.code, reason: refused.message })
            : json(200, { status: 'ready', sessions: sessions.size, slabsFree: pool.available });
        }
        case '/metrics':
          return { status: 200, headers: { 'content-type': metrics.contentType }, body: await metrics.text() };
        case '/v1/listen':
          return json(426, errorBody('CAP_ERR_NOT_FOUND', 'this route is a WebSocket; connect with ws:// and Upgrade'));
        case '/lib/cues.js':
          // The browser demo builds its .vtt with the server's own cue code.
          return (await cuesModule.get('/cues.js')) ?? json(404, errorBody('CAP_ERR_NOT_FOUND', 'run npm run build'));
      }
      const captionFile = CAPTION_FILE_ROUTE.exec(req.path);
      if (captionFile) {
        const got = archive.get(captionFile[1]!);
        if (!got) return json(404, errorBody('CAP_ERR_NOT_FOUND', `no captions for session ${captionFile[1]}`));
        const cues = buildCues(got.finals);
        const vtt = captionFile[2] === 'vtt';
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
      }
      const file = await staticFiles.get(req.path);
      if (file) return file;
      return json(404, errorBody('CAP_ERR_NOT_FOUND', `no route ${req.path}`));
    },
  };

  const transportOptions = {
    // Frames above maxFrameBytes get CAP_ERR_FRAME_TOO_LARGE and the session
    // survives; only beyond twice that does the transport close with 1009.
    maxPayloadBytes: Math.max(config.limits.maxFrameBytes, config.limits.maxControlBytes) * 2 + 1024,
    maxBackpressureBytes: config.server.maxBackpressureBytes,
  };
  const transport =
    config.server.transport === 'uws' ? createUwsTransport(handlers, transportOptions) : createWsTransport(handlers, transportOptions);

  log.info(
    {
      budget: {
        slabs: shapes.slabs,
        slabSeconds: config.pool.slabSeconds,
        slabSamples: shapes.slabSamples,
        ringSamples: shapes.ringSamples,
        mirrorSamples: shapes.mirrorSamples,
        slabBytes: shapes.slabBytes,
        poolBytes: shapes.poolBytes,
        conversionScratchBytes: sessions.scratchBytes,
        maxBackpressureBytesPerSocket: config.server.maxBackpressureBytes * 2,
      },
    },
    `memory budget: ${shapes.slabs} slabs x ${formatBytes(shapes.slabBytes)} = ${formatBytes(shapes.poolBytes)} ` +
      `(each slab: ${config.pool.slabSeconds} s ring + ${(shapes.mirrorSamples / 16000).toFixed(2)} s mirror at 16 kHz float32)`,
  );
  const modelBytes = engine.stats().modelBytes;
  log.info(
    { engine: engine.info.name, decoders: engine.info.decoders, threads: engine.info.threads, policy: engine.info.policy, modelBytes },
    `engine ${engine.info.name}: ${engine.info.decoders} decoders on ${engine.info.threads} threads` +
      (modelBytes > 0 ? `, model ${formatBytes(modelBytes)}` : ''),
  );
  if (transport.kind === 'uws') {
    if (transport.native) log.info({ transport: 'uws', native: true }, 'transport: uWebSockets.js native build');
    else log.warn({ transport: 'uws', native: false }, 'transport: uWebSockets.js JS FALLBACK (slow); use Node 16/18/20 for the native build');
  } else {
    log.info({ transport: 'ws' }, 'transport: ws (Node.js)');
  }

  let port = 0;
  let shutdownPromise: Promise<void> | null = null;
  const gateway: Gateway = {
    config,
    shapes,
    engine,
    pool,
    manager: sessions,
    batcher,
    metrics,
    transport,
    hub,
    archive,
    log,
    get port() {
      return port;
    },
    diagnostics() {
      const e = engine.stats();
      const m = sessions.diagnostics();
      const t = hub.totals();
      return {
        ...m,
        slabsInUse: pool.inUse,
        engineStreams: e.streams,
        decodersInUse: e.decodersInUse,
        streamsWaiting: e.streamsWaiting,
        engineQueuedWindows: e.queuedWindows,
        batcherQueued: batcher?.queued ?? 0,
        batchesInFlight: batcher?.inFlight ?? 0,
        connections: transport.connections(),
        viewers: t.viewers,
        participants: t.participants,
        liveCaptionArchives: archive.size.live,
      };
    },
    async listen() {
      port = await transport.listen(config.server.host, config.server.port);
      log.info({ host: config.server.host, port }, `listening on ${config.server.host}:${port}`);
      return port;
    },
    shutdown() {
      shutdownPromise ??= (async () => {
        log.info({ sessions: sessions.size }, 'shutting down: finishing live sessions');
        transport.stopListening();
        await sessions.shutdown(config.server.shutdownGraceSeconds * 1000);
        // Let the last `end` messages reach their sockets.
        await new Promise((r) => setTimeout(r, 50));
        hub.close();
        gatekeeper.close();
        await transport.close();
        batcher?.close();
        await engine.shutdown();
        sessions.close();
        metrics.close();
        log.info('shutdown complete');
      })();
      return shutdownPromise;
    },
  };
  return gateway;
}
