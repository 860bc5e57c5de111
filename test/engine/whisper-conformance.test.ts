/** The engine contract, run against Whisper base (with the slow files: npm test runs it last). */
import { createWhisperEngine } from '../../src/engine/whisper.js';
import type { Engine, StreamId } from '../../src/engine/types.js';
import { testConfig } from '../helpers/config.js';
import { conformance } from './conformance.js';

conformance({
  name: 'whisper',
  create: () => createWhisperEngine({ ...testConfig().engine, threads: 2 }),
  recognizes: true,
  // Whisper base reads LibriVox at about 3% (docs/benchmarks.md).
  maxWer: 8,
  injectFault: (e: Engine, id: StreamId) => (e as unknown as { injectFault(id: StreamId): void }).injectFault(id),
});
