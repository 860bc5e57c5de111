/**
 * `GET /v1/listen?sampleRate=48000&channels=2&encoding=s16le&meetingId=m1&speaker=alice`
 * starts the session at upgrade, the same as a first `start` message.
 */
import { decodeControlObject, type ClientEvent } from './codec.js';

const NUMERIC = new Set(['sampleRate', 'channels']);
const BOOLEAN = new Set(['interim', 'ack']);
const META = new Set(['meetingId', 'speaker']);
/** Query keys that are not session parameters. */
const IGNORED = new Set(['token', 'access_token']);

/** Returns null when the query carries no session parameters. */
export function startFromQuery(params: URLSearchParams): ClientEvent | null {
  if (!params.has('sampleRate') && !params.has('encoding') && !params.has('channels')) return null;
  const msg: Record<string, unknown> = { type: 'start' };
  const meta: Record<string, string> = {};
  for (const [k, v] of params) {
    if (IGNORED.has(k)) continue;
    if (NUMERIC.has(k)) msg[k] = v.trim() === '' ? v : Number(v);
    else if (BOOLEAN.has(k)) msg[k] = v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v;
    else if (META.has(k)) meta[k] = v;
    else if (k.startsWith('meta.')) meta[k.slice(5)] = v;
    else msg[k] = v;
  }
  if (Object.keys(meta).length) msg.meta = meta;
  return decodeControlObject(msg);
}
