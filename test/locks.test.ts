import { hostname } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { readdir } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { holdRepositoryLock, writeForeignLock } from '@cairn/core/testing';
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

  const foreign = (lock: { operation: string; hostname: string; pid: number; time: string; mode?: string; exclusive?: boolean }) =>
    writeForeignLock({ job, pluginsFile: join(REPO_ROOT, 'plugins.json'), env: PASSWORD_ENV, lock: { exclusive: false, ...lock } });

  it("names another host's fresh lock, since when and when it expires, and how to remove it; unlock keeps it, --remove-all removes it", async () => {
    const started = new Date(Date.now() - 5 * 60_000).toISOString();
    const refreshed = new Date(Date.now() - 60_000).toISOString();
    const id = await foreign({ operation: 'repair', mode: 'exclusive', exclusive: true, hostname: 'backup-host-7', pid: 4242, time: refreshed, started } as never);
    const expires = new Date(Date.parse(refreshed) + 30 * 60_000).toISOString();
    const blocked = await runCli(['backup', job], { env: PASSWORD_ENV });
    expectCleanFailure(
      blocked,
      11,
      new RegExp(`locked exclusively by repair \\(pid 4242 on backup-host-7, since ${started}, last refreshed ${refreshed}\\)`),
      new RegExp(`expires at ${expires}.*\`cairn unlock <job>\` removes it then, \`cairn unlock <job> --remove-all\` at once`),
    );
    const kept = await runCli(['unlock', job, '--json'], { env: PASSWORD_ENV });
    expect(kept.exitCode).toBe(0);
    expect(JSON.parse(kept.stdout)).toMatchObject({ removed: [], remaining: [{ id, operation: 'repair', mode: 'exclusive', hostname: 'backup-host-7', pid: 4242, started, refreshed }] });
    const removed = await runCli(['unlock', job, '--remove-all', '--json'], { env: PASSWORD_ENV });
    expect(JSON.parse(removed.stdout)).toMatchObject({ removed: [{ id }], remaining: [] });
    await backup(job);
  });

  it('unlock removes stale locks: one not refreshed for 30 minutes, and one of a dead process on this host', async () => {
    const old = await foreign({ operation: 'backup', hostname: 'gone-host', pid: 1, time: new Date(Date.now() - 31 * 60_000).toISOString() });
    const dead = spawnSync('true').pid!; // a pid that ran and exited
    const deadLock = await foreign({ operation: 'check', hostname: hostname(), pid: dead, time: new Date().toISOString() });
    // Neither blocks anything.
    await backup(job);
    const result = await runCli(['unlock', job, '--json'], { env: PASSWORD_ENV });
    const { removed, remaining } = JSON.parse(result.stdout);
    // The backup on this host cleared the dead process's lock already; unlock takes the old one.
    expect(removed.map((l: { id: string }) => l.id)).toEqual([old]);
    expect(removed[0].stale).toMatch(/not refreshed for 3\d minutes/);
    expect(remaining).toEqual([]);
    expect(await readdir(join(dir, 'repo', 'locks'))).toEqual([]);
    expect(deadLock).toMatch(/^[0-9a-f]{64}$/);
  });
});
