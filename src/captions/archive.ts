/**
 * Finals kept per session for live caption files
 * (GET /v1/sessions/:id/captions.vtt|.srt). Bounded: at most
 * `retainFinals` per session (oldest dropped, and the file says so), and
 * ended sessions are kept for `keepEndedSeconds`, at most `keepEndedSessions`.
 */
import type { FinalMessage } from '../protocol/messages.js';

interface Entry {
  finals: FinalMessage[];
  dropped: number;
  endedAt: number | null;
}

export interface CaptionArchiveOptions {
  readonly retainFinals: number;
  readonly keepEndedSessions: number;
  readonly keepEndedSeconds: number;
}

export class CaptionArchive {
  #opts: CaptionArchiveOptions;
  #live = new Map<string, Entry>();
  #ended = new Map<string, Entry>(); // insertion order = end order

  constructor(opts: CaptionArchiveOptions) {
    this.#opts = opts;
  }

  record(sessionId: string, f: FinalMessage): void {
    if (!f.text) return;
    let e = this.#live.get(sessionId);
    if (!e) {
      e = { finals: [], dropped: 0, endedAt: null };
      this.#live.set(sessionId, e);
    }
    e.finals.push(f);
    if (e.finals.length > this.#opts.retainFinals) {
      e.finals.shift();
      e.dropped++;
    }
  }

  started(sessionId: string): void {
    if (!this.#live.has(sessionId)) this.#live.set(sessionId, { finals: [], dropped: 0, endedAt: null });
  }

  ended(sessionId: string): void {
    const e = this.#live.get(sessionId);
    if (!e) return;
    this.#live.delete(sessionId);
    e.endedAt = Date.now();
    this.#ended.delete(sessionId);
    this.#ended.set(sessionId, e);
    this.#prune();
  }

  get(sessionId: string): { finals: readonly FinalMessage[]; dropped: number; live: boolean } | undefined {
    this.#prune();
    const live = this.#live.get(sessionId);
    if (live) return { finals: live.finals, dropped: live.dropped, live: true };
    const e = this.#ended.get(sessionId);
    return e ? { finals: e.finals, dropped: e.dropped, live: false } : undefined;
  }

  #prune(): void {
    const cutoff = Date.now() - this.#opts.keepEndedSeconds * 1000;
    for (const [id, e] of this.#ended) {
      if (this.#ended.size > this.#opts.keepEndedSessions || (e.endedAt ?? 0) < cutoff) this.#ended.delete(id);
      else break;
    }
  }

  get size(): { live: number; ended: number } {
    return { live: this.#live.size, ended: this.#ended.size };
  }
}
