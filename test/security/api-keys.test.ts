/**
 * Static API keys (auth.apiKeys, CAPTIONGATE_AUTH_API_KEYS): hashed while the
 * config is validated, never repeated in a message or a log line, mapped onto
 * the JWT identities and scopes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { connect, type CaptionClientError } from '../../src/client/client.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { hashApiKey } from '../../src/security/api-keys.js';
import { settled, startGateway, type Harness } from '../helpers/gateway.js';
import { testConfig } from '../helpers/config.js';

const K1 = 'key-one-0123456789abcdef';
const K2 = 'key-two-0123456789abcdef';
const K3 = 'key-three-0123456789abcdef';

describe('API keys: config', () => {
  it('keeps only SHA-256 hashes, with sub, scope and name', () => {
    const c = testConfig({ auth: { apiKeys: [`alice:${K1}`, K2, { key: K3, scope: 'view', name: 'Carol', sub: 'carol' }] } });
    const text = JSON.stringify(c);
    for (const k of [K1, K2, K3]) expect(text).not.toContain(k);
    expect(c.auth.apiKeys).toEqual([
      { hash: hashApiKey(K1), sub: 'alice', scopes: null, name: null },
      { hash: hashApiKey(K2), sub: null, scopes: null, name: null },
      { hash: hashApiKey(K3), sub: 'carol', scopes: ['view'], name: 'Carol' },
    ]);
  });

  it('reads CAPTIONGATE_AUTH_API_KEYS as a comma-separated list of key or sub:key', () => {
    const c = loadConfig({ env: { CAPTIONGATE_AUTH_API_KEYS: `bob:${K1},${K2}` } });
    expect(c.auth.apiKeys.map((k) => k.sub)).toEqual(['bob', null]);
  });

  it('refuses short, duplicate and badly scoped keys without repeating the key', () => {
    const bad = (apiKeys: unknown[]) => {
      try {
        testConfig({ auth: { apiKeys } });
      } catch (e) {
        return (e as ConfigError).message;
      }
      return '';
    };
    const short = bad(['s3cr3t-short']);
    expect(short).toMatch(/at least 16 characters/);
    expect(short).not.toContain('s3cr3t');
    const dup = bad([K1, `x:${K1}`]);
    expect(dup).toMatch(/listed twice/);
    expect(dup).not.toContain(K1);
    expect(bad([{ key: K1, scope: 'admin' }])).toMatch(/unknown scope/);
  });
});

describe('API keys: at the gateway', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startGateway('uws', { auth: { apiKeys: [`alice:${K1}`, { key: K3, scope: 'view' }] }, engine: { decoders: 1, threads: 1 } });
  });
  afterAll(async () => {
    await h?.stop();
  });

  it('turns auth on: a key opens a session as its sub; a wrong key is 401, a view-only key 403; no key in any log line', async () => {
    const c = await connect(`${h.base}/v1/listen`, { sampleRate: 16000, token: K1 });
    expect(h.gw.manager.list()[0]!.owner).toBe('sub:alice');
    await c.stop();
    const refused = (token?: string) =>
      connect(`${h.base}/v1/listen`, { sampleRate: 16000, ...(token ? { token } : {}) }).then(
        () => null,
        (e: unknown) => (e as CaptionClientError).code,
      );
    expect(await refused()).toBe('CAP_ERR_UNAUTHORIZED');
    expect(await refused('wrong-key-0123456789abcdef')).toBe('CAP_ERR_UNAUTHORIZED');
    expect(await refused(K3)).toBe('CAP_ERR_FORBIDDEN');
    // Query-string keys work as browsers send them.
    const q = await fetch(`${h.http}/v1/sessions/nope/captions.vtt?token=${K1}`);
    expect(q.status).toBe(404);
    const logs = JSON.stringify(h.logs);
    for (const k of [K1, K3]) expect(logs).not.toContain(k);
    await settled(h.gw);
  });
});
