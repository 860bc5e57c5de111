/**
 * Resume across nodes, and draining (issue 15). Real gateway processes
 * (dist/src/main.js) sharing one redis-server (started here) and ONE SQLite
 * store file (WAL + busy timeout: it stands in for PostgreSQL). No load
 * balancer: the SDK is pointed at node B for the reconnect (`resume.urls`).
 *
 * (a) SIGTERM on node A: its client gets 4014 and resumes on B; same
 *     session, seq continuous, the transcript the uninterrupted one but for
 *     the words at the cut.
 * (b) SIGKILL on node A mid-utterance: the resume on B takes the session
 *     over; gapSeconds stays within the checkpoint interval; no seq twice.
 * (c) Another owner's resume token is refused on the other node; the owner's
 *     resume there gets the session handed over by the live node (4013 there).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import Database from 'better-sqlite3';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect, type CaptionClient } from '../../src/client/client.js';
import type { FinalMessage, ResumedMessage, WireMessage } from '../../src/protocol/messages.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { RawClient, streamPcm } from '../helpers/gateway.js';
import { startRedis, type RedisServer } from '../helpers/redis-server.js';

const RATE = 16000;
const SECRET = 'cross-node-test-secret-long-enough-0123456789';
const key = new TextEncoder().encode(SECRET);
const tokenFor = (sub: string) => new SignJWT({ sub }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('10m').sign(key);

const clips = librivoxClips().slice(0, 4);
const pcms = clips.map((c) => wavToInt16(readWav(c.file)));
const gap = new Int16Array(RATE / 2);
const starts: number[] = [];
const speech = (() => {
  const out = new Int16Array(pcms.reduce((n, p) => n + p.length + gap.length, 0));
  let o = 0;
  for (const p of pcms) {
    starts.push(o);
    out.set(p, o);
    o += p.length + gap.length;
  }
  return out;
})();
const textOf = (finals: FinalMessage[]) => finals.map((f) => f.text).filter(Boolean).join(' ');
const bytesOf = (a: Int16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

interface Node {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
  readonly listen: string;
  readonly exited: Promise<number | null>;
  output(): string;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-cross-node-'));
const storeFile = path.join(dir, 'captions.db');
const nodes: Node[] = [];
let redis: RedisServer;

async function startNode(name: string): Promise<Node> {
  const child = spawn(process.execPath, [path.resolve('dist/src/main.js')], {
    env: {
      ...process.env,
      PORT: '0',
      CAPTIONGATE_SERVER_HOST: '127.0.0.1',
      CAPTIONGATE_SERVER_NODE_ID: name,
      CAPTIONGATE_ENGINE_KIND: 'pocketsphinx',
      CAPTIONGATE_ENGINE_DECODERS: '2',
      CAPTIONGATE_ENGINE_THREADS: '1',
      CAPTIONGATE_POOL_SLABS: '8',
      CAPTIONGATE_STORE_PATH: storeFile,
      CAPTIONGATE_REDIS_URL: redis.url,
      CAPTIONGATE_AUTH_SECRET: SECRET,
      CAPTIONGATE_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`node ${name} did not start:\n${out}`)), 90_000);
    const check = () => {
      const m = /"port":(\d+),"msg":"listening/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => (clearTimeout(t), reject(new Error(`node ${name} exited (${code}):\n${out}`))));
  });
  const node = { name, child, port, listen: `ws://127.0.0.1:${port}/v1/listen`, exited, output: () => out };
  nodes.push(node);
  return node;
}

/** Every seq one more than the last, but for the seqs a resume said it skipped. */
function expectContinuous(messages: WireMessage[], skipped: number): void {
  const seqs = messages.filter((m): m is Exclude<WireMessage, ResumedMessage> => m.type !== 'resumed').map((m) => m.seq);
  let gaps = 0;
  for (let i = 1; i < seqs.length; i++) {
    expect(seqs[i]!, `seq ${seqs[i]} after ${seqs[i - 1]}`).toBeGreaterThan(seqs[i - 1]!);
    gaps += seqs[i]! - seqs[i - 1]! - 1;
  }
  expect(gaps).toBe(skipped);
}

const skippedOf = (r: ResumedMessage) => r.skippedPartials + r.skippedAcks + (r.skippedOther ?? 0);

/** The session's finals as the shared store has them (what any node's caption file is made from). */
function storedFinals(sessionId: string): { seq: number | null; segment: number; text: string }[] {
  const db = new Database(storeFile, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT seq, segment, text FROM finals WHERE session_id = ? ORDER BY segment').all(sessionId) as { seq: number | null; segment: number; text: string }[];
  } finally {
    db.close();
  }
}

async function storeHas(sessionId: string, n: number): Promise<void> {
  for (let i = 0; i < 100 && storedFinals(sessionId).length < n; i++) await new Promise((r) => setTimeout(r, 100));
}

