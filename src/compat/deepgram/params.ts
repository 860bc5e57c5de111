/**
 * Deepgram's live `/v1/listen` dialect: which upgrades speak it, and what
 * their query parameters mean here.
 *
 * Detection (docs/compat.md): an upgrade of /v1/listen is in the Deepgram
 * dialect when any of these holds:
 *   - a query parameter only Deepgram uses (DEEPGRAM_ONLY_PARAMS: model,
 *     sample_rate, interim_results, punctuate, …);
 *   - an `encoding` value only Deepgram uses (linear16, mulaw, alaw, opus, …);
 *   - `Authorization: Token <key>` (Deepgram's scheme);
 *   - the `token` subprotocol (Deepgram's browser SDK sends `token, <key>`).
 * `encoding` (s16le, f32le) and `channels` alone do not decide it: the
 * native protocol uses them too, and stays unchanged.
 *
 * Every parameter is either supported, accepted and ignored (listed in
 * Metadata as ignored), or refused at upgrade with CAP_ERR_BAD_PARAMETER
 * naming it. Nothing here allocates.
 */
import { ENDPOINT_MS_MAX, ENDPOINT_MS_MIN, ENGINE_SAMPLE_RATE as ENGINE_RATE } from '../../engine/types.js';

/** 'container': no `encoding` (WebM/Opus, Ogg/Opus, …): decoded by ffmpeg (src/files/live-decoder.ts). */
export type DeepgramEncoding = 'linear16' | 'mulaw' | 'alaw' | 'container';

export interface DeepgramParams {
  readonly encoding: DeepgramEncoding;
  /** The client's rate and channels (containerized: the decoder's output, 16 kHz mono). */
  readonly sampleRate: number;
  readonly channels: 1 | 2;
  readonly interimResults: boolean;
  /** The model the client asked for (any name maps to the configured engine). */
  readonly model: string;
  readonly language: string;
  /** UtteranceEnd after this much audio without a new word, ms; null: not sent. */
  readonly utteranceEndMs: number | null;
  readonly vadEvents: boolean;
  /**
   * `endpointing`: the session's endpoint silence, ms (the engine stream's
   * StreamOptions.endpointMs); false: no endpoint; absent (or `true`): the
   * server's engine.vad.endMs.
   */
  readonly endpointMs?: number | false;
  /** Parameters accepted but without effect here, as `name=value`. */
  readonly ignored: readonly string[];
}

/** Query parameters the native protocol never uses. */
export const DEEPGRAM_ONLY_PARAMS: ReadonlySet<string> = new Set([
  'model',
  'sample_rate',
  'interim_results',
  'punctuate',
  'smart_format',
  'profanity_filter',
  'numerals',
  'endpointing',
  'utterance_end_ms',
  'vad_events',
  'diarize',
  'diarize_model',
  'multichannel',
  'keywords',
  'keyterm',
  'redact',
  'replace',
  'search',
  'tag',
  'dictation',
  'detect_entities',
  'filler_words',
  'no_delay',
  'mip_opt_out',
  'extra',
  'version',
  'callback',
  'callback_method',
]);

/** Encodings of Deepgram's live API; the first three are decoded here. */
export const DEEPGRAM_ENCODINGS: ReadonlySet<string> = new Set([
  'linear16',
  'mulaw',
  'alaw',
  'linear32',
  'flac',
  'opus',
  'ogg-opus',
  'speex',
  'amr-nb',
  'amr-wb',
  'g729',
]);

export interface DialectProbe {
  readonly query: URLSearchParams;
  readonly headers: Readonly<Record<string, string>>;
  readonly protocols: readonly string[];
}

/** Is this /v1/listen upgrade in the Deepgram dialect? (The rule above.) */
export function isDeepgram(req: DialectProbe): boolean {
  for (const k of req.query.keys()) if (DEEPGRAM_ONLY_PARAMS.has(k)) return true;
  const enc = req.query.get('encoding');
  if (enc !== null && DEEPGRAM_ENCODINGS.has(enc.toLowerCase())) return true;
  if (/^Token\s/i.test(req.headers.authorization ?? '')) return true;
  return req.protocols.some((p) => p.toLowerCase() === 'token');
}

