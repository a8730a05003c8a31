import { realpath, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  addPartitionDevices,
  attachLoop,
  backup,
  expectCleanFailure,
  escapeRegExp,
  expectSuccess,
  flushDevice,
  init,
  describeWithLoopDevices,
  makeGptDisk,
  makeVolume,
  mountDevice,
  run,
  runCli,
  sameBytes,
  sha256Of,
  tempDir,
  unmount,
  useScope,
  useSuiteScope,
  writeFileTree,
  writeJob,
  type Scope,
} from './utils/index.js';

/*
 * Restoring a disk image onto a disk while one of its partitions, or a device built on it, is
 * mounted would write under a live filesystem. For loop devices mapped over part of a disk the
 * kernel does not even refuse the exclusive open, so cairn has to find them itself. Partitions
 * are made the three ways this kernel allows: partition devices added with partx, a loop
 * device over the disk's loop device, and a loop device over the same image file at an offset.
 */

const DISK_SIZE = 48 * MiB;
const PARTITION_OFFSET = 1 * MiB;
const PARTITION_SIZE = 32 * MiB;

/** A GPT disk image with one Linux partition, at PARTITION_OFFSET, holding the ext4 image `partition`. */
async function makeDisk(path: string, partition: string): Promise<void> {
  const [placed] = await makeGptDisk(path, DISK_SIZE, [{ image: partition, size: PARTITION_SIZE }]);
  if (placed!.offset !== PARTITION_OFFSET) throw new Error(`the partition starts at ${placed!.offset}, not ${PARTITION_OFFSET}`);
}

describeWithLoopDevices('restore onto a disk while something built on it is mounted', () => {
  const suite = useSuiteScope();
  let dir: string;
  let sourceDisk: string;
  let job: string;
  let targetPartition: string;

  beforeAll(async () => {
    dir = await tempDir(suite);
    const { image: partition } = await makeVolume(dir, 'source-part', PARTITION_SIZE, { seed: 12, randomBytes: 3 * MiB, textBytes: 2 * MiB });
    sourceDisk = join(dir, 'source-disk.img');
    await makeDisk(sourceDisk, partition);
    job = await writeJob(dir, { source: sourceDisk });
    await init(job);
    await backup(job);

    // The target's partition holds another ext4, every inode table written at mkfs time, so
    // that mounting it starts no background writes (ext4lazyinit) that would change its bytes.
    const tree = join(dir, 'target-tree');
    await writeFileTree(tree, { seed: 99, randomBytes: 1 * MiB, textBytes: 1 * MiB });
    targetPartition = join(dir, 'target-part.img');
    await writeFile(targetPartition, '');
    await truncate(targetPartition, PARTITION_SIZE);
    await run('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-d', tree, targetPartition]);
  });

  /** A fresh copy of the target disk, attached as a loop device. */
  async function targetDisk(scope: Scope, name: string): Promise<{ file: string; device: string }> {
    const file = join(dir, `${name}.img`);
    await makeDisk(file, targetPartition);
    return { file, device: await attachLoop(scope, file) };
  }

  /**
   * Mounts `partition` (built on `device`), checks that restoring onto `device` is refused with
   * a message naming `described` and the mount point and leaves the disk's bytes as they were,
   * then unmounts it and checks that the same restore succeeds.
   */
  async function expectRefusedWhileMounted(scope: Scope, device: string, partition: string, described: string): Promise<void> {
    const mountPoint = join(dir, `mnt-${device.replace(/\D/g, '')}`);
    await mountDevice(scope, partition, mountPoint);
    await run('sync', ['-f', mountPoint]);
    const before = await sha256Of(device);

    const refused = await runCli(['restore', job, 'latest', '--to', device, '--force'], { env: PASSWORD_ENV });
    expectCleanFailure(
      refused,
      1,
      new RegExp(`^cairn: ${escapeRegExp(`${device} is in use: ${described} is mounted at ${mountPoint}; unmount it before restoring onto ${device}`)}$`, 'm'),
    );
    expect(await sha256Of(device), 'the disk is left untouched').toBe(before);

    await unmount(mountPoint);
    const restored = await runCli(['restore', job, 'latest', '--to', device, '--force'], { env: PASSWORD_ENV });
    expectSuccess(restored);
    await flushDevice(device);
    expect(await sameBytes(sourceDisk, device)).toBe(true);
  }

  test('a partition device of the disk (added with partx) is mounted', async () => {
    const scope = useScope();
    const { device } = await targetDisk(scope, 'target-partx');
    const [partition, ...others] = await addPartitionDevices(scope, device);
    expect(others).toEqual([]);
    expect(partition).toBe(`${device}p1`);
    await expectRefusedWhileMounted(scope, device, partition!, `${partition} (partition 1 of ${device})`);
  });

  test("a loop device over part of the disk's loop device is mounted", async () => {
    const scope = useScope();
    const { device } = await targetDisk(scope, 'target-loop-on-loop');
    const partition = await attachLoop(scope, device, { offset: PARTITION_OFFSET, sizeLimit: PARTITION_SIZE });
    await expectRefusedWhileMounted(scope, device, partition, `${partition} (on ${device} at offset ${PARTITION_OFFSET})`);
  });

  test('a loop device over the same image file, at the partition offset, is mounted', async () => {
    const scope = useScope();
    const { file, device } = await targetDisk(scope, 'target-same-file');
    const partition = await attachLoop(scope, file, { offset: PARTITION_OFFSET, sizeLimit: PARTITION_SIZE });
    const described = `${partition} (over ${await realpath(file)} at offset ${PARTITION_OFFSET}, overlapping ${device})`;
    await expectRefusedWhileMounted(scope, device, partition, described);
  });

  test('every mounted device is named, through a chain of loop devices too', async () => {
    const scope = useScope();
    const { file, device } = await targetDisk(scope, 'target-two-mounts');
    const partition = await attachLoop(scope, device, { offset: PARTITION_OFFSET, sizeLimit: PARTITION_SIZE });
    const onPartition = await attachLoop(scope, partition);
    const sameFile = await attachLoop(scope, file, { offset: PARTITION_OFFSET, sizeLimit: PARTITION_SIZE, readOnly: true });
    const first = join(dir, 'chain-mnt');
    const second = join(dir, 'same-file-mnt');
    await mountDevice(scope, onPartition, first);
    await mountDevice(scope, sameFile, second, ['ro', 'noload']);

    const refused = await runCli(['restore', job, 'latest', '--to', device, '--force'], { env: PASSWORD_ENV });
    expectCleanFailure(
      refused,
      1,
      new RegExp(escapeRegExp(`${onPartition} (on ${partition}, which is on ${device} at offset ${PARTITION_OFFSET}) is mounted at ${first}`)),
      new RegExp(escapeRegExp(`${sameFile} (over ${await realpath(file)} at offset ${PARTITION_OFFSET}, overlapping ${device}) is mounted at ${second}`)),
      /; unmount them before restoring onto /,
    );
  });
});
