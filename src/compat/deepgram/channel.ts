/**
 * The Deepgram dialect's encoder: a WsConnection that the native connection
 * (ListenConnection, Session, Outbox) writes its protocol messages to, and
 * that writes Deepgram's messages to the client's socket instead. The
 * session never knows: this sits at the edge, like a WireMode.
 *
 *   ready    → Metadata (the open)
 *   partial  → Results is_final:false (when interim_results), SpeechStarted (vad_events)
 *   final    → Results is_final:true, speech_final:true; UtteranceEnd later (utterance_end_ms)
 *   ack      → (internal) decode progress: completes a Finalize, times UtteranceEnd
 *   warning  → Warning; error → Error
 *   end      → the last Results, then Metadata (the close); the close follows (1000 after CloseStream)
 *
 * Finalize. The connection passes on all the audio it holds, notes the
 * point (seconds of audio sent), and asks the session to flush. Messages
 * are held from then until the flush is seen to be complete:
 *   - a final that ends at the point: the flushed utterance's own;
 *   - or, when no utterance is open (no partial shown without its final),
 *     an ack saying the audio up to the point is decoded: the flush has
 *     nothing to finalize;
 *   - or the session's end.
 * Then the last final among the held messages is marked
 * `from_finalize: true` (or an empty final is sent so marked). The session
 * stays open.
 */
import { createHash, randomUUID } from 'node:crypto';

import type { ServerMessage } from '../../protocol/messages.js';
import type { WsConnection } from '../../transport/types.js';
import type { DeepgramParams } from './params.js';

interface Word {
  word: string;
  start: number;
  end: number;
  confidence: number;
  punctuated_word: string;
}

export interface DeepgramResults {
  type: 'Results';
  channel_index: [number, number];
  duration: number;
  start: number;
  is_final: boolean;
  speech_final: boolean;
  from_finalize: boolean;
  channel: { alternatives: { transcript: string; confidence: number; words: Word[] }[] };
  metadata: { request_id: string; model_info: { name: string; version: string; arch: string }; model_uuid: string };
}

type Outgoing = Record<string, unknown> & { type: string };

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** Deepgram's `word`: lower case, without the punctuation around it (that stays in punctuated_word). */
export function bareWord(w: string): string {
  return w.toLowerCase().replace(/^[^\p{L}\p{N}']+|[^\p{L}\p{N}']+$/gu, '');
}

