/**
 * Which WebSocket upgrades are accepted, and as what: the route
 * (/v1/listen or a meeting's captions), the subprotocol, then the
 * gatekeeper (origin, rate limits, token), all before anything is
 * allocated for the connection.
 */
import type { Reservation } from '../bus/shared-limits.js';
import { GatewayError, httpStatus, type ErrorCode } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { ID_CHARS, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, type WireMode } from '../protocol/messages.js';
import { startFromQuery } from '../protocol/query.js';
import { deepgramUpgrade } from '../compat/deepgram/upgrade.js';
import { CREDENTIAL_SUBPROTOCOLS, type Gatekeeper } from '../security/gatekeeper.js';
import type { UpgradeDecision, UpgradeRequest } from '../transport/types.js';
import type { Adoption } from '../session/manager.js';
import type { LiveDecoderSlots } from '../files/live-decoder.js';
import type { ConnectionCounter } from './connections.js';
import type { ListenContext } from './listen-connection.js';
import type { ViewerContext } from './viewer-connection.js';

export type ConnectionContext = ListenContext | ViewerContext;

/** Retry-After for a refusal because every live decoder is in use. */
const LIVE_DECODER_RETRY_MS = 5000;

export const MEETING_ROUTE = new RegExp(`^/v1/meetings/(${ID_CHARS})/captions$`);

export function errorBody(code: ErrorCode, message: string, retryAfterMs?: number): { error: { code: ErrorCode; message: string; retryAfterMs?: number } } {
  return { error: { code, message, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) } };
}

function refuse(e: GatewayError): UpgradeDecision<ConnectionContext> {
  return {
    accept: false,
    status: httpStatus(e.code),
    body: JSON.stringify(errorBody(e.code, e.message, e.retryAfterMs)),
    ...(e.retryAfterMs !== undefined ? { headers: { 'retry-after': String(Math.ceil(e.retryAfterMs / 1000)) } } : {}),
  };
}

export interface UpgradeDeps {
  readonly gatekeeper: Gatekeeper;
  readonly connections: ConnectionCounter;
  readonly metrics: GatewayMetrics;
  /** The server is draining: new connections are refused. */
  shuttingDown(): boolean;
  /** Refuses a resume whose token names no session this identity may take back. */
  resumeRefusal(token: string, identity: string | null): GatewayError | null;
  /** Across nodes (Redis): holds one of a token's maxSessions places before the connection opens. */
  reserveSession?: ((identity: string, max: number) => Promise<Reservation | GatewayError>) | undefined;
  /** Several nodes (redis.url): a token this node does not know may name a session on another node. */
  remoteResume?(token: string, lastSeq: number, identity: string | null): Promise<Adoption | GatewayError>;
  /** Live decoders for containerized Deepgram audio (files.maxLiveDecoders). */
  readonly liveDecoders: LiveDecoderSlots;
}

/** `?lastSeq=<n>`: a whole number, or null when absent. */
function lastSeqFromQuery(q: URLSearchParams): number | GatewayError | null {
  const raw = q.get('lastSeq');
  if (raw === null) return null;
  const lastSeq = /^\d{1,15}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(lastSeq)) return new GatewayError('CAP_ERR_BAD_PARAMETER', `lastSeq must be a whole number >= 0 (got "${raw.slice(0, 32)}")`);
  return lastSeq;
}

/** `?resume=<token>&lastSeq=<n>` (lastSeq defaults to 0: replay all that is kept). */
function resumeFromQuery(q: URLSearchParams): { token: string; lastSeq: number } | GatewayError | null {
  const token = q.get('resume');
  if (token === null) return null;
  const lastSeq = lastSeqFromQuery(q);
  if (lastSeq instanceof GatewayError) return lastSeq;
  return { token, lastSeq: lastSeq ?? 0 };
}

