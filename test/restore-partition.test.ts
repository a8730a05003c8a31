import { open, stat } from 'node:fs/promises';
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
  expectCleanFsck,
  expectFilesIntact,
  expectSuccess,
  flipByte,
  flushDevice,
  init,
  listPacks,
  makeExt4,
  makeGptDisk,
  parseJson,
  randomBytesFor,
  run,
  runCli,
  sameBytes,
  sha256Of,
  sizeOf,
  tempDir,
  useScope,
  useSuiteScope,
  writeJob,
  type BackupSummary,
  type Ext4Partition,
  type PlacedPartition,
} from './utils/index.js';

/*
 * "`--partition N` restores one partition of a disk snapshot to a partition device or a
 * file, every chunk verified against its keyed hash." The partition device is a loop device
 * over the region of a disk image where that partition lies (`losetup -o --sizelimit`), as
 * /dev/sdb2 is a window onto /dev/sdb.
 */

const DISK = 64 * MiB;

/** A target disk image full of a non-zero pattern, so that every byte a restore writes (or not) shows. */
async function patternedDisk(path: string, size: number): Promise<void> {
  const pattern = randomBytesFor('target-disk', MiB);
  const handle = await open(path, 'w');
  try {
    for (let at = 0; at < size; at += MiB) await handle.write(pattern, 0, MiB, at);
  } finally {
    await handle.close();
  }
}

