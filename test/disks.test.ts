import { createHash } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  SECTOR,
  attachLoop,
  backup,
  cairnOk,
  describeWithLoopDevices,
  expectCleanFsck,
  expectFilesIntact,
  extractRegion,
  fillWithStaleData,
  init,
  makeExt4,
  makeGptDisk,
  parseJson,
  partitionTable,
  placePartition,
  run,
  runCommand,
  runForBytes,
  restore,
  sameBytes,
  tempDir,
  useScope,
  useSuiteScope,
  useTempDir,
  writeJob,
  zeroFile,
  type Ext4Partition,
  type PlacedPartition,
  type TreeFile,
} from './utils/index.js';

/*
 * Whole disks and filesystems made with the real tools, with stale random data in their free
 * space first, imaged in `used` mode: the restored filesystems must check clean and hold every
 * file, the partition table must come back as it was, and free space must not be stored.
 */

/** An ext4 image whose free space holds stale random data. */
function makeStaleExt4(dir: string, size: number, seed: number): Promise<Ext4Partition> {
  return makeExt4(dir, `ext4-${seed}`, size, { seed, randomBytes: 5 * MiB, textBytes: 3 * MiB, zeroBytes: MiB }, { stale: true });
}

async function makeFat32(dir: string, size: number, tree: string, files: TreeFile[]): Promise<string> {
  const image = join(dir, 'fat32.img');
  await fillWithStaleData(image, size);
  await run('mkfs.vfat', ['-F', '32', '-n', 'CAIRNFAT', image]);
  await run('mmd', ['-i', image, '::/data']);
  for (const file of files.slice(0, 6)) await run('mcopy', ['-i', image, join(tree, file.path), `::/data/${file.path.replaceAll('/', '_')}`]);
  return image;
}

async function makeNtfs(dir: string, size: number, tree: string, files: TreeFile[]): Promise<string> {
  const image = join(dir, 'ntfs.img');
  await fillWithStaleData(image, size);
  await run('mkntfs', ['-q', '-F', '-Q', '-L', 'CAIRNNTFS', image]);
  for (const file of files.slice(0, 6)) await run('ntfscp', ['-q', image, join(tree, file.path), file.path.replaceAll('/', '_')]);
  return image;
}