export function createUpgradePolicy(deps: UpgradeDeps): (req: UpgradeRequest) => Promise<UpgradeDecision<ConnectionContext>> {
  return async (req) => {
    const meeting = MEETING_ROUTE.exec(req.path);
    if (req.path !== '/v1/listen' && !meeting) return refuse(new GatewayError('CAP_ERR_NOT_FOUND', `no WebSocket route ${req.path}`));
    if (deps.shuttingDown()) return refuse(new GatewayError('CAP_ERR_SERVER_SHUTDOWN', 'the server is shutting down', 2000));
    // Deepgram's live dialect (src/compat/deepgram): its own parameters, subprotocol and auth scheme.
    const deepgram = meeting ? null : deepgramUpgrade(req);
    let mode: WireMode = 'json';
    let protocol: string | null = null;
    // A credential pair (`token, <key>` / `bearer, <jwt>`) is not a wire format.
    const carrier = req.protocols.findIndex((p) => CREDENTIAL_SUBPROTOCOLS.includes(p.toLowerCase()));
    const formats = carrier < 0 ? req.protocols : req.protocols.filter((_, i) => i !== carrier && i !== carrier + 1);
    if (deepgram) protocol = carrier >= 0 ? req.protocols[carrier]! : null;
    else if (formats.length === 0 && carrier >= 0) protocol = req.protocols[carrier]!;
    else if (formats.length) {
      const pick = formats.find((p) => p === SUBPROTOCOL_JSON || p === SUBPROTOCOL_MSGPACK);
      if (!pick) {
        return refuse(new GatewayError('CAP_ERR_UNSUPPORTED_PROTOCOL', `supported subprotocols: ${SUBPROTOCOL_JSON}, ${SUBPROTOCOL_MSGPACK}`));
      }
      protocol = pick;
      mode = pick === SUBPROTOCOL_MSGPACK ? 'msgpack' : 'json';
    }
    // Origin, rate limits, the token and the connection count, before anything is allocated.
    const counted = (e: GatewayError) => {
      deps.metrics.errors.inc({ code: e.code });
      deps.metrics.sessionsRefused.inc({ code: e.code });
      return refuse(e);
    };
    const admitted = await deps.gatekeeper.admit(req, meeting ? meeting[1]! : null);
    if (admitted instanceof GatewayError) return counted(admitted);
    const tooMany = deps.connections.check(admitted.remoteAddress);
    if (tooMany) return counted(tooMany);
    // Deepgram parameters are judged after auth: a refusal names the parameter (HTTP 400).
    if (deepgram instanceof GatewayError) return counted(deepgram);
    // Containerized audio needs a live decoder (an ffmpeg process); none free is a capacity refusal.
    if (deepgram?.params.encoding === 'container' && deps.liveDecoders.available <= 0) {
      return counted(
        new GatewayError(
          'CAP_ERR_CAPACITY',
          `all ${deps.liveDecoders.max} live audio decoders (files.maxLiveDecoders) are in use; send raw audio (encoding=linear16) or retry later`,
          LIVE_DECODER_RETRY_MS,
        ),
      );
    }
    if (meeting) {
      // A viewer coming back: `?lastSeq=` is the last meeting seq it saw.
      const lastSeq = lastSeqFromQuery(req.query);
      if (lastSeq instanceof GatewayError) return counted(lastSeq);
      return {
        accept: true,
        protocol,
        context: { kind: 'viewer', mode, meetingId: meeting[1]!, remoteAddress: admitted.remoteAddress, identity: admitted.identity, lastSeq },
      };
    }
    // A Deepgram connection never resumes (its clients do not).
    const resume = deepgram ? null : resumeFromQuery(req.query);
    if (resume instanceof GatewayError) return counted(resume);
    let adoption: Adoption | null = null;
    if (resume) {
      const identity = admitted.identity?.key ?? null;
      const refused = deps.resumeRefusal(resume.token, identity);
      if (refused && deps.remoteResume && refused.code === 'CAP_ERR_RESUME_REFUSED') {
        const found = await deps.remoteResume(resume.token, resume.lastSeq, identity);
        if (found instanceof GatewayError) return counted(found);
        adoption = found;
      } else if (refused) return counted(refused);
    }
    // A token's concurrent sessions count on every node: its place is held now, and the session takes it over.
    // A session continued from another node takes a place here (the old node gave up its own).
    let reservation: Reservation | null = null;
    const max = admitted.identity?.maxSessions;
    if ((!resume || adoption) && deps.reserveSession && admitted.identity && max !== undefined) {
      const r = await deps.reserveSession(admitted.identity.key, max);
      if (r instanceof GatewayError) return counted(r);
      reservation = r;
    }
    return {
      accept: true,
      protocol,
      context: {
        kind: 'listen',
        mode,
        resume: resume && adoption ? { ...resume, adoption } : resume,
        // A resumed session keeps its format: start parameters in a resume URL are ignored.
        start: deepgram ? deepgram.start : resume ? null : startFromQuery(req.query),
        remoteAddress: admitted.remoteAddress,
        identity: admitted.identity,
        authEnabled: deps.gatekeeper.authEnabled,
        ...(deepgram ? { deepgram: deepgram.params, ...(deepgram.params.endpointMs !== undefined ? { stream: { endpointMs: deepgram.params.endpointMs } } : {}) } : {}),
        reservation,
      },
    };
  };
}
