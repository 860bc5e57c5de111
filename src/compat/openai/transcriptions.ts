/**
 * OpenAI's `POST /v1/audio/transcriptions`, over a file job
 * (src/files/jobs.ts): multipart in, one of OpenAI's response formats out,
 * errors in OpenAI's shape `{"error":{"message","type","param","code"}}`.
 * docs/compat.md lists what maps to what.
 */
import { deflateSync } from 'node:zlib';

import { buildCues, toSrt, toWebVTT } from '../../captions/cues.js';
import type { EngineInfo, Utterance } from '../../engine/types.js';
import { GatewayError, httpStatus } from '../../errors.js';
import { DecodeError } from '../../files/decode.js';
import { JobsBusyError, type FileJobs, type FileTranscript } from '../../files/jobs.js';
import { boundaryOf, fieldText, MultipartError, parseMultipart, type Part } from '../../files/multipart.js';
import type { Gatekeeper } from '../../security/gatekeeper.js';
import type { HttpRequest, HttpResponse } from '../../transport/types.js';

export const TRANSCRIPTIONS_PATH = '/v1/audio/transcriptions';

export const RESPONSE_FORMATS = ['json', 'text', 'srt', 'vtt', 'verbose_json'] as const;
type ResponseFormat = (typeof RESPONSE_FORMATS)[number];


/** OpenAI's error body. */
export function openaiError(status: number, message: string, type: string, param: string | null, code: string | null, headers: Record<string, string> = {}): HttpResponse {
  return {
    status,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ error: { message, type, param, code } }),
  };
}

const invalid = (message: string, param: string | null, code: string | null = 'invalid_value') => openaiError(400, message, 'invalid_request_error', param, code);

/** The 413 the transport sends for a body above the limit. */
export function openaiTooLarge(limit: number): HttpResponse {
  return openaiError(413, `the request body is larger than ${limit} bytes (files.maxUploadBytes)`, 'invalid_request_error', 'file', 'file_too_large');
}

/** A gateway refusal (auth, capacity) in OpenAI's shape. */
export function openaiRefusal(e: GatewayError): HttpResponse {
  const status = httpStatus(e.code);
  const headers: Record<string, string> = e.retryAfterMs !== undefined ? { 'retry-after': String(Math.ceil(e.retryAfterMs / 1000)) } : {};
  switch (e.code) {
    case 'CAP_ERR_UNAUTHORIZED':
      return openaiError(401, e.message, 'invalid_request_error', null, 'invalid_api_key', headers);
    case 'CAP_ERR_FORBIDDEN':
      return openaiError(403, e.message, 'invalid_request_error', null, 'insufficient_permissions', headers);
    case 'CAP_ERR_RATE_LIMITED':
      return openaiError(429, e.message, 'requests', null, 'rate_limit_exceeded', headers);
    default:
      return openaiError(status >= 400 ? status : 503, e.message, 'server_error', null, e.code.toLowerCase().replace(/^cap_err_/, ''), headers);
  }
}

export interface TranscriptionsDeps {
  readonly maxUploadBytes: number;
  readonly gatekeeper: Gatekeeper;
  readonly jobs: FileJobs;
  readonly engine: EngineInfo;
  /** Why no job may start now (shutdown, engine too far behind), or null. */
  readonly admissible: () => GatewayError | null;
}

interface Request {
  readonly file: Part;
  readonly model: string;
  readonly format: ResponseFormat;
  readonly words: boolean;
  readonly segments: boolean;
}

function readForm(parts: readonly Part[]): Request | HttpResponse {
  const fields = new Map<string, string[]>();
  let file: Part | null = null;
  for (const p of parts) {
    if (p.name === 'file') {
      if (file) return invalid('more than one file was sent', 'file');
      file = p;
      continue;
    }
    if (p.filename !== null) continue; // another file field: not ours
    const list = fields.get(p.name) ?? [];
    list.push(fieldText(p));
    fields.set(p.name, list);
  }
  const one = (name: string) => fields.get(name)?.[0];
  if (!file) return invalid("you must provide a 'file' (multipart field file)", 'file', 'missing_required_parameter');
  if (file.data.byteLength === 0) return invalid('the file is empty', 'file');
  const model = one('model');
  if (model === undefined || model.trim() === '') return invalid("you must provide a 'model' (any name: it maps to the server's engine)", 'model', 'missing_required_parameter');
  const language = one('language');
  if (language !== undefined && language !== '' && !/^en(-[a-z]{2})?$/i.test(language)) {
    return invalid(`language "${language}" is not supported: this server transcribes English only (language=en)`, 'language', 'unsupported_language');
  }
  const format = (one('response_format') ?? 'json') as ResponseFormat;
  if (!RESPONSE_FORMATS.includes(format)) {
    return invalid(`response_format "${format}" is not supported: use ${RESPONSE_FORMATS.join(', ')}`, 'response_format');
  }
  const stream = one('stream');
  if (stream !== undefined && stream !== 'false') return invalid('stream=true is not supported: the response is sent whole', 'stream', 'unsupported_value');
  const granularities = [...(fields.get('timestamp_granularities[]') ?? []), ...(fields.get('timestamp_granularities') ?? [])];
  for (const g of granularities) {
    if (g !== 'word' && g !== 'segment') return invalid(`timestamp_granularities "${g}" is not one of word, segment`, 'timestamp_granularities');
  }
  if (granularities.length && format !== 'verbose_json') {
    return invalid('timestamp_granularities needs response_format=verbose_json', 'timestamp_granularities');
  }
  const temperature = one('temperature');
  if (temperature !== undefined && !(Number(temperature) >= 0 && Number(temperature) <= 1)) {
    return invalid(`temperature "${temperature}" is not a number from 0 to 1`, 'temperature');
  }
  return {
    file,
    model,
    format,
    words: granularities.includes('word'),
    segments: granularities.length === 0 || granularities.includes('segment'),
  };
}

