/**
 * Finals kept in memory for caption files (GET /v1/sessions/:id/captions.*),
 * bounded in bytes, with eviction per owner.
 *
 * - A live session keeps its finals up to `maxBytesPerSession`; beyond
 *   that its oldest finals are dropped, and the file says how many.
 * - An ended session's file is kept for `keepEndedSeconds`, in its owner's
 *   share: each owner (a token's identity; with auth off, a client
 *   address) keeps at most `maxEndedBytesPerOwner` of ended files, its own
 *   oldest going first. At most `maxEndedOwners` owners have ended files
 *   at once; a session of an owner beyond that is not kept after it ends.
 *   So no client can evict another's files, however many it makes.
 *
 * The bound, `budgetBytes(slabs)`, is part of the memory budget printed at
 * startup. Sizes are estimates of the JS heap a final takes.
 */
import type { FinalMessage } from '../protocol/messages.js';

interface Entry {
  readonly owner: string | null;
  readonly group: string;
  readonly meetingId: string | null;
  finals: FinalMessage[];
  bytes: number;
  dropped: number;
  endedAt: number | null;
}

export interface CaptionArchiveOptions {
  readonly maxBytesPerSession: number;
  readonly keepEndedSeconds: number;
  readonly maxEndedBytesPerOwner: number;
  readonly maxEndedOwners: number;
}

export interface ArchivedFile {
  readonly finals: readonly FinalMessage[];
  readonly dropped: number;
  readonly live: boolean;
  /** The identity that owns the session (null with auth off). */
  readonly owner: string | null;
  readonly meetingId: string | null;
}

/** Heap bytes a final takes, estimated: object overhead, UTF-16 text, one object per word. */
export function finalBytes(f: Pick<FinalMessage, 'text' | 'words'>): number {
  let n = 120 + 2 * f.text.length;
  for (const w of f.words) n += 72 + 2 * w.word.length;
  return n;
}

export class CaptionArchive {
  #opts: CaptionArchiveOptions;
  #live = new Map<string, Entry>();
  #ended = new Map<string, Entry>(); // insertion order = end order
  /** Ended files and their bytes, per eviction group. */
  #groups = new Map<string, { bytes: number; files: number }>();
  /** Ended files not kept because every owner place was taken (metrics). */
  notKept = 0;

  constructor(opts: CaptionArchiveOptions) {
    this.#opts = opts;
  }

  /** The most memory the archive can hold with `slabs` live sessions. */
  budgetBytes(slabs: number): number {
    return slabs * this.#opts.maxBytesPerSession + this.#opts.maxEndedOwners * this.#opts.maxEndedBytesPerOwner;
  }

  /** A session started. `group` is who its file counts against: its owner, or (auth off) its client address. */
  started(sessionId: string, who: { owner: string | null; group: string; meetingId: string | null }): void {
    if (this.#live.has(sessionId)) return;
    this.#live.set(sessionId, { ...who, finals: [], bytes: 0, dropped: 0, endedAt: null });
  }

  record(sessionId: string, f: FinalMessage): void {
    const e = this.#live.get(sessionId);
    if (!e || !f.text) return;
    e.finals.push(f);
    e.bytes += finalBytes(f);
    let drop = 0;
    while (e.bytes > this.#opts.maxBytesPerSession && drop < e.finals.length - 1) e.bytes -= finalBytes(e.finals[drop++]!);
    if (drop) {
      e.finals.splice(0, drop);
      e.dropped += drop;
    }
  }

  ended(sessionId: string): void {
    const e = this.#live.get(sessionId);
    if (!e) return;
    this.#live.delete(sessionId);
    this.#prune();
    let g = this.#groups.get(e.group);
    if (!g) {
      if (this.#groups.size >= this.#opts.maxEndedOwners) {
        this.notKept++;
        return;
      }
      g = { bytes: 0, files: 0 };
      this.#groups.set(e.group, g);
    }
    e.endedAt = Date.now();
    this.#ended.set(sessionId, e);
    g.bytes += e.bytes;
    g.files++;
    // Over its share: this owner's own oldest files go first (never anyone else's).
    if (g.bytes > this.#opts.maxEndedBytesPerOwner) {
      for (const [id, old] of this.#ended) {
        if (old.group !== e.group) continue;
        this.#forget(id, old);
        if (g.bytes <= this.#opts.maxEndedBytesPerOwner) break;
      }
    }
  }

  /** Whether an id is taken by a live or kept session (client-chosen ids may not reuse it). */
  has(sessionId: string): boolean {
    this.#prune();
    return this.#live.has(sessionId) || this.#ended.has(sessionId);
  }

  get(sessionId: string): ArchivedFile | undefined {
    this.#prune();
    const e = this.#live.get(sessionId) ?? this.#ended.get(sessionId);
    return e ? { finals: e.finals, dropped: e.dropped, live: e.endedAt === null, owner: e.owner, meetingId: e.meetingId } : undefined;
  }

  /** Drops a session's file from memory (deleted by its owner). */
  forget(sessionId: string): void {
    this.#live.delete(sessionId);
    const e = this.#ended.get(sessionId);
    if (e) this.#forget(sessionId, e);
  }

  #forget(id: string, e: Entry): void {
    this.#ended.delete(id);
    const g = this.#groups.get(e.group);
    if (!g) return;
    g.bytes -= e.bytes;
    if (--g.files === 0) this.#groups.delete(e.group);
  }

  #prune(): void {
    const cutoff = Date.now() - this.#opts.keepEndedSeconds * 1000;
    for (const [id, e] of this.#ended) {
      if ((e.endedAt ?? 0) >= cutoff) break;
      this.#forget(id, e);
    }
  }

  get size(): { live: number; ended: number; endedOwners: number } {
    return { live: this.#live.size, ended: this.#ended.size, endedOwners: this.#groups.size };
  }
}
