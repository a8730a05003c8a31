import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { access, mkdir, mkdtemp, realpath, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type DeviceNumber,
  type RelatedBlockDevice,
  describeBlockDevice,
  deviceNodePath,
  findBlockDevicesOverFile,
  findLoopDevicesBackedBy,
  findMounts,
  findMountsOfFile,
  findRelatedBlockDevices,
  listLoopDevices,
  readBlockDeviceGeometry,
  splitDeviceNumber,
} from './block-device.js';

/*
 * The block-device module against the real kernel: loop devices, partition nodes added with
 * partx (BLKPG: this kernel scans no partition table of a loop device by itself), loop
 * devices on loop devices and over the same file, and real mounts. Every device and mount
 * made here is undone after each test, last made first, whatever happened.
 */

const MiB = 1024 * 1024;

const canUseLoopDevices = process.getuid?.() === 0 && (await access('/dev/loop-control').then(() => true, () => false));
// Without loop devices these tests fail loudly, unless skipping is asked for (as in test/).
const skip = !canUseLoopDevices && process.env.CAIRN_E2E_SKIP_LOOP === '1';

function run(command: string, args: string[], input?: string): string {
  return execFileSync(command, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] }).trim();
}

/**
 * Runs `command` until it succeeds or fails with `done` (e.g. "not mounted": a test may undo
 * a step itself): right after an unmount the kernel may hold a device for a moment.
 */
async function runWithRetries(command: string, args: string[], done?: RegExp): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      run(command, args);
      return;
    } catch (err) {
      if (done?.test(String((err as { stderr?: unknown }).stderr))) return;
      if (attempt >= 20) throw err;
      await sleep(100);
    }
  }
}

let workDir: string;
const teardown: Array<{ what: string; undo: () => Promise<void> }> = [];

beforeEach(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'cairn-core-blockdev-'));
});

afterEach(async () => {
  const failures: string[] = [];
  for (const step of teardown.splice(0).reverse()) {
    try {
      await step.undo();
    } catch (err) {
      failures.push(`${step.what}: ${(err as Error).message}`);
    }
  }
  await rm(workDir, { recursive: true, force: true });
  if (failures.length > 0) throw new Error(`teardown failed: ${failures.join('; ')}`);
});

async function makeFile(name: string, size: number): Promise<string> {
  const file = path.join(workDir, name);
  await writeFile(file, '');
  await truncate(file, size);
  return file;
}

