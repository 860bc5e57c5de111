import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import { CaptionClientError, connect, type ConnectOptions } from '../../src/client/client.js';
import { librivoxClips } from '../../eval/corpus.js';
import { RawClient, settled, startGateway, type Harness } from '../helpers/gateway.js';

const SECRET = 'test-secret-that-is-long-enough-0123456789';
const key = new TextEncoder().encode(SECRET);
const pcm = wavToInt16(readWav(librivoxClips()[1]!.file));

async function token(claims: Record<string, unknown>, opts: { exp?: string | number | null; secret?: Uint8Array; alg?: string } = {}) {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: opts.alg ?? 'HS256' }).setIssuedAt();
  if (opts.exp !== null) jwt = jwt.setExpirationTime(opts.exp ?? '5m');
  return jwt.sign(opts.secret ?? key);
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

describe('auth: HS256 tokens at upgrade', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { auth: { secret: SECRET }, engine: { decoders: 1, threads: 1 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('refuses missing, malformed, badly signed, expired, exp-less and non-HS256 tokens with 401, allocating nothing', async () => {
    const url = `${h.base}/v1/listen`;
    const before = h.gw.pool.stats();
    const cases: [string, Partial<ConnectOptions>, RegExp][] = [
      ['missing', {}, /token is required/],
      ['malformed', { token: 'not.a.jwt' }, /malformed/],
      ['wrong secret', { token: await token({}, { secret: new TextEncoder().encode('x'.repeat(40)) }) }, /signature/],
      ['expired', { token: await token({}, { exp: Math.floor(Date.now() / 1000) - 60 }) }, /expired/],
      ['no exp', { token: await token({}, { exp: null }) }, /exp/],
      ['HS512', { token: await token({}, { alg: 'HS512' }) }, /malformed or uses an unsupported algorithm/],
    ];
    for (const [name, o, msg] of cases) {
      const e = await refusal(url, o);
      expect(e?.code, name).toBe('CAP_ERR_UNAUTHORIZED');
      expect(e?.message, name).toMatch(msg);
    }
    // Query-string tokens are checked the same way (browsers cannot set headers).
    const q = new RawClient(`${url}?token=garbage`);
    await q.closed;
    expect(q.messages).toEqual([]);
    // Nothing was allocated for any of them.
    expect(h.gw.pool.stats().highWater).toBe(before.highWater);
    expect(h.gw.pool.inUse).toBe(0);
    expect(h.gw.engine.stats().streams).toBe(0);
  });

  it('accepts a valid token in the header or the query, and applies its limits', async () => {
    const c = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: await token({ sub: 'bot-1', maxSessionSeconds: 60 }) });
    expect(c.ready.limits.maxSessionSeconds).toBe(60);
    await c.write(pcm);
    const end = await c.stop();
    expect(end.reason).toBe('client_stop');
    // A token cannot raise the server's limit.
    const big = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: await token({ maxSessionSeconds: 1e9 }) });
    expect(big.ready.limits.maxSessionSeconds).toBe(h.gw.config.limits.maxSessionSeconds);
    await big.stop();
    const viaQuery = new RawClient(`${h.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le&token=${await token({})}`);
    await viaQuery.waitFor((m) => m.type === 'ready');
    viaQuery.ws.close();
    await settled(h.gw);
  });

  it('enforces maxSessions per token', async () => {
    const t = await token({ sub: 'one-at-a-time', maxSessions: 1 });
    const a = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: t });
    const e = await refusal(`${h.base}/v1/listen`, { token: t });
    expect(e?.code).toBe('CAP_ERR_TOO_MANY_SESSIONS');
    await a.stop();
    await settled(h.gw);
    const b = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: t });
    await b.stop();
    await settled(h.gw);
  });

  it('binds meetings to tokens: viewers need a token for that meeting; speakers speak only where allowed', async () => {
    const viewM1 = await token({ meetingId: 'm1' });
    const ok = new RawClient(`${h.base}/v1/meetings/m1/captions?token=${viewM1}`);
    await ok.waitFor((m) => m.type === 'viewer_ready');
    const wrong = new RawClient(`${h.base}/v1/meetings/m2/captions?token=${viewM1}`);
    await wrong.closed;
    expect(wrong.messages).toEqual([]);
    const none = new RawClient(`${h.base}/v1/meetings/m1/captions`);
    await none.closed;
    // A speaker token for m1 joins m1 without asking; the viewer sees its captions.
    const sp = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: await token({ meetingId: 'm1' }), meta: { speaker: 'ann' } });
    await sp.write(pcm);
    await sp.stop();
    await ok.waitFor((m) => m.type === 'final' && m.speaker === 'ann');
    // A token without a meeting claim cannot name one.
    const e = await refusal(`${h.base}/v1/listen`, { token: await token({}), meta: { meetingId: 'm1' } });
    expect(e?.code).toBe('CAP_ERR_FORBIDDEN');
    expect(e?.closeCode).toBe(4001);
    ok.ws.close();
    await settled(h.gw);
  });
});

describe('origin allowlist and rate limits', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('ws', {
      server: { allowedOrigins: ['https://captions.example'], trustProxy: true },
      rateLimits: { opensPerMinutePerAddress: 3 },
      engine: { decoders: 1, threads: 1 },
    });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('refuses browsers from other origins with 403; bots without Origin are fine', async () => {
    const allowed = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, headers: { origin: 'https://captions.example', 'x-forwarded-for': '10.0.0.1' } });
    await allowed.stop();
    const e = await refusal(`${h.base}/v1/listen`, { headers: { origin: 'https://evil.example', 'x-forwarded-for': '10.0.0.2' } });
    expect(e?.code).toBe('CAP_ERR_FORBIDDEN');
    const bot = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, headers: { 'x-forwarded-for': '10.0.0.3' } });
    await bot.stop();
    await settled(h.gw);
  });

  it('limits session opens per address (X-Forwarded-For behind a trusted proxy) with a Retry-After', async () => {
    const from = (ip: string) => ({ headers: { 'x-forwarded-for': ip } });
    for (let i = 0; i < 3; i++) await (await connect(`${h.base}/v1/listen`, { sampleRate: 16000, ...from('10.9.9.9') })).stop();
    const e = await refusal(`${h.base}/v1/listen`, from('10.9.9.9'));
    expect(e?.code).toBe('CAP_ERR_RATE_LIMITED');
    // Another address is unaffected.
    await (await connect(`${h.base}/v1/listen`, { sampleRate: 16000, ...from('10.8.8.8') })).stop();
    await settled(h.gw);
  });
});
