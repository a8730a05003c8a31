// Only for `pnpm bench`: runs bench/remote.bench-run.test.ts, which reuses the test harness's
// Ceph RGW and sshd (test/s3/servers.ts, @cairn/target-sftp/testing). The root vitest.config.ts does
// not include bench/, so `pnpm test` never runs it.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    include: ['bench/**/*.bench-run.test.ts'],
    testTimeout: 3_600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
    reporters: ['verbose'],
  },
});
