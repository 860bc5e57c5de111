/**
 * The registry of live and parked sessions, in Redis: where each session
 * is, and what a node needs to continue it, so that a resume finds its
 * session whichever node it lands on (docs/architecture.md, "Resume across
 * nodes").
 *
 * Keys (all under `redis.keyPrefix`):
 *   beat:<nodeId>          the node's last heartbeat (ms since the epoch),
 *                          written every HEARTBEAT_MS; a node whose beat is
 *                          older than DEAD_AFTER_MS is dead.
 *   resume:<sha256(token)> the session's entry (JSON, SessionEntry), written
 *                          at each final, on park, on hand-over, and every
 *                          CHECKPOINT_MS while the session lives, with the
 *                          finals the store has not written yet; it expires
 *                          (resumeGraceSeconds + a margin after its last
 *                          write) so a dead node's entries do not stay.
 *   claim:<sha256(token)>  who is taking a session over (SET NX, short TTL):
 *                          two nodes never continue the same session.
 * Channels:
 *   handover:<nodeId>        requests to a node to hand a session over;
 *   handover-reply:<nodeId>  the answers.
 *
 * The token is never stored: entries are found by its SHA-256, and the
 * token itself is 192 random bits, so nothing in Redis lets anyone resume.
 *
 * Every Redis call is bounded by a timeout; a Redis outage makes resume
 * across nodes unavailable (resume on the same node keeps working) and is
 * logged, never thrown at a session.
 */
import { createHash, randomBytes } from 'node:crypto';

import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';

import { startSchema } from '../protocol/messages.js';

export const HEARTBEAT_MS = 200;
export const DEAD_AFTER_MS = 2000;
export const CHECKPOINT_MS = 800;
const CALL_TIMEOUT_MS = 1500;
const CLAIM_MS = 10_000;
/** An entry outlives its last write by the grace period plus this. */
const ENTRY_MARGIN_MS = 15_000;

const positionSchema = z.object({
  receivedSamples: z.number().int().min(0),
  receivedFrames: z.number().int().min(0),
  decodedSamples: z.number().int().min(0),
  droppedSamples: z.number().int().min(0),
});
export type Position = z.infer<typeof positionSchema>;

/**
 * The newest finals an entry carries at most (see `finals` below). Small:
 * the entry is rewritten at each final and every CHECKPOINT_MS, and it only
 * grows while the store cannot write (about 1.3 KB a final, words included).
 */
export const MAX_CARRIED_FINALS = 8;

const carriedFinalSchema = z.object({
  type: z.literal('final'),
  seq: z.number().int().min(0),
  segment: z.number().int().min(0),
  text: z.string(),
  start: z.number(),
  end: z.number(),
  words: z.array(z.object({ word: z.string(), start: z.number(), end: z.number(), confidence: z.number() })),
  speaker: z.string().optional(),
});

/** One validator for what is read back from Redis: another node (or version) wrote it. */
export const sessionEntrySchema = z.object({
  v: z.literal(1),
  id: z.string().min(1),
  node: z.string().min(1),
  state: z.enum(['live', 'parked', 'moved']),
  owner: z.string().nullable(),
  sub: z.string().nullable(),
  meetingId: z.string().nullable(),
  /** The meeting's clock (ms since the epoch) on the node that wrote it. */
  meetingStartedAt: z.number().nullable(),
  startedAt: z.number(),
  /** The session's start parameters, as a client's `start` is validated. */
  start: startSchema,
  maxSessionSeconds: z.number().positive(),
  /** The last seq stamped. */
  seq: z.number().int().min(0),
  /** The stabilizer's next segment number. */
  segment: z.number().int().min(0),
  /** Where a new node continues: the end of the last final's audio (all of it once parked or moved). */
  position: positionSchema,
  /** 16 kHz samples received at the time of this write. */
  heardSamples: z.number().int().min(0),
  /**
   * Finals the store may not have written yet (it writes in batches): a
   * node that takes the session over from a dead one writes them, so a
   * final the client and the meeting saw is never missing from the file.
   */
  finals: z.array(carriedFinalSchema).max(MAX_CARRIED_FINALS).optional(),
  updatedAt: z.number(),
});
export type SessionEntry = z.infer<typeof sessionEntrySchema>;

export const hashToken = (token: string): string => createHash('sha256').update(token).digest('base64url');

/** SET unless another node's entry is there (KEYS[1]; ARGV: value, node, take, ttl ms). */
const PUT_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if cur and ARGV[3] ~= '1' then
  local ok, e = pcall(cjson.decode, cur)
  if ok and type(e) == 'table' and e.node ~= ARGV[2] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[4]))
