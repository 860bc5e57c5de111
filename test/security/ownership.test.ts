/**
 * Whose captions are whose, and who may do what (issue 13): caption files
 * need the owner's token or a meeting claim; ids are unguessable and
 * cannot be taken over; viewers do not learn session ids; scopes and names
 * bind a token to what it may do; tokens cannot live forever; sessions log
 * their token's sub.
 */
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { CaptionClientError, connect, type ConnectOptions } from '../../src/client/client.js';
import { loadConfig, ConfigError } from '../../src/config/load.js';
import { librivoxClips } from '../../eval/corpus.js';
import { RawClient, settled, startGateway, type Harness } from '../helpers/gateway.js';

const SECRET = 'ownership-test-secret-0123456789-abcdef';
const key = new TextEncoder().encode(SECRET);
const pcm = wavToInt16(readWav(librivoxClips()[1]!.file));

async function token(claims: Record<string, unknown>, exp: string | number = '5m') {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setExpirationTime(exp).sign(key);
}

async function refusal(url: string, o: Partial<ConnectOptions> = {}): Promise<CaptionClientError | null> {
  return connect(url, { sampleRate: 16000, ...o }).then(
    async (c) => {
      await c.stop();
      return null;
    },
    (e: unknown) => e as CaptionClientError,
  );
}

