/**
 * No client holds a resource without bound (issue 13): connections that
 * never start, keepalive-only and silent sessions, viewers and waiting
 * viewers, meeting places; a vanished client loses nothing it sent;
 * msgpack frames are judged by their size before they are unpacked; caption
 * memory is bounded, per owner; /metrics can move off the public port.
 */
import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { CaptionArchive } from '../../src/captions/archive.js';
import { connect } from '../../src/client/client.js';
import { createOverheadEngine } from '../../src/engine/overhead.js';
import { SUBPROTOCOL_MSGPACK } from '../../src/protocol/messages.js';
import { librivoxClips } from '../../eval/corpus.js';
import { metric, RawClient, settled, startGateway, type Harness } from '../helpers/gateway.js';

const pcm = wavToInt16(readWav(librivoxClips()[0]!.file));
const URL_START = 'sampleRate=16000&channels=1&encoding=s16le';

describe('bounded connections and sessions', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', {
      engine: { kind: 'pocketsphinx', decoders: 2, threads: 2 },
      limits: { startTimeoutSeconds: 0.5, maxConnectionsPerAddress: 4, maxSilentSeconds: 1.5, idleTimeoutSeconds: 30 },
      meetings: { maxMeetings: 1, maxWaitingViewersPerAddress: 2 },
    });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('closes a connection that never sends start with CAP_ERR_START_TIMEOUT (4010)', async () => {
    const c = new RawClient(`${h.base}/v1/listen`);
    await c.closed;
    expect(c.closeCode).toBe(4010);
    expect(c.errorCodes()).toEqual(['CAP_ERR_START_TIMEOUT']);
  });

  it('gives a connection back when its session is refused as it opens (uWS closes it inside the handler)', async () => {
    const h2 = await startGateway('uws', { pool: { slabs: 1 }, limits: { maxConnectionsPerAddress: 3 }, engine: { decoders: 1, threads: 1 } });
    try {
      const hog = new RawClient(`${h2.base}/v1/listen?${URL_START}`);
      await hog.waitFor((m) => m.type === 'ready');
      // Each of these is refused for capacity as its socket opens: more of them than the address may hold at once.
      for (let i = 0; i < 5; i++) {
        const refused = new RawClient(`${h2.base}/v1/listen?${URL_START}`);
        await refused.closed;
        expect(refused.errorCodes()).toEqual(['CAP_ERR_CAPACITY']);
      }
      hog.ws.close();
      await hog.closed;
      await settled(h2.gw);
      const next = new RawClient(`${h2.base}/v1/listen?${URL_START}`);
      await next.waitFor((m) => m.type === 'ready');
      next.ws.close();
      await next.closed;
    } finally {
      await h2.stop();
    }
  });

  it('counts connections that have not started, and viewers, toward limits.maxConnectionsPerAddress', async () => {
    const held = [
      new RawClient(`${h.base}/v1/meetings/waiting-1/captions`),
      new RawClient(`${h.base}/v1/meetings/waiting-2/captions`),
      new RawClient(`${h.base}/v1/listen?${URL_START}`),
    ];
    await Promise.all(held.map((c) => c.opened));
    const idle = new RawClient(`${h.base}/v1/listen`);
    await idle.opened;
    const refused = new RawClient(`${h.base}/v1/listen?${URL_START}`);
    await refused.closed;
    expect(refused.messages).toEqual([]); // refused at upgrade (HTTP 429), before anything was allocated
    for (const c of [...held, idle]) c.ws.close();
    await Promise.all([...held, idle].map((c) => c.closed));
    const after = new RawClient(`${h.base}/v1/listen?${URL_START}`);
    await after.waitFor((m) => m.type === 'ready');
    after.ws.close();
    await settled(h.gw);
  });

  it('ends a keepalive-only session at limits.maxSilentSeconds (max_silence, 4004)', async () => {
    // Keepalives alone: no audio at all.
    const quiet = new RawClient(`${h.base}/v1/listen?${URL_START}`);
    await quiet.waitFor((m) => m.type === 'ready');
    const ka = setInterval(() => quiet.ws.readyState === 1 && quiet.sendJson({ type: 'keepalive' }), 200);
    await quiet.closed;
    clearInterval(ka);
    expect(quiet.closeCode).toBe(4004);
    expect(quiet.errorCodes()).toEqual(['CAP_ERR_MAX_SILENCE']);
    expect((quiet.messages.find((m) => m.type === 'end') as { reason: string }).reason).toBe('max_silence');
    await settled(h.gw);
  });

  it('ends a session at limits.maxSessionWallSeconds however it talks (max_wall_time, 4003), with its finals', async () => {
    const h2 = await startGateway('uws', {
      engine: { kind: 'pocketsphinx', decoders: 1, threads: 1 },
      limits: { maxSessionWallSeconds: 2, maxSilentSeconds: 600 },
    });
    try {
      const talker = new RawClient(`${h2.base}/v1/listen?${URL_START}`);
      await talker.waitFor((m) => m.type === 'ready');
      const t0 = performance.now();
      for (let off = 0; talker.closeCode === undefined && talker.ws.readyState === 1; off = (off + 1600) % (pcm.length - 1600)) {
        talker.ws.send(pcm.subarray(off, off + 1600));
        await new Promise((r) => setTimeout(r, 100));
        if (performance.now() - t0 > 30_000) break;
      }
      await talker.closed;
      expect(talker.closeCode).toBe(4003);
      expect(talker.errorCodes()).toContain('CAP_ERR_MAX_WALL_TIME');
      const end = talker.messages.find((m) => m.type === 'end') as { reason: string; audio: { receivedSamples: number; decodedSamples: number } };
      expect(end.reason).toBe('max_wall_time');
      expect(end.audio.decodedSamples).toBe(end.audio.receivedSamples);
      await settled(h2.gw);
    } finally {
      await h2.stop();
    }
  });

  it('a viewer waiting for a meeting takes no meeting place; a speaker who cannot get one is told so', async () => {
    const waiter = new RawClient(`${h.base}/v1/meetings/later/captions`);
    await waiter.waitFor((m) => m.type === 'viewer_ready');
    expect(h.gw.hub.meetings).toBe(0);
    // The server's one meeting place goes to the first speaker, whose waiting viewer then sees it.
    const first = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, meta: { meetingId: 'later', speaker: 'ann' } });
    const second = new RawClient(`${h.base}/v1/listen?${URL_START}&meetingId=no-room&speaker=bo`);
    expect(await second.waitFor((m) => m.type === 'warning')).toMatchObject({ code: 'meeting_unavailable' });
    second.sendJson({ type: 'stop' });
    await first.write(pcm.subarray(0, 16000));
    await first.stop();
    await waiter.waitFor((m) => m.type === 'final' && m.speaker === 'ann');
    await second.closed;
    waiter.ws.close();
    await settled(h.gw);
  });
});

