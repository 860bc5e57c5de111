/**
 * Config = config/default.json, then the file named by CAPTIONGATE_CONFIG,
 * then environment overrides (CAPTIONGATE_<PATH>, e.g. CAPTIONGATE_POOL_SLABS
 * or CAPTIONGATE_LIMITS_MAX_SESSION_SECONDS; PORT for server.port), then
 * overrides passed in code. Validated once, frozen, then trusted.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { packageRoot } from '../util/paths.js';
import { configSchema, type Config } from './schema.js';

/** Shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as the hash (256 bits). */
export const MIN_SECRET_BYTES = 32;

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function merge(base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isObject(b) && isObject(v) ? merge(b, v) : v;
  }
  return out;
}

/** maxSessionSeconds -> MAX_SESSION_SECONDS */
function envSegment(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** Every leaf of the default config, with its environment variable name. */
function leaves(obj: JsonObject, prefix: string[] = []): { path: string[]; env: string; sample: Json }[] {
  const out: { path: string[]; env: string; sample: Json }[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const p = [...prefix, k];
    if (isObject(v)) out.push(...leaves(v, p));
    else out.push({ path: p, env: `CAPTIONGATE_${p.map(envSegment).join('_')}`, sample: v });
  }
  return out;
}

function parseEnvValue(raw: string, sample: Json): Json {
  if (typeof sample === 'number') {
    const n = Number(raw);
    return raw.trim() === '' || Number.isNaN(n) ? raw : n;
  }
  if (typeof sample === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    return raw;
  }
  if (Array.isArray(sample)) {
    const t = raw.trim();
    if (t.startsWith('[')) {
      try {
        return JSON.parse(t) as Json;
      } catch {
        return raw;
      }
    }
    return t === '' ? [] : t.split(',').map((s) => s.trim());
  }
  return raw;
}

function setPath(obj: JsonObject, p: string[], value: Json): void {
  let cur = obj;
  for (const k of p.slice(0, -1)) {
    const next = cur[k];
    if (!isObject(next)) cur[k] = {};
    cur = cur[k] as JsonObject;
  }
  cur[p[p.length - 1] as string] = value;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

function readJson(file: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`cannot read config file ${file}: ${(err as Error).message}`]);
  }
  try {
    const v = JSON.parse(text) as Json;
    if (!isObject(v)) throw new Error('top level must be an object');
    return v;
  } catch (err) {
    throw new ConfigError([`config file ${file} is not valid JSON: ${(err as Error).message}`]);
  }
}

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  overrides?: Record<string, unknown>;
  /** Skip CAPTIONGATE_CONFIG and environment overrides (tests). */
  ignoreEnv?: boolean;
}

export function defaultConfigPath(): string {
  return path.join(packageRoot(), 'config', 'default.json');
}

export function loadConfig(options: LoadConfigOptions = {}): Readonly<Config> {
  const env = options.env ?? process.env;
  const defaults = readJson(defaultConfigPath());
  let raw = defaults;
  if (!options.ignoreEnv) {
    const file = env.CAPTIONGATE_CONFIG;
    if (file) raw = merge(raw, readJson(path.resolve(file)));
    for (const leaf of leaves(defaults)) {
      const v = env[leaf.env];
      if (v !== undefined) setPath(raw, leaf.path, parseEnvValue(v, leaf.sample));
    }
    if (env.PORT !== undefined && env.CAPTIONGATE_SERVER_PORT === undefined) {
      setPath(raw, ['server', 'port'], parseEnvValue(env.PORT, 0));
    }
  }
  if (options.overrides) raw = merge(raw, options.overrides as JsonObject);
  return validateConfig(raw);
}

export function validateConfig(raw: unknown): Readonly<Config> {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = issue.path.join('.') || '(root)';
      let value: unknown = raw;
      for (const seg of issue.path) value = isObject(value) ? (value as JsonObject)[String(seg)] : Array.isArray(value) ? (value as Json[])[Number(seg)] : undefined;
      // API keys are secrets: a message about one never repeats it.
      if (issue.path[0] === 'auth' && issue.path[1] === 'apiKeys') return `${key}: ${issue.message}`;
      // store.url and redis.url may hold a password: never repeated either.
      if ((issue.path[0] === 'store' || issue.path[0] === 'redis') && issue.path[1] === 'url') return `${key}: ${issue.message}`;
      if (issue.code === 'unrecognized_keys') {
        return `${key === '(root)' ? '' : `${key}: `}unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      }
      return `${key}: ${JSON.stringify(value) ?? 'missing'} ${issue.message}`;
    });
    throw new ConfigError(problems);
  }
  const c = parsed.data;
  const problems: string[] = [];
  if (c.limits.lagWarnSeconds >= c.limits.lagMaxSeconds) {
    problems.push(
      `limits.lagWarnSeconds: ${c.limits.lagWarnSeconds} must be below limits.lagMaxSeconds (${c.limits.lagMaxSeconds})`,
    );
  }
  if (c.limits.lagMaxSeconds > c.pool.slabSeconds - c.engine.windowMs / 1000) {
    problems.push(
      `limits.lagMaxSeconds: ${c.limits.lagMaxSeconds} must leave one window of room in a slab ` +
        `(at most pool.slabSeconds - engine.windowMs = ${c.pool.slabSeconds - c.engine.windowMs / 1000})`,
    );
  }
  if (c.engine.decoders < 1) problems.push('engine.decoders: must be at least 1');
  if (c.redis.leaseMs < c.redis.heartbeatMs * 2) {
    problems.push(`redis.leaseMs: ${c.redis.leaseMs} must be at least twice redis.heartbeatMs (${c.redis.heartbeatMs}): a live node renews its lease before it lapses`);
  }
  if (c.server.workers > 1) {
    // Workers share the node's meetings, limits and resumes through Redis (docs/deploy.md).
    if (c.redis.url === '') {
      problems.push(
        `redis.url: Redis is required when server.workers is more than 1 (it is ${c.server.workers}): ` +
          'set redis.url (CAPTIONGATE_REDIS_URL=redis://127.0.0.1:6379), or run one worker',
      );
    }
    if (c.store.kind === 'memory') {
      problems.push('store.kind: "memory" keeps caption files inside one process; with server.workers > 1 every worker must serve every file: use "sqlite" (or "postgres")');
    }
    if (c.pool.slabs < c.server.workers) {
      problems.push(`pool.slabs: ${c.pool.slabs} is the node's pool, shared out among ${c.server.workers} workers: give each at least one slab`);
    }
  }
  const secretBytes = Buffer.byteLength(c.auth.secret, 'utf8');
  if (secretBytes > 0 && secretBytes < MIN_SECRET_BYTES) {
    problems.push(
      `auth.secret: a secret of ${secretBytes} bytes is too short to sign tokens safely; use at least ${MIN_SECRET_BYTES} random bytes ` +
        '(for example: openssl rand -base64 48), or leave it empty to turn auth off',
    );
  }
  if (c.store.kind === 'postgres' && !/^postgres(ql)?:\/\//.test(c.store.url)) {
    // The value is not repeated: it may hold a password.
    problems.push(
      c.store.url === ''
        ? 'store.url: must be set when store.kind is "postgres" (postgres://user:password@host:5432/database, or CAPTIONGATE_STORE_URL)'
        : 'store.url: must be a postgres:// or postgresql:// URL',
    );
  }
  if (problems.length) throw new ConfigError(problems);
  return deepFreeze(c);
}
