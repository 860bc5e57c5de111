/**
 * Everything checked at upgrade time, before anything is allocated for the
 * connection: Origin allowlist, per-address open rate, token (HS256 JWT via
 * jose), per-token open rate, and what the token may do on this route. A
 * refusal carries its code and HTTP status. Caption files are checked here
 * too (`authorizeRead`).
 *
 * Auth is on when auth.secret is set (config refuses a secret under 32
 * bytes). Token claims (all optional except exp):
 *   exp                 required, and at most auth.maxTokenLifetimeSeconds ahead
 *   sub                 the identity: owns the sessions it opens (else a hash of the token)
 *   scope               "listen" (send audio), "view" (watch a meeting), or both: a
 *                       space-separated string ("listen view") or an array. Without
 *                       the claim a token may do both, as before scopes existed.
 *   name                the speaker's name in captions; the client cannot override it
 *   maxSessionSeconds   caps the session below the server's limit (never above)
 *   maxSessions         concurrent sessions this token may hold
 *   meetingId           the only meeting this token may speak in or view
 *
 * Static API keys (auth.apiKeys, see api-keys.ts) turn auth on by
 * themselves and map onto the same identities: a key's `sub` is the
 * identity, its `scope` and `name` act as the claims do. A credential is
 * read from `Authorization: Bearer <jwt|key>` or `Token <key>` (Deepgram's
 * scheme), the browser subprotocol pair `token, <key>` or `bearer, <jwt|key>`,
 * or `?token=` / `?access_token=`. A presented key is looked up by its
 * SHA-256 hash; keys are never logged.
 */
import { createHash } from 'node:crypto';

import { errors as joseErrors, jwtVerify } from 'jose';

import type { Config } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { ID_PATTERN } from '../protocol/messages.js';
import type { UpgradeRequest } from '../transport/types.js';
import { hashApiKey, type HashedApiKey } from './api-keys.js';
import { RateLimiter } from './rate-limit.js';

/** Open rates counted across nodes (src/bus/shared-limits.ts); the local limiter is the fallback. */
export interface SharedRates {
  take(kind: string, key: string, perMinute: number, local: RateLimiter): Promise<number>;
}

export type Scope = 'listen' | 'view';
export const SCOPES: readonly Scope[] = ['listen', 'view'];

export interface Identity {
  /** Stable key: `sub:<sub>`, or `tok:<hash>` for a token without sub. Owns what it opens. */
  readonly key: string;
  /** The token's sub claim, for logs. */
  readonly sub: string | null;
  readonly scopes: ReadonlySet<Scope>;
  /** The speaker's name from the token (the client cannot override it). */
  readonly name?: string;
  readonly maxSessionSeconds?: number;
  readonly maxSessions?: number;
  readonly meetingId?: string;
}

export interface Admitted {
  readonly remoteAddress: string;
  readonly identity: Identity | null;
}

const enc = new TextEncoder();

export class Gatekeeper {
  #config: Readonly<Config>;
  #secret: Uint8Array | null;
  #byAddress: RateLimiter;
  #byToken: RateLimiter;
  #origins: Set<string>;
  /** API keys by the SHA-256 of the key (the only form the process holds). */
  #keys: Map<string, Identity>;
  #shared: SharedRates | null;

  constructor(config: Readonly<Config>, shared: SharedRates | null = null) {
    this.#config = config;
    this.#shared = shared;
    this.#secret = config.auth.secret ? enc.encode(config.auth.secret) : null;
    this.#keys = new Map(config.auth.apiKeys.map((k) => [k.hash, keyIdentity(k)]));
    this.#byAddress = new RateLimiter(config.rateLimits.opensPerMinutePerAddress);
    this.#byToken = new RateLimiter(config.rateLimits.opensPerMinutePerToken);
    this.#origins = new Set(config.server.allowedOrigins.map((o) => o.replace(/\/$/, '').toLowerCase()));
  }

  /** JWTs (auth.secret) or API keys (auth.apiKeys) are configured. */
  get authEnabled(): boolean {
    return this.#secret !== null || this.#keys.size > 0;
  }

  /** The client's address: the socket's, or X-Forwarded-For's first hop behind a trusted proxy. */
  remoteAddress(req: Pick<UpgradeRequest, 'headers' | 'remoteAddress'>): string {
    if (this.#config.server.trustProxy) {
      const xff = req.headers['x-forwarded-for'];
      if (xff) return xff.split(',')[0]!.trim();
    }
    return req.remoteAddress;
  }

