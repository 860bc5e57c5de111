/**
 * The composition root: config in, a listening gateway out. It creates each
 * part once, in dependency order, and each part registers its own shutdown
 * steps with the Lifecycle; routing lives in upgrade.ts and http-routes.ts,
 * per-connection work in listen-connection.ts and viewer-connection.ts.
 *
 *   transport ─► ListenConnection ─► protocol codec ─► Session ─► RingBuffer (SlabPool)
 *                                                        │ wake
 *                                                    Scheduler ─► Engine (native threads)
 *                                                        │ result
 *                                                     Session ─► CaptionStabilizer ─► Outbox ─► transport
 */
import http from 'node:http';
import os from 'node:os';


import type { Logger } from 'pino';

import { openBus, type Bus } from '../bus/bus.js';
import { MeetingStreams } from '../bus/meeting-streams.js';
import { SharedLimits } from '../bus/shared-limits.js';
import { CaptionArchive } from '../captions/archive.js';
import { DeepgramConnection } from '../compat/deepgram/connection.js';
import { createPrerecordedRoute, deepgramTooLarge } from '../compat/deepgram/prerecorded.js';
import { createTranscriptionsRoute, openaiTooLarge, TRANSCRIPTIONS_PATH } from '../compat/openai/transcriptions.js';
import { FileJobs } from '../files/jobs.js';
import { LiveDecoderSlots } from '../files/live-decoder.js';
import type { CaptionEvent } from '../captions/stabilizer.js';
import { deriveShapes, formatBytes, type Shapes } from '../config/derive.js';
import type { Config } from '../config/schema.js';
import { createEngine } from '../engine/index.js';
import { ENGINE_SAMPLE_RATE, type Engine } from '../engine/types.js';
import { closeCode, GatewayError } from '../errors.js';
import { createLogger } from '../log.js';
import { openStore, type Store } from '../store/index.js';
import { CrossNodeResume } from '../registry/cross-node.js';
import { SessionRegistry } from '../registry/registry.js';
import { MeetingHub } from '../meetings/hub.js';
import { GatewayMetrics } from '../metrics/metrics.js';
import { SlabPool } from '../pool/slab-pool.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { Gatekeeper } from '../security/gatekeeper.js';
import { SessionManager } from '../session/manager.js';
import type { FaultHooks, Session } from '../session/session.js';
import type { Transport, TransportHandlers, WsConnection } from '../transport/types.js';
import { createUwsTransport } from '../transport/uws.js';
import { createWsTransport } from '../transport/ws.js';
import { createHttpRoutes, metricsResponse } from './http-routes.js';
import { ConnectionCounter, refusedConnection } from './connections.js';
import { Lifecycle } from './lifecycle.js';
import { ListenConnection } from './listen-connection.js';
import { createUpgradePolicy, errorBody, type ConnectionContext } from './upgrade.js';
import { ViewerConnection } from './viewer-connection.js';

export interface GatewayOptions {
  readonly config: Readonly<Config>;
  /** Inject an engine (tests, bench); otherwise created from config. */
  readonly engine?: Engine;
  readonly logger?: Logger;
  /** Observe every caption (tests). */
  readonly onCaption?: (session: Session, ev: CaptionEvent) => void;
  /** Test hooks at the fault boundaries (never set in production; the wire cannot reach them). */
  readonly faults?: FaultHooks;
  /** Set when this gateway is one worker of a node (server.workers > 1; src/cluster). */
  readonly cluster?: ClusterWorker;
}

export interface ClusterWorker {
  readonly index: number;
  readonly workers: number;
  /** The whole node's metrics (the cluster primary aggregates every worker's), or worker `worker`'s. */
  nodeMetrics(worker?: number): Promise<string>;
}

export interface Gateway {
  readonly config: Readonly<Config>;
  readonly shapes: Shapes;
  readonly engine: Engine;
  readonly pool: SlabPool;
  readonly manager: SessionManager;
  readonly scheduler: Scheduler;
  readonly metrics: GatewayMetrics;
  readonly transport: Transport;
  readonly hub: MeetingHub;
  readonly archive: CaptionArchive;
  readonly store: Store;
  /** The shared Redis connection (redis.url), or null: one node, nothing shared. */
  readonly bus: Bus | null;
  readonly log: Logger;
  /** Resume across nodes and draining (redis.url set); null on a single node. */
  readonly crossNode: CrossNodeResume | null;
  /** The port actually bound (after listen). */
  readonly port: number;
  /** The metrics listener's port, when metrics.host gives /metrics a listener of its own (after listen). */
  readonly metricsPort: number | null;
  listen(): Promise<number>;
  /** Every internal count a leak would show in (all zero when idle, except bookkeeping noted). */
  diagnostics(): Record<string, number>;
  /** Graceful: stop accepting, finish sessions (finals + end), close, free the engine. */
  shutdown(): Promise<void>;
}

