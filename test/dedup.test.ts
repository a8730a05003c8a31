import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  MiB,
  Scope,
  attachLoop,
  backup,
  chunkHashes,
  copySparse,
  describeWithLoopDevices,
  expectCleanFsck,
  init,
  makeVolume,
  mountDevice,
  randomBytesFor,
  readRepositoryConfig,
  restore,
  sameBytes,
  treeBytes,
  useTempDir,
  writeJob,
} from './utils/index.js';

describe('deduplication', () => {
  test('a second backup of an unchanged volume adds less than 1% of the first', async () => {
    const dir = await useTempDir();
    const { image } = await makeVolume(dir, 'disk', 64 * MiB, { seed: 21, randomBytes: 12 * MiB, textBytes: 4 * MiB, zeroBytes: 2 * MiB });
    const job = await writeJob(dir, { source: image });
    const repository = join(dir, 'repo');
    await init(job);

    const first = await backup(job);
    const afterFirst = await treeBytes(repository);
    const second = await backup(job);
    const afterSecond = await treeBytes(repository);

    expect(first.bytesAdded).toBeGreaterThan(12 * MiB);
    expect(second.snapshot).not.toBe(first.snapshot);
    expect(second.chunks.new).toBe(0);
    expect(second.chunks.data).toBe(first.chunks.data);
    expect(second.bytesAdded, `second run added ${second.bytesAdded} bytes after ${first.bytesAdded}`).toBeLessThan(first.bytesAdded / 100);
    // What the repository really grew by agrees.
    expect(afterSecond - afterFirst).toBeLessThan(first.bytesAdded / 100);
  });

});

describeWithLoopDevices('deduplication of a volume changed through a mount', () => {
  test('a volume with a few files changed adds roughly the changed chunks', async () => {
    const dir = await useTempDir();
    const { image, files } = await makeVolume(dir, 'disk', 64 * MiB, { seed: 22, randomBytes: 16 * MiB, textBytes: 4 * MiB, zeroBytes: 1 * MiB });
    // 1 MiB chunks on this small volume, so that a few changed files touch few of its chunks.
    const job = await writeJob(dir, { source: image, chunkSize: MiB });
    const repository = join(dir, 'repo');
    await init(job);
    const first = await backup(job);
    const before = join(dir, 'before.img');
    await copySparse(image, before);

    // Change three files in place through the mounted filesystem, as a user would.
    const changed = files.filter((f) => f.kind !== 'zeros' && f.size > 600 * 1024).slice(0, 3);
    expect(changed).toHaveLength(3);
    const changeSize = 200 * 1024;
    {
      const mounts = new Scope();
      try {
        const device = await attachLoop(mounts, image);
        const mountPoint = join(dir, 'mnt');
        await mountDevice(mounts, device, mountPoint);
        for (const [i, file] of changed.entries()) {
          const handle = await open(join(mountPoint, file.path), 'r+');
          try {
            await handle.write(randomBytesFor(`change-${i}`, changeSize), 0, changeSize, 300 * 1024);
            await handle.sync();
          } finally {
            await handle.close();
          }
        }
      } finally {
        await mounts.dispose(); // unmount and detach before backing up
      }
    }
    expect(await sameBytes(before, image)).toBe(false);
    await expectCleanFsck(image);

    // The chunks the second backup must store: those of the new image not seen before.
    const { chunkSize } = await readRepositoryConfig(repository);
    const known = new Set((await chunkHashes(before, chunkSize)).filter((h) => h !== null));
    const changedChunks = new Set((await chunkHashes(image, chunkSize)).filter((h): h is string => h !== null && !known.has(h)));
    const sizeBefore = await treeBytes(repository);

    const second = await backup(job);
    expect(second.chunks.new).toBe(changedChunks.size);
    const changedBytes = changed.length * changeSize;
    // At least the new random bytes (incompressible) were stored…
    expect(second.bytesAdded).toBeGreaterThan(changedBytes * 0.95);
    // …at most the changed chunks and a little metadata (chunk map, index, manifest)…
    expect(second.bytesAdded).toBeLessThanOrEqual(changedChunks.size * chunkSize * 1.01 + 256 * 1024);
    // …which is well under the first backup.
    expect(second.bytesAdded).toBeLessThan(first.bytesAdded / 3);
    expect(await treeBytes(repository) - sizeBefore).toBeLessThanOrEqual(second.bytesAdded + 64 * 1024);

    // Both versions restore exactly.
    const restoredNew = join(dir, 'restored-new.img');
    await restore(job, second.snapshot, restoredNew);
    expect(await sameBytes(image, restoredNew)).toBe(true);
    const restoredOld = join(dir, 'restored-old.img');
    await restore(job, first.snapshot, restoredOld);
    expect(await sameBytes(before, restoredOld)).toBe(true);
  });
});
