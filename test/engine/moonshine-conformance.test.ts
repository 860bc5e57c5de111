/** The engine contract, run against Moonshine tiny and base (with the slow files: npm test runs it last). */
import { createMoonshineEngine } from '../../src/engine/moonshine.js';
import type { Engine, StreamId } from '../../src/engine/types.js';
import { testConfig } from '../helpers/config.js';
import { conformance } from './conformance.js';

const fault = (e: Engine, id: StreamId) => (e as unknown as { injectFault(id: StreamId): void }).injectFault(id);

for (const model of ['tiny', 'base'] as const) {
  conformance({
    name: `moonshine ${model}`,
    create: () => {
      const c = testConfig().engine;
      return createMoonshineEngine({ ...c, threads: 2, moonshine: { ...c.moonshine, model } });
    },
    recognizes: true,
    // On the LibriVox clips tiny reads 4.2% and base 2.8% (docs/benchmarks.md).
    maxWer: model === 'tiny' ? 8 : 6,
    injectFault: fault,
  });
}