  /** Upgrade of `/v1/listen` (scope listen) or a meeting's captions (scope view). */
  async admit(req: UpgradeRequest, meetingId: string | null): Promise<Admitted | GatewayError> {
    const origin = req.headers.origin;
    if (origin !== undefined && this.#origins.size > 0 && !this.#origins.has(origin.replace(/\/$/, '').toLowerCase())) {
      return new GatewayError('CAP_ERR_FORBIDDEN', `origin ${origin} is not allowed (server.allowedOrigins)`);
    }
    const remoteAddress = this.remoteAddress(req);
    const waitA = await this.#take('addr', remoteAddress, this.#config.rateLimits.opensPerMinutePerAddress, this.#byAddress);
    if (waitA > 0) {
      return new GatewayError('CAP_ERR_RATE_LIMITED', `too many session opens from ${remoteAddress}`, waitA);
    }
    if (!this.authEnabled) return { remoteAddress, identity: null };

    const identity = await this.verify(credential(req));
    if (identity instanceof GatewayError) return identity;
    const need: Scope = meetingId !== null ? 'view' : 'listen';
    if (!identity.scopes.has(need)) {
      return new GatewayError('CAP_ERR_FORBIDDEN', `this token's scope does not include "${need}" (it has: ${[...identity.scopes].join(' ') || 'none'})`);
    }
    if (meetingId !== null && identity.meetingId !== meetingId) {
      return new GatewayError('CAP_ERR_FORBIDDEN', `this token does not allow meeting ${meetingId}`);
    }
    const waitT = await this.#take('token', identity.key, this.#config.rateLimits.opensPerMinutePerToken, this.#byToken);
    if (waitT > 0) return new GatewayError('CAP_ERR_RATE_LIMITED', 'too many session opens with this token', waitT);
    return { remoteAddress, identity };
  }

  /** One open from a bucket: across nodes when Redis is configured, else (and during an outage) here. */
  #take(kind: string, key: string, perMinute: number, local: RateLimiter): number | Promise<number> {
    return this.#shared ? this.#shared.take(kind, key, perMinute, local) : local.take(key);
  }

  /**
   * Verifies a credential (auth on): an API key, or else a JWT. A missing
   * one is CAP_ERR_UNAUTHORIZED. A plain string is a bearer credential.
   */
  async verify(cred: Credential | string | null): Promise<Identity | GatewayError> {
    if (!this.authEnabled) return new GatewayError('CAP_ERR_UNAUTHORIZED', 'auth is off: there are no tokens');
    const c: Credential | null = typeof cred === 'string' ? { scheme: 'bearer', value: cred } : cred;
    if (!c || !c.value) {
      return new GatewayError(
        'CAP_ERR_UNAUTHORIZED',
        'a token is required: Authorization: Bearer <jwt or API key>, Authorization: Token <API key>, or ?token=',
      );
    }
    if (this.#keys.size > 0) {
      const byKey = this.#keys.get(hashApiKey(c.value));
      if (byKey) return byKey;
    }
    if (c.scheme === 'token' || !this.#secret) {
      // Never echo the key.
      return new GatewayError('CAP_ERR_UNAUTHORIZED', this.#secret ? 'the API key is not valid' : 'the API key is not valid (this server takes API keys only: auth.secret is empty)');
    }
    const token = c.value;
    let payload: Record<string, unknown>;
    const { auth } = this.#config;
    try {
      const r = await jwtVerify(token, this.#secret, {
        algorithms: ['HS256'],
        requiredClaims: ['exp'],
        clockTolerance: auth.clockToleranceSeconds,
        ...(auth.issuer ? { issuer: auth.issuer } : {}),
        ...(auth.audience ? { audience: auth.audience } : {}),
      });
      payload = r.payload as Record<string, unknown>;
    } catch (err) {
      const why =
        err instanceof joseErrors.JWTExpired
          ? 'the token has expired'
          : err instanceof joseErrors.JWTClaimValidationFailed
            ? `the token is not valid here (${err.claim}: ${err.reason})`
            : err instanceof joseErrors.JWSSignatureVerificationFailed
              ? 'the token signature does not verify'
              : 'the token is malformed or uses an unsupported algorithm (HS256 required)';
      return new GatewayError('CAP_ERR_UNAUTHORIZED', why);
    }
    const exp = payload.exp as number;
    const lifetime = exp - Date.now() / 1000;
    if (lifetime > auth.maxTokenLifetimeSeconds + auth.clockToleranceSeconds) {
      return new GatewayError(
        'CAP_ERR_UNAUTHORIZED',
        `the token expires ${Math.round(lifetime)} s from now; this server accepts at most auth.maxTokenLifetimeSeconds (${auth.maxTokenLifetimeSeconds})`,
      );
    }
    return parseClaims(payload, token);
  }

  /** The identity of an HTTP request's token (Bearer or ?token=); auth on. */
  verifyRequest(req: { headers: Readonly<Record<string, string>>; query: URLSearchParams }): Promise<Identity | GatewayError> {
    return this.verify(credential(req));
  }

  /**
   * May this request read a session's caption file? With auth off, yes.
   * With auth on: a token whose identity owns the session, or whose
   * meeting claim covers the session's meeting (401 without a token, 403
   * with one that does not).
   */
  async authorizeRead(req: { headers: Readonly<Record<string, string>>; query: URLSearchParams }, file: { owner: string | null; meetingId: string | null }): Promise<GatewayError | null> {
    if (!this.authEnabled) return null;
    const identity = await this.verify(credential(req));
    if (identity instanceof GatewayError) return identity;
    if (file.owner !== null && file.owner === identity.key) return null;
    if (file.meetingId !== null && identity.meetingId === file.meetingId && identity.scopes.has('view')) return null;
    return new GatewayError('CAP_ERR_FORBIDDEN', "this token may not read this session's captions (it neither owns the session nor views its meeting)");
  }

  close(): void {
    this.#byAddress.close();
    this.#byToken.close();
  }
}

