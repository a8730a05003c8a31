import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    // Real servers, loop devices and whole-volume round trips: generous but bounded.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Loop devices and mounts are machine-wide; files run one at a time.
    fileParallelism: false,
  },
});
