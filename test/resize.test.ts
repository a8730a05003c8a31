import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  attachLoop,
  backup,
  describeWithLoopDevices,
  expectCleanFailure,
  expectCleanFsck,
  expectCleanGpt,
  expectFilesIntact,
  expectSuccess,
  ext4Bytes,
  filesystemUuid,
  gptDiskGuid,
  gptPartition,
  init,
  makeExt4,
  makeFatImage,
  makeGptDisk,
  parseJson,
  plainFiles,
  randomBytesFor,
  runCli,
  sha256Of,
  sizeOf,
  tempDir,
  useScope,
  useSuiteScope,
  writeJob,
  zeroFile,
  type Ext4Partition,
  type GptPartitionInfo,
  type PlainFile,
} from './utils/index.js';

/*
 * "Restore to a larger disk (`--grow`) … to a smaller disk (`--shrink`, or automatic when the
 * target is smaller)": a GPT disk with an EFI system partition (FAT) and an ext4 root,
 * restored to a disk twice as large and to one of 60 % of its size, checked with the tools a
 * user would trust: sgdisk -v, e2fsck -fn, blkid -p, the files read back.
 */

const SECTOR = 512;
const DISK = 256 * MiB;
const ESP = 32 * MiB;
const ROOT = 200 * MiB;

interface ResizedJson {
  partition?: number;
  filesystem: string;
  oldOffset: number;
  newOffset: number;
  oldSize: number;
  newSize: number;
  tool: string;
}

const byteOffset = (p: GptPartitionInfo) => p.firstSector * SECTOR;
const byteSize = (p: GptPartitionInfo) => (p.lastSector - p.firstSector + 1) * SECTOR;

