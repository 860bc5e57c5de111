/**
 * Everything checked at upgrade time, before anything is allocated for the
 * connection: Origin allowlist, per-address open rate, token (HS256 JWT via
 * jose), per-token open rate. A refusal carries its code and HTTP status.
 *
 * Token claims (all optional except exp):
 *   exp                 required; expired tokens are refused
 *   sub                 identity for per-token limits (else a hash of the token)
 *   maxSessionSeconds   caps the session below the server's limit (never above)
 *   maxSessions         concurrent sessions this token may hold
 *   meetingId           the only meeting this token may speak in or view
 */
import { createHash } from 'node:crypto';

import { errors as joseErrors, jwtVerify } from 'jose';

import type { Config } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { UpgradeRequest } from '../transport/types.js';
import { RateLimiter } from './rate-limit.js';

export interface Identity {
  /** Stable key for per-token limits. */
  readonly key: string;
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

  constructor(config: Readonly<Config>) {
    this.#config = config;
    this.#secret = config.auth.secret ? enc.encode(config.auth.secret) : null;
    this.#byAddress = new RateLimiter(config.rateLimits.opensPerMinutePerAddress);
    this.#byToken = new RateLimiter(config.rateLimits.opensPerMinutePerToken);
    this.#origins = new Set(config.server.allowedOrigins.map((o) => o.replace(/\/$/, '').toLowerCase()));
  }

  get authEnabled(): boolean {
    return this.#secret !== null;
  }

  /** The client's address: the socket's, or X-Forwarded-For's first hop behind a trusted proxy. */
  remoteAddress(req: Pick<UpgradeRequest, 'headers' | 'remoteAddress'>): string {
    if (this.#config.server.trustProxy) {
      const xff = req.headers['x-forwarded-for'];
      if (xff) return xff.split(',')[0]!.trim();
    }
    return req.remoteAddress;
  }

  async admit(req: UpgradeRequest, meetingId: string | null): Promise<Admitted | GatewayError> {
    const origin = req.headers.origin;
    if (origin !== undefined && this.#origins.size > 0 && !this.#origins.has(origin.replace(/\/$/, '').toLowerCase())) {
      return new GatewayError('CAP_ERR_FORBIDDEN', `origin ${origin} is not allowed (server.allowedOrigins)`);
    }
    const remoteAddress = this.remoteAddress(req);
    const waitA = this.#byAddress.take(remoteAddress);
    if (waitA > 0) {
      return new GatewayError('CAP_ERR_RATE_LIMITED', `too many session opens from ${remoteAddress}`, waitA);
    }
    if (!this.#secret) return { remoteAddress, identity: null };

    const token = bearer(req);
    if (!token) {
      return new GatewayError('CAP_ERR_UNAUTHORIZED', 'a token is required: Authorization: Bearer <jwt> or ?token=<jwt>');
    }
    let payload: Record<string, unknown>;
    try {
      const { auth } = this.#config;
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
    const identity = parseClaims(payload, token);
    if (identity instanceof GatewayError) return identity;
    if (meetingId !== null && identity.meetingId !== meetingId) {
      return new GatewayError('CAP_ERR_FORBIDDEN', `this token does not allow meeting ${meetingId}`);
    }
    const waitT = this.#byToken.take(identity.key);
    if (waitT > 0) return new GatewayError('CAP_ERR_RATE_LIMITED', 'too many session opens with this token', waitT);
    return { remoteAddress, identity };
  }

  close(): void {
    this.#byAddress.close();
    this.#byToken.close();
  }
}

function bearer(req: UpgradeRequest): string | null {
  const h = req.headers.authorization;
  if (h) {
    const m = /^Bearer\s+(\S+)$/i.exec(h.trim());
    return m ? m[1]! : null;
  }
  return req.query.get('token') ?? req.query.get('access_token');
}

function parseClaims(p: Record<string, unknown>, token: string): Identity | GatewayError {
  const bad = (claim: string, want: string) => new GatewayError('CAP_ERR_UNAUTHORIZED', `token claim ${claim} must be ${want}`);
  const id: { key: string; maxSessionSeconds?: number; maxSessions?: number; meetingId?: string } = {
    key: typeof p.sub === 'string' && p.sub ? `sub:${p.sub}` : `tok:${createHash('sha256').update(token).digest('hex').slice(0, 32)}`,
  };
  if (p.maxSessionSeconds !== undefined) {
    if (typeof p.maxSessionSeconds !== 'number' || !(p.maxSessionSeconds > 0)) return bad('maxSessionSeconds', 'a positive number');
    id.maxSessionSeconds = p.maxSessionSeconds;
  }
  if (p.maxSessions !== undefined) {
    if (typeof p.maxSessions !== 'number' || !Number.isInteger(p.maxSessions) || p.maxSessions < 1) return bad('maxSessions', 'an integer >= 1');
    id.maxSessions = p.maxSessions;
  }
  if (p.meetingId !== undefined) {
    if (typeof p.meetingId !== 'string' || !/^[A-Za-z0-9._-]{1,128}$/.test(p.meetingId)) return bad('meetingId', 'a meeting id');
    id.meetingId = p.meetingId;
  }
  return id;
}
