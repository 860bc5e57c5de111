/**
 * Prints the README's config table from the schema and config/default.json:
 * `node dist/scripts/config-table.js`. test/unit/readme.test.ts checks that
 * the README lists every key.
 */
import { readFileSync, writeFileSync } from 'node:fs';

import { z } from 'zod';

import { defaultConfigPath } from '../src/config/load.js';
import { configSchema } from '../src/config/schema.js';

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  minimum?: number;
  maximum?: number;
  enum?: unknown[];
  items?: JsonSchema;
}

const HELP: Record<string, string> = {
  'server.host': 'Listen address.',
  'server.port': 'Listen port (also `PORT`).',
  'server.transport': 'WebSocket server: uWebSockets.js or ws.',
  'server.maxBackpressureBytes': 'Per-socket send buffer the gateway keeps below; also the per-socket queue bound.',
  'server.stalledReaderSeconds': 'A socket backed up this long is dropped (`slow_reader`, 4008).',
  'server.shutdownGraceSeconds': 'On SIGTERM, how long live sessions and running file jobs get to finish (the same grace, together); then the rest of a session is dropped and counted, and a file job is answered 503.',
  'server.allowedOrigins': 'Origin allowlist for browser upgrades (empty: any). Requests without Origin (bots) are not affected.',
  'server.maxHeldAudioBytes': 'Per connection: audio held while a sender faster than real time is paused, on a transport that cannot stop reading its socket (the pinned uWebSockets.js); beyond it, frames go to the session and the lag bound applies. ws pauses the socket itself and holds nothing.',
  'server.trustProxy': 'Take the client address from X-Forwarded-For (only behind your own reverse proxy).',
  'server.workers': 'Gateway processes on this machine, on one port (also `captiongate serve --workers N`). More than 1 needs `redis.url`; `pool.slabs`, `limits.maxParkedSessions`, `engine.threads` and `engine.decoders` are the node\'s and are shared out among the workers (docs/deploy.md).',
  'auth.secret': 'HS256 secret, at least 32 bytes (shorter is refused at startup); when set, auth is on: every session, viewer and caption file needs a JWT. Set it with `CAPTIONGATE_AUTH_SECRET`. Empty: auth off.',
  'auth.issuer': 'Required `iss` claim, if set.',
  'auth.audience': 'Required `aud` claim, if set.',
  'auth.clockToleranceSeconds': 'Clock skew allowed on `exp`/`nbf`.',
  'auth.maxTokenLifetimeSeconds': 'A token whose `exp` lies further ahead than this is refused.',
  'auth.apiKeys': 'Static API keys, next to JWTs; any key turns auth on. Entries: `"key"`, `"sub:key"`, or (config file) `{"key","sub","scope","name"}`; keys of at least 16 characters. Clients send `Authorization: Token <key>` or `Bearer <key>`, or the subprotocol pair `token, <key>`. Held only as SHA-256 hashes, never logged. Environment: a comma-separated list.',
  'rateLimits.opensPerMinutePerAddress': 'Session/viewer opens per client address per minute (burst of the same size).',
  'rateLimits.opensPerMinutePerToken': 'Opens per token identity (`sub`) per minute.',
  'pool.slabs': 'Session slabs allocated at startup = maximum concurrent sessions.',
  'pool.slabSeconds': 'Audio backlog one slab holds (16 kHz, 16-bit samples).',
  'audio.resampleQuality': 'Speex resampler quality (0-10).',
  'limits.maxSessionSeconds': 'Audio seconds per session; then finals, `end` (max_duration), close 4003.',
  'limits.idleTimeoutSeconds': 'No message for this long: finals, `end` (idle_timeout), close 4004.',
  'limits.maxFrameBytes': 'Largest audio frame accepted.',
  'limits.maxControlBytes': 'Largest control message accepted.',
  'limits.maxSessionsPerAddress': 'Concurrent sessions per client address.',
  'limits.maxErrorsPerSession': 'Errors before a session is ended as a protocol violation.',
  'limits.lagWarnSeconds': 'Backlog that triggers a `lagging` warning.',
  'limits.lagMaxSeconds': 'Backlog that ends the session (`engine_overload`), reporting what was dropped.',
  'limits.startTimeoutSeconds': 'A connection that has not started a session by then is closed (`CAP_ERR_START_TIMEOUT`, 4010).',
  'limits.maxConnectionsPerAddress': 'Open connections per client address: sessions, meeting viewers and connections not yet started.',
  'limits.maxSessionWallSeconds': 'Wall-clock seconds per session; then finals, `end` (max_wall_time), close 4003.',
  'limits.maxSilentSeconds': 'No speech for this long (silent audio, or no audio at all; keepalives do not count): finals, `end` (max_silence), close 4004. 3 h fits a long meeting with a silent participant.',
  'limits.resumeGraceSeconds': 'A session whose connection drops (no close frame) is parked this long, holding no slab, for its client to resume with `?resume=<token>&lastSeq=<n>`; 0: a drop ends it (`client_gone`).',
  'limits.resumeBufferBytes': 'Encoded messages kept per session for a resume to replay (superseded partials go first; × (slabs + maxParkedSessions) in the startup budget).',
  'limits.maxParkedSessions': 'Parked sessions at once (the oldest is ended beyond); 0: no resume.',
  'scheduler.maxBatch': 'Windows per engine call.',
  'scheduler.maxWaitMs': 'Longest a ready window waits for its batch to fill.',
  'scheduler.maxInFlight': 'Engine calls in flight at once.',
  'admission.maxEngineLagSeconds': 'New sessions are refused (capacity) while the oldest undecoded audio of any session has waited longer than this. A client catching up in a burst does not count, nor does a stream waiting for a decoder; an engine that cannot keep up does.',
  'engine.kind': 'Recognition engine: `moonshine` (Moonshine on ONNX Runtime; setup installs the models; docs/moonshine.md), `pocketsphinx`, or `whisper` (Whisper base; setup installs the model). (`overhead` decodes nothing; bench and tests only.)',
  'engine.threads': 'Engine worker threads (not libuv\'s pool); for Whisper, the BLAS threads of its inference thread.',
  'engine.decoders': 'Decoder pool size (about 91 MB each); a stream holds one only inside an utterance.',
  'engine.windowMs': 'Audio per engine window.',
  'engine.pocketsphinx.modelDir': 'Model directory (apt package `pocketsphinx-en-us`).',
  'engine.pocketsphinx.hmm': 'Acoustic model (relative to modelDir).',
  'engine.pocketsphinx.lm': 'Language model.',
  'engine.pocketsphinx.dict': 'Pronunciation dictionary.',
  'engine.pocketsphinx.fwdflat': 'Second flat-lexicon pass (slower end of utterance; measured worse here).',
  'engine.pocketsphinx.bestpath': 'Lattice best-path rescoring (same).',
  'engine.pocketsphinx.beam': 'HMM beam.',
  'engine.pocketsphinx.wbeam': 'Word-exit beam.',
  'engine.pocketsphinx.pbeam': 'Phone-transition beam.',
  'engine.pocketsphinx.lw': 'Language weight.',
  'engine.pocketsphinx.maxhmmpf': 'Max active HMMs per frame (-1: no limit).',
  'engine.pocketsphinx.maxwpf': 'Max distinct words per frame (-1: no limit).',
  'engine.pocketsphinx.plWindow': 'Phone-loop lookahead frames.',
  'engine.pocketsphinx.removeNoise': 'Spectral noise subtraction in the front end.',
  'engine.pocketsphinx.cmnUpdateMs': 'Cepstral mean update period (0: stock live CMN, every 8 s).',
  'engine.pocketsphinx.wordConfidence': 'Word posteriors from the lattice (costs CPU at each endpoint).',
  'engine.pocketsphinx.maxHoldMs': 'Fair decoders: while a stream waits for a decoder, an utterance that has run this long ends at the next pause (within 300 ms) and hands its decoder on; the talker queues again (0: never). See docs/architecture.md §6.',
  'engine.whisper.modelDir': 'Whisper model directory (relative to the package). Installed and verified by `node scripts/fetch-whisper-model.mjs`.',
  'engine.whisper.device': 'Matrix device behind the seam. `cpu` (OpenBLAS) is the only one in this build; see docs/xdna2.md.',
  'engine.whisper.maxBatch': 'Windows per encoder batch (cross-session).',
  'engine.whisper.partialIntervalMs': 'Re-decode an open utterance for a partial at most this often (wall time), when it has new speech.',
  'engine.whisper.minContextSeconds': 'Shortest encoder window (audio is zero-padded up to it; 30 = stock Whisper). See docs/whisper.md for the accuracy cost.',
  'engine.whisper.maxUtteranceSeconds': 'Forced endpoint for run-on speech (at most 29: one encoder window).',
  'engine.whisper.noSpeechThreshold': 'With logprobThreshold: drop a decode whose no-speech probability is above this and whose mean log-probability is below that (Whisper\'s own rule).',
  'engine.whisper.logprobThreshold': 'See noSpeechThreshold.',
  'engine.whisper.selfTest': 'Check the device\'s encoder against the CPU reference at startup (always on for non-CPU devices).',
  'engine.vad.enabled': 'Speech detection; off means one utterance per flush (push-to-talk).',
  'engine.vad.threshold': 'VAD signal-to-noise threshold.',
  'engine.vad.startMs': 'Speech needed to open an utterance.',
  'engine.vad.endMs': 'Silence that ends an utterance (the endpoint).',
  'engine.vad.prerollMs': 'Audio before the trigger fed to the decoder.',
  'engine.vad.maxUtteranceSeconds': 'Forced endpoint for run-on speech.',
  'captions.interim': 'Send partials (per-session `interim` overrides).',
  'captions.maxBytesPerSession': 'Memory for a live session\'s caption file (oldest finals dropped beyond; part of the startup budget).',
  'captions.keepEndedSeconds': 'How long an ended session\'s caption file stays downloadable.',
  'captions.maxEndedBytesPerOwner': 'Memory for one owner\'s ended caption files (its own oldest go first; no owner evicts another\'s).',
  'captions.maxEndedOwners': 'Owners (token identities; with auth off, client addresses) with ended files kept at once.',
  'engine.moonshine.model': 'Moonshine model: `tiny` (the default; 4.2% WER on LibriVox here) or `base` (more accurate, about 600 MB, fewer sessions).',
  'engine.moonshine.preview': 'With `base`: `tiny` shows tiny\'s text as the partial until base has its own (base gives some openings no text until 0.7 s of speech; about 100 MB more); `none` shows base\'s alone. Finals are always base\'s. Ignored with `tiny`.',
  'engine.moonshine.finalBeamWidth': 'Finals (never revised) are beam searches this wide; partials stay greedy. 0: the model\'s own, 2 for `tiny` (flite speech: 4.5% WER, 5.3% greedy; about 1.3× the work per final) and 1 for `base` (a beam gains it 1 error in 1,071 words and costs it the drafts that make its finals cheap). 1: greedy, as Moonshine\'s own runtime.',
  'engine.moonshine.modelsDir': 'Folder holding `moonshine-tiny/` and `moonshine-base/` (relative to the package). Installed and verified by `node scripts/fetch-moonshine-model.mjs`.',
  'engine.moonshine.partialIntervalMs': 'Re-decode an open utterance for a partial at most this often (and at most a third of a thread per stream).',
  'engine.moonshine.tailMs': 'Audio kept after the last loud frame in a final\'s span; a pause this long starts the speculative final.',
  'engine.moonshine.maxUtteranceSeconds': 'An utterance is cut, and a new one begins, at this length.',
  'engine.moonshine.maxTokensPerSecond': 'A decode stops after ceil(seconds × this) tokens (repetition guard).',
  'engine.moonshine.maxBatch': 'Most rows in one run where rows are independent (base, equal lengths; tiny always runs 1).',
  'store.kind': '`sqlite`: finals, caption files and session lists survive a restart (better-sqlite3 on a worker thread). `postgres`: the same, in a PostgreSQL database several nodes share (`store.url`; README, "PostgreSQL"). `memory`: nothing is kept after exit.',
  'store.path': 'SQLite database file (relative to the working directory); WAL mode, so back it up with `sqlite3 <path> .backup <file>` (README, "The caption store").',
  'store.url': 'With `store.kind` `postgres`: `postgres://user:password@host:5432/database` (connection parameters the `pg` driver reads may follow `?`, e.g. `sslmode=require`). Holds a password: set it with `CAPTIONGATE_STORE_URL`; it is never logged (the password shows as `***`). Unreachable at startup: the server refuses to start.',
  'store.poolSize': 'PostgreSQL connections per process (one writes a batch at a time; the rest serve caption files).',
  'store.maxQueuedWrites': 'PostgreSQL: records (sessions, finals, ends) queued while the database is unreachable; beyond it new writes are dropped, counted (`captiongate_store_dropped_writes`) and logged. Live sessions are never affected.',
  'store.flushMs': 'Finals are written in one transaction at most this often (a crash loses at most this much; a clean stop loses nothing).',
  'store.retentionDays': 'Ended sessions older than this are deleted (0: kept forever).',
  'store.maxSessionsPerOwner': 'Stored sessions per owner; beyond it, that owner\'s oldest ended sessions go.',
  'store.busyTimeoutMs': 'How long a write waits for a lock held by another process (e.g. a backup).',
  'meetings.maxMeetings': 'Meeting rooms at once.',
  'meetings.maxViewersPerMeeting': 'Read-only viewers per meeting.',
  'meetings.maxViewersPerToken': 'Viewer places one token may hold in a meeting.',
  'meetings.maxWaitingViewersPerAddress': 'Viewers from one address waiting for meetings that have not started (they take no meeting place).',
  'meetings.maxWaitingViewersPerToken': 'The same, per token.',
  'meetings.maxReplayBytes': 'Memory for the finals replayed to a meeting\'s joining viewers (oldest dropped beyond; × maxMeetings in the startup budget).',
  'meetings.retentionSeconds': 'An empty meeting is forgotten after this long.',
  'files.maxUploadBytes': 'Largest uploaded file (POST /v1/audio/transcriptions, POST /v1/listen); a larger body is answered 413 before more of it is read. OpenAI allows 25 MB.',
  'files.maxDurationSeconds': 'Longest decoded audio of one file; longer is 400 (`audio_too_long`): ffmpeg is stopped once its output passes this.',
  'files.decodeTimeoutSeconds': 'Wall-clock limit on decoding one file with ffmpeg; the process is killed beyond it (400).',
  'files.maxConcurrentJobs': 'File jobs decoded and transcribed at once (each uses one engine stream).',
  'files.maxQueuedJobs': 'File jobs waiting for a slot; beyond this a request is refused with 429 and `Retry-After`.',
  'files.yieldLagSeconds': 'File jobs yield to live sessions: a file window goes to the engine only when no live window waits and every live session\'s oldest undecoded audio has waited less than this.',
  'redis.url': 'The Redis that several nodes (or workers) share: meetings through Redis Streams, open rates and per-token session caps across nodes, and the registry of live and parked sessions, so that a resume continues the same session on whichever node it lands. Empty: one node, nothing shared, everything in process.',
  'redis.keyPrefix': 'Every key the gateway writes starts with this (several gateways can share one Redis).',
  'metrics.host': 'Empty: `/metrics` on the main port. Set (e.g. `127.0.0.1`): `/metrics` only on a listener of its own, so it need not face the internet.',
  'metrics.port': 'Port of that listener (0: any free port).',
  'log.level': 'pino level.',
  'log.pretty': 'Human-readable logs (also `CAPTIONGATE_LOG_PRETTY=1`).',
  'server.nodeId': 'This node\'s name on the bus (leases, meeting participants, the session registry) when several nodes share a Redis (`redis.url`). Empty: `hostname:pid` and a random tail. Must differ between nodes and workers.',
  'scheduler.minIntervalMs': 'Least time between two engine calls whose batch is not full: at a high window rate many streams\' windows share a call. Adds at most this much wait. 0 (the default): no pacing; with the overhead engine, 5 ms cost more CPU than it saved (docs/benchmarks.md §1, 2026-12-02).',
  'engine.moonshine.partialLoadShare': 'Partials give way first: they run only while all decoding stays under this share of the engine\'s threads (finals always run).',
  'redis.meetingMaxLen': 'Events kept in each meeting\'s stream (`XADD MAXLEN ~`; partials count too): how far back a node that starts following a meeting can replay.',
  'redis.outageBufferBytes': 'Meeting finals kept while Redis is away (or slow), published in order when it is back (newer finals are dropped beyond this, counted in `captiongate_meeting_bus_dropped_total`; partials are not kept; participant events, one pair per session, are always kept). Part of the startup memory budget.',
  'redis.heartbeatMs': 'How often a node renews its lease, its session counts and its meetings\' keys in Redis.',
  'redis.leaseMs': 'A node that stops renewing (it died) stops counting against per-token session caps after this long.',
  'files.maxLiveDecoders': 'Deepgram live sessions with containerized audio (no `encoding`: WebM/Opus, Ogg/Opus) at once; each runs one `ffmpeg` process (about 10 MB of its own memory). Beyond this such an upgrade is refused with 503 `CAP_ERR_CAPACITY`; raw `linear16`/`mulaw`/`alaw` needs none. 0 turns containerized live audio off.',
};