describe('nothing lost on a disconnect', () => {
  let h: Harness;
  beforeAll(async () => {
    // A vanished client's session is parked for resumeGraceSeconds, then ends client_gone.
    h = await startGateway('ws', { engine: { kind: 'pocketsphinx', decoders: 2, threads: 2 }, limits: { resumeGraceSeconds: 1 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('decodes what a vanished client sent, ends its open utterance with a final, and files it and fans it out', async () => {
    const viewer = new RawClient(`${h.base}/v1/meetings/cut/captions`);
    await viewer.waitFor((m) => m.type === 'viewer_ready');
    const c = new RawClient(`${h.base}/v1/listen?${URL_START}&meetingId=cut&speaker=zoe`);
    const ready = (await c.waitFor((m) => m.type === 'ready')) as { sessionId: string };
    // All of the clip at once, then the TCP connection is cut: no close frame, no stop.
    for (let off = 0; off < pcm.length; off += 1600) c.ws.send(pcm.subarray(off, Math.min(pcm.length, off + 1600)));
    await new Promise((r) => setTimeout(r, 50));
    c.ws.terminate();
    const final = (await viewer.waitFor((m) => m.type === 'final' && m.text !== '', 30_000)) as { text: string };
    expect(final.text.split(' ').length).toBeGreaterThan(3);
    await settled(h.gw);
    const vtt = await (await fetch(`${h.http}/v1/sessions/${ready.sessionId}/captions.vtt`)).text();
    expect(vtt).toContain(final.text.split(' ')[0]!);
    expect(h.logs.some((l) => l.session === ready.sessionId && l.reason === 'client_gone')).toBe(true);
    const received = await metric(h.http, 'captiongate_samples_received_total');
    const decoded = await metric(h.http, 'captiongate_samples_decoded_total');
    expect(decoded).toBe(received);
    viewer.ws.close();
  });

  it('judges a msgpack frame by its size before unpacking it', async () => {
    const c = new RawClient(`${h.base}/v1/listen`, [SUBPROTOCOL_MSGPACK]);
    await c.opened;
    const packr = new Packr({ useRecords: false });
    c.ws.send(packr.pack({ type: 'start', sampleRate: 16000, channels: 1, encoding: 's16le' }));
    await c.waitFor((m) => m.type === 'ready');
    // A large control message, broken at its very end: refused for its size (it was never unpacked, or the
    // answer would be "not valid msgpack"), and not audio.
    const big = Buffer.from(packr.pack({ type: 'keepalive', pad: 'x'.repeat(200_000) }));
    big[big.length - 1] = 0xc1; // never-used msgpack byte
    c.ws.send(big);
    const err = (await c.waitFor((m) => m.type === 'error')) as { code: string };
    expect(err.code).toBe('CAP_ERR_CONTROL_TOO_LARGE');
    // Audio in its envelope goes through, whatever its size up to the frame limit.
    c.ws.send(packr.pack({ type: 'audio', data: Buffer.from(pcm.buffer, pcm.byteOffset, 3200) }));
    c.ws.send(packr.pack({ type: 'stop' }));
    const end = (await c.waitFor((m) => m.type === 'end')) as { audio: { receivedSamples: number } };
    expect(end.audio.receivedSamples).toBe(1600);
    await settled(h.gw);
  });

  it('answers an invalid UTF-8 text frame with CAP_ERR_INVALID_JSON on the ws transport', async () => {
    const ws = new WebSocket(`${h.base}/v1/listen?${URL_START}`);
    const messages: { type: string; code?: string }[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(String(d))));
    await new Promise((r) => ws.once('open', r));
    // ws (the client) would refuse to send invalid UTF-8 as text; build the frame by hand on its socket.
    const sock = (ws as unknown as { _socket: import('node:net').Socket })._socket;
    const payload = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const mask = Buffer.from([1, 2, 3, 4]);
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
    sock.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
    for (let i = 0; i < 100 && !messages.some((m) => m.type === 'error'); i++) await new Promise((r) => setTimeout(r, 20));
    expect(messages.find((m) => m.type === 'error')?.code).toBe('CAP_ERR_INVALID_JSON');
    ws.close();
    await settled(h.gw);
  });
});

describe('caption memory, per owner', () => {
  it("keeps each owner's ended files within its share: one owner's many sessions never evict another's", () => {
    const archive = new CaptionArchive({ maxBytesPerSession: 1 << 20, keepEndedSeconds: 600, maxEndedBytesPerOwner: 20_000, maxEndedOwners: 2 });
    const f = (i: number) => ({ type: 'final' as const, seq: 0, segment: 0, text: `final ${i} ${'words '.repeat(50)}`, start: i, end: i + 1, words: [] });
    archive.started('victim', { owner: 'sub:v', group: 'sub:v', meetingId: null });
    archive.record('victim', f(0));
    archive.ended('victim');
    for (let i = 0; i < 100; i++) {
      archive.started(`spam${i}`, { owner: 'sub:spam', group: 'sub:spam', meetingId: null });
      archive.record(`spam${i}`, f(i));
      archive.ended(`spam${i}`);
    }
    expect(archive.get('victim')?.finals).toHaveLength(1);
    expect(archive.get('spam99')).toBeDefined();
    expect(archive.get('spam0')).toBeUndefined();
    // A third owner finds every place taken: its file is not kept, and nobody else's is evicted for it.
    archive.started('late', { owner: 'sub:late', group: 'sub:late', meetingId: null });
    archive.record('late', f(0));
    archive.ended('late');
    expect(archive.get('late')).toBeUndefined();
    expect(archive.notKept).toBe(1);
    expect(archive.get('victim')).toBeDefined();
    expect(archive.budgetBytes(256)).toBe(256 * (1 << 20) + 2 * 20_000);
  });

  it('prints the caption budget with the memory budget at startup', async () => {
    const h = await startGateway('uws', {}, createOverheadEngine({ windowMs: 100 }));
    try {
      const line = h.logs.find((l) => String(l.msg).startsWith('memory budget'));
      expect(line?.msg).toMatch(/captions at most [\d.]+ [KMG]iB \(caption files\) \+ [\d.]+ [KMG]iB \(meeting replays\)/);
      // Parked sessions (no slab) keep their caption files and resume logs: both count.
      const { limits } = h.gw.config;
      const sessions = h.gw.shapes.slabs + limits.maxParkedSessions;
      const budget = line?.budget as { captionFilesBytes: number; resumeLogBytes: number };
      expect(budget.captionFilesBytes).toBe(h.gw.archive.budgetBytes(sessions));
      expect(budget.resumeLogBytes).toBe(sessions * limits.resumeBufferBytes);
      expect(line?.msg).toMatch(/\(resume logs: \d+ B x \(\d+ live \+ \d+ parked\)\)/);
    } finally {
      await h.stop();
    }
  });
});

describe('/metrics on a listener of its own', () => {
  it('serves /metrics only there when metrics.host is set; /healthz and /readyz stay on the main port', async () => {
    const h = await startGateway('uws', { metrics: { host: '127.0.0.1', port: 0 } }, createOverheadEngine({ windowMs: 100 }));
    try {
      expect((await fetch(`${h.http}/metrics`)).status).toBe(404);
      expect((await fetch(`${h.http}/healthz`)).status).toBe(200);
      expect((await fetch(`${h.http}/readyz`)).status).toBe(200);
      const m = await fetch(`http://127.0.0.1:${h.gw.metricsPort}/metrics`);
      expect(m.status).toBe(200);
      expect(await m.text()).toContain('captiongate_sessions_active');
    } finally {
      await h.stop();
    }
  });
});