/** A presented credential: `token` is an API key only (Deepgram's scheme); `bearer` is a JWT or an API key. */
export interface Credential {
  readonly scheme: 'bearer' | 'token';
  readonly value: string;
}

/** The subprotocol names that carry a credential as the next entry (browsers cannot set headers). */
export const CREDENTIAL_SUBPROTOCOLS: readonly string[] = ['token', 'bearer'];

/**
 * The request's credential: `Authorization: Bearer <x>` or `Token <x>`;
 * else a subprotocol pair `token, <key>` / `bearer, <x>` (what Deepgram's
 * browser SDK sends); else `?token=` / `?access_token=`.
 */
export function credential(req: {
  headers: Readonly<Record<string, string>>;
  query: URLSearchParams;
  protocols?: readonly string[];
}): Credential | null {
  const h = req.headers.authorization;
  if (h) {
    const m = /^(Bearer|Token)\s+(\S+)$/i.exec(h.trim());
    return m ? { scheme: m[1]!.toLowerCase() as Credential['scheme'], value: m[2]! } : null;
  }
  const p = req.protocols ?? [];
  const i = p.findIndex((x) => CREDENTIAL_SUBPROTOCOLS.includes(x.toLowerCase()));
  if (i >= 0 && p[i + 1] !== undefined) return { scheme: p[i]!.toLowerCase() as Credential['scheme'], value: p[i + 1]! };
  const q = req.query.get('token') ?? req.query.get('access_token');
  return q ? { scheme: 'bearer', value: q } : null;
}

/** A bearer token from `Authorization: Bearer`, or `?token=` / `?access_token=` (browsers cannot set headers). */
export function bearer(req: { headers: Readonly<Record<string, string>>; query: URLSearchParams }): string | null {
  return credential(req)?.value ?? null;
}

function keyIdentity(k: HashedApiKey): Identity {
  return {
    key: k.sub !== null ? `sub:${k.sub}` : `key:${k.hash.slice(0, 32)}`,
    sub: k.sub,
    scopes: new Set<Scope>(k.scopes ?? SCOPES),
    ...(k.name !== null ? { name: k.name } : {}),
  };
}

function parseClaims(p: Record<string, unknown>, token: string): Identity | GatewayError {
  const bad = (claim: string, want: string) => new GatewayError('CAP_ERR_UNAUTHORIZED', `token claim ${claim} must be ${want}`);
  const sub = typeof p.sub === 'string' && p.sub ? p.sub : null;
  let scopes: Set<Scope>;
  if (p.scope === undefined) scopes = new Set(SCOPES);
  else {
    const list = typeof p.scope === 'string' ? p.scope.split(/\s+/).filter(Boolean) : Array.isArray(p.scope) ? p.scope : null;
    if (!list || !list.every((s): s is string => typeof s === 'string')) return bad('scope', 'a space-separated string or an array of strings');
    scopes = new Set(list.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s)));
  }
  const id: { -readonly [K in keyof Identity]: Identity[K] } = {
    key: sub !== null ? `sub:${sub}` : `tok:${createHash('sha256').update(token).digest('hex').slice(0, 32)}`,
    sub,
    scopes,
  };
  if (p.name !== undefined) {
    if (typeof p.name !== 'string' || p.name.length < 1 || p.name.length > 128) return bad('name', 'a string of 1-128 characters');
    id.name = p.name;
  }
  if (p.maxSessionSeconds !== undefined) {
    if (typeof p.maxSessionSeconds !== 'number' || !(p.maxSessionSeconds > 0)) return bad('maxSessionSeconds', 'a positive number');
    id.maxSessionSeconds = p.maxSessionSeconds;
  }
  if (p.maxSessions !== undefined) {
    if (typeof p.maxSessions !== 'number' || !Number.isInteger(p.maxSessions) || p.maxSessions < 1) return bad('maxSessions', 'an integer >= 1');
    id.maxSessions = p.maxSessions;
  }
  if (p.meetingId !== undefined) {
    if (typeof p.meetingId !== 'string' || !ID_PATTERN.test(p.meetingId)) return bad('meetingId', 'a meeting id');
    id.meetingId = p.meetingId;
  }
  return id;
}
