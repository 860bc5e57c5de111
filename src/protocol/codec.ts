/**
 * The protocol core: bytes in, typed events out; typed messages in, bytes
 * out. Knows nothing about sockets (ws keeps its Receiver/Sender apart from
 * I/O the same way).
 */
import { Packr, Unpackr } from 'msgpackr';

import type { ErrorCode } from '../errors.js';
import { CONTROL_VALIDATORS, type ControlMessage, type ControlType, type ServerMessage, type WireMode } from './messages.js';

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
  // msgpack mode: every binary frame is one msgpack message.
  let obj: unknown;
  try {
    obj = unpackr.unpack(data);
  } catch (err) {
    return { kind: 'error', code: 'CAP_ERR_INVALID_MESSAGE', message: `binary frame is not valid msgpack: ${(err as Error).message.slice(0, 120)}` };
  }
  if (isRecord(obj) && obj.type === 'audio') {
    const keys = Object.keys(obj);
    const payload = obj.data;
    if (!(payload instanceof Uint8Array) || keys.some((k) => k !== 'type' && k !== 'data')) {
      return { kind: 'error', code: 'CAP_ERR_INVALID_MESSAGE', message: 'invalid "audio" message: expected {type:"audio", data:<bin>}' };
    }
    return { kind: 'audio', data: payload };
  }
  if (isRecord(obj) && obj.type !== 'audio') {
    const { byteLength } = data;
    if (byteLength > limits.maxControlBytes) {
      return {
        kind: 'error',
        code: 'CAP_ERR_CONTROL_TOO_LARGE',
        message: `control message of ${byteLength} bytes exceeds limits.maxControlBytes (${limits.maxControlBytes})`,
      };
    }
  }
  return decodeControlObject(obj);
}

export function encodeServerMessage(msg: ServerMessage, mode: WireMode): string | Uint8Array {
  return mode === 'json' ? JSON.stringify(msg) : packr.pack(msg);
}

/** Client side of msgpack mode (SDK, tests). */
export function encodeClientMessage(msg: ControlMessage | { type: 'audio'; data: Uint8Array }, mode: WireMode): string | Uint8Array {
  return mode === 'json' ? JSON.stringify(msg) : packr.pack(msg);
}

export function decodeServerMessage(data: string | Uint8Array): ServerMessage {
  if (typeof data === 'string') return JSON.parse(data) as ServerMessage;
  return unpackr.unpack(data) as ServerMessage;
}