/** Where the schema alone does not say what is allowed. */
const ALLOWED: Record<string, string> = {
  'server.nodeId': 'string, at most 200 characters',
  'redis.url': '`redis://` or `rediss://` URL, or empty',
  'redis.keyPrefix': 'non-empty string',
  'redis.leaseMs': 'integer 500–600000, ≥ 2 × heartbeatMs',
};

const envName = (p: string[]) => `CAPTIONGATE_${p.map((k) => k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;

export function configTable(): string {
  // The input side: auth.apiKeys is hashed by a transform while validating.
  const schema = z.toJSONSchema(configSchema, { io: 'input' }) as JsonSchema;
  const defaults = JSON.parse(readFileSync(defaultConfigPath(), 'utf8')) as Record<string, unknown>;
  const rows: string[] = ['| key | default | allowed | environment | meaning |', '|---|---|---|---|---|'];
  const walk = (s: JsonSchema, d: unknown, p: string[]) => {
    if (s.type === 'object' && s.properties) {
      for (const [k, sub] of Object.entries(s.properties)) walk(sub, (d as Record<string, unknown>)[k], [...p, k]);
      return;
    }
    let allowed = s.type ?? '';
    if (s.enum) allowed = s.enum.map((e) => `\`${String(e)}\``).join(' \\| ');
    else if (s.minimum !== undefined || s.maximum !== undefined) allowed = `${s.type === 'integer' ? 'integer' : 'number'} ${s.minimum ?? ''}–${s.maximum ?? ''}`;
    else if (s.type === 'array') allowed = 'list (JSON or comma-separated in env)';
    const key = p.join('.');
    rows.push(`| \`${key}\` | \`${JSON.stringify(d)}\` | ${ALLOWED[key] ?? allowed} | \`${envName(p)}\` | ${HELP[key] ?? ''} |`);
  };
  walk(schema, defaults, []);
  return rows.join('\n');
}

/** The README's table sits between these lines. */
export const START = '<!-- config-table:start -->';
export const END = '<!-- config-table:end -->';

/** `--write`: replace the table in README.md between its markers. */
if (process.argv[1]?.endsWith('config-table.js')) {
  if (process.argv.includes('--write')) {
    const file = new URL('../../README.md', import.meta.url);
    const readme = readFileSync(file, 'utf8');
    const a = readme.indexOf(START);
    const b = readme.indexOf(END);
    if (a < 0 || b < a) throw new Error('README.md has no config-table markers');
    writeFileSync(file, `${readme.slice(0, a + START.length)}\n${configTable()}\n${readme.slice(b)}`);
  } else {
    console.log(configTable());
  }
}
