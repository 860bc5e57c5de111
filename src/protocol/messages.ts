/**
 * Protocol v1 messages, typed, with one runtime validator per client message
 * type. docs/protocol.md is the prose version of this file.
 */
import { z } from 'zod';

import type { ENGINE_SAMPLE_RATE } from '../engine/types.js';
import type { EndReason, ErrorCode } from '../errors.js';

export const SUBPROTOCOL_JSON = 'captiongate.v1.json';
export const SUBPROTOCOL_MSGPACK = 'captiongate.v1.msgpack';
export type WireMode = 'json' | 'msgpack';

export const SUPPORTED_LANGUAGES = ['en'] as const;

/** Session and meeting ids: in messages, tokens and URL routes alike. */
export const ID_CHARS = '[A-Za-z0-9._-]{1,128}';
export const ID_PATTERN = new RegExp(`^${ID_CHARS}$`);
const ID = ID_PATTERN;

export const metaSchema = z
  .object({
    meetingId: z.string().regex(ID, { error: 'meta.meetingId must be 1-128 of A-Z a-z 0-9 . _ -' }).optional(),
    speaker: z.string().min(1).max(128, { error: 'meta.speaker must be at most 128 characters' }).optional(),
  })
  .catchall(z.union([z.string().max(256), z.number(), z.boolean()]))
  .refine((m) => Object.keys(m).length <= 16, { error: 'meta may have at most 16 keys' });
export type SessionMeta = z.infer<typeof metaSchema>;

export const startSchema = z
  .object({
    type: z.literal('start'),
    sampleRate: z
      .number({ error: 'sampleRate must be an integer from 8000 to 48000' })
      .int({ error: 'sampleRate must be an integer from 8000 to 48000' })
      .min(8000, { error: 'sampleRate must be an integer from 8000 to 48000' })
      .max(48000, { error: 'sampleRate must be an integer from 8000 to 48000' }),
    channels: z.union([z.literal(1), z.literal(2)], { error: 'channels must be 1 or 2' }),
    encoding: z.enum(['s16le', 'f32le'], { error: 'encoding must be "s16le" or "f32le"' }),
    language: z.enum(SUPPORTED_LANGUAGES, { error: `language must be one of: ${SUPPORTED_LANGUAGES.join(', ')}` }).optional(),
    interim: z.boolean({ error: 'interim must be true or false' }).optional(),
    ack: z.boolean({ error: 'ack must be true or false' }).optional(),
    sessionId: z.string().regex(ID, { error: 'sessionId must be 1-128 of A-Z a-z 0-9 . _ -' }).optional(),
    meta: metaSchema.optional(),
  })
  .strict();
export type StartMessage = z.infer<typeof startSchema>;

export const flushSchema = z.object({ type: z.literal('flush') }).strict();
export const stopSchema = z.object({ type: z.literal('stop') }).strict();
export const keepaliveSchema = z.object({ type: z.literal('keepalive') }).strict();
export type FlushMessage = z.infer<typeof flushSchema>;
export type StopMessage = z.infer<typeof stopSchema>;
export type KeepaliveMessage = z.infer<typeof keepaliveSchema>;

export type ControlMessage = StartMessage | FlushMessage | StopMessage | KeepaliveMessage;

/** One validator per client message type. */
export const CONTROL_VALIDATORS = {
  start: startSchema,
  flush: flushSchema,
  stop: stopSchema,
  keepalive: keepaliveSchema,
} as const;
export type ControlType = keyof typeof CONTROL_VALIDATORS;

// ------------------------------------------------------------------ server

export interface WordOut {
  word: string;
  start: number;
  end: number;
  confidence: number;
}

export interface ReadyMessage {
  type: 'ready';
  seq: number;
  sessionId: string;
  /** Reconnect with `?resume=<token>&lastSeq=<n>` after a dropped connection (docs/protocol.md). Keep it secret. */
  resumeToken: string;
  format: { sampleRate: number; channels: number; encoding: 's16le' | 'f32le' };
  language: string;
  interim: boolean;
  ack: boolean;
  limits: {
    maxSessionSeconds: number;
    idleTimeoutSeconds: number;
    maxFrameBytes: number;
    minFrameMs: number;
    maxFrameMs: number;
    /** How long a dropped session waits for a resume. */
    resumeGraceSeconds: number;
  };
  /** The recognizer: its name, and its model where it has several (Moonshine: tiny or base). */
  engine: { name: string; version: string; model?: string };
}

