/**
 * Static API keys, next to JWTs (auth.apiKeys, or CAPTIONGATE_AUTH_API_KEYS
 * as a comma-separated list). A key is given as:
 *   "<key>"                               identity from the key's hash
 *   "<sub>:<key>"                         identity `sub`
 *   { key, sub?, scope?, name? }          (config file only)
 *
 * Keys are hashed (SHA-256) while the config is validated: the frozen config,
 * the gatekeeper and every log line only ever hold the hashes. A presented
 * key is hashed and looked up; nothing compares raw keys.
 */
import { createHash } from 'node:crypto';

import { z } from 'zod';

export type KeyScope = 'listen' | 'view';
export const KEY_SCOPES: readonly KeyScope[] = ['listen', 'view'];

/** Shortest key accepted: 16 characters (Deepgram's keys are 40 hex digits). */
export const MIN_API_KEY_CHARS = 16;

/** One configured key, as the validated config holds it: hashed. */
export interface HashedApiKey {
  /** SHA-256 of the key, hex. */
  readonly hash: string;
  readonly sub: string | null;
  /** null: the key may do everything (listen and view), as a JWT without `scope`. */
  readonly scopes: readonly KeyScope[] | null;
  readonly name: string | null;
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

const KEY_CHARS = /^[^\s,]+$/;
const SUB_CHARS = /^[A-Za-z0-9._@-]{1,128}$/;

const objectEntry = z
  .object({
    key: z.string({ error: 'key must be a string' }),
    sub: z.string({ error: 'sub must be a string' }).optional(),
    scope: z.union([z.string(), z.array(z.string())], { error: 'scope must be a space-separated string or an array of strings' }).optional(),
    name: z.string({ error: 'name must be a string' }).min(1).max(128, { error: 'name must be 1-128 characters' }).optional(),
  })
  .strict();

/** The schema of auth.apiKeys: entries in, hashes out. Messages never repeat a key. */
export const apiKeysSchema = z
  .array(z.union([z.string({ error: 'must be a string ("key" or "sub:key") or an object {key, sub, scope, name}' }), objectEntry]), {
    error: 'must be a list of keys ("key" or "sub:key") or objects {key, sub, scope, name}',
  })
  .transform((entries, ctx) => {
    const out: HashedApiKey[] = [];
    const seen = new Set<string>();
    entries.forEach((e, i) => {
      const bad = (message: string) => ctx.addIssue({ code: 'custom', path: [i], message });
      let key: string;
      let sub: string | null = null;
      let scopes: KeyScope[] | null = null;
      let name: string | null = null;
      if (typeof e === 'string') {
        const colon = e.indexOf(':');
        if (colon >= 0) {
          sub = e.slice(0, colon);
          key = e.slice(colon + 1);
        } else key = e;
      } else {
        key = e.key;
        sub = e.sub ?? null;
        name = e.name ?? null;
        if (e.scope !== undefined) {
          const list = typeof e.scope === 'string' ? e.scope.split(/\s+/).filter(Boolean) : e.scope;
          const unknown = list.filter((s) => !(KEY_SCOPES as readonly string[]).includes(s));
          if (unknown.length) return bad(`scope has unknown scope(s) ${unknown.map((s) => `"${s}"`).join(', ')} (allowed: ${KEY_SCOPES.join(', ')})`);
          scopes = list as KeyScope[];
        }
      }
      if (sub !== null && !SUB_CHARS.test(sub)) return bad('sub must be 1-128 of A-Z a-z 0-9 . _ @ -');
      if (key.length < MIN_API_KEY_CHARS) return bad(`an API key must be at least ${MIN_API_KEY_CHARS} characters (the key is not shown)`);
      if (!KEY_CHARS.test(key)) return bad('an API key must not contain spaces or commas (the key is not shown)');
      const hash = hashApiKey(key);
      if (seen.has(hash)) return bad('this API key is listed twice (the key is not shown)');
      seen.add(hash);
      out.push({ hash, sub, scopes, name });
    });
    return out;
  });