export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const { config } = options;
  const log = options.logger ?? createLogger(config.log);
  const lifecycle = new Lifecycle(log);

  const engine = options.engine ?? (await createEngine(config));
  lifecycle.onClose('engine', () => engine.shutdown());
  // Closed after everything that writes to it (sessions end in the drain phase).
  const store = await openStore(config, log).catch(async (err: unknown) => {
    await engine.shutdown();
    throw err;
  });
  lifecycle.onClose('store', () => store.close());
  const shapes = deriveShapes(config, engine.info.policy);
  const pool = new SlabPool({ slabs: shapes.slabs, slabSamples: shapes.slabSamples });

  let manager: SessionManager | null = null;
  let scheduler: Scheduler | null = null;
  const metrics = new GatewayMetrics({
    pool: () => pool.stats(),
    engine: () => engine.stats(),
    sessions: () => manager?.size ?? 0,
    parkedSessions: () => manager?.parked ?? 0,
    batchesInFlight: () => scheduler?.inFlight ?? 0,
    engineLagSeconds: () => manager?.engineLagSeconds ?? 0,
    store: () => store.status(),
  });
  lifecycle.onClose('metrics', () => metrics.close());

  let liveLag: () => number = () => 0;
  scheduler = new Scheduler(engine, { ...config.scheduler, headroom: () => liveLag() < config.files.yieldLagSeconds }, {
    batch: (n) => metrics.batchSize.observe(n),
    submitLatency: (s) => metrics.ingestToSubmit.observe(s),
    consumed: (n) => metrics.samplesDecoded.inc(n),
  });
  lifecycle.onClose('scheduler', () => scheduler?.close());

  // Redis, when configured: closed after everything that uses it.
  const bus = openBus(config, log, metrics.registry);
  if (bus) lifecycle.onClose('redis', () => bus.close());
  const streams = bus
    ? new MeetingStreams(
        bus,
        log,
        {
          maxLen: config.redis.meetingMaxLen,
          // Keys outlive their last participant or viewer by the meeting's retention (at least two leases).
          retentionMs: Math.max(config.meetings.retentionSeconds * 1000, config.redis.leaseMs * 2),
          outageBufferBytes: config.redis.outageBufferBytes,
          heartbeatMs: config.redis.heartbeatMs,
          leaseMs: config.redis.leaseMs,
        },
        metrics.registry,
      )
    : null;
  if (streams) lifecycle.onClose('meeting streams', () => streams.close());
  const shared = bus
    ? new SharedLimits(
        bus,
        log,
        { heartbeatMs: config.redis.heartbeatMs, leaseMs: config.redis.leaseMs, unclaimedMs: (config.limits.startTimeoutSeconds + 10) * 1000 },
        metrics.registry,
      )
    : null;
  if (shared) lifecycle.onClose('shared limits', () => shared.close());

  const archive = new CaptionArchive(config.captions);
  const hub = new MeetingHub({
    ...config.meetings,
    stalledReaderSeconds: config.server.stalledReaderSeconds,
    onSlowViewer: () => metrics.errors.inc({ code: 'CAP_ERR_SLOW_READER' }),
    streams,
  });
  lifecycle.onClose('meetings', () => hub.close());
  // After the sessions drained (their last finals are published): let them reach Redis.
  if (streams) lifecycle.onDrain('meeting streams', () => streams.flushed(2000).then(() => undefined));
  // Several nodes: once the sessions have moved (drain steps run in reverse
  // order), this node's viewers are told to reconnect elsewhere (4014)
  // before the transport closes what is left.
  if (config.redis.url !== '') lifecycle.onDrain('meeting viewers', () => hub.close(true));

  // Several nodes: the registry of live and parked sessions (src/registry),
  // on the bus's connection and under the bus's node id.
  let crossNode: CrossNodeResume | null = null;
  let manager2: SessionManager | null = null;
  if (bus) {
    const registry = new SessionRegistry(bus.redis, {
      nodeId: bus.nodeId,
      keyPrefix: config.redis.keyPrefix,
      resumeGraceSeconds: config.limits.resumeGraceSeconds,
      log,
    });
    const resume = new CrossNodeResume({ registry, manager: () => manager2!, store, hub, log });
    crossNode = resume;
    lifecycle.onClose('session registry', () => registry.close());
    lifecycle.onClose('cross-node resume', () => resume.close());
  }
  const cross = crossNode;

  const meetingOf = (s: Session) => (typeof s.meta.meetingId === 'string' ? s.meta.meetingId : null);
  const joinMeeting = (s: Session, clock?: number) => {
    const m = meetingOf(s);
    if (!m) return;
    const unavailable = hub.joined(m, { sessionId: s.id, speaker: s.meta.speaker ?? 'speaker', startedAt: s.startedAt, owner: s.owner }, clock);
    if (unavailable) s.warn('meeting_unavailable', unavailable.message);
  };
  const sessions = new SessionManager({
    config,
    shapes,
    engine: engine.info,
    pool,
    scheduler,
    metrics,
    log,
    faults: options.faults,
    idKept: (id) => archive.has(id),
    started: (s) => {
      const m = meetingOf(s);
      store.sessionStarted({
        id: s.id,
        owner: s.owner,
        meetingId: m,
        speaker: s.meta.speaker ?? null,
        startedAt: s.startedAt,
        endedAt: null,
        endReason: null,
        receivedSamples: 0,
        decodedSamples: 0,
        droppedSamples: 0,
      });
      if (m) store.meetingStarted(m, s.startedAt);
      // Eviction of ended files is per owner; with auth off, per client address.
      archive.started(s.id, { owner: s.owner, group: s.owner ?? `addr:${s.remoteAddress}`, meetingId: m });
      joinMeeting(s);
      cross?.track(s);
    },
    // Continued here from another node: its store record exists (cross-node.ts wrote it if this store lacked it).
    adopted: (s) => {
      archive.started(s.id, { owner: s.owner, group: s.owner ?? `addr:${s.remoteAddress}`, meetingId: meetingOf(s) });
      const carried = cross?.carried(s.id);
      // The caption file here starts with the finals made on the other node.
      for (const f of carried?.finals ?? []) archive.record(s.id, f);
      joinMeeting(s, carried?.clock);
      cross?.adopted(s);
    },
    parked: (s) => cross?.checkpoint(s),
    published: (s, ev) => {
      if (ev.type === 'final') {
        // The final's own seq: a resume on another node replays it from the store with it.
        const f = { ...ev, seq: s.seq };
        archive.record(s.id, f);
        if (f.text) {
          store.final(s.id, f);
          cross?.final(s, f);
        } else cross?.checkpoint(s);
      }
      const m = meetingOf(s);
      if (m) hub.publish(m, s.id, ev);
      options.onCaption?.(s, ev);
    },
    ended: (s) => {
      archive.ended(s.id);
      cross?.ended(s);
      const m0 = meetingOf(s);
      if (s.movedAway) {
        // It goes on on another node: not ended in the store.
        if (m0) hub.left(m0, s.id);
        return;
      }
      const a = s.audio;
      store.sessionEnded(s.id, { endedAt: Date.now(), reason: s.endReason ?? 'unknown', receivedSamples: a.received, decodedSamples: a.decoded, droppedSamples: a.dropped });
      const m = meetingOf(s);
      if (m) hub.left(m, s.id);
    },
  });
  manager = sessions;
  manager2 = sessions;
  liveLag = () => sessions.liveLagSeconds();
  const jobs = new FileJobs({ config, engine, scheduler, log });
  // Sessions and file jobs drain together, within one grace: waiting file
  // jobs are refused at once, and one still running when the grace runs out
  // is stopped and answered 503. With several nodes, a drain hands every
  // session over (4014: reconnect elsewhere); alone, sessions finish.
  const graceMs = config.server.shutdownGraceSeconds * 1000;
  lifecycle.onDrain('sessions and file jobs', async () => {
    const done = await Promise.allSettled([jobs.close(graceMs), cross ? cross.drain(graceMs) : sessions.shutdown(graceMs)]);
    const failed = done.flatMap((d) => (d.status === 'rejected' ? [d.reason as unknown] : []));
    if (failed.length > 1) throw new AggregateError(failed, 'the sessions and the file jobs both failed to drain');
    if (failed.length === 1) throw failed[0];
  });
  lifecycle.onClose('sessions', () => sessions.close());

  const gatekeeper = new Gatekeeper(config, shared);
  lifecycle.onClose('gatekeeper', () => gatekeeper.close());
  const connections = new ConnectionCounter(config.limits.maxConnectionsPerAddress);
  const liveDecoders = new LiveDecoderSlots(config.files.maxLiveDecoders);

  const handlers: TransportHandlers<ConnectionContext> = {
    upgrade: createUpgradePolicy({
      gatekeeper,
      connections,
      metrics,
      shuttingDown: () => sessions.shuttingDown,
      liveDecoders,
      resumeRefusal: (token, identity) => {
        const r = sessions.resumable(token, identity);
        return r instanceof GatewayError ? r : null;
      },
      reserveSession: shared ? (identity, max) => shared.reserve(identity, max) : undefined,
      ...(cross ? { remoteResume: (token: string, lastSeq: number, identity: string | null) => cross.find(token, lastSeq, identity) } : {}),
    }),
    open(conn, ctx) {
      const refused = connections.open(ctx.remoteAddress);
      if (refused) {
        metrics.errors.inc({ code: refused.code });
        return refusedConnection(conn, ctx.mode, refused);
      }
      if (ctx.kind === 'viewer') return new ViewerConnection({ hub, config, metrics, log, connections }, conn, ctx);
      if (ctx.deepgram) return new DeepgramConnection({ config, manager: sessions, metrics, log, connections, liveDecoders }, conn, ctx, ctx.deepgram);
      return new ListenConnection({ config, manager: sessions, metrics, log, connections }, conn, ctx);
    },
    http: createHttpRoutes({
      manager: sessions,
      pool,
      metrics,
      archive,
      hub,
      store,
      gatekeeper,
      // What works less well than it should, without making the node unready (a Redis outage must not drain every node).
      degraded: () => [...(store.status().ok ? [] : ['store']), ...(bus && !bus.healthy() ? ['redis'] : [])],
      serveMetrics: config.metrics.host === '',
      ...(options.cluster ? { cluster: options.cluster } : {}),
      transcriptions: createTranscriptionsRoute({ maxUploadBytes: config.files.maxUploadBytes, gatekeeper, jobs, engine: engine.info, admissible: () => sessions.admissible(null) }),
      prerecorded: createPrerecordedRoute({ maxUploadBytes: config.files.maxUploadBytes, gatekeeper, jobs, engine: engine.info, admissible: () => sessions.admissible(null) }),
    }),
  };
  const transportOptions = {
    // Frames above maxFrameBytes get CAP_ERR_FRAME_TOO_LARGE and the session
    // survives; only beyond twice that does the transport close with 1009.
    maxPayloadBytes: Math.max(config.limits.maxFrameBytes, config.limits.maxControlBytes) * 2 + 1024,
    maxBackpressureBytes: config.server.maxBackpressureBytes,
    // A file, plus the multipart envelope and fields around it.
    maxBodyBytes: config.files.maxUploadBytes + 64 * 1024,
    bodyTooLarge: (req: { path: string }, limit: number) =>
      req.path === TRANSCRIPTIONS_PATH
        ? openaiTooLarge(config.files.maxUploadBytes)
        : req.path === '/v1/listen'
          ? deepgramTooLarge(config.files.maxUploadBytes)
          : { status: 413, headers: { 'content-type': 'application/json' }, body: JSON.stringify(errorBody('CAP_ERR_BAD_PARAMETER', `the request body is larger than ${limit} bytes`)) },
    onWarning: (message: string, err: unknown) => log.warn({ err }, message),
    // Connection handlers guard themselves; this is the transport's last line.
    onHandlerError: (err: unknown, conn: WsConnection) => {
      log.error({ err, boundary: 'transport', remote: conn.remoteAddress }, 'internal error in a connection handler: closing it');
      metrics.internalErrors.inc({ boundary: 'transport' });
      conn.close(closeCode('CAP_ERR_INTERNAL'), 'CAP_ERR_INTERNAL');
    },
  };
  const transport =
    config.server.transport === 'uws' ? createUwsTransport(handlers, transportOptions) : createWsTransport(handlers, transportOptions);
  lifecycle.onDrain('transport', () => transport.stopListening());
  lifecycle.onClose('transport', async () => {
    // Let the last `end` messages reach their sockets, then drop the rest.
    await new Promise((r) => setTimeout(r, 50));
    await transport.close();
  });

  // /metrics on a listener of its own, so it need not face the internet.
  let metricsServer: http.Server | null = null;
  let metricsPort: number | null = null;
  if (config.metrics.host !== '') {
    metricsServer = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://metrics');
      if (url.pathname !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('only /metrics is served here\n');
        return;
      }
      metricsResponse(metrics, url.searchParams, options.cluster).then(
        (r) => res.writeHead(r.status, r.headers as http.OutgoingHttpHeaders).end(r.body),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    });
    lifecycle.onClose('metrics listener', () => new Promise<void>((r) => metricsServer!.close(() => r())));
  }

  // A parked session holds no slab but keeps its caption file and replay log.
  const sessionsAtMost = shapes.slabs + config.limits.maxParkedSessions;
  logStartup(log, config, shapes, engine, transport, sessions.scratchBytes, options.cluster ?? null, {
    captions: archive.budgetBytes(sessionsAtMost),
    replays: hub.budgetBytes(),
    resumeLogs: sessionsAtMost * config.limits.resumeBufferBytes,
  });

  let port = 0;
  return {
    config,
    shapes,
    engine,
    pool,
    manager: sessions,
    scheduler,
    metrics,
    transport,
    hub,
    archive,
    store,
    bus,
    log,
    crossNode,
    get port() {
      return port;
    },
    get metricsPort() {
      return metricsPort;
    },
    diagnostics() {
      const e = engine.stats();
      const t = hub.totals();
      return {
        ...sessions.diagnostics(),
        slabsInUse: pool.inUse,
        liveDecoders: liveDecoders.inUse,
        engineStreams: e.streams,
        decodersInUse: e.decodersInUse,
        streamsWaiting: e.streamsWaiting,
        engineQueuedWindows: e.queuedWindows,
        schedulerQueued: scheduler.queued,
        batchesInFlight: scheduler.inFlight,
        connections: transport.connections(),
        viewers: t.viewers,
        participants: t.participants,
        liveCaptionArchives: archive.size.live,
        fileJobsRunning: jobs.running,
        fileJobsQueued: jobs.queued,
        schedulerBackgroundQueued: scheduler.backgroundQueued,
      };
    },
    async listen() {
      if (cross) {
        await cross.start();
        log.info({ node: cross.nodeId }, `session registry on Redis: node ${cross.nodeId}`);
      }
      port = await transport.listen(config.server.host, config.server.port);
      log.info({ host: config.server.host, port }, `listening on ${config.server.host}:${port}`);
      if (metricsServer) {
        const server = metricsServer;
        metricsPort = await new Promise<number>((resolve, reject) => {
          server.once('error', reject);
          server.listen(config.metrics.port, config.metrics.host, () => {
            const a = server.address();
            resolve(typeof a === 'object' && a ? a.port : config.metrics.port);
          });
        });
        log.info({ host: config.metrics.host, port: metricsPort }, `metrics on http://${config.metrics.host}:${metricsPort}/metrics`);
      }
      return port;
    },
    async shutdown() {
      log.info({ sessions: sessions.size }, 'shutting down: finishing live sessions');
      await lifecycle.shutdown();
      log.info('shutdown complete');
    },
  };
}

