/**
 * Every coded error the gateway sends, in one place (fastify's
 * lib/errors.js pattern). Each carries what happens on the wire: whether it
 * ends the session, the WebSocket close code that follows, and the HTTP
 * status when it refuses an upgrade. docs/protocol.md lists the same codes;
 * test/unit/errors.test.ts keeps the two in step.
 */

export const CloseCode = {
  NORMAL: 1000,
  MESSAGE_TOO_BIG: 1009,
  BAD_REQUEST: 4000,
  UNAUTHORIZED: 4001,
  CAPACITY: 4002,
  MAX_DURATION: 4003,
  IDLE_TIMEOUT: 4004,
  PROTOCOL_VIOLATION: 4005,
  SERVER_SHUTDOWN: 4006,
  ENGINE_OVERLOAD: 4007,
  SLOW_READER: 4008,
  ENGINE_FAILURE: 4009,
  START_TIMEOUT: 4010,
  INTERNAL_ERROR: 4011,
  /** A resume was refused: unknown, expired or foreign token, or a lastSeq ahead of the session. */
  RESUME_REFUSED: 4012,
  /** The session was taken over by a resume on another connection. */
  TAKEN_OVER: 4013,
  /** The node is draining (several nodes): reconnect and resume the session, or rejoin the meeting, on another node. */
  RECONNECT: 4014,
} as const;

/**
 * Close codes reserved for features that are coming, so that they do not
 * collide. Each moves into CloseCode (and docs/protocol.md) when its
 * feature lands; none is reserved today.
 */
export const RESERVED_CLOSE_CODES = {} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

export interface ErrorSpec {
  /** Human summary for docs. */
  readonly summary: string;
  /** Ends the session (an `end` message and a close follow). */
  readonly fatal: boolean;
  /** WebSocket close code when fatal. */
  readonly close?: CloseCode;
  /** HTTP status when the error refuses an upgrade or an HTTP request. */
  readonly status?: number;
}

