import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  attachLoop,
  backup,
  describeWithLoopDevices,
  escapeRegExp,
  expectCleanFailure,
  expectSuccess,
  init,
  makeExt4Image,
  makeVolume,
  mountDevice,
  randomBytesFor,
  restore,
  runCli,
  sameBytes,
  snapshots,
  tempDir,
  useScope,
  useSuiteScope,
  writeJob,
  type Scope,
} from './utils/index.js';

/*
 * Running out of space: the repository, or a restored image file, on a small ext4
 * filesystem (a loop device over an image file) that fills up during the run.
 */

/** Every file below `dir`, relative to it. */
async function filesBelow(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1)).sort();
}

/** A fresh ext4 filesystem of `size` bytes mounted at `mountPoint`; unmounted and detached by the scope. */
async function smallFilesystem(scope: Scope, dir: string, name: string, size: number): Promise<string> {
  const empty = join(dir, `${name}-empty`);
  await mkdir(empty, { recursive: true });
  const image = join(dir, `${name}.ext4`);
  await makeExt4Image(image, size, empty);
  const device = await attachLoop(scope, image);
  const mountPoint = join(dir, name);
  await mountDevice(scope, device, mountPoint);
  return mountPoint;
}

describeWithLoopDevices('running out of space', () => {
  const scope = useSuiteScope();
  let dir: string;
  let image: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-no-space-');
    // 20 MiB of incompressible data: more than the small filesystems below can hold.
    ({ image } = await makeVolume(dir, 'disk', 32 * MiB, { seed: 81, randomBytes: 20 * MiB, textBytes: 1 * MiB }));
  });

  test('a backup that fills the repository\'s disk stops with a clear error, leaves no snapshot and no temporary file, and works once space is freed', async () => {
    const testScope = useScope();
    const space = await smallFilesystem(testScope, dir, 'repo-space', 32 * MiB);
    const repository = join(space, 'repo');
    const job = await writeJob(dir, { source: image, repository }, 'no-space.json');
    await init(job);
    // Made before the backup, so that deleting it frees the space the backup needs.
    const filler = join(space, 'filler');
    await writeFile(filler, randomBytesFor('filler', 14 * MiB));

    const failed = await runCli(['backup', job], { env: PASSWORD_ENV });
    expectCleanFailure(failed, 1, new RegExp(escapeRegExp(repository)), /no space left on device/);
    expect(await snapshots(job)).toEqual([]);
    const leftovers = await filesBelow(repository);
    expect(leftovers.filter((f) => f.split('/').pop()!.startsWith('.tmp-'))).toEqual([]);
    expect(await readdir(join(repository, 'locks'))).toEqual([]);
    expectSuccess(await runCli(['check', job], { env: PASSWORD_ENV }));

    await rm(filler);
    const saved = await backup(job);
    expect((await snapshots(job)).map((s) => s.id)).toEqual([saved.snapshot]);
    expectSuccess(await runCli(['check', job, '--read-data'], { env: PASSWORD_ENV }));
    const restored = join(dir, 'after-space-freed.img');
    await restore(job, saved.snapshot, restored);
    expect(await sameBytes(restored, image)).toBe(true);
  });

  test('a restore onto a full disk names the destination and says there is no space left; nothing is left behind', async () => {
    const testScope = useScope();
    const job = await writeJob(dir, { source: image, repository: './repo-roomy' }, 'roomy.json');
    await init(job);
    const { snapshot } = await backup(job);
    const space = await smallFilesystem(testScope, dir, 'restore-space', 16 * MiB);
    const to = join(space, 'restored.img');

    const failed = await runCli(['restore', job, snapshot, '--to', to], { env: PASSWORD_ENV });
    expectCleanFailure(failed, 1, new RegExp(escapeRegExp(to)), /no space left on device/);
    expect(await readdir(space)).toEqual(['lost+found']);
  });
});
