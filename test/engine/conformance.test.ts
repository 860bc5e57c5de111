/**
 * The engine contract, run against the overhead engine and PocketSphinx
 * (Whisper's run is whisper-conformance.test.ts, with the slow files).
 */
import { createOverheadEngine } from '../../src/engine/overhead.js';
import { createPocketSphinxEngine } from '../../src/engine/pocketsphinx.js';
import type { Engine, StreamId } from '../../src/engine/types.js';
import { testConfig } from '../helpers/config.js';
import { conformance } from './conformance.js';

const fault = (e: Engine, id: StreamId) => (e as unknown as { injectFault(id: StreamId): void }).injectFault(id);

conformance({
  name: 'overhead',
  create: async () => createOverheadEngine(testConfig().engine),
  recognizes: false,
  injectFault: fault,
});

conformance({
  name: 'pocketsphinx',
  create: ({ decoders }) => {
    const c = testConfig().engine;
    return createPocketSphinxEngine({ ...c, decoders: decoders ?? 4, threads: 2 });
  },
  recognizes: true,
  // PocketSphinx reads LibriVox at about 32% (docs/benchmarks.md).
  maxWer: 40,
  parks: true,
  injectFault: fault,
});
