/**
 * The fault boundary: an exception while one session's messages or results
 * are handled, or inside the engine for its window, or at the N-API call
 * that carries it, ends that session only. It gets CAP_ERR_INTERNAL (or
 * CAP_ERR_ENGINE_FAILURE for the engine's own faults) and an `end` whose
 * counts are exact; a healthy session alongside is served to the end, and
 * the process carries on. Faults are injected through hooks the wire
 * cannot reach (GatewayOptions.faults, the engine's injectFault).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readWav, wavToInt16 } from '../../src/audio/wav.js';
import type { FaultHooks } from '../../src/session/session.js';
import { librivoxClips } from '../../eval/corpus.js';
import { metric, RawClient, settled, startGateway, streamPcm, type Harness } from '../helpers/gateway.js';

const pcm = wavToInt16(readWav(librivoxClips()[0]!.file));

interface End {
  reason: string;
  audio: { receivedSamples: number; decodedSamples: number; droppedSamples: number };
}

describe('fault boundary', () => {
  let h: Harness;
  /** Sessions whose next message or result throws. */
  const victims = { message: new Set<string>(), result: new Set<string>() };
  const faults: FaultHooks = {
    message(id) {
      if (victims.message.delete(id)) throw new Error('injected fault in the message handler');
    },
    result(id) {
      if (victims.result.delete(id)) throw new Error('injected fault in the result handler');
    },
  };

  beforeAll(async () => {
    h = await startGateway('uws', { engine: { decoders: 4, threads: 2 } }, undefined, { faults });
  });
  afterAll(async () => {
    await h?.stop();
  });

  /** A victim session streaming the clip in real time, and a healthy one beside it. */
  async function victimAndBystander(arm: (sessionId: string, streamId: number) => void) {
    const bystander = streamPcm(`${h.base}/v1/listen`, pcm, { realtime: true });
    const c = new RawClient(`${h.base}/v1/listen?sampleRate=16000&channels=1&encoding=s16le`);
    const ready = (await c.waitFor((m) => m.type === 'ready')) as { sessionId: string };
    const session = h.gw.manager.get(ready.sessionId)!;
    let armed = false;
    for (let off = 0; off < pcm.length && c.closeCode === undefined; off += 1600) {
      if (off >= 8000 && !armed) {
        arm(ready.sessionId, session.streamId);
        armed = true;
      }
      if (c.ws.readyState === 1) c.ws.send(pcm.subarray(off, Math.min(pcm.length, off + 1600)));
      await new Promise((r) => setTimeout(r, 20));
    }
    await c.closed;
    const end = c.messages.find((m) => m.type === 'end') as End | undefined;
    const r = await bystander;
    expect(r.end.reason).toBe('client_stop');
    expect(r.end.audio.receivedSamples).toBe(r.end.audio.decodedSamples);
    expect(r.finals.some((f) => f.text.length > 0)).toBe(true);
    await settled(h.gw);
    return { c, end };
  }

  function expectExactEnd(end: End | undefined, reason: string) {
    expect(end?.reason).toBe(reason);
    expect(end!.audio.receivedSamples).toBe(end!.audio.decodedSamples + end!.audio.droppedSamples);
  }

  it('a throw while handling a client message ends that session with CAP_ERR_INTERNAL (4011) and an exact end', async () => {
    const before = await metric(h.http, 'captiongate_internal_errors_total', 'boundary="message"');
    const { c, end } = await victimAndBystander((id) => victims.message.add(id));
    expect(c.closeCode).toBe(4011);
    expect(c.errorCodes()).toEqual(['CAP_ERR_INTERNAL']);
    expectExactEnd(end, 'internal_error');
    expect(await metric(h.http, 'captiongate_internal_errors_total', 'boundary="message"')).toBe(before + 1);
    expect(h.logs.some((l) => l.level === 50 && String((l.err as { stack?: string } | undefined)?.stack).includes('injected fault in the message handler'))).toBe(true);
  });

  it('a throw while handling an engine result ends that session with CAP_ERR_INTERNAL (4011) and an exact end', async () => {
    const before = await metric(h.http, 'captiongate_internal_errors_total', 'boundary="result"');
    const { c, end } = await victimAndBystander((id) => victims.result.add(id));
    expect(c.closeCode).toBe(4011);
    expect(c.errorCodes()).toEqual(['CAP_ERR_INTERNAL']);
    expectExactEnd(end, 'internal_error');
    expect(await metric(h.http, 'captiongate_internal_errors_total', 'boundary="result"')).toBe(before + 1);
  });

  for (const kind of ['throw', 'bad_alloc'] as const) {
    it(`an exception on the engine's worker thread (${kind}) fails that stream's window only: CAP_ERR_ENGINE_FAILURE, exact end`, async () => {
      const { c, end } = await victimAndBystander((_id, stream) =>
        (h.gw.engine as unknown as { injectFault(id: number, kind: string): void }).injectFault(stream, kind),
      );
      expect(c.closeCode).toBe(4009);
      expect(c.errorCodes()).toEqual(['CAP_ERR_ENGINE_FAILURE']);
      expectExactEnd(end, 'engine_error');
    });
  }

  it('a C++ exception inside the N-API submit call fails that stream only; the batch-mates go on', async () => {
    const { c, end } = await victimAndBystander((_id, stream) =>
      (h.gw.engine as unknown as { injectFault(id: number, kind: string): void }).injectFault(stream, 'napi'),
    );
    expect(c.closeCode).toBe(4009);
    expect(c.errorCodes()).toEqual(['CAP_ERR_ENGINE_FAILURE']);
    expectExactEnd(end, 'engine_error');
  });

  it('the process is still healthy afterwards', async () => {
    const r = await fetch(`${h.http}/healthz`);
    expect(r.status).toBe(200);
    const again = await streamPcm(`${h.base}/v1/listen`, pcm);
    expect(again.end.reason).toBe('client_stop');
  });
});