export interface PartialMessage {
  type: 'partial';
  seq: number;
  segment: number;
  revision: number;
  text: string;
  start: number;
  end: number;
  speaker?: string;
  /** Meeting viewers only: which participant (opaque, per meeting). */
  participant?: string;
  /** Meeting viewers only, and only for sessions whose caption file the viewer may read. */
  sessionId?: string;
}

export interface FinalMessage {
  type: 'final';
  seq: number;
  segment: number;
  text: string;
  start: number;
  end: number;
  words: WordOut[];
  speaker?: string;
  /** Meeting viewers only: which participant (opaque, per meeting). */
  participant?: string;
  /** Meeting viewers only, and only for sessions whose caption file the viewer may read. */
  sessionId?: string;
}

/** First message to a meeting viewer; replayed finals follow it. */
export interface ViewerReadyMessage {
  type: 'viewer_ready';
  seq: number;
  meetingId: string;
  /** Speaking now. `sessionId` only where this viewer may read that session's captions. */
  participants: { participant: string; speaker: string; sessionId?: string }[];
  /** Finals replayed next. */
  replay: number;
  /** Older finals no longer kept (meetings.maxReplayBytes). */
  truncated: number;
}

/** A participant joined or left a meeting (viewers only). */
export interface ParticipantMessage {
  type: 'participant';
  seq: number;
  event: 'joined' | 'left';
  participant: string;
  speaker: string;
  /** Only where this viewer may read that session's captions. */
  sessionId?: string;
}

export interface WarningMessage {
  type: 'warning';
  seq: number;
  /**
   * lagging: captions are behind the audio. meeting_unavailable: this
   * session's captions are not shared with its meeting's viewers.
   * replay_incomplete: a resume could not replay everything after lastSeq
   * (the session's captions file has every final).
   */
  code: 'lagging' | 'meeting_unavailable' | 'replay_incomplete';
  message: string;
  /** lagging only. */
  lagSeconds?: number;
}

export interface ErrorMessage {
  type: 'error';
  seq: number;
  code: ErrorCode;
  message: string;
  fatal: boolean;
  retryAfterMs?: number;
}

export interface AudioCounts {
  /** All counts are in 16 kHz samples after conversion, plus seconds. */
  sampleRate: typeof ENGINE_SAMPLE_RATE;
  receivedSamples: number;
  decodedSamples: number;
  droppedSamples: number;
  receivedSeconds: number;
  decodedSeconds: number;
  droppedSeconds: number;
}

/** Flow control for faster-than-real-time senders (opt-in with start.ack). */
export interface AckMessage {
  type: 'ack';
  seq: number;
  receivedSeconds: number;
  decodedSeconds: number;
  backlogSeconds: number;
}

export interface EndMessage {
  type: 'end';
  seq: number;
  reason: EndReason;
  message: string;
  audio: AudioCounts;
}

export type ServerMessage =
  | ReadyMessage
  | PartialMessage
  | FinalMessage
  | WarningMessage
  | ErrorMessage
  | AckMessage
  | EndMessage
  | ViewerReadyMessage
  | ParticipantMessage;
/**
 * The first message on a connection that resumed a session. It is about the
 * connection, so it has no `seq`: the replayed messages that follow carry
 * their original ones.
 */
export interface ResumedMessage {
  type: 'resumed';
  sessionId: string;
  /** The client's lastSeq, echoed: replay starts after it. */
  lastSeq: number;
  /** Wall time from the drop to this resume. */
  gapSeconds: number;
  /** Partials after lastSeq that were superseded and not kept (their seqs are missing from the replay). */
  skippedPartials: number;
  /** Acks after lastSeq that were superseded and not kept. */
  skippedAcks: number;
  /**
   * Only after a resume on another node: messages after lastSeq that are not
   * replayed because only finals are kept across nodes (partials, acks,
   * warnings); their seqs are missing from the replay.
   */
  skippedOther?: number;
  /**
   * Sample frames (in the session's own format) the server has taken: audio
   * sent after them never arrived, and the client sends it again.
   */
  receivedFrames: number;
}

/** Everything the server sends on a WebSocket. */
export type WireMessage = ServerMessage | ResumedMessage;

/** A server message before the session stamps its sequence number. */
export type Unsequenced<T extends ServerMessage> = T extends ServerMessage ? Omit<T, 'seq'> : never;
