import { describe, expect, it } from 'vitest';

import { Outbox, type MessageChannel } from '../../src/session/outbox.js';

class FakeChannel implements MessageChannel {
  sent: unknown[] = [];
  buffered = 0;
  closed: [number, string] | null = null;
  send(data: string | Uint8Array): void {
    this.sent.push(JSON.parse(data as string));
  }
  bufferedAmount(): number {
    return this.buffered;
  }
  close(code: number, reason: string): void {
    this.closed = [code, reason];
  }
}

const partial = (segment: number, revision: number) => ({ type: 'partial' as const, segment, revision, text: `r${revision}`, start: 0, end: 1 });
const final = (segment: number) => ({ type: 'final' as const, segment, text: 'done', start: 0, end: 1, words: [] });

describe('Outbox backpressure policy', () => {
  it('sends straight through while the socket is not backed up, stamping seq', () => {
    const ch = new FakeChannel();
    const o = new Outbox(ch, 'json', { maxBufferedBytes: 100, maxQueuedBytes: 1000 });
    o.send(partial(0, 1));
    o.send(final(0));
    expect(ch.sent).toMatchObject([{ seq: 1, type: 'partial' }, { seq: 2, type: 'final' }]);
  });

  it('while backed up keeps only the newest partial, queues finals, and flushes in order on drain', () => {
    const ch = new FakeChannel();
    const o = new Outbox(ch, 'json', { maxBufferedBytes: 100, maxQueuedBytes: 100_000 });
    ch.buffered = 500;
    for (let r = 1; r <= 50; r++) o.send(partial(0, r));
    o.send(final(0));
    o.send(partial(1, 1));
    o.send(partial(1, 2));
    expect(ch.sent).toEqual([]);
    expect(o.congested).toBe(true);
    ch.buffered = 0;
    o.drain();
    expect(ch.sent.map((m) => (m as { type: string; revision?: number }).type + ((m as { revision?: number }).revision ?? ''))).toEqual([
      'final',
      'partial2',
    ]);
    expect(o.coalesced).toBe(51);
    expect(o.congested).toBe(false);
  });

  it('reports overflow when the queue passes its bound, and stall time', () => {
    const ch = new FakeChannel();
    const o = new Outbox(ch, 'json', { maxBufferedBytes: 10, maxQueuedBytes: 1000 });
    ch.buffered = 11;
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) o.send(final(i));
    expect(o.overflowed).toBe(true);
    expect(o.congestedFor(t0 + 5000)).toBeGreaterThanOrEqual(4900);
  });

  it('closes only after queued messages reached the socket', () => {
    const ch = new FakeChannel();
    const o = new Outbox(ch, 'json', { maxBufferedBytes: 10, maxQueuedBytes: 10_000 });
    ch.buffered = 11;
    o.send({ type: 'end', reason: 'client_stop', message: '', audio: {} as never });
    o.closeWhenFlushed(1000, 'client_stop');
    expect(ch.closed).toBeNull();
    ch.buffered = 0;
    o.drain();
    expect(ch.sent).toHaveLength(1);
    expect(ch.closed).toEqual([1000, 'client_stop']);
  });
});
