import { describe, expect, it } from 'vitest';

import { decodeServerMessage } from '../../src/protocol/codec.js';
import type { ServerMessage, Unsequenced } from '../../src/protocol/messages.js';
import { ReplayLog } from '../../src/session/replay-log.js';

const partial = (revision: number): Unsequenced<ServerMessage> => ({ type: 'partial', segment: 0, revision, text: `word ${revision}`, start: 0, end: 1 });
const final = (segment: number): Unsequenced<ServerMessage> => ({ type: 'final', segment, text: `final ${segment}`, start: segment, end: segment + 1, words: [] });
const ack = (s: number): Unsequenced<ServerMessage> => ({ type: 'ack', receivedSeconds: s, decodedSeconds: s, backlogSeconds: 0 });
const seqs = (log: ReplayLog, after: number) => log.after(after)!.messages.map((m) => decodeServerMessage(m.data)).map((m) => ('seq' in m ? m.seq : -1));

describe('ReplayLog', () => {
  it('stamps the session seq from where the connection left it, and replays exactly what came after lastSeq', () => {
    const log = new ReplayLog({ mode: 'json', maxBytes: 1 << 20, seq: 1 });
    for (let i = 0; i < 5; i++) log.append(final(i));
    expect(log.seq).toBe(6);
    expect(seqs(log, 1)).toEqual([2, 3, 4, 5, 6]);
    expect(seqs(log, 4)).toEqual([5, 6]);
    expect(seqs(log, 6)).toEqual([]);
    expect(log.after(7)).toBeNull(); // ahead: the client cannot have seen it
    expect(log.after(-1)).toBeNull();
  });

  it('over its bound, tombstones superseded partials and acks first (counted), keeping every final and the newest of each', () => {
    const log = new ReplayLog({ mode: 'json', maxBytes: 2000, seq: 0 });
    const f = log.append(final(0));
    let partials = 0;
    for (let i = 1; log.bytes + 200 < 2000; i++) {
      log.append(partial(i));
      log.append(ack(i));
      partials++;
    }
    for (let i = 0; i < 20; i++) log.append(partial(1000 + i));
    expect(log.bytes).toBeLessThanOrEqual(2000);
    const r = log.after(0)!;
    expect(r.lost).toBe(0);
    const kept = r.messages.map((m) => decodeServerMessage(m.data));
    expect(kept[0]).toEqual(decodeServerMessage(f));
    // The newest partial and the newest ack are kept.
    expect(kept.filter((m) => m.type === 'partial').at(-1)).toMatchObject({ revision: 1019 });
    expect(kept.some((m) => m.type === 'ack')).toBe(true);
    expect(r.skippedPartials).toBeGreaterThan(0);
    expect(r.skippedPartials + kept.filter((m) => m.type === 'partial').length).toBe(partials + 20);
    // In order, seq rising.
    const s = kept.map((m) => ('seq' in m ? m.seq : 0));
    expect([...s].sort((a, b) => a - b)).toEqual(s);
  });

  it('drops the oldest when finals alone pass the bound, and a replay from before them says how many are lost', () => {
    const log = new ReplayLog({ mode: 'json', maxBytes: 1500, seq: 3 });
    for (let i = 0; i < 100; i++) log.append(final(i));
    expect(log.bytes).toBeLessThanOrEqual(1500);
    const r = log.after(3)!;
    expect(r.messages.length).toBeGreaterThan(0);
    expect(r.lost + r.messages.length).toBe(100);
    const first = decodeServerMessage(r.messages[0]!.data);
    expect('seq' in first && first.seq).toBe(3 + r.lost + 1);
    // A client that saw everything up to a kept message loses nothing.
    expect(log.after(103 - 2)!.lost).toBe(0);
  });

  it('stays bounded and cheap over a long session of partials and acks (amortized, no rescans)', () => {
    const log = new ReplayLog({ mode: 'msgpack', maxBytes: 4096, seq: 0 });
    const t0 = performance.now();
    for (let i = 0; i < 200_000; i++) {
      log.append(i % 50 === 49 ? final(i) : i % 2 ? partial(i) : ack(i));
      expect(log.bytes).toBeLessThanOrEqual(4096);
    }
    // Generous: this is about complexity (a rescan per message took seconds), not speed.
    expect(performance.now() - t0).toBeLessThan(20_000);
    const r = log.after(log.seq - 10)!;
    expect(r.lost).toBe(0);
  });

  it('re-encodes what it keeps when a resume comes in the other subprotocol', () => {
    const log = new ReplayLog({ mode: 'json', maxBytes: 1 << 20, seq: 0 });
    log.append(final(0));
    log.setMode('msgpack');
    const r = log.after(0)!;
    expect(r.messages[0]!.data).toBeInstanceOf(Uint8Array);
    expect(decodeServerMessage(r.messages[0]!.data)).toMatchObject({ type: 'final', seq: 1, text: 'final 0' });
  });
});