describeWithLoopDevices('restore --grow and --shrink of a GPT disk with an ESP and ext4', () => {
  const scope = useSuiteScope();
  let dir: string;
  let job: string;
  let disk: string;
  let root: Ext4Partition;
  let espFiles: PlainFile[];
  let original: { diskGuid: string; esp: GptPartitionInfo; root: GptPartitionInfo; rootUuid: string; espUuid: string };

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-resize-');
    espFiles = plainFiles('esp', 3, 96 * 1024);
    const esp = await makeFatImage(dir, 'esp', ESP, espFiles);
    root = await makeExt4(dir, 'root', ROOT, { seed: 1701, randomBytes: 3 * MiB, textBytes: MiB });
    disk = join(dir, 'disk.img');
    await makeGptDisk(disk, DISK, [
      { image: esp, size: ESP, type: 'ef00', name: 'EFI system partition' },
      { image: root.image, size: ROOT, name: 'root' },
    ]);
    job = await writeJob(dir, { source: './disk.img', chunkSize: MiB, extra: { source: { type: 'volume', path: './disk.img', mode: 'used' } } });
    await init(job);
    await backup(job);
    const [espPart, rootPart] = [await gptPartition(disk, 1), await gptPartition(disk, 2)];
    original = {
      diskGuid: await gptDiskGuid(disk),
      esp: espPart,
      root: rootPart,
      rootUuid: await filesystemUuid(disk, byteOffset(rootPart)),
      espUuid: await filesystemUuid(disk, byteOffset(espPart)),
    };
  });

  const restore = (to: string, ...args: string[]) => runCli(['restore', job, 'latest', '--to', to, '--json', ...args], { env: PASSWORD_ENV });

  /** The restored disk's GPT is clean, keeps every GUID and name, the ESP's bytes and the root's files; returns the root partition. */
  async function expectRestoredDisk(image: string): Promise<GptPartitionInfo> {
    await expectCleanGpt(image);
    expect(await gptDiskGuid(image)).toBe(original.diskGuid);
    expect(await gptPartition(image, 1)).toEqual(original.esp);
    expect(await sha256Of(image, byteOffset(original.esp), ESP)).toBe(await sha256Of(disk, byteOffset(original.esp), ESP));
    const rootPart = await gptPartition(image, 2);
    expect({ ...rootPart, lastSector: 0 }).toEqual({ ...original.root, lastSector: 0 });
    expect(await filesystemUuid(image, byteOffset(rootPart))).toBe(original.rootUuid);
    expect(await filesystemUuid(image, byteOffset(original.esp))).toBe(original.espUuid);
    const device = await attachLoop(useScope(), image, { offset: byteOffset(rootPart), sizeLimit: byteSize(rootPart), readOnly: true });
    await expectCleanFsck(device);
    await expectFilesIntact(device, root.tree, root.files, join(dir, 'scratch'));
    // The filesystem fills its partition (to the last whole block).
    expect(byteSize(rootPart) - (await ext4Bytes(device))).toBeLessThan(4096);
    return rootPart;
  }

  test('--grow onto an image file twice as large extends the last partition and its ext4 filesystem to the end', async () => {
    const to = join(dir, 'grown.img');
    const result = await restore(to, '--size', String(2 * DISK), '--grow');
    expectSuccess(result);
    expect(await sizeOf(to)).toBe(2 * DISK);
    const rootPart = await expectRestoredDisk(to);
    // Up to the last MiB boundary before the backup GPT.
    expect(byteOffset(rootPart) + byteSize(rootPart)).toBe(2 * DISK - MiB);
    const resized = parseJson<{ resized: ResizedJson[] }>(result).resized;
    expect(resized).toEqual([{ partition: 2, filesystem: 'ext4', oldOffset: byteOffset(original.root), newOffset: byteOffset(original.root), oldSize: ROOT, newSize: byteSize(rootPart), tool: 'resize2fs' }]);
  });

  test('without --grow, a larger image file keeps the layout (only the backup GPT moves)', async () => {
    const to = join(dir, 'larger.img');
    const result = await restore(to, '--size', String(2 * DISK));
    expectSuccess(result);
    expect(parseJson(result)).not.toHaveProperty('resized');
    await expectCleanGpt(to);
    expect(await gptPartition(to, 2)).toEqual(original.root);
  });

  test('--size at 60 % of the disk shrinks the ext4 partition to fit, GUIDs and UUIDs kept', async () => {
    const to = join(dir, 'shrunk.img');
    const size = 153 * MiB; // 60 % of 256 MiB, to the MiB
    const result = await restore(to, '--size', String(size), '--staging-dir', dir);
    expectSuccess(result);
    expect(await sizeOf(to)).toBe(size);
    const rootPart = await expectRestoredDisk(to);
    expect(byteOffset(rootPart) + byteSize(rootPart)).toBe(size - MiB);
    const resized = parseJson<{ resized: ResizedJson[] }>(result).resized;
    expect(resized).toEqual([{ partition: 2, filesystem: 'ext4', oldOffset: byteOffset(original.root), newOffset: byteOffset(original.root), oldSize: ROOT, newSize: byteSize(rootPart), tool: 'resize2fs' }]);
  });

  test('a target too small for the data is refused with the minimum size, and left as it was; the minimum given fits', async () => {
    const to = join(dir, 'too-small.img');
    const handle = await open(to, 'w');
    await handle.write(randomBytesFor('too-small', 40 * MiB), 0, 40 * MiB, 0);
    await handle.close();
    const before = await sha256Of(to);
    const refusedAt = async (size: number) => {
      const result = await runCli(['restore', job, 'latest', '--to', to, '--size', String(size), '--force', '--staging-dir', dir], { env: PASSWORD_ENV });
      expectCleanFailure(result, 2, /needs at least \d+ bytes/, /nothing was written/);
      expect(await sha256Of(to)).toBe(before);
      return Number(/needs at least (\d+) bytes/.exec(result.stderr)![1]);
    };
    // Refused before restoring: the used data alone does not fit.
    const estimate = await refusedAt(40 * MiB);
    expect(estimate).toBeGreaterThan(40 * MiB);
    // The used data fits, but resize2fs's own minimum does not: refused after staging, the target still untouched.
    const minimum = await refusedAt(estimate);
    expect(minimum).toBeGreaterThan(estimate);
    expect(minimum).toBeLessThan(DISK);
    expect(await sizeOf(to)).toBe(40 * MiB);
    // And the minimum named is enough.
    expectSuccess(await restore(to, '--size', String(minimum), '--force', '--staging-dir', dir));
    await expectRestoredDisk(to);
  });

  test('onto a smaller block device, the shrink is automatic', async () => {
    const backing = join(dir, 'small-device.img');
    await zeroFile(backing, 160 * MiB);
    const device = await attachLoop(useScope(), backing);
    const result = await restore(device, '--force', '--staging-dir', dir);
    expectSuccess(result);
    const resized = parseJson<{ resized: ResizedJson[] }>(result).resized;
    expect(resized.map((r) => [r.partition, r.tool])).toEqual([[2, 'resize2fs']]);
    const rootPart = await expectRestoredDisk(backing);
    expect(byteOffset(rootPart) + byteSize(rootPart)).toBe(160 * MiB - MiB);
  });
});