return 1`;

/** DEL unless another node's entry is there (KEYS[1]; ARGV: node). */
const REMOVE_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, e = pcall(cjson.decode, cur)
if ok and type(e) == 'table' and e.node ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])`;

const requestSchema = z.object({ id: z.string(), tokenHash: z.string(), from: z.string() });
const replySchema = z.object({ id: z.string(), ok: z.boolean(), message: z.string().optional() });

/** What a node does when asked to hand a session over: resolves once the entry says `moved` (true), or false when it has no such session. */
export type HandoverHandler = (tokenHash: string) => Promise<boolean>;

function timeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`redis: ${what} timed out after ${ms} ms`)), ms);
    }),
  ]);
}

export class SessionRegistry {
  readonly nodeId: string;
  #redis: Redis;
  #sub: Redis | null = null;
  #prefix: string;
  #graceMs: number;
  #log: Logger;
  #beat: NodeJS.Timeout | null = null;
  #checkpoint: NodeJS.Timeout | null = null;
  #handler: HandoverHandler | null = null;
  #pending = new Map<string, (r: z.infer<typeof replySchema>) => void>();
  #warnedAt = 0;
  #closed = false;

  constructor(redis: Redis, opts: { nodeId: string; keyPrefix: string; resumeGraceSeconds: number; log: Logger }) {
    this.#redis = redis;
    this.nodeId = opts.nodeId;
    this.#prefix = opts.keyPrefix;
    this.#graceMs = opts.resumeGraceSeconds * 1000;
    this.#log = opts.log.child({ registry: opts.nodeId });
  }

  /**
   * Starts the heartbeat and the hand-over channel. `entries` gives this
   * node's live sessions every CHECKPOINT_MS (their entries are refreshed).
   */
  async start(handler: HandoverHandler, entries: () => { tokenHash: string; entry: SessionEntry; lost: () => void }[]): Promise<void> {
    this.#handler = handler;
    const sub = this.#redis.duplicate();
    this.#sub = sub;
    sub.on('message', (channel, message) => this.#message(channel, message));
    // Connection errors are retried by ioredis; calls that fail say so (#call).
    sub.on('error', (err: Error) => this.#log.debug({ err }, 'session registry: subscriber connection error'));
    // Redis down at startup does not stop the node: it serves its own
    // sessions and subscribes once Redis answers (ioredis re-subscribes
    // after a reconnect by itself).
    const subscribe = () => this.#call(sub.subscribe(this.#key('handover', this.nodeId), this.#key('handover-reply', this.nodeId)), 'subscribe');
    sub.on('ready', () => void subscribe());
    await subscribe();
    const beat = () => void this.#call(this.#redis.set(this.#key('beat', this.nodeId), String(Date.now()), 'PX', 60_000), 'heartbeat');
    beat();
    this.#beat = setInterval(beat, HEARTBEAT_MS);
    this.#beat.unref();
    this.#checkpoint = setInterval(() => {
      for (const { tokenHash, entry, lost } of entries()) void this.put(tokenHash, entry).then((r) => r === 'lost' && lost());
    }, CHECKPOINT_MS);
    this.#checkpoint.unref();
  }

