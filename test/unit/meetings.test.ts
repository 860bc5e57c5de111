import { afterEach, describe, expect, it } from 'vitest';

import { MeetingHub, type MeetingOptions, type ViewerIdentity } from '../../src/meetings/hub.js';
import { Outbox, type MessageChannel } from '../../src/session/outbox.js';

class Channel implements MessageChannel {
  sent: { type: string; speaker?: string; start?: number; sessionId?: string; participant?: string; code?: string }[] = [];
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
const OPTS: MeetingOptions = {
  maxMeetings: 10,
  maxViewersPerMeeting: 10,
  maxViewersPerToken: 10,
  maxWaitingViewersPerAddress: 10,
  maxWaitingViewersPerToken: 10,
  maxReplayBytes: 1 << 20,
  retentionSeconds: 60,
  stalledReaderSeconds: 1,
};
/** A viewer with auth off: may read every file. */
const open: ViewerIdentity = { address: '10.0.0.1', token: null, canRead: () => true };
const viewer = (token: string, address = '10.0.0.1'): ViewerIdentity => ({ address, token, canRead: (owner) => owner === token });
const outbox = (ch = new Channel()) => new Outbox(ch, 'json', { maxBufferedBytes: 1e6, maxQueuedBytes: 1e6 });

describe('MeetingHub', () => {
  let hub: MeetingHub;
  afterEach(() => hub?.close());

  it('puts every participant on the meeting timeline and replays sorted finals to late viewers', () => {
    hub = new MeetingHub(OPTS);
    const t0 = Date.now();
    hub.joined('m', { sessionId: 'a', speaker: 'alice', startedAt: t0, owner: null });
    hub.joined('m', { sessionId: 'b', speaker: 'bob', startedAt: t0 + 2000, owner: null });
    hub.publish('m', 'b', final('from bob', 0.5)); // 2.5 s on the meeting timeline
    hub.publish('m', 'a', final('from alice', 1.0)); // 1.0 s
    const ch = new Channel();
    expect(hub.addViewer('m', outbox(ch), open)).toBeNull();
    expect(ch.sent.map((m) => [m.type, m.speaker, m.start])).toEqual([
      ['viewer_ready', undefined, undefined],
      ['final', 'alice', 1],
      ['final', 'bob', 2.5],
    ]);
  });

  it('drops a stalled viewer without affecting another, and bounds the replay in bytes', async () => {
    hub = new MeetingHub({ ...OPTS, maxReplayBytes: 1024, stalledReaderSeconds: 0.2 });
    hub.joined('m', { sessionId: 'a', speaker: 'alice', startedAt: Date.now(), owner: null });
    const slow = new Channel();
    const fast = new Channel();
    hub.addViewer('m', new Outbox(slow, 'json', { maxBufferedBytes: 10, maxQueuedBytes: 1e6 }), open);
    hub.addViewer('m', outbox(fast), open);
    slow.buffered = 100; // never drains
    for (let i = 0; i < 10; i++) hub.publish('m', 'a', final(`final number ${i} ${'x'.repeat(100)}`, i));
    await new Promise((r) => setTimeout(r, 900));
    expect(slow.closed).toBe(4008);
    expect(hub.slowViewersDropped).toBe(1);
    expect(fast.closed).toBeNull();
    expect(fast.sent.filter((m) => m.type === 'final')).toHaveLength(10);
    const late = new Channel();
    hub.addViewer('m', outbox(late), open);
    const ready = late.sent[0] as unknown as { type: string; replay: number; truncated: number };
    expect(ready.type).toBe('viewer_ready');
    expect(ready.replay).toBeGreaterThan(0);
    expect(ready.replay + ready.truncated).toBe(10);
    expect(ready.replay).toBeLessThan(10);
  });

  it("refuses viewers beyond a meeting's places and beyond one token's share of them", () => {
    hub = new MeetingHub({ ...OPTS, maxViewersPerMeeting: 3, maxViewersPerToken: 2 });
    hub.joined('m1', { sessionId: 'a', speaker: 'alice', startedAt: Date.now(), owner: 'sub:alice' });
    expect(hub.addViewer('m1', outbox(), viewer('sub:v'))).toBeNull();
    expect(hub.addViewer('m1', outbox(), viewer('sub:v'))).toBeNull();
    expect(hub.addViewer('m1', outbox(), viewer('sub:v'))?.code).toBe('CAP_ERR_TOO_MANY_CONNECTIONS');
    expect(hub.addViewer('m1', outbox(), viewer('sub:w'))).toBeNull();
    expect(hub.addViewer('m1', outbox(), viewer('sub:x'))?.code).toBe('CAP_ERR_CAPACITY');
  });

  it('a viewer waiting for a meeting that has not started makes no room; the speaker who cannot get one is told', () => {
    hub = new MeetingHub({ ...OPTS, maxMeetings: 1, maxWaitingViewersPerAddress: 2 });
    const waiting = new Channel();
    // Viewers of meetings with no speaker wait without taking a meeting place.
    expect(hub.addViewer('later', outbox(waiting), open)).toBeNull();
    expect(hub.addViewer('other', outbox(), open)).toBeNull();
    expect(hub.meetings).toBe(0);
    // ...and are bounded per address.
    expect(hub.addViewer('third', outbox(), open)?.code).toBe('CAP_ERR_TOO_MANY_CONNECTIONS');
    expect(hub.addViewer('later', outbox(), { ...open, address: '10.0.0.2' })).toBeNull();
    // A speaker opens the room; the waiting viewer gets the speaker's captions.
    expect(hub.joined('later', { sessionId: 'a', speaker: 'alice', startedAt: Date.now(), owner: null })).toBeNull();
    hub.publish('later', 'a', final('hello', 0));
    expect(waiting.sent.map((m) => m.type)).toEqual(['viewer_ready', 'participant', 'final']);
    // The server's one meeting is taken: the next speaker's fan-out cannot be kept, and it is told (not dropped silently).
    expect(hub.joined('full', { sessionId: 'b', speaker: 'bob', startedAt: Date.now(), owner: null })?.code).toBe('CAP_ERR_CAPACITY');
  });

  it('tells viewers the speaker and an opaque participant id, and a session id only where they may read its file', () => {
    hub = new MeetingHub(OPTS);
    hub.joined('m', { sessionId: 'secret-a', speaker: 'alice', startedAt: Date.now(), owner: 'sub:alice' });
    const alice = new Channel();
    const stranger = new Channel();
    hub.addViewer('m', outbox(alice), viewer('sub:alice'));
    hub.addViewer('m', outbox(stranger), viewer('sub:bob'));
    hub.publish('m', 'secret-a', final('hello', 0));
    const [fa] = alice.sent.filter((m) => m.type === 'final');
    const [fs] = stranger.sent.filter((m) => m.type === 'final');
    expect(fa).toMatchObject({ speaker: 'alice', sessionId: 'secret-a' });
    expect(fs!.speaker).toBe('alice');
    expect(fs!.participant).toBe(fa!.participant);
    expect(fs!.participant).toMatch(/^[A-Za-z0-9_-]{8}$/);
    expect(JSON.stringify(stranger.sent)).not.toContain('secret-a');
  });
});