async function sha(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function filesystemHolds(kind: 'ext4' | 'vfat' | 'ntfs', image: string, tree: string, files: TreeFile[], dir: string): Promise<void> {
  const out = join(dir, `readback-${kind}`);
  if (kind === 'ext4') return expectFilesIntact(image, tree, files, out);
  for (const file of files.slice(0, 6)) {
    if (kind === 'vfat') await run('mcopy', ['-o', '-i', image, `::/data/${file.path.replaceAll('/', '_')}`, out]);
    if (kind === 'ntfs') await writeFile(out, await runForBytes('ntfscat', [image, file.path.replaceAll('/', '_')]));
    expect(await sha(out), `${kind}: ${file.path}`).toBe(await sha(join(tree, file.path)));
  }
}

async function partitionImage(job: string, snapshot: string, index: number, dir: string): Promise<string> {
  const out = join(dir, `partition-${index}.img`);
  await cairnOk('restore', job, [snapshot, '--partition', String(index), '--to', out, '--force']);
  return out;
}

describe('a GPT disk with ext4, FAT32 and NTFS partitions, imaged in used mode', () => {
  const scope = useSuiteScope();
  let dir: string;
  let disk: string;
  let job: string;
  let ext4: Ext4Partition;
  let partitions: PlacedPartition[];
  let first: Awaited<ReturnType<typeof backup>>;
  const DISK = 256 * MiB;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-gpt-');
    ext4 = await makeStaleExt4(dir, 96 * MiB, 31);
    const fat = await makeFat32(dir, 64 * MiB, ext4.tree, ext4.files);
    const ntfs = await makeNtfs(dir, 48 * MiB, ext4.tree, ext4.files);
    disk = join(dir, 'disk.img');
    partitions = await makeGptDisk(
      disk,
      DISK,
      [
        { image: ext4.image, size: 96 * MiB, type: '8300', name: 'root' },
        { image: fat, size: 64 * MiB, type: '0700' },
        { image: ntfs, size: 48 * MiB, type: '0700' },
      ],
      'stale',
    );
    job = await writeJob(dir, { source: disk, extra: { source: { type: 'volume', path: disk, mode: 'used' } } });
    await init(job);
    first = await backup(job);
  }, 300_000);

  test('the snapshot records the layout: partitions, filesystems, used bytes', async () => {
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.partitionTable.type).toBe('gpt');
    expect(shown.layout.partitions.map((p: any) => [p.index, p.offset, p.filesystem, p.mode])).toEqual([
      [1, partitions[0]!.offset, 'ext4', 'used'],
      [2, partitions[1]!.offset, 'fat32', 'used'],
      [3, partitions[2]!.offset, 'ntfs', 'used'],
    ]);
    for (const p of shown.layout.partitions) expect(p.usedBytes).toBeLessThan(p.size / 3);
    const text = (await cairnOk('show', job, ['latest'])).stdout;
    expect(text).toMatch(/ext4\s+used/);
  });

  test('stores about the used data, not the stale free space', () => {
    const used = 9 * MiB + 2 * 6 * MiB; // the files on ext4, and up to 6 of them on FAT32 and NTFS each
    expect(first.bytesAdded).toBeLessThan(used + 16 * MiB); // plus filesystem metadata and the GPT areas
    expect(first.bytesRead).toBeLessThan(DISK / 3);
  });

  test('restores a disk whose partition table and filesystems check clean and hold every file', async () => {
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out, { force: true });
    expect(await partitionTable(out)).toBe(await partitionTable(disk));
    expect((await run('sgdisk', ['-v', out]))).toMatch(/No problems found/);
    const p1 = await partitionImage(job, 'latest', 1, dir);
    await expectCleanFsck(p1);
    await filesystemHolds('ext4', p1, ext4.tree, ext4.files, dir);
    const p2 = await partitionImage(job, 'latest', 2, dir);
    expect((await runCommand('fsck.vfat', ['-n', p2])).exitCode).toBe(0);
    await filesystemHolds('vfat', p2, ext4.tree, ext4.files, dir);
    const p3 = await partitionImage(job, 'latest', 3, dir);
    expect((await runCommand('ntfsfix', ['-n', p3])).exitCode).toBe(0);
    await filesystemHolds('ntfs', p3, ext4.tree, ext4.files, dir);
  });

  test('restores onto a larger image file, moving the backup GPT to the new end', async () => {
    const bigger = join(dir, 'bigger.img');
    await cairnOk('restore', job, ['latest', '--to', bigger, '--size', '384M', '--force']);
    const verify = await run('sgdisk', ['-v', bigger]);
    expect(verify).toMatch(/No problems found/);
    expect(await partitionTable(bigger)).toContain('last-lba: 786398');
  });

  test('an incremental backup of the unchanged disk adds almost nothing', async () => {
    const second = await backup(job);
    expect(second.bytesAdded).toBeLessThan(first.bytesAdded / 100);
  });

  describeWithLoopDevices('restored onto loop block devices', () => {
    test('onto a larger disk, the backup GPT is moved to the new end', async () => {
      const deviceFile = join(dir, 'bigger-device.img');
      await zeroFile(deviceFile, 320 * MiB);
      const device = await attachLoop(useScope(), deviceFile);
      await cairnOk('restore', job, ['latest', '--to', device, '--force']);
      expect(await run('sgdisk', ['-v', device])).toMatch(/No problems found/);
    });

    test('unused blocks are left as they are unless --zero-unused', async () => {
      const reference = join(dir, 'reference.img');
      await restore(job, 'latest', reference, { force: true });
      const deviceFile = join(dir, 'device.img');
      await writeFile(deviceFile, Buffer.alloc(DISK, 0xff));
      const device = await attachLoop(useScope(), deviceFile);
      await cairnOk('restore', job, ['latest', '--to', device, '--force']);
      expect(await sameBytes(device, reference)).toBe(false); // 0xff survives in unused blocks
      const p1 = join(dir, 'device-p1.img');
      await extractRegion(device, partitions[0]!.offset, partitions[0]!.size, p1);
      await expectCleanFsck(p1);
      await cairnOk('restore', job, ['latest', '--to', device, '--force', '--zero-unused']);
      expect(await sameBytes(device, reference)).toBe(true);
    });
  });
});

