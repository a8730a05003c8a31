import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  expectCleanFsck,
  expectSuccess,
  init,
  listPacks,
  makeVolume,
  parseJson,
  restore,
  runCli,
  sameBytes,
  snapshots,
  startCli,
  useTempDir,
  writeJob,
} from './utils/index.js';

describe('an interrupted backup', () => {
  test('a backup killed mid-run leaves the earlier snapshots restorable and the repository usable', async () => {
    const dir = await useTempDir();
    const repository = join(dir, 'repo');
    const { image: first } = await makeVolume(dir, 'first', 48 * MiB, { seed: 51, randomBytes: 4 * MiB, textBytes: 2 * MiB });
    // Mostly incompressible and compressed hard: the second backup takes seconds, and
    // fills more than one 16 MiB pack.
    const { image: second } = await makeVolume(dir, 'second', 96 * MiB, { seed: 52, randomBytes: 64 * MiB, textBytes: 2 * MiB });
    const job = await writeJob(dir, { source: first });
    const slowJob = await writeJob(dir, { source: second, compression: { type: 'zstd', level: 19 } }, 'slow-job.json');
    await init(job);
    const kept = await backup(job);
    const packsBefore = await listPacks(repository);

    const running = startCli(['backup', slowJob, '--json'], { env: PASSWORD_ENV });
    let exited = false;
    void running.result.then(() => (exited = true));
    // Wait until the second backup has written at least one pack of its own.
    const deadline = Date.now() + 60_000;
    while (!exited && Date.now() < deadline && (await listPacks(repository)).length <= packsBefore.length) await sleep(25);
    expect(exited, 'the backup finished before it could be interrupted; make its image larger').toBe(false);
    expect((await listPacks(repository)).length).toBeGreaterThan(packsBefore.length);
    running.child.kill('SIGKILL');
    const killed = await running.result;
    expect(killed.signal).toBe('SIGKILL');

    // No snapshot came out of the killed run; the earlier one is intact.
    const list = await snapshots(job);
    expect(list.map((s) => s.id)).toEqual([kept.snapshot]);
    const restored = join(dir, 'restored-first.img');
    await restore(job, kept.snapshot, restored);
    expect(await sameBytes(first, restored)).toBe(true);
    await expectCleanFsck(restored);

    // check passes: packs left by the killed run are unreferenced, which is allowed.
    const check = await runCli(['check', job, '--read-data', '--json'], { env: PASSWORD_ENV });
    expectSuccess(check);
    expect(parseJson<{ problems: unknown[] }>(check).problems).toEqual([]);

    // A new backup (of the volume the killed run was reading) succeeds, and restores.
    const secondJob = await writeJob(dir, { source: second }, 'second-job.json');
    const resumed = await backup(secondJob);
    expect(resumed.bytesRead).toBe(96 * MiB);
    expect((await snapshots(job)).map((s) => s.id).sort()).toEqual([kept.snapshot, resumed.snapshot].sort());
    const restoredSecond = join(dir, 'restored-second.img');
    await restore(job, resumed.snapshot, restoredSecond);
    expect(await sameBytes(second, restoredSecond)).toBe(true);
    expectSuccess(await runCli(['check', job], { env: PASSWORD_ENV }));
    // Nothing the killed run left behind (stale lock, temporary files) blocks the repository.
    expect(await readdir(join(repository, 'snapshots'))).toHaveLength(2);
  });
});