/** A stable UUID-shaped id for the configured engine (Deepgram reports models by uuid). */
export function modelUuid(name: string, version: string): string {
  const h = createHash('sha256').update(`${name}\0${version}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export class DeepgramChannel implements WsConnection {
  readonly remoteAddress: string;
  readonly requestId = randomUUID();
  #conn: WsConnection;
  #params: DeepgramParams;
  #created = new Date().toISOString();
  #model = { name: 'unknown', version: '', arch: 'unknown' };
  #uuid = modelUuid('unknown', '');
  #sessionId = '';
  /** Audio decoded so far (from acks), seconds. */
  #decoded = 0;
  /** A Finalize waiting for its audio to be decoded: the point, and the messages held meanwhile. */
  #finalize: { at: number; slack: number; held: Outgoing[] } | null = null;
  /** UtteranceEnd armed after a final: the last word's end. */
  #utteranceEndAfter: number | null = null;
  #speechSegment = -1;
  /** A segment whose partial was shown and whose final has not come yet. */
  #openSegment: number | null = null;
  #closed = false;
  /** Results sent (tests and logs). */
  results = 0;
  /** Called once the session has ended (its `end`), whatever ended it. */
  onEnd: (() => void) | null = null;

  constructor(conn: WsConnection, params: DeepgramParams) {
    this.#conn = conn;
    this.#params = params;
    this.remoteAddress = conn.remoteAddress;
  }

  get modelInfo(): { name: string; version: string; arch: string } {
    return this.#model;
  }

  // ------------------------------------------------------------ WsConnection

  /** A native protocol message (JSON: the inner connection runs in JSON mode). */
  send(data: string | Uint8Array, isBinary: boolean): void {
    if (this.#closed || isBinary || typeof data !== 'string') return;
    this.#translate(JSON.parse(data) as ServerMessage);
  }
  bufferedAmount(): number {
    return this.#conn.bufferedAmount();
  }
  close(code: number, reason: string): void {
    this.#closed = true;
    this.#conn.close(code, reason);
  }
  terminate(): void {
    this.#closed = true;
    this.#conn.terminate();
  }
  pause(): void {
    this.#conn.pause?.();
  }
  resume(): void {
    this.#conn.resume?.();
  }
  get canPause(): boolean {
    return this.#conn.canPause === true;
  }
  markClosed(): void {
    this.#closed = true;
  }

  // ---------------------------------------------------------------- control

  /** An error about a client message the dialect handles itself (never reaches the session). */
  clientError(code: string, message: string, fatal: boolean): void {
    this.#write({ type: 'Error', code, description: message, fatal });
  }

  /**
   * A Finalize: everything up to `atSeconds` of audio (input time) becomes
   * final. `slackSeconds` allows for the resampler's delay.
   */
  finalizeRequested(atSeconds: number, slackSeconds: number): void {
    if (this.#finalize) {
      // A second Finalize before the first completed: one completion covers both.
      this.#finalize.at = atSeconds;
      return;
    }
    // Nothing has been said since the last final and all of it is decoded: complete at once.
    if (this.#openSegment === null && this.#decoded >= atSeconds - slackSeconds) {
      this.#write(this.#results('', atSeconds, atSeconds, [], true, true));
      return;
    }
    this.#finalize = { at: atSeconds, slack: slackSeconds, held: [] };
  }

  // ------------------------------------------------------------ translation

  #translate(m: ServerMessage): void {
    switch (m.type) {
      case 'ready':
        this.#sessionId = m.sessionId;
        this.#model = {
          name: m.engine.model !== undefined ? `${m.engine.name}-${m.engine.model}` : m.engine.name,
          version: m.engine.version,
          arch: m.engine.name,
        };
        this.#uuid = modelUuid(this.#model.name, this.#model.version);
        this.#emit(this.#metadata(0));
        return;
      case 'partial':
        if (m.text && m.segment !== this.#speechSegment) {
          this.#speechSegment = m.segment;
          if (this.#params.vadEvents) this.#emit({ type: 'SpeechStarted', channel: [0, 1], timestamp: r3(m.start) });
        }
        if (m.text) {
          this.#utteranceEndAfter = null;
          this.#openSegment = m.segment;
        }
        if (this.#params.interimResults) this.#emit(this.#results(m.text, m.start, m.end, [], false));
        return;
      case 'final': {
        if (m.text && m.segment !== this.#speechSegment) {
          this.#speechSegment = m.segment;
          if (this.#params.vadEvents) this.#emit({ type: 'SpeechStarted', channel: [0, 1], timestamp: r3(m.start) });
        }
        const words: Word[] = m.words.map((w) => ({
          word: bareWord(w.word),
          start: r3(w.start),
          end: r3(w.end),
          confidence: r3(w.confidence),
          punctuated_word: w.word,
        }));
        this.#emit(this.#results(m.text, m.start, m.end, words, true));
        if (words.length) this.#utteranceEndAfter = words[words.length - 1]!.end;
        if (this.#openSegment === m.segment) this.#openSegment = null;
        const f = this.#finalize;
        if (f && m.end >= f.at - Math.max(f.slack, 0.05)) this.#completeFinalize();
        return;
      }
      case 'ack':
        this.#decoded = m.decodedSeconds;
        this.#progress();
        return;
      case 'warning':
        this.#emit({ type: 'Warning', code: m.code, description: m.message, ...(m.lagSeconds !== undefined ? { lag_seconds: m.lagSeconds } : {}) });
        return;
      case 'error':
        this.#emit({ type: 'Error', code: m.code, description: m.message, fatal: m.fatal, ...(m.retryAfterMs !== undefined ? { retry_after_ms: m.retryAfterMs } : {}) });
        return;
      case 'end':
        // Everything is decoded: a Finalize still waiting completes now.
        this.#decoded = Math.max(this.#decoded, m.audio.decodedSeconds);
        this.#completeFinalize();
        if (this.#utteranceEndAfter !== null && this.#params.utteranceEndMs !== null) this.#utteranceEnd();
        this.#emit(this.#metadata(m.audio.receivedSeconds, m.reason));
        this.onEnd?.();
        return;
      default:
        return;
    }
  }

  #progress(): void {
    const f = this.#finalize;
    if (f && this.#openSegment === null && this.#decoded >= f.at - f.slack) this.#completeFinalize();
    const ue = this.#params.utteranceEndMs;
    if (ue !== null && this.#utteranceEndAfter !== null && this.#decoded >= this.#utteranceEndAfter + ue / 1000) this.#utteranceEnd();
  }

  #utteranceEnd(): void {
    const last = this.#utteranceEndAfter!;
    this.#utteranceEndAfter = null;
    this.#emit({ type: 'UtteranceEnd', channel: [0, 1], last_word_end: r3(last) });
  }

  #completeFinalize(): void {
    const f = this.#finalize;
    if (!f) return;
    this.#finalize = null;
    let marked = false;
    for (let i = f.held.length - 1; i >= 0; i--) {
      const m = f.held[i]!;
      if (m.type === 'Results' && (m as unknown as DeepgramResults).is_final) {
        const r = m as unknown as DeepgramResults;
        r.from_finalize = true;
        r.speech_final = false;
        marked = true;
        break;
      }
    }
    for (const m of f.held) this.#write(m);
    if (!marked) this.#write(this.#results('', f.at, f.at, [], true, true));
  }

  #results(text: string, start: number, end: number, words: Word[], isFinal: boolean, fromFinalize = false): DeepgramResults & Outgoing {
    const confidence = words.length ? words.reduce((a, w) => a + w.confidence, 0) / words.length : 0;
    return {
      type: 'Results',
      channel_index: [0, 1],
      duration: r3(Math.max(0, end - start)),
      start: r3(start),
      is_final: isFinal,
      speech_final: isFinal && !fromFinalize,
      from_finalize: fromFinalize,
      channel: { alternatives: [{ transcript: text, confidence: r3(confidence), words }] },
      metadata: { request_id: this.requestId, model_info: this.#model, model_uuid: this.#uuid },
    };
  }

  #metadata(duration: number, endReason?: string): Outgoing {
    return {
      type: 'Metadata',
      transaction_key: 'deprecated',
      request_id: this.requestId,
      sha256: '',
      created: this.#created,
      duration: r3(duration),
      channels: this.#params.channels,
      models: [this.#uuid],
      model_info: { [this.#uuid]: this.#model },
      // captiongate's own fields: the session, the model asked for, and what was accepted without effect.
      session_id: this.#sessionId,
      requested_model: this.#params.model,
      ignored_params: this.#params.ignored,
      ...(endReason !== undefined ? { end_reason: endReason } : {}),
    };
  }

  #emit(m: Outgoing): void {
    if (this.#finalize && m.type !== 'Metadata') this.#finalize.held.push(m);
    else this.#write(m);
  }

  #write(m: Outgoing): void {
    if (this.#closed) return;
    if (m.type === 'Results') this.results++;
    this.#conn.send(JSON.stringify(m), false);
  }
}