/** Streams the speech through the SDK; `cut()` runs once, halfway through the second clip (someone is speaking). */
async function run(client: CaptionClient, cut: () => void) {
  const messages: WireMessage[] = [client.ready];
  const events: string[] = [];
  let resumed: ResumedMessage | null = null;
  const closes: number[] = [];
  client.on('message', (m) => messages.push(m));
  client.on('reconnecting', (r) => events.push(`reconnecting: ${r.reason}`));
  // A loaded machine may drop a connection more than once: every resume is kept.
  const resumes: ResumedMessage[] = [];
  client.on('resumed', (r) => {
    events.push('resumed');
    resumes.push(r);
    resumed ??= r;
  });
  client.on('audioLost', () => events.push('audioLost'));
  client.on('close', (code) => closes.push(code));
  const cutAt = starts[1]! + Math.floor(pcms[1]!.length / 2);
  let done = false;
  for (let o = 0; o < speech.length; o += RATE / 10) {
    await client.write(bytesOf(speech.subarray(o, Math.min(speech.length, o + RATE / 10))));
    if (!done && o >= cutAt) {
      cut();
      done = true;
    }
  }
  const end = await client.stop();
  return { messages, events, resumes, skipped: resumes.reduce((n, r) => n + skippedOf(r), 0), resumed: resumed as ResumedMessage | null, end, finals: messages.filter((m): m is FinalMessage => m.type === 'final') };
}

