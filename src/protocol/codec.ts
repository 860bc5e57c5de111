/**
 * The protocol core: bytes in, typed events out; typed messages in, bytes
 * out. Knows nothing about sockets (ws keeps its Receiver/Sender apart from
 * I/O the same way).
 */
import { Packr, Unpackr } from 'msgpackr';

import type { ErrorCode } from '../errors.js';
import { CONTROL_VALIDATORS, type ControlMessage, type ControlType, type WireMessage, type WireMode } from './messages.js';

export type ClientEvent =
  | { readonly kind: 'control'; readonly message: ControlMessage }
  | { readonly kind: 'audio'; readonly data: Uint8Array }
  | { readonly kind: 'error'; readonly code: ErrorCode; readonly message: string };

const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const utf8 = new TextDecoder('utf-8', { fatal: true });

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** Validates an already-parsed message object (JSON or msgpack). */
export function decodeControlObject(obj: unknown): ClientEvent {
  if (!isRecord(obj) || typeof obj.type !== 'string') {
    return { kind: 'error', code: 'CAP_ERR_INVALID_MESSAGE', message: 'a message must be an object with a string "type"' };
  }
  const type = obj.type;
  if (!Object.hasOwn(CONTROL_VALIDATORS, type)) {
    return {
      kind: 'error',
      code: 'CAP_ERR_UNKNOWN_TYPE',
      message: `unknown message type "${type.slice(0, 64)}" (expected one of: ${Object.keys(CONTROL_VALIDATORS).join(', ')})`,
    };
  }
  const parsed = CONTROL_VALIDATORS[type as ControlType].safeParse(obj);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.');
    const unknown = issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : undefined;
    return {
      kind: 'error',
      code: type === 'start' ? 'CAP_ERR_BAD_PARAMETER' : 'CAP_ERR_INVALID_MESSAGE',
      message: `invalid "${type}" message: ${unknown ?? (field ? `${field}: ${issue.message}` : issue.message)}`,
    };
  }
  return { kind: 'control', message: parsed.data as ControlMessage };
}

export interface DecodeLimits {
  readonly maxControlBytes: number;
}

/**
 * Decodes one WebSocket message. `data` is only valid for the duration of
 * the call (uWebSockets.js neuters it afterwards); audio events alias it.
 */
export function decodeClientFrame(data: Uint8Array, isBinary: boolean, mode: WireMode, limits: DecodeLimits): ClientEvent {
  if (isBinary && mode === 'json') return { kind: 'audio', data };
  if (!isBinary) {
    if (data.byteLength > limits.maxControlBytes) {
      return {
        kind: 'error',
        code: 'CAP_ERR_CONTROL_TOO_LARGE',
        message: `control message of ${data.byteLength} bytes exceeds limits.maxControlBytes (${limits.maxControlBytes})`,
      };
    }
    let text: string;
    try {
      text = utf8.decode(data);
    } catch {
      return { kind: 'error', code: 'CAP_ERR_INVALID_JSON', message: 'text frame is not valid UTF-8' };
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (err) {
      return { kind: 'error', code: 'CAP_ERR_INVALID_JSON', message: `text frame is not valid JSON: ${(err as Error).message.slice(0, 120)}` };
    }
    return decodeControlObject(obj);
  }
  // msgpack mode: every binary frame is one msgpack message. Its size is
  // judged before anything is unpacked: audio is read straight out of its
  // envelope, and anything else larger than a control message is refused.
  const audio = audioEnvelope(data);
  if (audio) return { kind: 'audio', data: audio };
  if (data.byteLength > limits.maxControlBytes) {
    return {
      kind: 'error',
      code: 'CAP_ERR_CONTROL_TOO_LARGE',
      message: `control message of ${data.byteLength} bytes exceeds limits.maxControlBytes (${limits.maxControlBytes}); only audio frames may be larger`,
    };
  }
  let obj: unknown;
  try {
    obj = unpackr.unpack(data);
  } catch (err) {
    return { kind: 'error', code: 'CAP_ERR_INVALID_MESSAGE', message: `binary frame is not valid msgpack: ${(err as Error).message.slice(0, 120)}` };
  }
  if (isRecord(obj) && obj.type === 'audio') {
    return { kind: 'error', code: 'CAP_ERR_INVALID_MESSAGE', message: 'invalid "audio" message: expected {type:"audio", data:<bin>}' };
  }
  return decodeControlObject(obj);
}

const TYPE = [0xa4, 0x74, 0x79, 0x70, 0x65]; // fixstr "type"
const AUDIO = [0xa5, 0x61, 0x75, 0x64, 0x69, 0x6f]; // fixstr "audio"
const DATA = [0xa4, 0x64, 0x61, 0x74, 0x61]; // fixstr "data"

/**
 * The payload of a msgpack `{type:"audio", data:<bin>}` (either key order),
 * read from its header, as a view of the frame; null if the frame is
 * anything else. The payload's size is then checked like a JSON-mode audio
 * frame's, by the session, without msgpack ever touching it.
 */
export function audioEnvelope(b: Uint8Array): Uint8Array | null {
  const at = (o: number, bytes: number[]) => bytes.every((x, i) => b[o + i] === x);
  // A map of two entries: fixmap, map16 (what msgpackr writes) or map32.
  let o: number;
  if (at(0, [0x82])) o = 1;
  else if (at(0, [0xde, 0x00, 0x02])) o = 3;
  else if (at(0, [0xdf, 0x00, 0x00, 0x00, 0x02])) o = 5;
  else return null;
  let typeSeen = false;
  let payload: Uint8Array | null = null;
  for (let k = 0; k < 2; k++) {
    if (at(o, TYPE) && at(o + TYPE.length, AUDIO)) {
      o += TYPE.length + AUDIO.length;
      typeSeen = true;
    } else if (at(o, DATA)) {
      o += DATA.length;
      const tag = b[o];
      let len: number;
      let head: number;
      if (tag === 0xc4) [len, head] = [b[o + 1] ?? -1, 2];
      else if (tag === 0xc5) [len, head] = [((b[o + 1] ?? 0) << 8) | (b[o + 2] ?? 0), 3];
      else if (tag === 0xc6) [len, head] = [((b[o + 1] ?? 0) * 2 ** 24) + (((b[o + 2] ?? 0) << 16) | ((b[o + 3] ?? 0) << 8) | (b[o + 4] ?? 0)), 5];
      else return null;
      if (len < 0 || o + head + len > b.byteLength) return null;
      payload = b.subarray(o + head, o + head + len);
      o += head + len;
    } else return null;
  }
  return typeSeen && payload && o === b.byteLength ? payload : null;
}

export function encodeServerMessage(msg: WireMessage, mode: WireMode): string | Uint8Array {
  return mode === 'json' ? JSON.stringify(msg) : packr.pack(msg);
}

/** Client side of msgpack mode (SDK, tests). */
export function encodeClientMessage(msg: ControlMessage | { type: 'audio'; data: Uint8Array }, mode: WireMode): string | Uint8Array {
  return mode === 'json' ? JSON.stringify(msg) : packr.pack(msg);
}

export function decodeServerMessage(data: string | Uint8Array): WireMessage {
  if (typeof data === 'string') return JSON.parse(data) as WireMessage;
  return unpackr.unpack(data) as WireMessage;
}
