/**
 * Resume after a dropped connection (issue 14). The network is cut by a TCP
 * proxy between client and server, mid-utterance: neither side sees a close
 * frame. Real speech in, words scored out.
 */
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { connect, type CaptionClient } from '../../src/client/client.js';
import type { FinalMessage, ResumedMessage, WireMessage } from '../../src/protocol/messages.js';
import { transcribePcm } from '../../src/scheduler/transcribe.js';
import { librivoxClips } from '../../eval/corpus.js';
import { wer } from '../../eval/wer.js';
import { metric, RawClient, settled, startGateway, streamPcm, type Harness } from '../helpers/gateway.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

const RATE = 16000;
const clips = librivoxClips().slice(0, 4);
const pcms = clips.map((c) => wavToInt16(readWav(c.file)));
const gap = new Int16Array(RATE / 2);
/** Four LibriVox clips with half a second between them, and where each clip starts. */
const starts: number[] = [];
const speech = (() => {
  const total = pcms.reduce((n, p) => n + p.length + gap.length, 0);
  const out = new Int16Array(total);
  let o = 0;
  for (const p of pcms) {
    starts.push(o);
    out.set(p, o);
    o += p.length + gap.length;
  }
  return out;
})();
const textOf = (finals: readonly { text: string }[]) => finals.map((f) => f.text).filter(Boolean).join(' ');
const bytesOf = (a: Int16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Every seq the client saw is one more than the last (the seqs a resume skipped, counted, excepted). */
function expectContinuous(messages: WireMessage[], skipped: number): void {
  const seqs = messages.filter((m): m is Exclude<WireMessage, ResumedMessage> => m.type !== 'resumed').map((m) => m.seq);
  let gaps = 0;
  for (let i = 1; i < seqs.length; i++) {
    expect(seqs[i]!, `seq ${seqs[i]} after ${seqs[i - 1]}`).toBeGreaterThan(seqs[i - 1]!);
    gaps += seqs[i]! - seqs[i - 1]! - 1;
  }
  expect(gaps).toBe(skipped);
}

/**
 * Waits (up to 30 s) until one session is parked, not still parking: what it
 * was sent is decoded, then its slab goes back to the pool.
 */
async function untilParked(h: Harness): Promise<void> {
  const t0 = Date.now();
  while ((h.gw.manager.parked !== 1 || h.gw.pool.inUse > 0) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 25));
}

/** Finals on one clock: each starts where the one before ended, or later. */
function expectOneClock(finals: FinalMessage[]): void {
  for (let i = 1; i < finals.length; i++) expect(finals[i]!.start).toBeGreaterThanOrEqual(finals[i - 1]!.end - 0.011);
}

