import { afterEach, describe, expect, it } from 'vitest';

import { MeetingHub } from '../../src/meetings/hub.js';
import { Outbox, type MessageChannel } from '../../src/session/outbox.js';

class Channel implements MessageChannel {
  sent: { type: string; speaker?: string; start?: number }[] = [];
  buffered = 0;
  closed: number | null = null;
  send(d: string | Uint8Array): void {
    this.sent.push(JSON.parse(d as string));
  }
  bufferedAmount(): number {
    return this.buffered;
  }
  close(code: number): void {
    this.closed = code;
  }
}

const final = (text: string, start: number) => ({ type: 'final' as const, segment: 0, text, start, end: start + 1, words: [] });

describe('MeetingHub', () => {
  let hub: MeetingHub;
  afterEach(() => hub?.close());

  it('puts every participant on the meeting timeline and replays sorted finals to late viewers', () => {
    hub = new MeetingHub({ maxMeetings: 10, maxViewersPerMeeting: 10, maxReplayFinals: 100, retentionSeconds: 60, stalledReaderSeconds: 1 });
    const t0 = Date.now();
    hub.joined('m', { sessionId: 'a', speaker: 'alice', startedAt: t0 });
    hub.joined('m', { sessionId: 'b', speaker: 'bob', startedAt: t0 + 2000 });
    hub.publish('m', 'b', final('from bob', 0.5)); // 2.5 s on the meeting timeline
    hub.publish('m', 'a', final('from alice', 1.0)); // 1.0 s
    const ch = new Channel();
    expect(hub.addViewer('m', new Outbox(ch, 'json', { maxBufferedBytes: 1e6, maxQueuedBytes: 1e6 }))).toBeNull();
    expect(ch.sent.map((m) => [m.type, m.speaker, m.start])).toEqual([
      ['viewer_ready', undefined, undefined],
      ['final', 'alice', 1],
      ['final', 'bob', 2.5],
    ]);
  });

  it('drops a stalled viewer without affecting another, and bounds the replay', async () => {
    hub = new MeetingHub({ maxMeetings: 10, maxViewersPerMeeting: 10, maxReplayFinals: 3, retentionSeconds: 60, stalledReaderSeconds: 0.2 });
    hub.joined('m', { sessionId: 'a', speaker: 'alice', startedAt: Date.now() });
    const slow = new Channel();
    const fast = new Channel();
    hub.addViewer('m', new Outbox(slow, 'json', { maxBufferedBytes: 10, maxQueuedBytes: 1e6 }));
    hub.addViewer('m', new Outbox(fast, 'json', { maxBufferedBytes: 1e6, maxQueuedBytes: 1e6 }));
    slow.buffered = 100; // never drains
    for (let i = 0; i < 10; i++) hub.publish('m', 'a', final(`f${i}`, i));
    await new Promise((r) => setTimeout(r, 900));
    expect(slow.closed).toBe(4008);
    expect(hub.slowViewersDropped).toBe(1);
    expect(fast.closed).toBeNull();
    expect(fast.sent.filter((m) => m.type === 'final')).toHaveLength(10);
    const late = new Channel();
    hub.addViewer('m', new Outbox(late, 'json', { maxBufferedBytes: 1e6, maxQueuedBytes: 1e6 }));
    expect(late.sent[0]).toMatchObject({ type: 'viewer_ready', replay: 3, truncated: 7 });
  });

  it('refuses viewers and meetings beyond their limits', () => {
    hub = new MeetingHub({ maxMeetings: 1, maxViewersPerMeeting: 1, maxReplayFinals: 3, retentionSeconds: 60, stalledReaderSeconds: 1 });
    const ob = () => new Outbox(new Channel(), 'json', { maxBufferedBytes: 1e6, maxQueuedBytes: 1e6 });
    expect(hub.addViewer('m1', ob())).toBeNull();
    expect(hub.addViewer('m1', ob())?.code).toBe('CAP_ERR_CAPACITY');
    expect(hub.addViewer('m2', ob())?.code).toBe('CAP_ERR_CAPACITY');
  });
});