  #key(kind: string, id: string): string {
    return `${this.#prefix}${kind}:${id}`;
  }

  /** Bounded, and never throws: a failure is logged (at most once a second) and answers null. */
  async #call<T>(p: Promise<T>, what: string): Promise<T | null> {
    try {
      return await timeout(p, CALL_TIMEOUT_MS, what);
    } catch (err) {
      const now = Date.now();
      if (!this.#closed && now - this.#warnedAt > 1000) {
        this.#warnedAt = now;
        this.#log.warn({ err }, `session registry: ${what} failed; resume across nodes is unavailable until Redis answers`);
      }
      return null;
    }
  }

  /**
   * Writes a session's entry (fire and forget; awaited where order
   * matters). Only the node the entry names may overwrite it, unless
   * `take` (a node continuing the session after its claim): a node whose
   * session was taken over meanwhile gets 'lost' and ends its copy.
   */
  async put(tokenHash: string, entry: SessionEntry, opts: { take?: boolean } = {}): Promise<'ok' | 'lost' | 'unavailable'> {
    const r = await this.#call(
      this.#redis.eval(PUT_SCRIPT, 1, this.#key('resume', tokenHash), JSON.stringify(entry), this.nodeId, opts.take ? '1' : '0', String(this.#graceMs + ENTRY_MARGIN_MS)),
      'write',
    );
    return r === null ? 'unavailable' : r === 1 ? 'ok' : 'lost';
  }

  /** The session ended: its entry goes, unless another node has it now. */
  remove(tokenHash: string): void {
    void this.#call(this.#redis.eval(REMOVE_SCRIPT, 1, this.#key('resume', tokenHash), this.nodeId), 'delete');
  }

  /** The entry for a token's hash; null when there is none or Redis does not answer (`unavailable` then). */
  async get(tokenHash: string): Promise<{ entry: SessionEntry | null; unavailable: boolean }> {
    let raw: string | null;
    try {
      raw = await timeout(this.#redis.get(this.#key('resume', tokenHash)), CALL_TIMEOUT_MS, 'read');
    } catch (err) {
      this.#log.warn({ err }, 'session registry: read failed');
      return { entry: null, unavailable: true };
    }
    if (raw === null) return { entry: null, unavailable: false };
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = null;
    }
    const r = sessionEntrySchema.safeParse(parsed);
    if (!r.success) {
      this.#log.warn({ problem: r.error.message }, 'session registry: an entry does not validate; ignored');
      return { entry: null, unavailable: false };
    }
    return { entry: r.data, unavailable: false };
  }

  /** When the node last beat (ms since the epoch), or null if it never did (or long ago). */
  async lastBeat(nodeId: string): Promise<number | null> {
    const raw = await this.#call(this.#redis.get(this.#key('beat', nodeId)), 'heartbeat read');
    const n = raw === null ? NaN : Number(raw);
    return Number.isFinite(n) ? n : null;
  }

  static alive(lastBeat: number | null, now = Date.now()): boolean {
    return lastBeat !== null && now - lastBeat < DEAD_AFTER_MS;
  }

  /** Takes the right to continue a session (this node, or nobody else for CLAIM_MS). */
  async claim(tokenHash: string): Promise<boolean> {
    const key = this.#key('claim', tokenHash);
    const got = await this.#call(this.#redis.set(key, this.nodeId, 'PX', CLAIM_MS, 'NX'), 'claim');
    if (got === 'OK') return true;
    return (await this.#call(this.#redis.get(key), 'claim read')) === this.nodeId;
  }

  /**
   * Asks the owning node to hand the session over: 'moved' once it has
   * (the entry then says so); 'unreachable' when nobody listens on its
   * channel (Redis dropped the node's connection: it is dead, or cut off
   * from Redis, and then loses the session at its next write); 'refused'
   * or 'timeout' otherwise.
   */
  async requestHandover(nodeId: string, tokenHash: string, timeoutMs: number): Promise<'moved' | 'refused' | 'unreachable' | 'timeout'> {
    const id = randomBytes(9).toString('base64url');
    const answer = new Promise<z.infer<typeof replySchema>>((resolve) => this.#pending.set(id, resolve));
    const listeners = await this.#call(this.#redis.publish(this.#key('handover', nodeId), JSON.stringify({ id, tokenHash, from: this.nodeId })), 'hand-over request');
    if (listeners === null || listeners === 0) {
      this.#pending.delete(id);
      return listeners === 0 ? 'unreachable' : 'timeout';
    }
    try {
      const r = await timeout(answer, timeoutMs, 'hand-over');
      return r.ok ? 'moved' : 'refused';
    } catch {
      return 'timeout';
    } finally {
      this.#pending.delete(id);
    }
  }

  #message(channel: string, message: string): void {
    let data: unknown;
    try {
      data = JSON.parse(message);
    } catch {
      return;
    }
    if (channel === this.#key('handover-reply', this.nodeId)) {
      const r = replySchema.safeParse(data);
      if (r.success) this.#pending.get(r.data.id)?.(r.data);
      return;
    }
    const q = requestSchema.safeParse(data);
    if (!q.success || !this.#handler) return;
    const { id, tokenHash, from } = q.data;
    const reply = (ok: boolean, message?: string) =>
      void this.#call(this.#redis.publish(this.#key('handover-reply', from), JSON.stringify({ id, ok, ...(message ? { message } : {}) })), 'hand-over reply');
    this.#handler(tokenHash).then(
      (ok) => reply(ok),
      (err: unknown) => {
        this.#log.error({ err }, 'session registry: hand-over failed');
        reply(false, 'hand-over failed');
      },
    );
  }

  /** Stops the heartbeat (the node then counts as dead after DEAD_AFTER_MS) and the subscription. */
  close(): void {
    this.#closed = true;
    if (this.#beat) clearInterval(this.#beat);
    if (this.#checkpoint) clearInterval(this.#checkpoint);
    this.#sub?.disconnect();
    for (const resolve of this.#pending.values()) resolve({ id: '', ok: false });
    this.#pending.clear();
  }
}