/** Attaches a loop device over `backing` (a file or a block device); detached after the test by the path losetup printed. */
function attachLoop(backing: string, ...options: string[]): string {
  const device = run('losetup', ['-f', '--show', ...options, backing]);
  if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup printed "${device}"`);
  teardown.push({ what: `losetup -d ${device}`, undo: () => runWithRetries('losetup', ['-d', device]) });
  return device;
}

/**
 * Adds the partition devices of `disk`'s table (`partx -a`, as this kernel scans no table of
 * a loop device by itself); each is removed again before the disk is detached.
 */
function addPartitionDevices(disk: string): string[] {
  let failure: unknown;
  try {
    run('partx', ['-a', disk]);
  } catch (err) {
    failure = err;
  }
  // Whatever partx managed to add is removed at teardown, even if it then failed.
  const name = path.basename(disk);
  const numbers = readdirSync(`/sys/block/${name}`)
    .map((entry) => new RegExp(`^${name}p(\\d+)$`).exec(entry)?.[1])
    .filter((number): number is string => number !== undefined)
    .sort((a, b) => Number(a) - Number(b));
  for (const number of numbers) {
    teardown.push({ what: `delpart ${disk} ${number}`, undo: () => runWithRetries('delpart', [disk, number]) });
  }
  if (failure !== undefined) throw failure;
  return numbers.map((number) => `${disk}p${number}`);
}

async function mountAt(device: string, name: string, ...options: string[]): Promise<string> {
  const mountPoint = path.join(workDir, name);
  await mkdir(mountPoint);
  run('mount', [...options, device, mountPoint]);
  teardown.push({ what: `umount ${mountPoint}`, undo: () => runWithRetries('umount', [mountPoint], /not mounted/) });
  return mountPoint;
}

async function numberOf(device: string): Promise<DeviceNumber> {
  return splitDeviceNumber((await stat(device, { bigint: true })).rdev);
}

/** Each related device as its description, e.g. `/dev/loop3 (partition 1 of /dev/loop2)`, sorted. */
function described(devices: RelatedBlockDevice[]): string[] {
  return devices.map(describeBlockDevice).sort();
}

async function describedRelatives(device: string): Promise<string[]> {
  return described(await findRelatedBlockDevices(await numberOf(device)));
}

describe.skipIf(skip)('block devices in sysfs', () => {
  it('reads device numbers, the node name and the geometry of a loop device', async () => {
    const file = await makeFile('disk.img', 6 * MiB);
    const device = attachLoop(file, '--sector-size', '4096');
    const number = await numberOf(device);

    // stat(1) prints the major and minor in hex.
    const [major, minor] = run('stat', ['-c', '%t %T', device]).split(' ').map((hex) => Number.parseInt(hex, 16));
    expect(number).toEqual({ major, minor });
    expect(await deviceNodePath(number)).toBe(device);
    expect(await readBlockDeviceGeometry(number)).toEqual({ size: 6 * MiB, logicalSectorSize: 4096 });
    expect(Number(run('blockdev', ['--getsize64', device]))).toBe(6 * MiB);
  });

  it('sizes a partition from sysfs and takes its sector size from the disk', async () => {
    const file = await makeFile('gpt4k.img', 24 * MiB);
    const disk = attachLoop(file, '--sector-size', '4096');
    // 4096-byte sectors: the partition starts at 1 MiB and holds 8 MiB.
    run('sfdisk', ['-q', disk], 'label: gpt\nstart=256, size=2048, type=L\n');
    const [partition, ...more] = addPartitionDevices(disk);
    expect(more).toEqual([]);

    const geometry = await readBlockDeviceGeometry(await numberOf(partition!));
    expect(geometry).toEqual({ size: 8 * MiB, logicalSectorSize: 4096 });
    expect(await readBlockDeviceGeometry({ major: 7, minor: 1 << 19 })).toBeUndefined();
  });

  it('sizes a loop device mapped with an offset and a size limit', async () => {
    const file = await makeFile('disk.img', 24 * MiB);
    const device = attachLoop(file, '-o', String(MiB), '--sizelimit', String(8 * MiB));
    expect(await readBlockDeviceGeometry(await numberOf(device))).toEqual({ size: 8 * MiB, logicalSectorSize: 512 });
  });
});

describe.skipIf(skip)('loop devices', () => {
  it('are found by the identity of their backing file, not by the path they were attached through', async () => {
    const file = await makeFile('disk.img', 16 * MiB);
    const bound = path.join(workDir, 'bound');
    await mkdir(bound);
    run('mount', ['--bind', workDir, bound]);
    teardown.push({ what: `umount ${bound}`, undo: () => runWithRetries('umount', [bound], /not mounted/) });
    await symlink(file, path.join(workDir, 'link.img'));

    const direct = attachLoop(file);
    const throughBindMount = attachLoop(path.join(bound, 'disk.img'), '-o', String(MiB));
    const throughSymlink = attachLoop(path.join(workDir, 'link.img'));
    attachLoop(await makeFile('other.img', 16 * MiB));
    const onDevice = attachLoop(direct, '-o', String(2 * MiB), '--sizelimit', String(4 * MiB));

    const overFile = await findLoopDevicesBackedBy(await stat(file, { bigint: true }));
    expect(overFile.map((loop) => loop.devicePath).sort()).toEqual([direct, throughBindMount, throughSymlink].sort());
    const viaBindMount = overFile.find((loop) => loop.devicePath === throughBindMount);
    expect(viaBindMount).toMatchObject({ device: await numberOf(throughBindMount), offset: MiB, sizeLimit: 0 });
    expect(await realpath(viaBindMount!.backingFile)).toBe(await realpath(path.join(bound, 'disk.img')));

    // A loop device over a block device is matched on the device's number (rdev).
    const overDevice = await findLoopDevicesBackedBy(await stat(direct, { bigint: true }));
    expect(overDevice).toEqual([
      {
        device: await numberOf(onDevice),
        devicePath: onDevice,
        backingFile: direct,
        backing: { kind: 'block-device', device: await numberOf(direct) },
        offset: 2 * MiB,
        sizeLimit: 4 * MiB,
      },
    ]);
    expect((await listLoopDevices()).map((loop) => loop.devicePath)).toEqual(expect.arrayContaining([direct, throughBindMount, throughSymlink, onDevice]));
  });

  it('findMounts and findLoopDevicesBackedBy describe a mounted loop device', async () => {
    const file = await makeFile('ext4.img', 16 * MiB);
    run('mkfs.ext4', ['-q', '-F', file]);
    const device = attachLoop(file);
    const mountPoint = await mountAt(device, 'mount point with spaces');
    const number = await numberOf(device);

    const [loop] = await findLoopDevicesBackedBy(await stat(file, { bigint: true }));
    expect(loop).toMatchObject({ device: number, devicePath: device, backingFile: file, offset: 0, sizeLimit: 0 });
    expect(await findMounts(number)).toEqual([{ device: number, devicePath: device, mountPoint, fsType: 'ext4', readWrite: true }]);
    expect(await findMountsOfFile(await stat(file, { bigint: true }))).toEqual([
      { device: number, devicePath: device, via: { kind: 'file-loop', backingFile: file, offset: 0, sizeLimit: 0 }, mountPoint, fsType: 'ext4', readWrite: true },
    ]);

    run('umount', [mountPoint]);
    expect(await findMounts(number)).toEqual([]);
    expect(await findMountsOfFile(await stat(file, { bigint: true }))).toEqual([]);
  });

  it('reports a read-only mount as not writable', async () => {
    const file = await makeFile('ext4.img', 16 * MiB);
    run('mkfs.ext4', ['-q', '-F', file]);
    const device = attachLoop(file);
    const mountPoint = await mountAt(device, 'ro', '-o', 'ro');
    expect(await findMounts(await numberOf(device))).toMatchObject([{ devicePath: device, mountPoint, readWrite: false }]);
  });

  it('finds a btrfs mount, which reports an anonymous device, through its mount source', async () => {
    const file = await makeFile('btrfs.img', 128 * MiB);
    const device = attachLoop(file);
    run('mkfs.btrfs', ['-q', device]);
    const mountPoint = await mountAt(device, 'btrfs');

    expect(run('findmnt', ['-n', '-o', 'MAJ:MIN', mountPoint])).toMatch(/^0:\d+$/); // not the loop device's number
    expect(await findMounts(await numberOf(device))).toMatchObject([{ devicePath: device, mountPoint, fsType: 'btrfs', readWrite: true }]);
  });
});

describe.skipIf(skip)('devices built on a disk', () => {
  it('include its partitions, and a mounted partition is found through the disk', async () => {
    const file = await makeFile('gpt.img', 32 * MiB);
    run('sfdisk', ['-q', file], 'label: gpt\nstart=2048, size=16384, type=L\nstart=18432, size=20480, type=L\n');
    const disk = attachLoop(file);
    const partitions = addPartitionDevices(disk);
    expect(partitions).toEqual([`${disk}p1`, `${disk}p2`]);
    const [first, second] = partitions;
    run('mkfs.ext4', ['-q', '-F', second!]);

    expect(await describedRelatives(disk)).toEqual([disk, `${first} (partition 1 of ${disk})`, `${second} (partition 2 of ${disk})`].sort());
    expect(await describedRelatives(first!)).toEqual([first]);

    const mountPoint = await mountAt(second!, 'p2');
    const mounts = await findMounts(await numberOf(disk));
    expect(mounts).toMatchObject([{ devicePath: second, mountPoint, fsType: 'ext4', via: { kind: 'partition', number: 2 } }]);
    expect(describeBlockDevice(mounts[0]!)).toBe(`${second} (partition 2 of ${disk})`);
    expect(await findMounts(await numberOf(first!))).toEqual([]);
  });

  it('include a loop device on a loop device on the disk, and name the whole chain', async () => {
    const file = await makeFile('disk.img', 32 * MiB);
    const disk = attachLoop(file);
    const partition = attachLoop(disk, '-o', String(MiB), '--sizelimit', String(20 * MiB));
    const onPartition = attachLoop(partition);
    const unrelated = attachLoop(await makeFile('other.img', 8 * MiB));
    run('mkfs.ext4', ['-q', '-F', onPartition]);

    expect(await describedRelatives(disk)).toEqual(
      [disk, `${partition} (on ${disk} at offset ${MiB})`, `${onPartition} (on ${partition}, which is on ${disk} at offset ${MiB})`].sort(),
    );
    expect(await describedRelatives(partition)).toEqual([partition, `${onPartition} (on ${partition})`].sort());
    expect(await describedRelatives(onPartition)).toEqual([onPartition]);
    expect(await describedRelatives(unrelated)).toEqual([unrelated]);

    const mountPoint = await mountAt(onPartition, 'mnt');
    const mounts = await findMounts(await numberOf(disk));
    expect(mounts.map((mount) => [describeBlockDevice(mount), mount.mountPoint])).toEqual([
      [`${onPartition} (on ${partition}, which is on ${disk} at offset ${MiB})`, mountPoint],
    ]);
    expect(await findMounts(await numberOf(unrelated))).toEqual([]);
  });

  it('include the loop devices over the same file whose byte ranges overlap, and only those', async () => {
    const file = await makeFile('disk.img', 32 * MiB);
    const copy = await makeFile('copy.img', 32 * MiB);
    const range = (offset: number, size: number) => ['-o', String(offset * MiB), ...(size > 0 ? ['--sizelimit', String(size * MiB)] : [])];
    const first8 = attachLoop(file, ...range(0, 8)); // bytes [0, 8M)
    const from4 = attachLoop(file, ...range(4, 8)); // [4M, 12M): overlaps first8
    const from8 = attachLoop(file, ...range(8, 8)); // [8M, 16M): adjacent to first8
    const toEnd = attachLoop(file, ...range(16, 0)); // [16M, end): size limit 0
    const near24 = attachLoop(file, ...range(24, 1)); // [24M, 25M): inside toEnd
    const otherFile = attachLoop(copy, ...range(0, 8)); // same offsets, another file
    const over = (device: string, offset: number) => `${device} (over ${file}${offset > 0 ? ` at offset ${offset * MiB}` : ''}`;

    expect(await describedRelatives(first8)).toEqual([first8, `${over(from4, 4)}, overlapping ${first8})`].sort());
    expect(await describedRelatives(from8)).toEqual([from8, `${over(from4, 4)}, overlapping ${from8})`].sort());
    expect(await describedRelatives(toEnd)).toEqual([toEnd, `${over(near24, 24)}, overlapping ${toEnd})`].sort());
    expect(await describedRelatives(near24)).toEqual([near24, `${over(toEnd, 16)}, overlapping ${near24})`].sort());
    expect(await describedRelatives(otherFile)).toEqual([otherFile]);

    // What is built on an overlapping loop device is built on the device too, and a mount there is found.
    run('mkfs.ext4', ['-q', '-F', from4]);
    const onFrom4 = attachLoop(from4);
    const mountPoint = await mountAt(onFrom4, 'mnt');
    const mounts = await findMounts(await numberOf(first8));
    expect(mounts.map((mount) => [describeBlockDevice(mount), mount.mountPoint])).toEqual([
      [`${onFrom4} (on ${from4}, which is over ${file} at offset ${4 * MiB}, overlapping ${first8})`, mountPoint],
    ]);
    expect(await findMounts(await numberOf(toEnd))).toEqual([]);
    expect(await findMounts(await numberOf(otherFile))).toEqual([]);
  });

  it('over an image file: every loop device over it and what is built on them', async () => {
    const file = await makeFile('disk.img', 32 * MiB);
    const whole = attachLoop(file);
    const partition = attachLoop(file, '-o', String(MiB), '--sizelimit', String(16 * MiB));
    const onWhole = attachLoop(whole, '-o', String(20 * MiB));
    run('mkfs.ext4', ['-q', '-F', onWhole]);
    const mountPoint = await mountAt(onWhole, 'mnt');

    const devices = await findBlockDevicesOverFile(await stat(file, { bigint: true }));
    expect(described(devices)).toEqual(
      [`${whole} (over ${file})`, `${partition} (over ${file} at offset ${MiB})`, `${onWhole} (on ${whole} at offset ${20 * MiB}, which is over ${file})`].sort(),
    );
    const mounts = await findMountsOfFile(await stat(file, { bigint: true }));
    expect(mounts.map((mount) => [describeBlockDevice(mount), mount.mountPoint])).toEqual([
      [`${onWhole} (on ${whole} at offset ${20 * MiB}, which is over ${file})`, mountPoint],
    ]);
  });
});
