import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';

import { pino } from 'pino';
import WebSocket from 'ws';

import { connect, type CaptionClient, type ConnectOptions } from '../../src/client/client.js';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/gateway/gateway.js';
import type { Engine } from '../../src/engine/types.js';
import { decodeServerMessage } from '../../src/protocol/codec.js';
import type { FinalMessage, WireMessage } from '../../src/protocol/messages.js';
import { testConfig } from './config.js';

export type TransportKind = 'uws' | 'ws';

export interface Harness {
  gw: Gateway;
  /** ws://127.0.0.1:PORT */
  base: string;
  http: string;
  logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      typeof cur === 'object' && cur && !Array.isArray(cur) && typeof v === 'object' && v && !Array.isArray(v)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/**
 * A gateway on 127.0.0.1:0 with logs captured as objects (pino's sink()
 * pattern), and its caption store (SQLite) in a temporary folder of its own,
 * removed when it stops.
 */
export async function startGateway(
  transport: TransportKind,
  overrides: Record<string, unknown> = {},
  engine?: Engine,
  options: Pick<GatewayOptions, 'faults'> = {},
): Promise<Harness> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'captiongate-test-'));
  const config = testConfig(
    deepMerge({ server: { host: '127.0.0.1', port: 0, transport }, log: { level: 'info' }, store: { path: path.join(dir, 'captions.db') } }, overrides),
  );
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const logger = pino({ level: config.log.level }, sink);
  const gw = await createGateway({ config, logger, ...(engine ? { engine } : {}), ...options });
  const port = await gw.listen();
  return {
    gw,
    base: `ws://127.0.0.1:${port}`,
    http: `http://127.0.0.1:${port}`,
    logs,
    stop: async () => {
      await gw.shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** "active: 2, parked: 1": what the sessions left are doing. */
function sessionStates(gw: Gateway): string {
  const n: Record<string, number> = {};
  for (const s of gw.manager.list()) n[s.state] = (n[s.state] ?? 0) + 1;
  return Object.entries(n).map(([k, v]) => `${k}: ${v}`).join(', ');
}

/** Waits until the gateway holds no sessions, slabs or decoders. */
export async function settled(gw: Gateway, timeoutMs = 15_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const st = gw.engine.stats();
    if (gw.manager.size === 0 && gw.pool.inUse === 0 && st.decodersInUse === 0 && st.streams === 0) return;
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(
        `not settled: sessions=${gw.manager.size} (${sessionStates(gw)}) slabs=${gw.pool.inUse} decoders=${st.decodersInUse} streams=${st.streams} waiting=${st.streamsWaiting} queued=${st.queuedWindows}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Reads a metric value from /metrics text. */
export async function metric(http: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${http}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `) || (!labels && l.startsWith(`${name} `)));
  if (!line) return 0;
  return Number(line.split(' ').pop());
}

export interface StreamResult {
  finals: FinalMessage[];
  messages: WireMessage[];
  partialsBeforeLastFrame: number;
  end: Extract<WireMessage, { type: 'end' }>;
}

/**
 * Streams PCM through the SDK client: real-time pacing (frames at their
 * audio time) or as fast as flow control allows.
 */
export async function streamPcm(
  url: string,
  pcm: Int16Array | Uint8Array,
  opts: Partial<ConnectOptions> & { realtime?: boolean; frameMs?: number } = {},
): Promise<StreamResult> {
  const sampleRate = opts.sampleRate ?? 16000;
  const client: CaptionClient = await connect(url, { sampleRate, ...opts });
  const messages: WireMessage[] = [];
  client.on('message', (m) => messages.push(m));
  const bytes = pcm instanceof Uint8Array ? pcm : new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const bytesPerFrame = (opts.channels ?? 1) * ((opts.encoding ?? 's16le') === 's16le' ? 2 : 4);
  const frameBytes = Math.round(((opts.frameMs ?? 100) * sampleRate) / 1000) * bytesPerFrame;
  const t0 = performance.now();
  let sent = 0;
  for (let off = 0; off < bytes.length; off += frameBytes) {
    const chunk = bytes.subarray(off, Math.min(bytes.length, off + frameBytes));
    if (opts.realtime) {
      const due = t0 + ((off / bytesPerFrame) * 1000) / sampleRate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      client.send(chunk);
    } else {
      await client.write(chunk);
    }
    sent++;
  }
  const partialsBeforeLastFrame = messages.filter((m) => m.type === 'partial').length;
  void sent;
  const end = await client.stop();
  return {
    finals: messages.filter((m): m is FinalMessage => m.type === 'final'),
    messages,
    partialsBeforeLastFrame,
    end,
  };
}

/** A raw WebSocket that records every message and the close code. */
export class RawClient {
  readonly ws: WebSocket;
  readonly messages: WireMessage[] = [];
  closeCode: number | undefined;
  closeReason = '';
  /** Socket-level errors (a 1006 close says why here). */
  readonly errors: string[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<void>;

  constructor(url: string, protocols: string[] = []) {
    this.ws = new WebSocket(url, protocols);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    // Refused upgrades reject `opened`; callers that expect that await `closed`.
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        resolve();
      });
    });
    this.ws.on('error', (err) => this.errors.push(err.message));
    this.ws.on('message', (d: Buffer, isBinary: boolean) => {
      // A message the validator refuses is recorded, not thrown: a throw in a
      // ws listener destroys the socket (a bare 1006) and hides the reason.
      try {
        this.messages.push(decodeServerMessage(isBinary ? new Uint8Array(d) : d.toString()));
      } catch (err) {
        this.errors.push(`invalid server message (${(err as Error).message}): ${(isBinary ? `${d.length} bytes` : d.toString()).slice(0, 300)}`);
      }
    });
  }

  sendJson(o: unknown): void {
    this.ws.send(JSON.stringify(o));
  }

  /** Resolves with the first message matching pred (already received or future). */
  async waitFor<T extends WireMessage>(pred: (m: WireMessage) => m is T, timeoutMs?: number): Promise<T>;
  async waitFor(pred: (m: WireMessage) => boolean, timeoutMs?: number): Promise<WireMessage>;
  async waitFor(pred: (m: WireMessage) => boolean, timeoutMs = 15_000): Promise<WireMessage> {
    const t0 = Date.now();
    for (;;) {
      const m = this.messages.find(pred);
      if (m) return m;
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out; got ${JSON.stringify(this.messages).slice(0, 500)}`);
      if (this.closeCode !== undefined) throw new Error(`closed (${this.closeCode}${this.errors.length ? `, socket errors: ${this.errors.join('; ')}` : ''}) before match; got ${JSON.stringify(this.messages).slice(0, 500)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  errorCodes(): string[] {
    return this.messages.filter((m) => m.type === 'error').map((m) => (m as { code: string }).code);
  }
}
