import { accessSync } from 'node:fs';
import { mkdir, readdir, realpath } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe } from 'vitest';
import { run, runCommand } from './exec.js';
import type { Scope } from './scope.js';

/** Whether this machine lets the tests create loop devices and mount (root and /dev/loop-control). */
export function loopDevicesAvailable(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    accessSync('/dev/loop-control');
    return true;
  } catch {
    return false;
  }
}

/** Set by whoever runs the suite on a machine without loop devices, to skip those tests on purpose. */
const SKIP_VARIABLE = 'CAIRN_E2E_SKIP_LOOP';

/**
 * `describe` for every block of tests that needs loop devices or mounts. Where loop devices
 * are missing, the block fails loudly, saying why, unless CAIRN_E2E_SKIP_LOOP=1 asks to skip
 * it: a machine that cannot run these tests must never pass them silently.
 */
export function describeWithLoopDevices(name: string, body: () => void): void {
  const available = loopDevicesAvailable();
  if (!available && process.env[SKIP_VARIABLE] === '1') {
    describe.skip(name, body);
    return;
  }
  describe(name, () => {
    if (!available) {
      beforeAll(() => {
        throw new Error(`"${name}" needs root and loop devices (/dev/loop-control), which this machine lacks; set ${SKIP_VARIABLE}=1 to skip these tests on purpose`);
      });
    }
    body();
  });
}

export interface LoopOptions {
  readOnly?: boolean;
  /** Map only a region of the file, as a partition device maps a region of its disk (`losetup -o`). */
  offset?: number;
  /** Bytes mapped from `offset` on (`losetup --sizelimit`). */
  sizeLimit?: number;
}

/**
 * Attaches `file` (or a region of it) to a free loop device (`losetup -f --show`) and
 * returns the device path. The scope detaches exactly that device at teardown, whatever
 * happened in between.
 */
export async function attachLoop(scope: Scope, file: string, options: LoopOptions = {}): Promise<string> {
  const backing = await realpath(file);
  const region = [...(options.offset !== undefined ? ['-o', String(options.offset)] : []), ...(options.sizeLimit !== undefined ? ['--sizelimit', String(options.sizeLimit)] : [])];
  const device = (await run('losetup', ['-f', '--show', ...(options.readOnly ? ['-r'] : []), ...region, backing])).trim();
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