const joinText = (finals: readonly Utterance[]) =>
  finals
    .map((f) => f.text.trim())
    .filter(Boolean)
    .join(' ');

const round = (x: number) => Math.round(x * 1000) / 1000;

/** Whisper's compression ratio: text bytes over their zlib size. */
function compressionRatio(text: string): number {
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length ? round(bytes.length / deflateSync(bytes).length) : 0;
}

export function formatTranscript(t: FileTranscript, req: Pick<Request, 'format' | 'words' | 'segments'>): HttpResponse {
  const spoken = t.finals.filter((f) => f.text.trim() !== '');
  const text = joinText(spoken);
  switch (req.format) {
    case 'json':
      return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }) };
    case 'text':
      return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: `${text}\n` };
    case 'srt':
    case 'vtt': {
      const cues = buildCues(spoken);
      return req.format === 'vtt'
        ? { status: 200, headers: { 'content-type': 'text/vtt; charset=utf-8' }, body: toWebVTT(cues) }
        : { status: 200, headers: { 'content-type': 'application/x-subrip; charset=utf-8' }, body: toSrt(cues) };
    }
    case 'verbose_json': {
      const body: Record<string, unknown> = { task: 'transcribe', language: 'english', duration: round(t.duration), text };
      if (req.segments) {
        body.segments = spoken.map((f, id) => {
          const conf = f.words.length ? f.words.reduce((a, w) => a + Math.log(Math.max(w.confidence, 1e-6)), 0) / f.words.length : 0;
          return {
            id,
            seek: Math.round(f.start * 100),
            start: round(f.start),
            end: round(f.end),
            text: f.text.trim(),
            tokens: [],
            temperature: 0,
            avg_logprob: round(conf),
            compression_ratio: compressionRatio(f.text),
            no_speech_prob: 0,
          };
        });
      }
      if (req.words) body.words = spoken.flatMap((f) => f.words.map((w) => ({ word: w.word, start: round(w.start), end: round(w.end) })));
      return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
    }
  }
}

export function createTranscriptionsRoute(deps: TranscriptionsDeps): (req: HttpRequest) => Promise<HttpResponse> {
  const { gatekeeper, jobs } = deps;
  return async (req) => {
    if (req.method !== 'POST') return openaiError(405, `${TRANSCRIPTIONS_PATH} takes POST`, 'invalid_request_error', null, 'method_not_allowed');
    if (gatekeeper.authEnabled) {
      const who = await gatekeeper.verifyRequest(req);
      if (who instanceof GatewayError) return openaiRefusal(who);
      if (!who.scopes.has('listen')) {
        return openaiRefusal(new GatewayError('CAP_ERR_FORBIDDEN', `this key's scope does not include "listen" (it has: ${[...who.scopes].join(' ') || 'none'})`));
      }
    }
    let boundary: string | null;
    let parts: Part[];
    try {
      boundary = boundaryOf(req.headers['content-type']);
      if (boundary === null) {
        return openaiError(415, `the body must be multipart/form-data (it is ${req.headers['content-type'] ?? 'untyped'})`, 'invalid_request_error', null, 'unsupported_media_type');
      }
      parts = parseMultipart(req.body, boundary);
    } catch (err) {
      if (err instanceof MultipartError) return invalid(`malformed multipart body: ${err.message}`, null, 'invalid_multipart');
      throw err;
    }
    const form = readForm(parts);
    if ('status' in form) return form;
    if (form.file.data.byteLength > deps.maxUploadBytes) return openaiTooLarge(deps.maxUploadBytes);
    const refused = deps.admissible();
    if (refused) return openaiRefusal(refused);
    const abort = new AbortController();
    req.onAbort(() => abort.abort(new Error('the client went away')));
    let t: FileTranscript;
    try {
      t = await jobs.transcribe(form.file.data, abort.signal);
    } catch (err) {
      return fileJobError(err);
    }
    return formatTranscript(t, form);
  };
}

/** A file job's failure in OpenAI's shape. */
export function fileJobError(err: unknown): HttpResponse {
  if (err instanceof DecodeError) {
    switch (err.kind) {
      case 'too_long':
        return invalid(err.message, 'file', 'audio_too_long');
      case 'unsupported':
        return invalid(`${err.message}; send WAV, FLAC, MP3, Ogg (Opus, Vorbis) or WebM`, 'file', 'invalid_file_format');
      case 'empty':
        return invalid(err.message, 'file', 'invalid_file_format');
      case 'timeout':
        return invalid(`${err.message} (files.decodeTimeoutSeconds)`, 'file', 'decode_timeout');
      case 'aborted':
        return openaiError(499, err.message, 'invalid_request_error', null, 'aborted');
      case 'unavailable':
        return openaiError(503, err.message, 'server_error', null, 'decoder_unavailable');
    }
  }
  if (err instanceof GatewayError) return openaiRefusal(err);
  if (err instanceof JobsBusyError) {
    return openaiError(429, err.message, 'requests', null, 'rate_limit_exceeded', { 'retry-after': String(Math.ceil(err.retryAfterMs / 1000)) });
  }
  return openaiError(500, `transcription failed: ${(err as Error).message}`, 'server_error', null, 'engine_failure');
}
