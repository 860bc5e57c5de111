/**
 * The one config schema. Every limit and shape the gateway uses is declared
 * here with its allowed range; `derive.ts` turns durations into sample and
 * byte counts in one place.
 */
import { z } from 'zod';

import { apiKeysSchema } from '../security/api-keys.js';

/** Integer in [min, max]; the message names the range so a bad value says what is allowed. */
const int = (min: number, max: number) =>
  z
    .number({ error: `must be an integer from ${min} to ${max}` })
    .int({ error: `must be an integer from ${min} to ${max}` })
    .min(min, { error: `must be an integer from ${min} to ${max}` })
    .max(max, { error: `must be an integer from ${min} to ${max}` });

const num = (min: number, max: number) =>
  z
    .number({ error: `must be a number from ${min} to ${max}` })
    .min(min, { error: `must be a number from ${min} to ${max}` })
    .max(max, { error: `must be a number from ${min} to ${max}` });

const bool = () => z.boolean({ error: 'must be true or false' });
const str = () => z.string({ error: 'must be a string' }).min(1, { error: 'must not be empty' });

export const configSchema = z
  .object({
    server: z
      .object({
        host: str(),
        port: int(0, 65535),
        transport: z.enum(['uws', 'ws'], { error: 'must be "uws" or "ws"' }),
        maxBackpressureBytes: int(4096, 256 * 1024 * 1024),
        stalledReaderSeconds: num(0.5, 3600),
        shutdownGraceSeconds: num(0, 600),
        allowedOrigins: z.array(z.string(), { error: 'must be an array of origins' }),
        maxHeldAudioBytes: int(0, 1 << 30),
        trustProxy: bool(),
        /** This node's name in the session registry (empty: hostname:pid). */
        nodeId: z.string({ error: 'must be a string (empty: hostname:pid)' }).max(200, { error: 'must be at most 200 characters' }),
        workers: int(1, 256),
      })
      .strict(),
    auth: z
      .object({
        secret: z.string({ error: 'must be a string (empty: auth off)' }),
        issuer: z.string({ error: 'must be a string' }),
        audience: z.string({ error: 'must be a string' }),
        clockToleranceSeconds: num(0, 600),
        maxTokenLifetimeSeconds: num(60, 366 * 24 * 3600),
        apiKeys: apiKeysSchema,
      })
      .strict(),
    rateLimits: z
      .object({
        opensPerMinutePerAddress: int(1, 1_000_000),
        opensPerMinutePerToken: int(1, 1_000_000),
      })
      .strict(),
    pool: z
      .object({
        slabs: int(1, 100_000),
        slabSeconds: num(1, 600),
      })
      .strict(),
    audio: z
      .object({
        resampleQuality: int(0, 10),
      })
      .strict(),
    limits: z
      .object({
        maxSessionSeconds: num(1, 7 * 24 * 3600),
        idleTimeoutSeconds: num(1, 3600),
        maxFrameBytes: int(320, 16 * 1024 * 1024),
        maxControlBytes: int(256, 1024 * 1024),
        maxSessionsPerAddress: int(1, 100_000),
        maxErrorsPerSession: int(1, 100_000),
        lagWarnSeconds: num(0.1, 600),
        lagMaxSeconds: num(0.2, 600),
        startTimeoutSeconds: num(0.1, 3600),
        maxConnectionsPerAddress: int(1, 1_000_000),
        maxSessionWallSeconds: num(1, 7 * 24 * 3600),
        maxSilentSeconds: num(1, 7 * 24 * 3600),
        resumeGraceSeconds: num(0, 3600),
        resumeBufferBytes: int(4096, 64 * 1024 * 1024),
        maxParkedSessions: int(0, 1_000_000),
      })
      .strict(),
    scheduler: z
      .object({
        maxBatch: int(1, 4096),
        maxWaitMs: num(0, 1000),
        minIntervalMs: num(0, 1000),
        maxInFlight: int(1, 1024),
      })
      .strict(),
    admission: z
      .object({
        maxEngineLagSeconds: num(0.1, 600),
      })
      .strict(),
    engine: z
      .object({
        kind: z.enum(['pocketsphinx', 'whisper', 'moonshine', 'overhead'], { error: 'must be "pocketsphinx", "whisper" or "moonshine"' }),
        threads: int(1, 256),
        decoders: int(1, 1024),
        windowMs: int(10, 1000),
        pocketsphinx: z
          .object({
            modelDir: str(),
            hmm: str(),
            lm: str(),
            dict: str(),
            fwdflat: bool(),
            bestpath: bool(),
            beam: num(0, 1),
            wbeam: num(0, 1),
            pbeam: num(0, 1),
            lw: num(0, 100),
            maxhmmpf: int(-1, 1_000_000),
            maxwpf: int(-1, 1_000_000),
            plWindow: int(0, 10),
            removeNoise: bool(),
            cmnUpdateMs: int(0, 10_000),
            wordConfidence: bool(),
            maxHoldMs: int(0, 3_600_000),
          })
          .strict(),
        whisper: z
          .object({
            modelDir: str(),
            device: z.enum(['cpu', 'perturbed'], { error: 'must be "cpu" (the only device this build has)' }),
            maxBatch: int(1, 64),
            partialIntervalMs: int(100, 10_000),
            minContextSeconds: num(1, 30),
            maxUtteranceSeconds: num(1, 29),
            noSpeechThreshold: num(0, 1),
            logprobThreshold: num(-100, 0),
            selfTest: bool(),
          })
          .strict(),
        moonshine: z
          .object({
            model: z.enum(['tiny', 'base'], { error: 'must be "tiny" or "base"' }),
            preview: z.enum(['tiny', 'none'], { error: 'must be "tiny" or "none"' }),
            finalBeamWidth: int(0, 16),
            modelsDir: str(),
            partialIntervalMs: int(10, 10_000),
            partialLoadShare: num(0.05, 1),
            tailMs: int(0, 2000),
            maxUtteranceSeconds: num(1, 60),
            maxTokensPerSecond: num(1, 50),
            maxBatch: int(1, 64),
          })
          .strict(),
        vad: z
          .object({
            enabled: bool(),
            threshold: num(0, 100),
            startMs: int(10, 2000),
            endMs: int(50, 10_000),
            prerollMs: int(0, 2000),
            maxUtteranceSeconds: num(1, 600),
          })
          .strict(),
      })
      .strict(),
    captions: z
      .object({
        interim: bool(),
        maxBytesPerSession: int(4096, 1 << 30),
        keepEndedSeconds: num(0, 86_400),
        maxEndedBytesPerOwner: int(0, 1 << 30),
        maxEndedOwners: int(0, 1_000_000),
      })
      .strict(),
    meetings: z
      .object({
        maxMeetings: int(1, 100_000),
        maxViewersPerMeeting: int(1, 100_000),
        maxViewersPerToken: int(1, 100_000),
        maxWaitingViewersPerAddress: int(0, 100_000),
        maxWaitingViewersPerToken: int(0, 100_000),
        maxReplayBytes: int(1024, 1 << 30),
        retentionSeconds: num(0, 86_400),
      })
      .strict(),
    store: z
      .object({
        kind: z.enum(['sqlite', 'postgres', 'memory'], { error: 'must be "sqlite", "postgres" or "memory"' }),
        path: str(),
        url: z.string({ error: 'must be a string (a postgres:// URL; empty unless store.kind is "postgres")' }),
        poolSize: int(1, 100),
        maxQueuedWrites: int(100, 10_000_000),
        flushMs: int(10, 5000),
        retentionDays: num(0, 36_500),
        maxSessionsPerOwner: int(1, 100_000_000),
        busyTimeoutMs: int(0, 600_000),
      })
      .strict(),
    redis: z
      .object({
        url: z.string({ error: 'must be a string: redis://host:port[/db] (empty: no Redis, one node)' }).refine((u) => u === '' || /^rediss?:\/\//.test(u), {
          error: 'must start with redis:// or rediss:// (or be empty: no Redis)',
        }),
        keyPrefix: str(),
        meetingMaxLen: int(100, 10_000_000),
        outageBufferBytes: int(0, 1 << 30),
        heartbeatMs: int(100, 60_000),
        leaseMs: int(500, 600_000),
      })
      .strict(),
    files: z
      .object({
        maxUploadBytes: int(1024, 1 << 30),
        maxDurationSeconds: num(1, 24 * 3600),
        decodeTimeoutSeconds: num(1, 3600),
        maxConcurrentJobs: int(1, 64),
        maxQueuedJobs: int(0, 10_000),
        yieldLagSeconds: num(0.05, 600),
        /** Containerized Deepgram live sessions at once: one ffmpeg process each (src/files/live-decoder.ts). */
        maxLiveDecoders: int(0, 1024),
      })
      .strict(),
    metrics: z
      .object({
        host: z.string({ error: 'must be a string (empty: /metrics on the main port)' }),
        port: int(0, 65535),
      })
      .strict(),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
          error: 'must be one of fatal, error, warn, info, debug, trace, silent',
        }),
        pretty: bool(),
      })
      .strict(),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;

/** Deep partial, for overrides in code and tests. */
export type ConfigOverrides = { [K in keyof Config]?: Partial<Config[K]> & Record<string, unknown> };