describe('resume after a dropped connection', () => {
  let h: Harness;
  let proxy: TcpProxy;
  beforeAll(async () => {
    h = await startGateway('uws', { engine: { decoders: 2, threads: 2 } });
    proxy = await startTcpProxy(Number(new URL(h.base).port));
  });
  afterAll(async () => {
    await proxy?.close();
    await h?.stop();
  });

  it('the network is cut mid-utterance: the SDK resumes, and the transcript is the uninterrupted one, no final lost or doubled, seq continuous', async () => {
    const direct = await streamPcm(`${h.base}/v1/listen`, speech);
    const frame = RATE / 10;
    // Halfway through the second clip: someone is speaking.
    const cutAt = starts[1]! + Math.floor(pcms[1]!.length / 2);
    const c: CaptionClient = await connect(`${proxy.base}/v1/listen`, { sampleRate: RATE, resume: { initialDelayMs: 50 } });
    const messages: WireMessage[] = [c.ready];
    const events: string[] = [];
    let resumed: ResumedMessage | null = null;
    c.on('message', (m) => messages.push(m));
    c.on('reconnecting', () => events.push('reconnecting'));
    c.on('resumed', (r) => {
      events.push('resumed');
      resumed = r;
    });
    c.on('audioLost', () => events.push('audioLost'));
    let cut = false;
    let parkedThenResumed: Promise<void> = Promise.resolve();
    for (let o = 0; o < speech.length; o += frame) {
      await c.write(bytesOf(speech.subarray(o, Math.min(speech.length, o + frame))));
      if (!cut && o >= cutAt) {
        // The reconnect waits until the session has parked, so the run is
        // the same every time: the utterance ends at the cut, and the
        // session goes on on a fresh engine stream.
        const release = proxy.hold();
        proxy.cut();
        cut = true;
        parkedThenResumed = untilParked(h).then(release);
      }
    }
    await parkedThenResumed;
    const end = await c.stop();
    expect(cut).toBe(true);
    expect(events).toContain('resumed');
    expect(events).not.toContain('audioLost');
    expect(proxy.accepted).toBe(2);
    const r = resumed as ResumedMessage | null;
    expect(r?.sessionId).toBe(c.ready.sessionId);
    expect(r!.gapSeconds).toBeGreaterThanOrEqual(0);
    expect(r!.gapSeconds).toBeLessThan(30);

    // Every sample, exactly once, on one clock.
    expect(end.reason).toBe('client_stop');
    expect(end.audio.receivedSamples).toBe(speech.length);
    expect(end.audio.droppedSamples).toBe(0);
    expect(end.audio.decodedSamples).toBe(speech.length);
    expectContinuous(messages, r!.skippedPartials + r!.skippedAcks);
    const finals = messages.filter((m): m is FinalMessage => m.type === 'final');
    expectOneClock(finals);
    expect(finals[finals.length - 1]!.end).toBeGreaterThan((starts[3]! + pcms[3]!.length) / RATE - 1);

    // The words: exactly the engine's for the same audio cut where the
    // network cut it (what the server had received), as two streams: the
    // first flushed at the cut, the second fresh. Nothing lost, nothing doubled.
    const cutFrames = r!.receivedFrames;
    expect(cutFrames).toBeGreaterThan(starts[1]!);
    const before = await transcribePcm(h.gw.engine, speech.subarray(0, cutFrames), { windowSamples: frame });
    const after = await transcribePcm(h.gw.engine, speech.subarray(cutFrames), { windowSamples: frame });
    const resumedText = textOf(finals);
    const expectedText = textOf([...before.finals, ...after.finals]);
    const vsDirect = wer([[textOf(direct.finals), resumedText]]);
    console.log(`resume: cut at ${(cutFrames / RATE).toFixed(2)} s; ${vsDirect.errors} word(s) differ from the uninterrupted run`);
    expect(resumedText).toBe(expectedText);
    await settled(h.gw);
  });

  it('a parked session holds no slab and no stream; a raw resume replays exactly what came after lastSeq, then the session goes on', async () => {
    const base = await metric(h.http, 'captiongate_samples_received_total');
    const raw = new RawClient(`${proxy.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
    const ready = await raw.waitFor((m) => m.type === 'ready');
    if (ready.type !== 'ready') throw new Error('no ready');
    const first = bytesOf(pcms[0]!);
    for (let o = 0; o < first.length; o += 3200) raw.ws.send(first.subarray(o, o + 3200));
    raw.sendJson({ type: 'flush' });
    await raw.waitFor((m) => m.type === 'final' && m.text !== '', 60_000);
    // The client saw up to here; what follows is lost with the network.
    const seen = Math.max(...raw.messages.map((m) => ('seq' in m ? m.seq : 0)));
    const second = bytesOf(pcms[1]!);
    for (let o = 0; o < second.length; o += 3200) raw.ws.send(second.subarray(o, o + 3200));
    // Cut once the server has it all (a cut loses what is in flight; the SDK would send that again).
    const want = base + pcms[0]!.length + pcms[1]!.length;
    for (let i = 0; i < 600 && (await metric(h.http, 'captiongate_samples_received_total')) < want; i++) await new Promise((r) => setTimeout(r, 50));
    proxy.cut();
    await raw.closed;

    // Parked: counts kept, audio memory back in the pool.
    await untilParked(h);
    expect(h.gw.manager.parked).toBe(1);
    expect(h.gw.pool.inUse).toBe(0);
    expect(h.gw.engine.stats().streams).toBe(0);
    expect(await metric(h.http, 'captiongate_sessions_parked')).toBe(1);

    const back = new RawClient(`${h.base}/v1/listen?resume=${encodeURIComponent(ready.resumeToken)}&lastSeq=${seen}`);
    const res = await back.waitFor((m) => m.type === 'resumed');
    if (res.type !== 'resumed') throw new Error('no resumed');
    expect(back.messages[0]!.type).toBe('resumed');
    expect(res.lastSeq).toBe(seen);
    expect(res.receivedFrames).toBe(pcms[0]!.length + pcms[1]!.length);
    back.sendJson({ type: 'stop' });
    const end = await back.waitFor((m) => m.type === 'end', 60_000);
    if (end.type !== 'end') throw new Error('no end');
    const replayed = back.messages.slice(1).filter((m): m is Exclude<WireMessage, ResumedMessage> => m.type !== 'resumed');
    // The replay starts right after lastSeq: nothing the client saw comes again.
    expect(replayed[0]!.seq).toBe(seen + 1);
    expectContinuous(replayed, res.skippedPartials + res.skippedAcks);
    // The second clip's words came through the drop (its final was made at the drop, and replayed).
    const text = textOf(replayed.filter((m): m is FinalMessage => m.type === 'final'));
    expect(wer([[clips[1]!.text, text]]).wer).toBeLessThan(60);
    expect(end.audio.receivedSamples).toBe(pcms[0]!.length + pcms[1]!.length);
    expect(end.audio.decodedSamples + end.audio.droppedSamples).toBe(end.audio.receivedSamples);
    expect(end.audio.droppedSamples).toBe(0);
    await back.closed;
    await settled(h.gw);
    expect(await metric(h.http, 'captiongate_sessions_resumed_total')).toBeGreaterThanOrEqual(1);
  });

  it('a close frame ends the session at once (client_gone); its token then resumes nothing', async () => {
    const c = await connect(`${h.base}/v1/listen`, { sampleRate: RATE });
    const token = c.ready.resumeToken;
    await c.write(bytesOf(pcms[0]!));
    c.close();
    await settled(h.gw);
    expect(h.gw.manager.parked).toBe(0);
    const again = new RawClient(`${h.base}/v1/listen?resume=${encodeURIComponent(token)}`);
    await again.closed;
    expect(again.errors.join(' ')).toMatch(/404/);
  });

  it('a resume while the old socket is open takes the session over (old closed 4013); lastSeq ahead of the session is refused', async () => {
    const a = new RawClient(`${h.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
    const ready = await a.waitFor((m) => m.type === 'ready');
    if (ready.type !== 'ready') throw new Error('no ready');
    const url = `${h.base}/v1/listen?resume=${encodeURIComponent(ready.resumeToken)}`;
    const ahead = new RawClient(`${url}&lastSeq=1000`);
    await ahead.closed;
    expect(ahead.closeCode).toBe(4012);
    expect(ahead.errorCodes()).toContain('CAP_ERR_RESUME_REFUSED');
    expect(a.closeCode).toBeUndefined();

    const b = new RawClient(`${url}&lastSeq=${ready.seq}`);
    await b.waitFor((m) => m.type === 'resumed');
    await a.closed;
    expect(a.closeCode).toBe(4013);
    expect(a.closeReason).toBe('CAP_ERR_TAKEN_OVER');
    // And again: the second holder is taken over by a third.
    const c = new RawClient(`${url}&lastSeq=${ready.seq}`);
    await c.waitFor((m) => m.type === 'resumed');
    await b.closed;
    expect(b.closeCode).toBe(4013);
    const bytes = bytesOf(pcms[2]!);
    for (let o = 0; o < bytes.length; o += 3200) c.ws.send(bytes.subarray(o, o + 3200));
    c.sendJson({ type: 'stop' });
    const end = await c.waitFor((m) => m.type === 'end', 60_000);
    if (end.type !== 'end') throw new Error('no end');
    expect(end.audio.receivedSamples).toBe(pcms[2]!.length);
    await settled(h.gw);
  });
});

describe('meeting viewers resume with ?lastSeq=', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { engine: { decoders: 2, threads: 2 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('a viewer that comes back gets the finals after its lastSeq, each once, with the meeting seq it would have had', async () => {
    const url = `${h.base}/v1/meetings/standup/captions`;
    const speaker = await connect(`${h.base}/v1/listen`, { sampleRate: RATE, meta: { meetingId: 'standup', speaker: 'alice' } });
    const first = new RawClient(url);
    await first.waitFor((m) => m.type === 'viewer_ready');
    await speaker.write(bytesOf(pcms[0]!));
    speaker.flush();
    await first.waitFor((m) => m.type === 'final' && m.text !== '', 60_000);
    const seen = Math.max(...first.messages.map((m) => ('seq' in m ? m.seq : 0)));
    first.ws.close();
    await first.closed;
    // While the viewer is away, two more utterances.
    for (const p of [pcms[1]!, pcms[2]!]) {
      await speaker.write(bytesOf(p));
      speaker.flush();
    }
    const end = await speaker.stop();
    expect(end.reason).toBe('client_stop');
    const all = new RawClient(url);
    await all.waitFor((m) => m.type === 'viewer_ready');
    const back = new RawClient(`${url}?lastSeq=${seen}`);
    const ready = await back.waitFor((m) => m.type === 'viewer_ready');
    if (ready.type !== 'viewer_ready') throw new Error('no viewer_ready');
    await new Promise((r) => setTimeout(r, 300));
    const finalsOf = (c: RawClient) => c.messages.filter((m): m is FinalMessage => m.type === 'final' && m.text !== '');
    const missed = finalsOf(back);
    expect(ready.replay).toBe(missed.length);
    expect(ready.truncated).toBe(0);
    expect(missed.length).toBeGreaterThan(0);
    for (const f of missed) expect(f.seq).toBeGreaterThan(seen);
    // Before the drop and after it, together: the full replay, nothing twice.
    const seenFinals = finalsOf(first);
    const key = (f: FinalMessage) => `${f.seq} ${f.start} ${f.text}`;
    expect([...seenFinals, ...missed].map(key).sort()).toEqual(finalsOf(all).map(key).sort());
    back.ws.close();
    all.ws.close();
    await Promise.all([back.closed, all.closed]);
  });
});

describe('resume refusals', () => {
  const SECRET = 'resume-test-secret-long-enough-0123456789';
  const key = new TextEncoder().encode(SECRET);
  const tokenFor = (sub: string) => new SignJWT({ sub }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime('5m').sign(key);
  let h: Harness;
  let proxy: TcpProxy;
  beforeAll(async () => {
    h = await startGateway('uws', { auth: { secret: SECRET }, limits: { resumeGraceSeconds: 1 }, engine: { decoders: 1, threads: 1 } });
    proxy = await startTcpProxy(Number(new URL(h.base).port));
  });
  afterAll(async () => {
    await proxy?.close();
    await h?.stop();
  });

  async function parkedSession(sub: string): Promise<string> {
    const raw = new RawClient(`${proxy.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le&token=${await tokenFor(sub)}`);
    const ready = await raw.waitFor((m) => m.type === 'ready');
    if (ready.type !== 'ready') throw new Error('no ready');
    raw.ws.send(bytesOf(pcms[0]!.subarray(0, RATE)));
    await new Promise((r) => setTimeout(r, 100));
    proxy.cut();
    await raw.closed;
    return ready.resumeToken;
  }

  it("another owner's token is refused (404 CAP_ERR_RESUME_REFUSED), and the owner can still resume", async () => {
    const token = await parkedSession('alice');
    const mallory = new RawClient(`${h.base}/v1/listen?resume=${encodeURIComponent(token)}&token=${await tokenFor('mallory')}`);
    await mallory.closed;
    expect(mallory.errors.join(' ')).toMatch(/404/);
    const alice = new RawClient(`${h.base}/v1/listen?resume=${encodeURIComponent(token)}&token=${await tokenFor('alice')}`);
    const res = await alice.waitFor((m) => m.type === 'resumed');
    if (res.type !== 'resumed') throw new Error('no resumed');
    alice.sendJson({ type: 'stop' });
    const end = await alice.waitFor((m) => m.type === 'end', 60_000);
    if (end.type !== 'end') throw new Error('no end');
    // What reached the server before the cut (the cut can lose bytes in flight; the SDK would send them again).
    expect(end.audio.receivedSamples).toBe(res.receivedFrames);
    expect(end.audio.receivedSamples).toBeLessThanOrEqual(RATE);
    expect(end.audio.decodedSamples).toBe(end.audio.receivedSamples);
    await settled(h.gw);
  });

  it('after the grace period the session has ended (client_gone) and its token is refused; its finals are in the store', async () => {
    const token = await parkedSession('alice');
    const t0 = Date.now();
    while (h.gw.manager.size > 0 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 50));
    expect(h.gw.manager.size).toBe(0);
    expect(h.gw.pool.inUse).toBe(0);
    const late = new RawClient(`${h.base}/v1/listen?resume=${encodeURIComponent(token)}&token=${await tokenFor('alice')}`);
    await late.closed;
    expect(late.errors.join(' ')).toMatch(/404/);
    // The store writes in batches: ask until the end is there.
    const auth = { authorization: `Bearer ${await tokenFor('alice')}` };
    let reasons: (string | null)[] = [];
    for (let i = 0; i < 100 && !reasons.includes('client_gone'); i++) {
      const list = (await (await fetch(`${h.http}/v1/sessions`, { headers: auth })).json()) as { sessions: { endReason: string | null }[] };
      reasons = list.sessions.map((s) => s.endReason);
      if (!reasons.includes('client_gone')) await new Promise((r) => setTimeout(r, 100));
    }
    expect(reasons).toContain('client_gone');
  });
});
