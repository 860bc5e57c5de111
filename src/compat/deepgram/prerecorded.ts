/**
 * Deepgram's pre-recorded `POST /v1/listen`: a body of audio (any container
 * ffmpeg decodes, or raw audio named by `encoding` and `sample_rate`),
 * transcribed as a file job (src/files/jobs.ts), answered in Deepgram's
 * response shape. A JSON body with a `url` is refused: the server makes no
 * outbound requests. docs/compat.md lists what maps to what.
 */
import { createHash, randomUUID } from 'node:crypto';

import type { EngineInfo, Utterance } from '../../engine/types.js';
import { GatewayError } from '../../errors.js';
import { DecodeError } from '../../files/decode.js';
import { JobsBusyError, type FileJobs, type FileTranscript } from '../../files/jobs.js';
import type { Gatekeeper } from '../../security/gatekeeper.js';
import type { HttpRequest, HttpResponse } from '../../transport/types.js';
import { bareWord, modelUuid } from './channel.js';
import { deepgramBool, deepgramInteger, deepgramLanguage, DeepgramParamError, screenDeepgramParams } from './params.js';

/** Parameters read here (the rest are screened: refused, or ignored and listed). */
const KNOWN = ['encoding', 'sample_rate', 'channels', 'model', 'language', 'utterances'];

/** Pre-recorded analyses that would change the answer: refused when on. */
const ANALYSES: Readonly<Record<string, string>> = {
  summarize: 'summarization is not supported',
  topics: 'topic detection is not supported',
  intents: 'intent recognition is not supported',
  sentiment: 'sentiment analysis is not supported',
  detect_language: 'language detection is not supported (the server transcribes English)',
  detect_topics: 'topic detection is not supported',
  paragraphs: 'paragraphs are not supported',
  measurements: 'measurement formatting is not supported',
};

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** Deepgram's REST error body. */
export function deepgramError(status: number, errCode: string, message: string, requestId: string = randomUUID(), headers: Record<string, string> = {}): HttpResponse {
  return {
    status,
    headers: { 'content-type': 'application/json', 'dg-request-id': requestId, ...headers },
    body: JSON.stringify({ err_code: errCode, err_msg: message, request_id: requestId }),
  };
}

/** A refusal for now (the engine behind, shutting down): 503 with Retry-After. */
function unavailable(e: GatewayError, requestId: string): HttpResponse {
  const headers: Record<string, string> = e.retryAfterMs !== undefined ? { 'retry-after': String(Math.ceil(e.retryAfterMs / 1000)) } : {};
  return deepgramError(503, 'SERVICE_UNAVAILABLE', e.message, requestId, headers);
}

export function deepgramTooLarge(limit: number): HttpResponse {
  return deepgramError(413, 'PAYLOAD_TOO_LARGE', `the request body is larger than ${limit} bytes (files.maxUploadBytes)`);
}

export interface PrerecordedDeps {
  readonly maxUploadBytes: number;
  readonly gatekeeper: Gatekeeper;
  readonly jobs: FileJobs;
  readonly engine: EngineInfo;
  readonly admissible: () => GatewayError | null;
}

interface Options {
  readonly raw?: { format: 's16le' | 'mulaw' | 'alaw'; sampleRate: number; channels: number };
  readonly model: string;
  readonly utterances: boolean;
  readonly ignored: readonly string[];
}

function parseOptions(query: URLSearchParams): Options {
  const ignored = screenDeepgramParams(query, KNOWN);
  for (const [k, why] of Object.entries(ANALYSES)) {
    const v = query.get(k);
    if (v !== null && deepgramBool(k, v)) throw new DeepgramParamError(k, `${k}=true is not supported: ${why}`);
  }
  deepgramLanguage(query);
  const enc = query.get('encoding');
  let raw: Options['raw'];
  if (enc !== null) {
    const format = ({ linear16: 's16le', mulaw: 'mulaw', alaw: 'alaw' } as const)[enc.toLowerCase() as 'linear16'];
    if (!format) throw new DeepgramParamError('encoding', `encoding=${enc.slice(0, 32)} is not supported (supported: linear16, mulaw, alaw; or none, for a container such as WAV, MP3, FLAC, Ogg or WebM)`);
    const sr = query.get('sample_rate');
    if (sr === null) throw new DeepgramParamError('sample_rate', `sample_rate is required with encoding=${enc}`);
    raw = {
      format,
      sampleRate: deepgramInteger('sample_rate', sr, 8000, 48000),
      channels: query.has('channels') ? deepgramInteger('channels', query.get('channels')!, 1, 2) : 1,
    };
  }
  return {
    ...(raw ? { raw } : {}),
    model: (query.get('model') ?? 'general').slice(0, 128),
    utterances: query.has('utterances') ? deepgramBool('utterances', query.get('utterances')!) : false,
    ignored: ignored.filter((p) => !Object.keys(ANALYSES).some((a) => p.startsWith(`${a}=`))),
  };
}