/** A refusal: the parameter it names, and why. */
export class DeepgramParamError extends Error {
  readonly param: string;
  constructor(param: string, message: string) {
    super(message);
    this.param = param;
  }
}

/** Parameters refused because honouring them is not possible here and ignoring them would change the result. */
const REFUSED: Readonly<Record<string, string>> = {
  diarize: 'speaker diarization is not supported',
  diarize_model: 'speaker diarization is not supported',
  multichannel: 'per-channel transcription is not supported (stereo is mixed to mono)',
  keywords: 'keyword boosting is not supported',
  keyterm: 'keyterm prompting is not supported',
  redact: 'redaction is not supported',
  replace: 'find-and-replace is not supported',
  search: 'search is not supported',
  detect_entities: 'entity detection is not supported',
  dictation: 'dictation (spoken punctuation commands) is not supported',
  callback: 'callbacks are not supported (the server makes no outbound requests)',
  callback_method: 'callbacks are not supported (the server makes no outbound requests)',
};

/** Formatting options: refused when turned on (the text would not be what was asked for), accepted when off. */
const OFF_ONLY: Readonly<Record<string, string>> = {
  smart_format: 'smart formatting (numbers, dates, currency) is not supported',
  profanity_filter: 'profanity filtering is not supported',
  numerals: 'numeral formatting is not supported',
  diarize: 'speaker diarization is not supported',
  multichannel: 'per-channel transcription is not supported (stereo is mixed to mono)',
  detect_entities: 'entity detection is not supported',
  dictation: 'dictation (spoken punctuation commands) is not supported',
};

/** Accepted, and without effect here: listed in Metadata. */
const IGNORED = new Set(['punctuate', 'tag', 'filler_words', 'no_delay', 'mip_opt_out', 'extra', 'version']);

/** Native or transport keys a Deepgram URL may carry without meaning anything Deepgram. */
const PASS = new Set(['token', 'access_token']);

function bool(name: string, v: string): boolean {
  const t = v.toLowerCase();
  if (t === 'true' || t === '1') return true;
  if (t === 'false' || t === '0') return false;
  throw new DeepgramParamError(name, `${name} must be true or false (got "${v.slice(0, 32)}")`);
}

function integer(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new DeepgramParamError(name, `${name} must be an integer from ${min} to ${max} (got "${v.slice(0, 32)}")`);
  }
  return n;
}

const LIVE_PARAMS: readonly string[] = ['encoding', 'sample_rate', 'channels', 'interim_results', 'model', 'language', 'utterance_end_ms', 'vad_events', 'endpointing'];

/**
 * The checks every Deepgram request's parameters go through, live or
 * pre-recorded: a parameter given twice, a refused one, or a formatting
 * option turned on throws DeepgramParamError naming it. Returns the
 * parameters accepted without effect (`name=value`); those in `known` are
 * the caller's to read.
 */
export function screenDeepgramParams(query: URLSearchParams, known: readonly string[]): string[] {
  const ignored: string[] = [];
  const seen = new Set<string>();
  for (const [k, v] of query) {
    if (seen.has(k) && k !== 'keywords' && k !== 'keyterm' && k !== 'tag' && k !== 'extra' && k !== 'replace' && k !== 'search' && k !== 'redact') {
      throw new DeepgramParamError(k, `${k} is given more than once`);
    }
    seen.add(k);
    if (PASS.has(k)) continue;
    if (k in OFF_ONLY) {
      if (bool(k, v)) throw new DeepgramParamError(k, `${k}=true is not supported: ${OFF_ONLY[k]}; leave it out or set ${k}=false`);
      continue;
    }
    if (k in REFUSED) throw new DeepgramParamError(k, `${k} is not supported: ${REFUSED[k]}`);
    if (IGNORED.has(k)) {
      if (k === 'punctuate') bool(k, v);
      ignored.push(`${k}=${v.slice(0, 64)}`);
      continue;
    }
    if (!known.includes(k)) {
      // Deepgram adds parameters often; one we do not know cannot be honoured, so it is ignored visibly.
      ignored.push(`${k}=${v.slice(0, 64)}`);
    }
  }
  return ignored;
}

