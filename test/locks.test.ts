import { hostname } from 'node:os';
import { join } from 'node:path';
import { readdir } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { holdRepositoryLock } from '@cairn/core/testing';
import { MiB, PASSWORD_ENV, REPO_ROOT, backup, expectCleanFailure, init, makeVolume, runCli, snapshots, tempDir, useSuiteScope, writeJob } from './utils/index.js';

/** Another cairn process holding a lock, as the CLI sees it: exit 11 and who holds it, or both at once for shared locks. */
describe('repository locks through the CLI', () => {
  const scope = useSuiteScope();
  let dir: string;
  let job: string;

  beforeAll(async () => {
    dir = await tempDir(scope);
    const { image } = await makeVolume(dir, 'vol', 16 * MiB, { seed: 11, randomBytes: 1 * MiB, textBytes: 256 * 1024 });
    job = await writeJob(dir, { source: image });
    await init(job);
    await backup(job);
  });

  const hold = (operation: string, exclusive: boolean) =>
    holdRepositoryLock({ job, pluginsFile: join(REPO_ROOT, 'plugins.json'), env: PASSWORD_ENV, operation, exclusive });

  it('exits 11, naming the holder, while another process holds an exclusive lock; nothing is written', async () => {
    const lock = await hold('prune', true);
    try {
      const before = await readdir(join(dir, 'repo', 'snapshots'));
      for (const command of [['backup', job], ['restore', job, 'latest', '--to', join(dir, 'never.img')], ['check', job]]) {
        const result = await runCli(command, { env: PASSWORD_ENV });
        expectCleanFailure(result, 11, new RegExp(`locked exclusively by prune \\(pid ${process.pid} on ${hostname()}, since \\d{4}-\\d\\d-\\d\\dT`), /try again when it has finished/);
      }
      const json = await runCli(['backup', job, '--json'], { env: PASSWORD_ENV });
      expect(json.exitCode).toBe(11);
      expect(JSON.parse(json.stderr)).toEqual({ error: { code: 'CAIRN_LOCKED', message: expect.stringMatching(/^The repository is locked exclusively by prune/) } });
      expect(await readdir(join(dir, 'repo', 'snapshots'))).toEqual(before);
      expect(await readdir(dir)).not.toContain('never.img');
      // Its own lock object was taken back: only the holder's remains.
      expect(await readdir(join(dir, 'repo', 'locks'))).toHaveLength(1);
    } finally {
      await lock.dispose();
    }
    expect(await readdir(join(dir, 'repo', 'locks'))).toEqual([]);
    const after = await backup(job);
    expect((await snapshots(job)).map((s) => s.id)).toContain(after.snapshot);
  });

  it('lets a backup run while another process holds a shared lock, and refuses the exclusive lock to that process meanwhile', async () => {
    const lock = await hold('restore', false);
    try {
      const result = await backup(job);
      expect(result.snapshot).toMatch(/^[0-9a-f]{64}$/);
      await expect(hold('prune', true)).rejects.toThrow(/locked by restore \(pid /);
    } finally {
      await lock.dispose();
    }
  });
});
