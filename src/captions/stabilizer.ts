/**
 * Turns engine results into caption messages for one session.
 *
 * - Segments number utterances from 0. A segment gets partials (revision
 *   1, 2, ...) while it is open, then exactly one final. After its final a
 *   segment never appears again: committed text is immutable.
 * - A partial is sent only when its text changed.
 * - An utterance that decoded to nothing (empty, or punctuation only, which
 *   a Whisper-style decoder can give for noise) gets a final only if
 *   partials were shown for it: an empty final tells the client to clear
 *   the tentative text. Otherwise its segment number is reused.
 * - Times are audio seconds since the session's first sample. An engine
 *   stream counts from its own first sample; a session that resumed on a
 *   new stream says where that stream starts (`startsAt`).
 */
import type { EngineResult, Utterance } from '../engine/types.js';
import type { FinalMessage, PartialMessage, Unsequenced } from '../protocol/messages.js';

export type CaptionEvent = Unsequenced<PartialMessage> | Unsequenced<FinalMessage>;

const round = (s: number) => Math.round(s * 1000) / 1000;

/** Text with no letter or digit in any script says nothing: it is sent as ''. */
const SAYS_SOMETHING = /[\p{L}\p{N}]/u;
const normalize = (text: string) => (SAYS_SOMETHING.test(text) ? text : '');

export class CaptionStabilizer {
  #segment = 0;
  #revision = 0;
  #lastText = '';
  #partialShown = false;
  #interim: boolean;
  #speaker: string | undefined;
  /** Session time of the engine stream's first sample, seconds. */
  #offset = 0;

  constructor(options: { interim: boolean; speaker?: string | undefined; segment?: number }) {
    this.#interim = options.interim;
    this.#speaker = options.speaker;
    // A session continued on another node goes on numbering where it was.
    this.#segment = options.segment ?? 0;
  }

  /** The segment number the next utterance gets. */
  get nextSegment(): number {
    return this.#segment;
  }

  /** The engine stream that follows begins at session time `seconds`. */
  startsAt(seconds: number): void {
    this.#offset = seconds;
  }

  accept(r: Pick<EngineResult, 'finals' | 'partial'>): CaptionEvent[] {
    const out: CaptionEvent[] = [];
    for (const f of r.finals) {
      const ev = this.#final(f);
      if (ev) out.push(ev);
    }
    if (this.#interim && r.partial) {
      const text = normalize(r.partial.text);
      if (text !== this.#lastText && (text !== '' || this.#partialShown)) {
        this.#lastText = text;
        this.#partialShown = true;
        this.#revision++;
        const p: Unsequenced<PartialMessage> = {
          type: 'partial',
          segment: this.#segment,
          revision: this.#revision,
          text,
          start: this.#time(r.partial.start),
          end: this.#time(r.partial.end),
        };
        if (this.#speaker !== undefined) p.speaker = this.#speaker;
        out.push(p);
      }
    }
    return out;
  }

  #time(engineSeconds: number): number {
    return round(engineSeconds + this.#offset);
  }

  #final(u: Utterance): CaptionEvent | null {
    const text = normalize(u.text);
    if (text === '' && !this.#partialShown) return null;
    const f: Unsequenced<FinalMessage> = {
      type: 'final',
      segment: this.#segment,
      text,
      start: this.#time(u.start),
      end: this.#time(u.end),
      words: (text === '' ? [] : u.words).map((w) => ({
        word: w.word,
        start: this.#time(w.start),
        end: this.#time(w.end),
        confidence: Math.round(w.confidence * 1000) / 1000,
      })),
    };
    if (this.#speaker !== undefined) f.speaker = this.#speaker;
    this.#segment++;
    this.#revision = 0;
    this.#lastText = '';
    this.#partialShown = false;
    return f;
  }
}
