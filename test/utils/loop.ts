import { access, mkdir, readdir, realpath } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, runCommand } from './exec.js';
import type { Scope } from './scope.js';

/** Whether this machine lets the tests create loop devices (root and /dev/loop-control). */
export async function loopDevicesAvailable(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  try {
    await access('/dev/loop-control');
    return true;
  } catch {
    return false;
  }
}

export interface LoopOptions {
  readOnly?: boolean;
  /** Where the device starts in `file`, in bytes (`losetup -o`). */
  offset?: number;
  /** How many bytes of `file` it maps (`losetup --sizelimit`); default: up to the end. */
  sizeLimit?: number;
}

/**
 * Attaches `file` (an image file, or a block device such as another loop device) to a free
 * loop device (`losetup -f --show`) and returns the device path. With `offset` and
 * `sizeLimit` it maps part of a disk, the way to get a partition device on a kernel that makes
 * no partition nodes for loop devices. The scope detaches exactly that device at teardown,
 * whatever happened in between.
 */
export async function attachLoop(scope: Scope, file: string, options: LoopOptions = {}): Promise<string> {
  const backing = await realpath(file);
  const args = [
    ...(options.readOnly ? ['-r'] : []),
    ...(options.offset !== undefined ? ['-o', String(options.offset)] : []),
    ...(options.sizeLimit !== undefined ? ['--sizelimit', String(options.sizeLimit)] : []),
  ];
  const device = (await run('losetup', ['-f', '--show', ...args, backing])).trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup printed "${device}", not a loop device`);
  scope.defer(`losetup -d ${device}`, () => detachLoop(device, backing));
  return device;
}

/**
 * Adds kernel partition devices (`/dev/loopNp1`, ...) for the partition table on the loop
 * device `disk` with `partx -a` (the kernel here scans no partition table of a loop device by
 * itself, and keeps partitions added this way after the device is detached). The scope
 * removes exactly these partitions, before `disk` is detached.
 */
export async function addPartitionDevices(scope: Scope, disk: string): Promise<string[]> {
  const added = await runCommand('partx', ['-a', disk]);
  // Whatever partx managed to add is removed at teardown, even if it then failed.
  const numbers = await partitionNumbers(disk);
  for (const number of numbers) scope.defer(`delpart ${disk} ${number}`, () => deletePartition(disk, number));
  if (added.exitCode !== 0) throw new Error(`partx -a ${disk} failed: ${added.stderr.trim()}`);
  return numbers.map((number) => `${disk}p${number}`);
}

/** The numbers of the partitions the kernel has for `disk`, from its sysfs folder (`loop3p1`...). */
async function partitionNumbers(disk: string): Promise<string[]> {
  const name = basename(disk);
  return (await readdir(`/sys/block/${name}`))
    .map((entry) => new RegExp(`^${name}p(\\d+)$`).exec(entry)?.[1])
    .filter((number): number is string => number !== undefined)
    .sort((a, b) => Number(a) - Number(b));
}

async function deletePartition(disk: string, number: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const result = await runCommand('delpart', [disk, number]);
    if (result.exitCode === 0) return;
    // Right after an unmount the kernel may still hold the partition for a moment.
    if (attempt >= 20) throw new Error(`delpart ${disk} ${number} failed: ${result.stderr.trim()}`);
    await sleep(100);
  }
}

async function detachLoop(device: string, file: string): Promise<void> {
  // Only detach the device if it still serves our file: never another user's device.
  const status = await runCommand('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE', device]);
  if (status.exitCode !== 0 || !status.stdout.includes(file)) return;
  for (let attempt = 0; ; attempt++) {
    const result = await runCommand('losetup', ['-d', device]);
    if (result.exitCode === 0) return;
    // Right after an unmount the kernel may still hold the device for a moment.
    if (attempt >= 20) throw new Error(`losetup -d ${device} failed: ${result.stderr.trim()}`);
    await sleep(100);
  }
}

/** Mounts `device` on `mountPoint` (created if needed); the scope unmounts it at teardown. */
export async function mountDevice(scope: Scope, device: string, mountPoint: string, options: string[] = []): Promise<void> {
  await mkdir(mountPoint, { recursive: true });
  await run('mount', [...(options.length ? ['-o', options.join(',')] : []), device, mountPoint]);
  scope.defer(`umount ${mountPoint}`, () => unmount(mountPoint));
}

/** Unmounts `mountPoint`; one that is not mounted (any more) is fine. */
export async function unmount(mountPoint: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const result = await runCommand('umount', [mountPoint]);
    if (result.exitCode === 0) return;
    if (/not mounted/.test(result.stderr)) return;
    if (attempt >= 20) throw new Error(`umount ${mountPoint} failed: ${result.stderr.trim()}`);
    await sleep(100);
  }
}

/** Flushes a block device's buffers so that reads through another path see the writes. */
export async function flushDevice(device: string): Promise<void> {
  await run('blockdev', ['--flushbufs', device]);
}
