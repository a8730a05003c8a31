import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  cairnOk,
  expectCleanFailure,
  expectCleanFsck,
  expectFilesIntact,
  extractRegion,
  init,
  makeExt4,
  makeGptDisk,
  makeVolume,
  parseJson,
  restore,
  runCli,
  sameBytes,
  snapshots,
  tempDir,
  useSuiteScope,
  writeJob,
  type BackupSummary,
  type Ext4Partition,
  type PlacedPartition,
} from './utils/index.js';

/*
 * Job settings of the volume source and the chunker that the README promises: per-partition
 * mode overrides (`source.partitions`) and the range of `chunkSize`.
 */

describe('source.partitions overrides the mode of one partition', () => {
  const scope = useSuiteScope();
  const PARTITION = 24 * MiB;
  let dir: string;
  let disk: string;
  let job: string;
  let parts: Ext4Partition[];
  let placed: PlacedPartition[];
  let summary: BackupSummary;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-partitions-');
    // Both filesystems have stale random bytes in their free space: `used` leaves them out, `exact` keeps them.
    parts = [
      await makeExt4(dir, 'p1', PARTITION, { seed: 71, randomBytes: 2 * MiB, textBytes: 1 * MiB }, { stale: true }),
      await makeExt4(dir, 'p2', PARTITION, { seed: 72, randomBytes: 2 * MiB, textBytes: 1 * MiB }, { stale: true }),
    ];
    disk = join(dir, 'disk.img');
    placed = await makeGptDisk(disk, 64 * MiB, parts.map((p) => ({ image: p.image, size: PARTITION })));
    job = await writeJob(dir, { source: disk, extra: { source: { type: 'volume', path: disk, mode: 'used', partitions: { '2': { mode: 'exact' } } } } });
    await init(job);
    summary = await backup(job);
  });

  test('show --json reports partition 2 as exact and partition 1 as used', async () => {
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.mode).toBe('used');
    expect(shown.layout.partitions.map((p: any) => [p.index, p.offset, p.size, p.filesystem, p.mode])).toEqual([
      [1, placed[0]!.offset, PARTITION, 'ext4', 'used'],
      [2, placed[1]!.offset, PARTITION, 'ext4', 'exact'],
    ]);
    const text = (await cairnOk('show', job, ['latest'])).stdout;
    expect(text).toMatch(/^\s+1 .*ext4\s+used/m);
    expect(text).toMatch(/^\s+2 .*ext4\s+exact/m);
  });

  test('partition 2 is read whole, partition 1 only where it is used', () => {
    // All of partition 2 plus partition 1's used blocks (files, metadata) and the GPT areas.
    expect(summary.bytesRead).toBeGreaterThanOrEqual(PARTITION + 3 * MiB);
    expect(summary.bytesRead).toBeLessThan(2 * PARTITION);
  });

  test('the restored disk checks clean and holds every file; partition 2 keeps even its free space', async () => {
    const restored = join(dir, 'restored.img');
    await restore(job, 'latest', restored);
    for (const [i, part] of placed.entries()) {
      const region = join(dir, `restored-p${part.index}.img`);
      await extractRegion(restored, part.offset, part.size, region);
      await expectCleanFsck(region);
      await expectFilesIntact(region, parts[i]!.tree, parts[i]!.files, join(dir, 'scratch'));
    }
    // Exact: byte for byte, stale free space included. Used: the free space came back as zeros.
    expect(await sameBytes(join(dir, 'restored-p2.img'), parts[1]!.image)).toBe(true);
    expect(await sameBytes(join(dir, 'restored-p1.img'), parts[0]!.image)).toBe(false);

    const alone = join(dir, 'partition-2.img');
    await cairnOk('restore', job, ['latest', '--partition', '2', '--to', alone]);
    expect(await sameBytes(alone, parts[1]!.image)).toBe(true);
  });
});

describe('chunkSize', () => {
  const scope = useSuiteScope();
  const SIZE = 32 * MiB;
  let dir: string;
  let image: string;
  let repository: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-chunk-size-');
    ({ image } = await makeVolume(dir, 'disk', SIZE, { seed: 73, randomBytes: 3 * MiB, textBytes: 2 * MiB, zeroBytes: 1 * MiB }));
    repository = join(dir, 'repo');
    await init(await writeJob(dir, { source: image }));
  });

  test.each([
    ['64 KiB', 64 * 1024],
    ['16 MiB', 16 * MiB],
  ])('%s is accepted, used and recorded in the snapshot', async (name, chunkSize) => {
    const job = await writeJob(dir, { source: image, chunkSize }, `job-${chunkSize}.json`);
    expect(parseJson(await runCli(['validate', job, '--json']))).toEqual({ valid: true, job });
    const result = await backup(job);
    const { data, zero, unused } = result.chunks;
    expect(data + zero + unused, `${name} chunks`).toBe(SIZE / chunkSize);

    const shown = parseJson(await cairnOk('show', job, [result.snapshot, '--json']));
    expect(shown.chunkSize).toBe(chunkSize);
    expect(shown.chunkCount).toBe(SIZE / chunkSize);
    expect(await snapshots(job)).toContainEqual(expect.objectContaining({ id: result.snapshot }));

    const restored = join(dir, `restored-${chunkSize}.img`);
    await restore(job, result.snapshot, restored);
    expect(await sameBytes(image, restored)).toBe(true);
  });

  test.each([
    ['32 KiB (below the range)', 32 * 1024],
    ['32 MiB (above the range)', 32 * MiB],
    ['192 KiB (not a power of two)', 3 * 64 * 1024],
  ])('%s is refused (exit 2) with a message naming /chunkSize, before anything is written', async (_name, chunkSize) => {
    const job = await writeJob(dir, { source: image, chunkSize }, `bad-${chunkSize}.json`);
    const before = (await readdir(join(repository, 'snapshots'))).sort();
    for (const command of ['validate', 'backup']) {
      expectCleanFailure(await runCli([command, job], { env: PASSWORD_ENV }), 2, /\/chunkSize\b/, new RegExp(String(chunkSize)));
    }
    expect((await readdir(join(repository, 'snapshots'))).sort()).toEqual(before);
  });
});