describe('an MBR disk with primary, extended and logical partitions', () => {
  test('round-trips, with the table and the logical ext4 partition intact', async () => {
    const dir = await useTempDir('cairn-mbr-');
    const ext4 = await makeStaleExt4(dir, 48 * MiB, 41);
    const disk = join(dir, 'mbr.img');
    await fillWithStaleData(disk, 128 * MiB);
    const script = 'label: dos\nstart=2048, size=32768, type=c\nstart=36864, type=5\nstart=38912, size=98304, type=83\n';
    await run('sfdisk', ['-q', disk], { input: script });
    await placePartition(disk, ext4.image, 38912 * SECTOR);
    const job = await writeJob(dir, { source: disk, extra: { source: { type: 'volume', path: disk, mode: 'used' } } });
    await init(job);
    const summary = await backup(job);
    expect(summary.bytesAdded).toBeLessThan(48 * MiB); // the stale FAT partition is imaged exactly (no filesystem), the ext4 one by its bitmaps
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.partitions.map((p: any) => [p.index, p.filesystem ?? null, p.mode])).toEqual([
      [1, null, 'exact'],
      [5, 'ext4', 'used'],
    ]);
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out);
    expect(await partitionTable(out)).toBe(await partitionTable(disk));
    const p5 = await partitionImage(job, 'latest', 5, dir);
    await expectCleanFsck(p5);
    await filesystemHolds('ext4', p5, ext4.tree, ext4.files, dir);
  });
});

describe('damaged or hostile metadata', () => {
  test('an ext4 group whose bitmap points past the end makes the volume imaged exactly, and the snapshot says why', async () => {
    const dir = await useTempDir('cairn-hostile-');
    const ext4 = await makeStaleExt4(dir, 32 * MiB, 51);
    await run('debugfs', ['-w', '-R', 'set_bg 1 block_bitmap 99999999', ext4.image]);
    // debugfs cannot recompute the descriptor checksum here; either check (range or checksum) must refuse the map.
    const job = await writeJob(dir, { source: ext4.image, extra: { source: { type: 'volume', path: ext4.image, mode: 'used' } } });
    await init(job);
    const result = await cairnOk('backup', job, ['--json']);
    expect(result.stderr).toMatch(/ext4: group 1 .*; imaged exactly/);
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.mode).toBe('exact');
    expect(shown.layout.note).toMatch(/^ext4: group 1 /);
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out);
    expect(await sameBytes(out, ext4.image)).toBe(true);
  });

  test('a truncated FAT boot sector falls back to exact imaging', async () => {
    const dir = await useTempDir('cairn-hostile-fat-');
    const image = join(dir, 'fat.img');
    await fillWithStaleData(image, 16 * MiB);
    await run('mkfs.vfat', ['-F', '16', image]);
    const handle = await open(image, 'r+');
    await handle.write(Buffer.alloc(2), 0, 2, 22); // sectors per FAT = 0
    await handle.close();
    const job = await writeJob(dir, { source: image, extra: { source: { type: 'volume', path: image, mode: 'used' } } });
    await init(job);
    await backup(job);
    const shown = parseJson(await cairnOk('show', job, ['latest', '--json']));
    expect(shown.layout.mode).toBe('exact');
    const out = join(dir, 'restored.img');
    await restore(job, 'latest', out);
    expect(await sameBytes(out, image)).toBe(true);
  });
});
