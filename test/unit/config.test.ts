import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { deriveShapes } from '../../src/config/derive.js';
import { ConfigError, loadConfig } from '../../src/config/load.js';

const policy = { minSamples: 1600, maxSamples: 16000, maxBatch: 256 };

describe('config', () => {
  it('loads the defaults, frozen', () => {
    const c = loadConfig({ ignoreEnv: true });
    expect(c.pool.slabs).toBeGreaterThan(0);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.pool)).toBe(true);
  });

  it('applies a config file, then environment variables named from the key path, then PORT', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cg-'));
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ pool: { slabs: 7 }, limits: { maxSessionSeconds: 60 } }));
    const c = loadConfig({
      env: {
        CAPTIONGATE_CONFIG: file,
        CAPTIONGATE_POOL_SLABS: '2',
        CAPTIONGATE_LIMITS_MAX_SESSION_SECONDS: '5',
        CAPTIONGATE_ENGINE_POCKETSPHINX_FWDFLAT: 'true',
        CAPTIONGATE_SERVER_ALLOWED_ORIGINS: 'https://a.example, https://b.example',
        PORT: '9999',
      },
    });
    expect(c.pool.slabs).toBe(2);
    expect(c.limits.maxSessionSeconds).toBe(5);
    expect(c.engine.pocketsphinx.fwdflat).toBe(true);
    expect(c.server.allowedOrigins).toEqual(['https://a.example', 'https://b.example']);
    expect(c.server.port).toBe(9999);
  });

  it('refuses bad values with one problem per key, naming the key, the value and the allowed range', () => {
    let err: unknown;
    try {
      loadConfig({ env: { CAPTIONGATE_POOL_SLABS: '0', CAPTIONGATE_SERVER_TRANSPORT: 'tcp', CAPTIONGATE_ENGINE_THREADS: 'many' } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems).toHaveLength(3);
    expect(problems).toContain('pool.slabs: 0 must be an integer from 1 to 100000');
    expect(problems.find((p) => p.startsWith('server.transport: "tcp"'))).toMatch(/"uws" or "ws"/);
    expect(problems.find((p) => p.startsWith('engine.threads: "many"'))).toMatch(/integer from 1 to 256/);
  });

  it('refuses unknown keys and inconsistent limits', () => {
    expect(() => loadConfig({ ignoreEnv: true, overrides: { pool: { slabz: 1 } } })).toThrow(/unknown key\(s\) "slabz"/);
    expect(() => loadConfig({ ignoreEnv: true, overrides: { limits: { lagWarnSeconds: 9, lagMaxSeconds: 8 } } })).toThrow(
      /lagWarnSeconds: 9 must be below/,
    );
    expect(() => loadConfig({ ignoreEnv: true, overrides: { pool: { slabSeconds: 5 }, limits: { lagMaxSeconds: 8 } } })).toThrow(
      /leave one window of room/,
    );
  });

  it('store.kind "postgres" needs a postgres:// store.url, and a message about store.url never repeats it (it may hold a password)', () => {
    expect(() => loadConfig({ ignoreEnv: true, overrides: { store: { kind: 'postgres' } } })).toThrow(/store\.url: must be set when store\.kind is "postgres"/);
    const problems = (url: unknown) => {
      try {
        loadConfig({ ignoreEnv: true, overrides: { store: { kind: 'postgres', url } } });
      } catch (e) {
        return (e as ConfigError).problems.join('\n');
      }
      return '';
    };
    expect(problems('mysql://u:hunter2-secret@h/db')).toBe('store.url: must be a postgres:// or postgresql:// URL');
    expect(problems(42)).toMatch(/^store\.url: must be a string/);
    expect(problems('postgresql://u:hunter2-secret@h/db')).toBe('');
    const env = loadConfig({ env: { CAPTIONGATE_STORE_KIND: 'postgres', CAPTIONGATE_STORE_URL: 'postgres://u:p@h:5433/c', CAPTIONGATE_STORE_POOL_SIZE: '8' } });
    expect(env.store).toMatchObject({ kind: 'postgres', url: 'postgres://u:p@h:5433/c', poolSize: 8, maxQueuedWrites: 100_000 });
  });

  it('derives every shape from durations: samples from seconds, bytes from samples', () => {
    const c = loadConfig({ ignoreEnv: true, overrides: { pool: { slabs: 10, slabSeconds: 30 } } });
    const s = deriveShapes(c, policy);
    // 30 s at 16 kHz: 480,000 samples (not bytes / 4 of anything).
    expect(s.ringSamples).toBe(480_000);
    expect(s.mirrorSamples).toBe(16_000);
    expect(s.slabSamples).toBe(496_000);
    expect(s.slabBytes).toBe(496_000 * 2); // 16-bit samples
    expect(s.poolBytes).toBe(10 * 496_000 * 2);
    expect(s.lagMaxSamples).toBe(c.limits.lagMaxSeconds * 16_000);
    expect(s.lagWarnSamples).toBe(c.limits.lagWarnSeconds * 16_000);
    // Session length does not size any buffer.
    const longer = deriveShapes(loadConfig({ ignoreEnv: true, overrides: { pool: { slabs: 10, slabSeconds: 30 }, limits: { maxSessionSeconds: 86_400 } } }), policy);
    expect(longer.poolBytes).toBe(s.poolBytes);
    expect(longer.arrivalBytes).toBe(s.arrivalBytes);
    // The arrival log spans the longer lag any decision looks for (8 s and 2 s by default), an entry per 50 ms, 4 spare.
    expect(s.arrivalEntries).toBe((Math.max(c.limits.lagMaxSeconds, c.admission.maxEngineLagSeconds) * 1000) / 50 + 4);
    expect(s.arrivalBytes).toBe(10 * s.arrivalEntries * 16);
    const admitLonger = deriveShapes(loadConfig({ ignoreEnv: true, overrides: { pool: { slabs: 10 }, admission: { maxEngineLagSeconds: 60 } } }), policy);
    expect(admitLonger.arrivalEntries).toBe((60 * 1000) / 50 + 4);
  });
});