function logStartup(
  log: Logger,
  config: Readonly<Config>,
  shapes: Shapes,
  engine: Engine,
  transport: Transport,
  scratchBytes: number,
  worker: ClusterWorker | null,
  captions: { captions: number; replays: number; resumeLogs: number },
): void {
  // A worker's budget is its share of the node's; the primary logs the node's total.
  const scope = worker ? `worker ${worker.index} of ${worker.workers}: ` : '';
  log.info(
    {
      budget: {
        captionFilesBytes: captions.captions,
        meetingReplayBytes: captions.replays,
        resumeLogBytes: captions.resumeLogs,
        slabs: shapes.slabs,
        slabSeconds: config.pool.slabSeconds,
        slabSamples: shapes.slabSamples,
        ringSamples: shapes.ringSamples,
        mirrorSamples: shapes.mirrorSamples,
        slabBytes: shapes.slabBytes,
        poolBytes: shapes.poolBytes,
        arrivalLogBytes: shapes.arrivalBytes,
        conversionScratchBytes: scratchBytes,
        maxBackpressureBytesPerSocket: config.server.maxBackpressureBytes * 2,
        // uWS cannot pause a socket: audio that arrives while a session's reading is paused waits here.
        maxHeldAudioBytesPerSocket: config.server.maxHeldAudioBytes,
      },
    },
    `${scope}memory budget: ${shapes.slabs} slabs x ${formatBytes(shapes.slabBytes)} = ${formatBytes(shapes.poolBytes)} ` +
      `(each slab: ${config.pool.slabSeconds} s ring + ${(shapes.mirrorSamples / ENGINE_SAMPLE_RATE).toFixed(2)} s mirror of 16 kHz 16-bit samples) ` +
      `+ ${formatBytes(shapes.arrivalBytes)} of arrival logs (${shapes.arrivalEntries} entries a slab, resident as written); ` +
      `captions at most ${formatBytes(captions.captions)} (caption files) + ${formatBytes(captions.replays)} (meeting replays${config.redis.url ? ' and the Redis outage buffer' : ''}) + ` +
      `${formatBytes(captions.resumeLogs)} (resume logs: ${config.limits.resumeBufferBytes} B x (${shapes.slabs} live + ${config.limits.maxParkedSessions} parked))`,
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
}