describe('ownership and roles (auth on)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { auth: { secret: SECRET }, engine: { kind: 'pocketsphinx', decoders: 2, threads: 2 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  /** A session of `sub` that says the LibriVox clip; returns its id once ended. */
  async function speak(claims: Record<string, unknown>, opts: Partial<ConnectOptions> = {}): Promise<string> {
    const c = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: await token(claims), ...opts });
    await c.write(pcm);
    const end = await c.stop();
    expect(end.reason).toBe('client_stop');
    return c.ready.sessionId;
  }

  it('serves a caption file only to its owner or a viewer of its meeting: 401 without a token, 403 with another', async () => {
    const id = await speak({ sub: 'alice', meetingId: 'board' });
    const file = (t?: string, how: 'header' | 'query' = 'header') =>
      fetch(`${h.http}/v1/sessions/${id}/captions.vtt${t && how === 'query' ? `?token=${t}` : ''}`, {
        headers: t && how === 'header' ? { authorization: `Bearer ${t}` } : {},
      });
    expect((await file()).status).toBe(401);
    expect((await file(await token({ sub: 'mallory' }))).status).toBe(403);
    expect((await file(await token({ sub: 'mallory', meetingId: 'other' }))).status).toBe(403);
    const own = await file(await token({ sub: 'alice' }));
    expect(own.status).toBe(200);
    expect(await own.text()).toMatch(/WEBVTT[\s\S]*-->/);
    // Browsers fetch with ?token=, as they open sockets.
    expect((await file(await token({ sub: 'alice' }), 'query')).status).toBe(200);
    expect((await fetch(`${h.http}/v1/sessions/${id}/captions.srt?token=${await token({ sub: 'bob', meetingId: 'board', scope: 'view' })}`)).status).toBe(200);
    // An id nobody has: the caller learns nothing beyond "not found".
    expect((await file(await token({ sub: 'alice' }))).status).toBe(200);
    expect((await fetch(`${h.http}/v1/sessions/nope/captions.vtt`)).status).toBe(401);
    expect((await fetch(`${h.http}/v1/sessions/nope/captions.vtt`, { headers: { authorization: `Bearer ${await token({ sub: 'x' })}` } })).status).toBe(404);
    await settled(h.gw);
  });

  it('makes session ids from 128 random bits, 22+ characters of [A-Za-z0-9_-], with no timestamp or counter in them', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const c = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: await token({ sub: 'ids' }) });
      ids.push(c.ready.sessionId);
      await c.stop();
    }
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{22,}$/);
    expect(new Set(ids).size).toBe(ids.length);
    // Consecutive ids share no prefix (a timestamp or counter would).
    const common = (a: string, b: string) => [...a].findIndex((ch, i) => ch !== b[i]);
    expect(Math.max(...ids.slice(1).map((id, i) => common(id, ids[i]!)))).toBeLessThan(6);
    await settled(h.gw);
  });

  it("a client-chosen sessionId can never take over or replace another owner's session, live or ended", async () => {
    const id = await speak({ sub: 'alice' }, { sessionId: 'alice-standup' });
    const before = await (await fetch(`${h.http}/v1/sessions/${id}/captions.vtt`, { headers: { authorization: `Bearer ${await token({ sub: 'alice' })}` } })).text();
    expect(before).toMatch(/-->/);
    // Another token, same id: refused (the ended session's file stays alice's).
    // The refusal is not fatal: the client may start again with another id.
    const refusedStart = async (sub: string, sessionId: string) => {
      const c = new RawClient(`${h.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le&sessionId=${sessionId}&token=${await token({ sub })}`);
      const err = (await c.waitFor((m) => m.type === 'error')) as { code: string; message: string };
      expect(c.messages.some((m) => m.type === 'ready')).toBe(false);
      c.ws.close();
      await c.closed;
      return err;
    };
    expect((await refusedStart('mallory', 'alice-standup')).code).toBe('CAP_ERR_BAD_PARAMETER');
    // While a session is live too.
    const live = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: await token({ sub: 'alice' }), sessionId: 'alice-live' });
    expect((await refusedStart('mallory', 'alice-live')).message).toMatch(/already in use/);
    await live.stop();
    const after = await (await fetch(`${h.http}/v1/sessions/${id}/captions.vtt`, { headers: { authorization: `Bearer ${await token({ sub: 'alice' })}` } })).text();
    expect(after).toBe(before);
    await settled(h.gw);
  });

  it('scopes: a view-only token cannot send audio, a listen-only token cannot watch; without the claim both work', async () => {
    const viewOnly = await token({ sub: 'v', meetingId: 'm-scope', scope: 'view' });
    const e = await refusal(`${h.base}/v1/listen`, { token: viewOnly });
    expect(e?.code).toBe('CAP_ERR_FORBIDDEN');
    expect(e?.message).toMatch(/scope/);
    const listenOnly = await token({ sub: 'l', meetingId: 'm-scope', scope: ['listen'] });
    const watcher = new RawClient(`${h.base}/v1/meetings/m-scope/captions?token=${listenOnly}`);
    await watcher.closed;
    expect(watcher.messages).toEqual([]);
    // "listen view" as a space-separated string, and no claim at all, allow both.
    for (const t of [await token({ sub: 'lv', meetingId: 'm-scope', scope: 'listen view' }), await token({ sub: 'legacy', meetingId: 'm-scope' })]) {
      const v = new RawClient(`${h.base}/v1/meetings/m-scope/captions?token=${t}`);
      await v.waitFor((m) => m.type === 'viewer_ready');
      v.ws.close();
      await (await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: t })).stop();
    }
    await settled(h.gw);
  });

  it("a token's name is the speaker, whatever the client says; viewers see names and opaque participant ids, not others' session ids", async () => {
    const viewer = new RawClient(`${h.base}/v1/meetings/m-names/captions?token=${await token({ sub: 'watcher', meetingId: 'm-names', scope: 'view' })}`);
    await viewer.waitFor((m) => m.type === 'viewer_ready');
    const id = await speak({ sub: 'ceo-impersonator', meetingId: 'm-names', name: 'Pat' }, { meta: { speaker: 'CEO' } });
    const f = (await viewer.waitFor((m) => m.type === 'final' && m.text !== '')) as { speaker: string; participant: string; sessionId?: string };
    expect(f.speaker).toBe('Pat');
    expect(f.participant).toMatch(/^[A-Za-z0-9_-]{8}$/);
    expect(JSON.stringify(viewer.messages)).not.toContain(id);
    expect(JSON.stringify(viewer.messages)).not.toContain('CEO');
    viewer.ws.close();
    await settled(h.gw);
  });

  it('refuses a token that expires further ahead than auth.maxTokenLifetimeSeconds (year 9999)', async () => {
    const e = await refusal(`${h.base}/v1/listen`, { token: await token({ sub: 'forever' }, 253402300799) });
    expect(e?.code).toBe('CAP_ERR_UNAUTHORIZED');
    expect(e?.message).toMatch(/maxTokenLifetimeSeconds/);
    // A day is fine.
    await (await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: await token({ sub: 'daily' }, '23h') })).stop();
    await settled(h.gw);
  });

  it("logs a session's lines with its token's sub", async () => {
    await speak({ sub: 'traceable-bot' });
    const lines = h.logs.filter((l) => l.sub === 'traceable-bot');
    expect(lines.some((l) => l.msg === 'session started')).toBe(true);
    expect(lines.some((l) => l.msg === 'session ended')).toBe(true);
  });
});

describe('settings that would weaken auth', () => {
  it('refuses a secret shorter than 32 bytes at startup; an empty secret means auth off', () => {
    expect(() => loadConfig({ ignoreEnv: true, overrides: { auth: { secret: 'x' } } })).toThrow(ConfigError);
    expect(() => loadConfig({ ignoreEnv: true, overrides: { auth: { secret: 'x' } } })).toThrow(/auth.secret: a secret of 1 bytes is too short/);
    expect(() => loadConfig({ ignoreEnv: true, overrides: { auth: { secret: 'a'.repeat(31) } } })).toThrow(ConfigError);
    expect(loadConfig({ ignoreEnv: true, overrides: { auth: { secret: 'a'.repeat(32) } } }).auth.secret).toHaveLength(32);
    expect(loadConfig({ ignoreEnv: true, overrides: { auth: { secret: '' } } }).auth.secret).toBe('');
  });
});
