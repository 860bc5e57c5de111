/**
 * store.kind "memory": nothing is kept beyond the process. Caption files
 * come from the in-memory archive alone (captions.keepEndedSeconds), as
 * before the durable store existed; tests that want that use it.
 */
import type { FinalMessage } from '../protocol/messages.js';
import type { MeetingFinal, SessionRecord, Store, StoreStatus } from './types.js';

const OK: StoreStatus = { ok: true, queuedWrites: 0, droppedWrites: 0 };

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  sessionStarted(): void {}
  final(): void {}
  sessionEnded(): void {}
  meetingStarted(): void {}
  async getSession(): Promise<SessionRecord | null> {
    return null;
  }
  async getFinals(): Promise<FinalMessage[]> {
    return [];
  }
  async getMeeting(): Promise<{ startedAt: number; sessions: SessionRecord[]; finals: MeetingFinal[] } | null> {
    return null;
  }
  async listSessions(): Promise<SessionRecord[]> {
    return [];
  }
  async deleteSession(): Promise<boolean> {
    return false;
  }
  status(): StoreStatus {
    return OK;
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