/** English, or a regional English (`en-US`, `en_GB`); anything else throws. */
export function deepgramLanguage(query: URLSearchParams): string {
  const language = query.get('language') ?? 'en';
  if (!/^en([-_][A-Za-z]{2,4})?$/.test(language)) {
    throw new DeepgramParamError('language', `language=${language.slice(0, 32)} is not supported: only English (en, en-US, en-GB, …) is transcribed here`);
  }
  return language;
}

export function deepgramBool(name: string, v: string): boolean {
  return bool(name, v);
}

export function deepgramInteger(name: string, v: string, min: number, max: number): number {
  return integer(name, v, min, max);
}

/**
 * Parses a Deepgram live URL's parameters, or throws DeepgramParamError
 * naming the first parameter that is refused or invalid.
 */
export function parseDeepgramParams(query: URLSearchParams): DeepgramParams {
  const ignored = screenDeepgramParams(query, LIVE_PARAMS);
  const encRaw = query.get('encoding');
  let encoding: DeepgramEncoding;
  let sampleRate: number;
  let channels: number;
  if (encRaw === null) {
    // Containerized: the container says its rate and channels; the decoder gives 16 kHz mono.
    encoding = 'container';
    sampleRate = ENGINE_RATE;
    channels = 1;
    for (const k of ['sample_rate', 'channels']) {
      const v = query.get(k);
      if (v !== null) ignored.push(`${k}=${v.slice(0, 16)}`);
    }
  } else {
    const enc = encRaw.toLowerCase();
    if (enc !== 'linear16' && enc !== 'mulaw' && enc !== 'alaw') {
      throw new DeepgramParamError(
        'encoding',
        `encoding=${encRaw.slice(0, 32)} is not supported (supported: linear16, mulaw, alaw; or no encoding for containerized audio such as WebM/Opus or Ogg/Opus)`,
      );
    }
    encoding = enc;
    const sr = query.get('sample_rate');
    if (sr === null) throw new DeepgramParamError('sample_rate', `sample_rate is required with encoding=${enc}`);
    sampleRate = integer('sample_rate', sr, 8000, 48000);
    channels = query.has('channels') ? integer('channels', query.get('channels')!, 1, 2) : 1;
  }

  const language = deepgramLanguage(query);
  const ue = query.get('utterance_end_ms');
  const ep = query.get('endpointing');
  let endpointMs: number | false | undefined;
  if (ep !== null) {
    const t = ep.toLowerCase();
    if (t === 'false') endpointMs = false;
    else if (t !== 'true') {
      const n = Number(ep);
      if (ep.trim() === '' || !Number.isInteger(n) || n < ENDPOINT_MS_MIN || n > ENDPOINT_MS_MAX) {
        throw new DeepgramParamError(
          'endpointing',
          `endpointing must be an integer from ${ENDPOINT_MS_MIN} to ${ENDPOINT_MS_MAX} (ms of silence that ends an utterance), true, or false (no endpoint) (got "${ep.slice(0, 32)}")`,
        );
      }
      endpointMs = n;
    }
  }
  return {
    encoding,
    sampleRate,
    channels: channels as 1 | 2,
    interimResults: query.has('interim_results') ? bool('interim_results', query.get('interim_results')!) : false,
    model: (query.get('model') ?? 'general').slice(0, 128),
    language,
    utteranceEndMs: ue === null ? null : integer('utterance_end_ms', ue, 1, 60_000),
    vadEvents: query.has('vad_events') ? bool('vad_events', query.get('vad_events')!) : false,
    ...(endpointMs !== undefined ? { endpointMs } : {}),
    ignored,
  };
}