function words(f: Utterance) {
  return f.words.map((w) => ({ word: bareWord(w.word), start: r3(w.start), end: r3(w.end), confidence: r3(w.confidence), punctuated_word: w.word }));
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

export function deepgramResponse(t: FileTranscript, body: Uint8Array, opts: Options, engine: EngineInfo, requestId: string): Record<string, unknown> {
  const spoken = t.finals.filter((f) => f.text.trim() !== '');
  const allWords = spoken.flatMap(words);
  const name = engine.model !== undefined ? `${engine.name}-${engine.model}` : engine.name;
  const uuid = modelUuid(name, engine.version);
  const out: Record<string, unknown> = {
    metadata: {
      transaction_key: 'deprecated',
      request_id: requestId,
      sha256: createHash('sha256').update(body).digest('hex'),
      created: new Date().toISOString(),
      duration: r3(t.duration),
      channels: 1,
      models: [uuid],
      model_info: { [uuid]: { name, version: engine.version, arch: engine.name } },
      // captiongate's own fields, as in the live Metadata.
      requested_model: opts.model,
      ignored_params: opts.ignored,
    },
    results: {
      channels: [
        {
          alternatives: [
            {
              transcript: spoken.map((f) => f.text.trim()).join(' '),
              confidence: r3(mean(allWords.map((w) => w.confidence))),
              words: allWords,
            },
          ],
        },
      ],
      ...(opts.utterances
        ? {
            utterances: spoken.map((f) => {
              const ws = words(f);
              return {
                start: r3(f.start),
                end: r3(f.end),
                confidence: r3(mean(ws.map((w) => w.confidence))),
                channel: 0,
                transcript: f.text.trim(),
                words: ws,
                id: randomUUID(),
              };
            }),
          }
        : {}),
    },
  };
  return out;
}

export function createPrerecordedRoute(deps: PrerecordedDeps): (req: HttpRequest) => Promise<HttpResponse> {
  const { gatekeeper, jobs } = deps;
  return async (req) => {
    const requestId = randomUUID();
    if (gatekeeper.authEnabled) {
      const who = await gatekeeper.verifyRequest(req);
      if (who instanceof GatewayError) {
        return who.code === 'CAP_ERR_UNAUTHORIZED'
          ? deepgramError(401, 'INVALID_AUTH', who.message, requestId)
          : deepgramError(403, 'INSUFFICIENT_PERMISSIONS', who.message, requestId);
      }
      if (!who.scopes.has('listen')) return deepgramError(403, 'INSUFFICIENT_PERMISSIONS', `this key's scope does not include "listen"`, requestId);
    }
    let opts: Options;
    try {
      opts = parseOptions(req.query);
    } catch (err) {
      if (err instanceof DeepgramParamError) return deepgramError(400, 'Bad Request', `Deepgram parameter ${err.param}: ${err.message}`, requestId);
      throw err;
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type === 'application/json' || type.endsWith('+json')) {
      return deepgramError(400, 'Bad Request', 'a JSON body (a url to fetch) is not supported: this server makes no outbound requests; POST the audio itself as the body', requestId);
    }
    if (type.startsWith('multipart/') || type === 'application/x-www-form-urlencoded') {
      return deepgramError(415, 'UNSUPPORTED_MEDIA_TYPE', `the body must be the audio itself (got ${type})`, requestId);
    }
    if (req.body.byteLength > deps.maxUploadBytes) return deepgramTooLarge(deps.maxUploadBytes);
    if (req.body.byteLength === 0) return deepgramError(400, 'Bad Request', 'the request body is empty: POST the audio as the body', requestId);
    const refused = deps.admissible();
    if (refused) return unavailable(refused, requestId);
    const abort = new AbortController();
    req.onAbort(() => abort.abort(new Error('the client went away')));
    let t: FileTranscript;
    try {
      t = await jobs.transcribe(req.body, abort.signal, opts.raw);
    } catch (err) {
      if (err instanceof DecodeError) {
        const status = err.kind === 'unavailable' ? 503 : 400;
        return deepgramError(status, err.kind === 'too_long' ? 'PAYLOAD_TOO_LONG' : 'Bad Request', err.message, requestId);
      }
      if (err instanceof GatewayError) return unavailable(err, requestId);
      if (err instanceof JobsBusyError) {
        return deepgramError(429, 'TOO_MANY_REQUESTS', err.message, requestId, { 'retry-after': String(Math.ceil(err.retryAfterMs / 1000)) });
      }
      return deepgramError(500, 'INTERNAL_SERVER_ERROR', `transcription failed: ${(err as Error).message}`, requestId);
    }
    return {
      status: 200,
      headers: { 'content-type': 'application/json', 'dg-request-id': requestId },
      body: JSON.stringify(deepgramResponse(t, req.body, opts, deps.engine, requestId)),
    };
  };
}