export const ERRORS = {
  CAP_ERR_INVALID_JSON: { summary: 'A text frame is not valid JSON.', fatal: false },
  CAP_ERR_INVALID_MESSAGE: {
    summary: 'A message is not an object with a string `type`, or a field has the wrong type.',
    fatal: false,
  },
  CAP_ERR_UNKNOWN_TYPE: { summary: 'The message `type` is not one the server knows.', fatal: false },
  CAP_ERR_BAD_PARAMETER: {
    summary: 'A session parameter is missing or out of range (sampleRate, channels, encoding, sessionId, meta).',
    fatal: false,
    close: CloseCode.BAD_REQUEST,
    status: 400,
  },
  CAP_ERR_ALREADY_STARTED: { summary: 'A second `start` arrived; it is ignored.', fatal: false },
  CAP_ERR_AUDIO_BEFORE_START: { summary: 'Audio arrived before the session started; it was not accepted.', fatal: false },
  CAP_ERR_AUDIO_AFTER_STOP: { summary: 'Audio arrived after `stop`; it was not accepted.', fatal: false },
  CAP_ERR_PARTIAL_SAMPLE: {
    summary: 'An audio frame is not a whole number of sample frames (bytes per sample x channels); it was not accepted.',
    fatal: false,
  },
  CAP_ERR_FRAME_DURATION: { summary: 'An audio frame is shorter than 10 ms or longer than 1 s; it was not accepted.', fatal: false },
  CAP_ERR_FRAME_TOO_LARGE: { summary: 'An audio frame exceeds limits.maxFrameBytes; it was not accepted.', fatal: false },
  CAP_ERR_CONTROL_TOO_LARGE: { summary: 'A control message exceeds limits.maxControlBytes; it was ignored.', fatal: false },
  CAP_ERR_CAPACITY: {
    summary:
      'The server cannot take another session now (no free slab, the engine is behind, or every live audio decoder is in use: files.maxLiveDecoders). Retry after `retryAfterMs`.',
    fatal: true,
    close: CloseCode.CAPACITY,
    status: 503,
  },
  CAP_ERR_TOO_MANY_CONNECTIONS: {
    summary:
      'This client address already has limits.maxConnectionsPerAddress open connections (sessions, viewers and connections that have not started), ' +
      'or a token or address holds too many viewer places (meetings.maxViewersPerToken, maxWaitingViewersPerAddress/PerToken). Retry after `retryAfterMs`.',
    fatal: true,
    close: CloseCode.CAPACITY,
    status: 429,
  },
  CAP_ERR_START_TIMEOUT: {
    summary: 'No `start` (or start parameters in the URL) within limits.startTimeoutSeconds of connecting.',
    fatal: true,
    close: CloseCode.START_TIMEOUT,
  },
  CAP_ERR_MAX_WALL_TIME: {
    summary: 'The session was open for limits.maxSessionWallSeconds of wall-clock time. Finals follow, then `end`.',
    fatal: true,
    close: CloseCode.MAX_DURATION,
  },
  CAP_ERR_MAX_SILENCE: {
    summary:
      'No speech for limits.maxSilentSeconds (audio without speech, or wall-clock time with no audio at all, keepalives included). Finals follow, then `end`.',
    fatal: true,
    close: CloseCode.IDLE_TIMEOUT,
  },
  CAP_ERR_TOO_MANY_SESSIONS: {
    summary: 'This client address already has limits.maxSessionsPerAddress sessions, or this token its maxSessions (across nodes with Redis). Retry after `retryAfterMs`.',
    fatal: true,
    close: CloseCode.CAPACITY,
    status: 429,
  },
  CAP_ERR_MAX_DURATION: {
    summary: 'The session reached limits.maxSessionSeconds of audio. Audio beyond it was not accepted; finals follow, then `end`.',
    fatal: true,
    close: CloseCode.MAX_DURATION,
  },
  CAP_ERR_IDLE_TIMEOUT: {
    summary: 'No message arrived for limits.idleTimeoutSeconds. Finals follow, then `end`.',
    fatal: true,
    close: CloseCode.IDLE_TIMEOUT,
  },
  CAP_ERR_PROTOCOL_VIOLATION: {
    summary: 'Too many errors in one session (limits.maxErrorsPerSession).',
    fatal: true,
    close: CloseCode.PROTOCOL_VIOLATION,
  },
  CAP_ERR_ENGINE_OVERLOAD: {
    summary: 'The engine fell more than limits.lagMaxSeconds behind this session; the backlog was not decoded (see `end` counts).',
    fatal: true,
    close: CloseCode.ENGINE_OVERLOAD,
  },
  CAP_ERR_AUDIO_DECODE: {
    summary:
      'Containerized live audio (Deepgram dialect, no `encoding`) could not be decoded: not a container ffmpeg reads (WebM/Opus, Ogg/Opus, …), corrupt, or no ffmpeg on the server. The connection closes.',
    fatal: true,
    close: CloseCode.BAD_REQUEST,
  },
  CAP_ERR_ENGINE_FAILURE: {
    summary: 'The engine failed to decode this session\'s audio; the session ends (see `end` counts).',
    fatal: true,
    close: CloseCode.ENGINE_FAILURE,
  },
  CAP_ERR_SLOW_READER: {
    summary: 'The client did not read its messages for server.stalledReaderSeconds; the connection is closed.',
    fatal: true,
    close: CloseCode.SLOW_READER,
  },
  CAP_ERR_SERVER_SHUTDOWN: {
    summary: 'The server is shutting down: sessions get their finals and `end`; new sessions are refused.',
    fatal: true,
    close: CloseCode.SERVER_SHUTDOWN,
    status: 503,
  },
  CAP_ERR_UNAUTHORIZED: {
    summary: 'Missing, malformed, expired or wrongly signed token.',
    fatal: true,
    close: CloseCode.UNAUTHORIZED,
    status: 401,
  },
  CAP_ERR_FORBIDDEN: {
    summary: 'The token or the Origin does not allow this request (meeting, origin allowlist, token limits).',
    fatal: true,
    close: CloseCode.UNAUTHORIZED,
    status: 403,
  },
  CAP_ERR_RATE_LIMITED: {
    summary: 'Too many session opens from this address or token. Retry after `retryAfterMs`.',
    fatal: true,
    close: CloseCode.CAPACITY,
    status: 429,
  },
  CAP_ERR_UNSUPPORTED_PROTOCOL: {
    summary: 'None of the requested WebSocket subprotocols is supported.',
    fatal: true,
    status: 400,
  },
  CAP_ERR_NOT_FOUND: { summary: 'No such route, session or meeting.', fatal: true, status: 404 },
  CAP_ERR_STORE_UNAVAILABLE: {
    summary:
      'The caption store (PostgreSQL) cannot be reached: a stored caption file, session list or deletion cannot be served now. ' +
      'Live sessions are not affected. Retry after `retryAfterMs`.',
    fatal: true,
    status: 503,
  },
  CAP_ERR_RESUME_REFUSED: {
    summary:
      'A resume was refused: its token is unknown, expired (the session ended, or nobody came back within limits.resumeGraceSeconds), ' +
      "another owner's, or its lastSeq is ahead of the session. Start a new session.",
    fatal: true,
    close: CloseCode.RESUME_REFUSED,
    status: 404,
  },
  CAP_ERR_TAKEN_OVER: {
    summary: 'Another connection resumed this session with its resume token; this one is closed (the session goes on there).',
    fatal: true,
    close: CloseCode.TAKEN_OVER,
  },
  CAP_ERR_INTERNAL: {
    summary:
      'Something failed inside the server while handling this session (a bug, logged with its stack and counted in /metrics). ' +
      'Only this session ends: an `end` with exact audio counts follows.',
    fatal: true,
    close: CloseCode.INTERNAL_ERROR,
    status: 500,
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** HTTP status of a code when it refuses an upgrade or request (400 if it has none). */
export function httpStatus(code: ErrorCode): number {
  const spec: ErrorSpec = ERRORS[code];
  return spec.status ?? 400;
}

/** Close code of a fatal error (4000 if it has none). */
export function closeCode(code: ErrorCode): number {
  const spec: ErrorSpec = ERRORS[code];
  return spec.close ?? CloseCode.BAD_REQUEST;
}

export const END_REASONS = {
  client_stop: 'The client sent `stop`; all audio was decoded.',
  max_duration: 'limits.maxSessionSeconds reached; audio up to the limit was decoded.',
  idle_timeout: 'No message for limits.idleTimeoutSeconds; audio received was decoded.',
  server_shutdown: 'The server is shutting down; audio received was decoded (or counted as dropped if the grace period ran out).',
  engine_overload: 'The engine fell too far behind; the backlog was dropped and counted.',
  engine_error: 'Decoding failed; undecoded audio was dropped and counted.',
  protocol_violation: 'Too many protocol errors.',
  slow_reader: 'The client stopped reading; the connection was closed.',
  max_wall_time: 'limits.maxSessionWallSeconds of wall-clock time passed; audio received was decoded.',
  max_silence: 'No speech for limits.maxSilentSeconds; audio received was decoded.',
  client_gone:
    'The client closed the connection, or it dropped and nobody resumed within limits.resumeGraceSeconds; ' +
    'the audio already received was decoded and its finals kept.',
  internal_error: 'An internal error ended this session (CAP_ERR_INTERNAL); undecoded audio was dropped and counted.',
} as const;
export type EndReason = keyof typeof END_REASONS;

/** A coded error with its wire outcome, thrown or returned inside the gateway. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterMs: number | undefined;
  constructor(code: ErrorCode, message: string, retryAfterMs?: number) {
    super(message);
    this.name = 'GatewayError';
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}