describeWithLoopDevices('restore --partition onto a partition device', () => {
  const scope = useSuiteScope();
  let dir: string;
  let job: string;
  let parts: Ext4Partition[];
  let placed: PlacedPartition[];
  let made: BackupSummary;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-partition-device-');
    // Partition 1 holds little; partition 2 holds most of the data, so that most of the
    // snapshot's pack is partition 2's chunks.
    parts = [
      await makeExt4(dir, 'p1', 16 * MiB, { seed: 101, randomBytes: 0, textBytes: 256 * 1024 }),
      await makeExt4(dir, 'p2', 40 * MiB, { seed: 102, randomBytes: 10 * MiB, textBytes: 1 * MiB }),
    ];
    const disk = join(dir, 'disk.img');
    placed = await makeGptDisk(disk, DISK, [
      { image: parts[0]!.image, size: 16 * MiB },
      { image: parts[1]!.image, size: 40 * MiB },
    ]);
    job = await writeJob(dir, { source: './disk.img', chunkSize: MiB, extra: { source: { type: 'volume', path: './disk.img', mode: 'used' } } });
    await init(job);
    made = await backup(job);
  });

  /** A disk image full of a pattern, and a loop device over the region of its partition 2. */
  async function partitionDevice(name: string): Promise<{ backing: string; device: string; region: PlacedPartition }> {
    const backing = join(dir, `${name}.img`);
    await patternedDisk(backing, DISK);
    const region = placed[1]!;
    const device = await attachLoop(useScope(), backing, { offset: region.offset, sizeLimit: region.size });
    expect(await sizeOf(device)).toBe(region.size);
    return { backing, device, region };
  }

  test('the partition comes back byte-identical, e2fsck-clean with every file, and nothing outside it is touched', async () => {
    const { backing, device, region } = await partitionDevice('target');
    const outside = async () => [await sha256Of(backing, 0, region.offset), await sha256Of(backing, region.offset + region.size, DISK - region.offset - region.size)];
    const outsideBefore = await outside();

    const refused = await runCli(['restore', job, 'latest', '--partition', '2', '--to', device], { env: PASSWORD_ENV });
    expectCleanFailure(refused, 1, /--force/, new RegExp(escapeRegExp(device)));

    // Unused blocks keep the device's old bytes; the filesystem is complete and clean all the same.
    const kept = await runCli(['restore', job, 'latest', '--partition', '2', '--to', device, '--force', '--json'], { env: PASSWORD_ENV });
    expectSuccess(kept);
    const keptJson = parseJson(kept);
    // The device held other bytes: compared chunk by chunk (delta), nearly everything differs.
    expect(keptJson).toEqual({
      snapshot: made.snapshot,
      destination: device,
      bytesWritten: expect.any(Number),
      bytesFetched: expect.any(Number),
      delta: true,
      bytesUnchanged: expect.any(Number),
      bytesLeftUnused: expect.any(Number),
      partition: 2,
    });
    // On a device only the chunks holding data or zeros are written: at least the used blocks, not the whole partition.
    const shown = parseJson(await runCli(['show', job, 'latest', '--json'], { env: PASSWORD_ENV }));
    const usedBytes: number = shown.layout.partitions.find((p: { index: number }) => p.index === 2).usedBytes;
    expect(keptJson.bytesWritten % MiB, 'whole chunks').toBe(0);
    expect(keptJson.bytesWritten).toBeGreaterThanOrEqual(usedBytes);
    expect(keptJson.bytesWritten).toBeLessThan(region.size);
    await flushDevice(device);
    await expectCleanFsck(device);
    await expectFilesIntact(device, parts[1]!.tree, parts[1]!.files, join(dir, 'scratch'));
    expect(await sameBytes(device, parts[1]!.image)).toBe(false);

    // With --zero-unused, every byte of the partition is as it was.
    const zeroed = await runCli(['restore', job, made.snapshot.slice(0, 8), '--partition', '2', '--to', device, '--force', '--zero-unused', '--json'], { env: PASSWORD_ENV });
    expectSuccess(zeroed);
    // By delta: the data is there already; only unused blocks that were not zeros are written.
    const zeroedJson = parseJson(zeroed);
    expect(zeroedJson).toMatchObject({ snapshot: made.snapshot, destination: device, delta: true, bytesFetched: 0, partition: 2 });
    expect(zeroedJson.bytesLeftUnused).toBeUndefined();
    expect(zeroedJson.bytesWritten).toBeGreaterThan(0);
    expect(zeroedJson.bytesWritten).toBeLessThanOrEqual(keptJson.bytesLeftUnused);
    await flushDevice(device);
    expect(await sameBytes(device, parts[1]!.image)).toBe(true);
    await expectCleanFsck(device);

    expect(await outside(), 'the rest of the disk is untouched').toEqual(outsideBefore);
  });

  test('damaged data in the partition\'s pack: exit 13, a message naming the damaged pack, no claim of success', async () => {
    const copy = join(dir, 'damaged-repo');
    await run('cp', ['-a', join(dir, 'repo'), copy]);
    const damagedJob = await writeJob(dir, { source: './disk.img', repository: './damaged-repo', extra: { source: { type: 'volume', path: './disk.img', mode: 'used' } } }, 'damaged.json');
    const packs = await listPacks(copy);
    expect(packs, 'one pack holds the whole snapshot').toHaveLength(1);
    const pack = packs[0]!;
    // The middle of the pack is partition 2's random data: most of what the pack holds.
    await flipByte(join(copy, pack), Math.floor((await stat(join(copy, pack))).size / 2));

    const { device } = await partitionDevice('damaged-target');
    for (const json of [false, true]) {
      const result = await runCli(['restore', damagedJob, 'latest', '--partition', '2', '--to', device, '--force', ...(json ? ['--json'] : [])], { env: PASSWORD_ENV });
      expect(result.exitCode, result.stderr).toBe(13);
      expect(result.stdout).toBe('');
      const message = json ? JSON.parse(result.stderr).error.message : result.stderr;
      expect(message).toMatch(/damaged/);
      expect(message).toContain(pack.split('/').pop()!.slice(0, 12));
      if (!json) expectCleanFailure(result, 13, /damaged/);
    }
    // The flipped byte is in partition 2's data, not in what partition 1 or the chunk list needs.
    const other = join(dir, 'partition-1-from-damaged.img');
    expectSuccess(await runCli(['restore', damagedJob, 'latest', '--partition', '1', '--to', other], { env: PASSWORD_ENV }));
    await expectCleanFsck(other);
  });
});
