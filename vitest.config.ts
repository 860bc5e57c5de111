import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: more parallel files only fight over the CPU that real-time
    // tests need.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
