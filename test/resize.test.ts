import { open, readdir, readFile } from 'node:fs/promises';
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
  expectNtfsFiles,
  expectSuccess,
  ext4Bytes,
  filesystemUuid,
  gptDiskGuid,
  gptPartition,
  init,
  makeExt4,
  makeFatImage,
  makeBtrfsImage,
  makeGptDisk,
  makeNtfsImage,
  mountDevice,
  parseJson,
  plainFiles,
  randomBytesFor,
  run,
  runCli,
  sha256Of,
  sizeOf,
  tempDir,
  useScope,
  useSuiteScope,
  writeFileTree,
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
  /** Staging folders a shrink left in `dir` (its --staging-dir): none, whether it worked or was refused. */
  const stagingLeftovers = async () => (await readdir(dir)).filter((name) => name.startsWith('cairn-shrink-'));

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
    expect(await stagingLeftovers()).toEqual([]);
    // --grow onto a smaller target is a contradiction, refused before anything is written.
    const contradiction = join(dir, 'grow-smaller.img');
    expectCleanFailure(await runCli(['restore', job, 'latest', '--to', contradiction, '--size', String(size), '--grow'], { env: PASSWORD_ENV }), 2, /--grow: .* is smaller than the image/);
    await expect(sizeOf(contradiction)).rejects.toThrow();
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
    expect(await stagingLeftovers()).toEqual([]);
    // And the minimum named is enough.
    expectSuccess(await restore(to, '--size', String(minimum), '--force', '--staging-dir', dir));
    await expectRestoredDisk(to);
  });

  test('--grow onto a larger block device', async () => {
    const backing = join(dir, 'large-device.img');
    await zeroFile(backing, 384 * MiB);
    const device = await attachLoop(useScope(), backing);
    const result = await restore(device, '--force', '--grow');
    expectSuccess(result);
    expect(parseJson<{ resized: ResizedJson[] }>(result).resized.map((r) => [r.partition, r.tool])).toEqual([[2, 'resize2fs']]);
    const rootPart = await expectRestoredDisk(backing);
    expect(byteOffset(rootPart) + byteSize(rootPart)).toBe(384 * MiB - MiB);
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

describeWithLoopDevices('restore --shrink of NTFS and Btrfs disks', () => {
  const scope = useSuiteScope();
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-resize-fs-');
  });

  async function backUp(disk: string, name: string, mode: 'used' | 'exact'): Promise<string> {
    const job = await writeJob(dir, { name, source: disk, repository: `./repo-${name}`, chunkSize: MiB, extra: { source: { type: 'volume', path: disk, mode } } }, `${name}.json`);
    await init(job);
    await backup(job);
    return job;
  }

  async function restoreTo(job: string, to: string, size: number): Promise<ResizedJson[]> {
    const result = await runCli(['restore', job, 'latest', '--to', to, '--size', String(size), '--json', '--staging-dir', dir], { env: PASSWORD_ENV });
    expectSuccess(result);
    expect(await sizeOf(to)).toBe(size);
    await expectCleanGpt(to);
    return parseJson<{ resized: ResizedJson[] }>(result).resized;
  }

  test('an NTFS partition is shrunk with ntfsresize, and the ext4 partition after it moved down', async () => {
    const ntfsFiles = plainFiles('ntfs', 4, 512 * 1024);
    const ntfs = await makeNtfsImage(dir, 'ntfs', 160 * MiB, ntfsFiles);
    const data = await makeExt4(dir, 'data', 48 * MiB, { seed: 77, randomBytes: 2 * MiB, textBytes: 256 * 1024 });
    const disk = join(dir, 'ntfs-disk.img');
    await makeGptDisk(disk, DISK, [
      { image: ntfs, size: 160 * MiB, type: '0700', name: 'Windows data' },
      { image: data.image, size: 48 * MiB, name: 'linux data' },
    ]);
    const before = { p1: await gptPartition(disk, 1), p2: await gptPartition(disk, 2), diskGuid: await gptDiskGuid(disk) };
    const uuids = [await filesystemUuid(disk, byteOffset(before.p1)), await filesystemUuid(disk, byteOffset(before.p2))];
    const job = await backUp(disk, 'ntfs', 'used');

    const to = join(dir, 'ntfs-shrunk.img');
    const resized = await restoreTo(job, to, 153 * MiB);
    const after = { p1: await gptPartition(to, 1), p2: await gptPartition(to, 2), diskGuid: await gptDiskGuid(to) };
    expect(resized.map((r) => [r.partition, r.filesystem, r.tool])).toEqual([
      [1, 'ntfs', 'ntfsresize'],
      [2, 'ext4', 'moved'],
    ]);
    expect(after.diskGuid).toBe(before.diskGuid);
    for (const key of ['p1', 'p2'] as const) expect([after[key].guid, after[key].typeGuid, after[key].name]).toEqual([before[key].guid, before[key].typeGuid, before[key].name]);
    expect(byteSize(after.p1)).toBeLessThan(byteSize(before.p1));
    expect(byteSize(after.p2)).toBe(48 * MiB);
    expect(byteOffset(after.p2)).toBe(byteOffset(after.p1) + byteSize(after.p1));
    expect([await filesystemUuid(to, byteOffset(after.p1)), await filesystemUuid(to, byteOffset(after.p2))]).toEqual(uuids);

    const scope = useScope();
    const ntfsDevice = await attachLoop(scope, to, { offset: byteOffset(after.p1), sizeLimit: byteSize(after.p1), readOnly: true });
    // ntfsresize --check: the NTFS metadata is consistent, as ntfsresize itself needs it.
    await run('ntfsresize', ['--check', '-f', '-f', ntfsDevice]);
    await expectNtfsFiles(ntfsDevice, ntfsFiles, join(dir, 'scratch'));
    const dataDevice = await attachLoop(scope, to, { offset: byteOffset(after.p2), sizeLimit: byteSize(after.p2), readOnly: true });
    await expectCleanFsck(dataDevice);
    await expectFilesIntact(dataDevice, data.tree, data.files, join(dir, 'scratch'));
  });

  test('a Btrfs partition (imaged exactly) is shrunk with btrfs filesystem resize', async () => {
    // The kernel resizes no Btrfs device below 256 MiB: a larger disk (sparse), shrunk to 60 %.
    const btrfsDisk = 640 * MiB;
    const target = 384 * MiB;
    const tree = join(dir, 'btrfs-tree');
    const files = await writeFileTree(tree, { seed: 4242, randomBytes: 3 * MiB, textBytes: MiB });
    const btrfs = await makeBtrfsImage(dir, 'btrfs', 600 * MiB, tree);
    const disk = join(dir, 'btrfs-disk.img');
    await makeGptDisk(disk, btrfsDisk, [{ image: btrfs, size: 600 * MiB, name: 'fedora' }]);
    const before = await gptPartition(disk, 1);
    const uuid = await filesystemUuid(disk, byteOffset(before));
    const job = await backUp(disk, 'btrfs', 'exact');

    const to = join(dir, 'btrfs-shrunk.img');
    const resized = await restoreTo(job, to, target);
    const after = await gptPartition(to, 1);
    expect(resized.map((r) => [r.partition, r.filesystem, r.tool])).toEqual([[1, 'btrfs', 'btrfs filesystem resize']]);
    expect([after.guid, after.typeGuid, after.name, after.firstSector]).toEqual([before.guid, before.typeGuid, before.name, before.firstSector]);
    expect(byteOffset(after) + byteSize(after)).toBe(target - MiB);
    expect(await filesystemUuid(to, byteOffset(after))).toBe(uuid);

    const scope = useScope();
    const device = await attachLoop(scope, to, { offset: byteOffset(after), sizeLimit: byteSize(after) });
    await run('btrfs', ['check', '--readonly', device]);
    // The filesystem's device size is the partition's.
    expect(await run('btrfs', ['inspect-internal', 'dump-super', device])).toMatch(new RegExp(`dev_item.total_bytes\\s+${byteSize(after)}\\b`));
    const mountPoint = join(dir, 'btrfs-mnt');
    await mountDevice(scope, device, mountPoint, ['ro']);
    for (const file of files) expect((await readFile(join(mountPoint, file.path))).equals(await readFile(join(tree, file.path))), file.path).toBe(true);
  });
});