describe('resume across nodes (two gateway processes, one Redis, one store file)', () => {
  let b: Node;
  let direct: FinalMessage[];
  beforeAll(async () => {
    redis = await startRedis();
    b = await startNode('node-b');
    direct = (await streamPcm(b.listen, speech, { token: await tokenFor('alice') })).finals;
  }, 180_000);
  afterAll(async () => {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
    await Promise.all(nodes.map((n) => n.exited));
    await redis?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('(a) SIGTERM drains node A: its client gets 4014 and resumes on B; same session, seq continuous, the uninterrupted transcript', async () => {
    const a = await startNode('node-a1');
    const c = await connect(a.listen, { sampleRate: RATE, token: await tokenFor('alice'), resume: { initialDelayMs: 100, urls: [a.listen, b.listen] } });
    let reconnectCode = 0;
    c.ws.once('close', (code) => (reconnectCode = code));
    // A meeting viewer on A is told to reconnect too (it would come back with ?lastSeq=).
    const viewerToken = await new SignJWT({ sub: 'viewer', meetingId: 'standup', scope: 'view' })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(key);
    const viewer = new RawClient(`ws://127.0.0.1:${a.port}/v1/meetings/standup/captions?token=${viewerToken}`);
    await viewer.waitFor((m) => m.type === 'viewer_ready');
    const r = await run(c, () => a.child.kill('SIGTERM'));
    expect(await a.exited, a.output()).toBe(0);
    await viewer.closed;
    expect(viewer.closeCode).toBe(4014);
    expect(reconnectCode).toBe(4014);
    expect(r.events.some((e) => e.includes('4014'))).toBe(true);
    expect(r.events).toContain('resumed');
    expect(r.events).not.toContain('audioLost');
    expect(c.url).toBe(b.listen);
    expect(r.resumed!.sessionId).toBe(c.ready.sessionId);
    console.log(`drain: ${JSON.stringify(r.events)}`);
    // A handed over: nothing was lost in between.
    expect(r.resumes[0]!.gapSeconds).toBe(0);

    // Every sample once, one session, one seq line.
    expect(r.end.reason).toBe('client_stop');
    expect(r.end.audio.receivedSamples).toBe(speech.length);
    expect(r.end.audio.decodedSamples).toBe(speech.length);
    expect(r.end.audio.droppedSamples).toBe(0);
    expectContinuous(r.messages, r.skipped);
    for (let i = 1; i < r.finals.length; i++) {
      expect(r.finals[i]!.segment).toBeGreaterThan(r.finals[i - 1]!.segment);
      expect(r.finals[i]!.start).toBeGreaterThanOrEqual(r.finals[i - 1]!.end - 0.011);
    }
    const moved = textOf(r.finals);
    const errors = wer([[textOf(direct), moved]]).errors;
    console.log(`drain: ${errors} word(s) differ from the uninterrupted run`);
    // The cut utterance ends at the cut (a final there), and the new engine stream starts its feature normalization afresh.
    expect(errors).toBeLessThanOrEqual(10);

    // The store has the whole session (A's finals and B's), each once, with the seq the client saw.
    const spoken = r.finals.filter((f) => f.text);
    await storeHas(c.ready.sessionId, spoken.length);
    const stored = storedFinals(c.ready.sessionId);
    expect(stored.map((f) => [f.seq, f.text])).toEqual(spoken.map((f) => [f.seq, f.text]));
  }, 240_000);

  it('(b) SIGKILL of node A mid-utterance: the resume on B takes the session over; gapSeconds within ~1 s, no seq twice', async () => {
    const a = await startNode('node-a2');
    const c = await connect(a.listen, { sampleRate: RATE, token: await tokenFor('alice'), resume: { initialDelayMs: 100, urls: [a.listen, b.listen] } });
    const r = await run(c, () => a.child.kill('SIGKILL'));
    expect(await a.exited).toBeNull();
    expect(r.events).toContain('resumed');
    expect(c.url).toBe(b.listen);
    expect(r.resumed!.sessionId).toBe(c.ready.sessionId);
    console.log(`kill: gapSeconds ${r.resumed!.gapSeconds}, resumed at frame ${r.resumed!.receivedFrames}, events ${JSON.stringify(r.events)}`);
    expect(r.resumed!.gapSeconds).toBeGreaterThanOrEqual(0);
    expect(r.resumed!.gapSeconds).toBeLessThanOrEqual(1.25);
    expect(r.resumed!.receivedFrames).toBeLessThan(starts[1]! + pcms[1]!.length);

    // The client sent again what B did not have (from the last final A checkpointed): every sample decoded once.
    expect(r.end.reason).toBe('client_stop');
    expect(r.end.audio.receivedSamples).toBe(speech.length);
    expect(r.end.audio.decodedSamples + r.end.audio.droppedSamples).toBe(r.end.audio.receivedSamples);
    // No seq twice, and no final twice.
    const seqs = r.messages.filter((m): m is Exclude<WireMessage, ResumedMessage> => m.type !== 'resumed').map((m) => m.seq);
    expect(new Set(seqs).size).toBe(seqs.length);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
    const segments = r.finals.map((f) => f.segment);
    expect(new Set(segments).size).toBe(segments.length);
    for (let i = 1; i < r.finals.length; i++) expect(r.finals[i]!.start).toBeGreaterThanOrEqual(r.finals[i - 1]!.end - 0.011);
    const errors = wer([[textOf(direct), textOf(r.finals)]]).errors;
    console.log(`kill: ${errors} word(s) differ from the uninterrupted run`);
    // The open utterance is decoded again in full, on a new engine stream (its feature normalization starts afresh).
    expect(errors).toBeLessThanOrEqual(10);
    // The store: each final once (no seq twice).
    await storeHas(c.ready.sessionId, r.finals.filter((f) => f.text).length);
    const stored = storedFinals(c.ready.sessionId);
    const storedSeqs = stored.map((f) => f.seq);
    expect(new Set(storedSeqs).size).toBe(storedSeqs.length);
  }, 240_000);

  it("(c) another owner's resume token is refused on the other node; the owner's resume there is handed over by the live node (4013 there)", async () => {
    const a = await startNode('node-a3');
    const alice = new RawClient(`${a.listen}?sampleRate=16000&channels=1&encoding=s16le&token=${await tokenFor('alice')}`);
    const ready = await alice.waitFor((m) => m.type === 'ready');
    if (ready.type !== 'ready') throw new Error('no ready');
    const first = bytesOf(pcms[0]!);
    for (let o = 0; o < first.length; o += 3200) alice.ws.send(first.subarray(o, o + 3200));
    alice.sendJson({ type: 'flush' });
    await alice.waitFor((m) => m.type === 'final' && m.text !== '', 60_000);
    const seen = Math.max(...alice.messages.map((m) => ('seq' in m ? m.seq : 0)));
    const token = encodeURIComponent(ready.resumeToken);

    const mallory = new RawClient(`${b.listen}?resume=${token}&lastSeq=${seen}&token=${await tokenFor('mallory')}`);
    await mallory.closed;
    expect(mallory.errors.join(' ')).toMatch(/404/);
    const nobody = new RawClient(`${b.listen}?resume=${token}&lastSeq=${seen}`);
    await nobody.closed;
    expect(nobody.errors.join(' ')).toMatch(/401|404/);
    const forged = new RawClient(`${b.listen}?resume=${token.slice(0, -2)}xx&lastSeq=${seen}&token=${await tokenFor('alice')}`);
    await forged.closed;
    expect(forged.errors.join(' ')).toMatch(/404/);
    // Alice is still on A, untouched.
    expect(alice.closeCode).toBeUndefined();

    const back = new RawClient(`${b.listen}?resume=${token}&lastSeq=${seen}&token=${await tokenFor('alice')}`);
    const res = await back.waitFor((m) => m.type === 'resumed', 30_000);
    if (res.type !== 'resumed') throw new Error('no resumed');
    expect(res.sessionId).toBe(ready.sessionId);
    expect(res.gapSeconds).toBe(0);
    await alice.closed;
    expect(alice.closeCode).toBe(4013);
    back.sendJson({ type: 'stop' });
    const end = await back.waitFor((m) => m.type === 'end', 60_000);
    if (end.type !== 'end') throw new Error('no end');
    expect(end.audio.receivedSamples).toBe(res.receivedFrames);
    expect(end.audio.decodedSamples).toBe(end.audio.receivedSamples);
    // The seq goes on from what A stamped.
    const after = back.messages.filter((m): m is Exclude<WireMessage, ResumedMessage> => m.type !== 'resumed');
    expect(after[0]!.seq).toBeGreaterThan(seen);
    await back.closed;
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
  }, 240_000);
});
