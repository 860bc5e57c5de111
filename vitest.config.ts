import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * The files that take longest, longest first (seconds in CI). Without
 * vitest's duration cache (a fresh clone), it orders by file size, and
 * gateway.test.ts, two lines around suite.ts, would start last and leave
 * one worker idle for minutes at the end.
 */
const LONGEST = [
  'test/gateway/gateway.test.ts', // 325
  'test/compat/openai-files.test.ts', // 157
  'test/robustness/server-fuzz.test.ts', // 134
  'test/browser/e2e.test.ts', // 87
  'test/robustness/soak.test.ts', // 67
  'test/gateway/fair-decoders.test.ts', // 62
];

class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (f: TestSpecification) => {
      const i = LONGEST.findIndex((p) => f.moduleId.endsWith(p));
      return i < 0 ? LONGEST.length : i;
    };
    // Array.prototype.sort is stable: the others keep vitest's order.
    return sorted.sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: more parallel files only fight over the CPU that real-time
    // tests need.
    maxWorkers: 2,
    sequence: { sequencer: LongestFirst },
    reporters: ['default'],
  },
});