describeWithLoopDevices('restore --grow and --shrink: XFS, FAT, bare filesystems and MBR disks', () => {
  const scope = useSuiteScope();
  let dir: string;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-resize-more-');
  });

  async function backUp(image: string, name: string): Promise<string> {
    const job = await writeJob(dir, { name, source: image, repository: `./repo-${name}`, chunkSize: MiB, extra: { source: { type: 'volume', path: image, mode: 'used' } } }, `${name}.json`);
    await init(job);
    await backup(job);
    return job;
  }

  const restore = (job: string, to: string, ...args: string[]) => runCli(['restore', job, 'latest', '--to', to, ...args, '--staging-dir', dir], { env: PASSWORD_ENV });

  test('XFS grows with xfs_growfs on a temporary mount; a smaller target is refused (XFS cannot shrink) with the size it needs', async () => {
    // 300 MiB: the smallest XFS mkfs.xfs makes.
    const xfs = join(dir, 'xfs.img');
    await zeroFile(xfs, 300 * MiB);
    await run('mkfs.xfs', ['-q', '-f', xfs]);
    const files = await writeFileTree(join(dir, 'xfs-tree'), { seed: 31, randomBytes: 2 * MiB, textBytes: 512 * 1024 });
    const mountScope = useScope();
    const source = await attachLoop(mountScope, xfs);
    await mountDevice(mountScope, source, join(dir, 'xfs-mnt'));
    await run('cp', ['-a', `${join(dir, 'xfs-tree')}/.`, join(dir, 'xfs-mnt')]);
    await mountScope.dispose();
    const disk = join(dir, 'xfs-disk.img');
    await makeGptDisk(disk, 320 * MiB, [{ image: xfs, size: 300 * MiB, name: 'rhel root' }]);
    const uuid = await filesystemUuid(disk, MiB);
    const job = await backUp(disk, 'xfs');

    const grown = join(dir, 'xfs-grown.img');
    const result = await restore(job, grown, '--size', String(640 * MiB), '--grow', '--json');
    expectSuccess(result);
    expect(parseJson<{ resized: ResizedJson[] }>(result).resized.map((r) => [r.partition, r.filesystem, r.tool])).toEqual([[1, 'xfs', 'xfs_growfs']]);
    await expectCleanGpt(grown);
    const part = await gptPartition(grown, 1);
    expect(byteOffset(part) + byteSize(part)).toBe(640 * MiB - MiB);
    expect(await filesystemUuid(grown, byteOffset(part))).toBe(uuid);
    const checkScope = useScope();
    const device = await attachLoop(checkScope, grown, { offset: byteOffset(part), sizeLimit: byteSize(part) });
    await run('xfs_repair', ['-n', device]);
    const info = await run('xfs_db', ['-r', '-c', 'sb 0', '-c', 'p blocksize dblocks', device]);
    const [blockSize, blocks] = [/blocksize = (\d+)/, /dblocks = (\d+)/].map((r) => Number(r.exec(info)![1]));
    expect(byteSize(part) - blockSize! * blocks!).toBeLessThan(blockSize!);
    const mountPoint = join(dir, 'xfs-check');
    await mountDevice(checkScope, device, mountPoint, ['ro']);
    for (const file of files) expect((await readFile(join(mountPoint, file.path))).equals(await readFile(join(dir, 'xfs-tree', file.path))), file.path).toBe(true);
    await checkScope.dispose();

    const small = join(dir, 'xfs-small.img');
    const refused = await restore(job, small, '--size', String(200 * MiB));
    expectCleanFailure(refused, 2, /XFS cannot shrink/, /needs at least \d+ bytes/, /nothing was written/);
    const minimum = Number(/needs at least (\d+) bytes/.exec(refused.stderr)![1]);
    expect(minimum).toBe(302 * MiB);
    await expect(sizeOf(small)).rejects.toThrow();
  });

  test('--grow of a FAT partition is refused before anything is written', async () => {
    const fat = await makeFatImage(dir, 'fat-last', 48 * MiB, plainFiles('fat-last', 2, 10_000));
    const disk = join(dir, 'fat-disk.img');
    await makeGptDisk(disk, 64 * MiB, [{ image: fat, size: 48 * MiB, type: 'ef00', name: 'ESP' }]);
    const job = await backUp(disk, 'fat');
    const to = join(dir, 'fat-grown.img');
    expectCleanFailure(await restore(job, to, '--size', String(128 * MiB), '--grow'), 2, /partition 1 \(fat\d+\) cannot be grown/, /no tool here that grows FAT/);
    await expect(sizeOf(to)).rejects.toThrow();
  });

  test('a bare ext4 filesystem grows to the larger image, and --shrink without --size makes the smallest image', async () => {
    const bare = await makeExt4(dir, 'bare', 128 * MiB, { seed: 5, randomBytes: 2 * MiB, textBytes: 256 * 1024 });
    const uuid = await filesystemUuid(bare.image);
    const job = await backUp(bare.image, 'bare');

    const grown = join(dir, 'bare-grown.img');
    const growResult = await restore(job, grown, '--size', String(256 * MiB), '--grow', '--json');
    expectSuccess(growResult);
    expect(parseJson<{ resized: ResizedJson[] }>(growResult).resized).toEqual([{ filesystem: 'ext4', oldOffset: 0, newOffset: 0, oldSize: 128 * MiB, newSize: 256 * MiB, tool: 'resize2fs' }]);
    await expectCleanFsck(grown);
    expect(await ext4Bytes(grown)).toBe(256 * MiB);
    await expectFilesIntact(grown, bare.tree, bare.files, join(dir, 'scratch'));

    const smallest = join(dir, 'bare-smallest.img');
    const shrinkResult = await restore(job, smallest, '--shrink', '--json');
    expectSuccess(shrinkResult);
    const size = await sizeOf(smallest);
    expect(size).toBeLessThan(128 * MiB);
    expect(parseJson<{ resized: ResizedJson[] }>(shrinkResult).resized[0]!.newSize).toBe(size);
    await expectCleanFsck(smallest);
    expect(await ext4Bytes(smallest)).toBe(size);
    expect(await filesystemUuid(smallest)).toBe(uuid);
    await expectFilesIntact(smallest, bare.tree, bare.files, join(dir, 'scratch'));
  });

  test('an MBR disk: the last primary partition grows to the end, and shrinks to fit', async () => {
    const part = await makeExt4(dir, 'mbr-root', 96 * MiB, { seed: 9, randomBytes: 2 * MiB, textBytes: 256 * 1024 });
    const disk = join(dir, 'mbr-disk.img');
    await zeroFile(disk, 128 * MiB);
    await run('sh', ['-c', 'printf "label: dos\\nlabel-id: 0x1234abcd\\nstart=2048, size=196608, type=83, bootable\\n" | sfdisk -q "$1"', 'sh', disk]);
    await run('dd', [`if=${part.image}`, `of=${disk}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none']);
    const job = await backUp(disk, 'mbr');

    const check = async (image: string, size: number) => {
      const dump = await run('sfdisk', ['-d', image]);
      expect(dump).toMatch(/label-id: 0x1234abcd/);
      const match = /start=\s*2048, size=\s*(\d+), type=83, bootable/.exec(dump);
      expect(match, dump).not.toBeNull();
      const bytes = Number(match![1]) * SECTOR;
      expect(MiB + bytes).toBe(size);
      const device = await attachLoop(useScope(), image, { offset: MiB, sizeLimit: bytes, readOnly: true });
      await expectCleanFsck(device);
      expect(await ext4Bytes(device)).toBe(bytes);
      await expectFilesIntact(device, part.tree, part.files, join(dir, 'scratch'));
    };
    const grown = join(dir, 'mbr-grown.img');
    expectSuccess(await restore(job, grown, '--size', String(256 * MiB), '--grow'));
    await check(grown, 256 * MiB);
    const shrunk = join(dir, 'mbr-shrunk.img');
    expectSuccess(await restore(job, shrunk, '--size', String(80 * MiB)));
    await check(shrunk, 80 * MiB);
  });
});
