import { readFile, readdir, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import path from 'node:path';
import { type DeviceNumber, sameDeviceNumber, splitDeviceNumber } from './device-number.js';
import { readSysfsDeviceNumber, readSysfsInteger } from './sysfs.js';

/**
 * What a loop device reads and writes, identified the way the kernel holds it: a block device
 * by its device number (`rdev`), a regular file by its filesystem and inode. Paths are not
 * compared: the same file or device has many names (symlinks, bind mounts, /dev/disk/by-*).
 */
export type LoopBacking =
  | { kind: 'block-device'; device: DeviceNumber }
  | { kind: 'file'; dev: bigint; ino: bigint };

export interface LoopDevice {
  device: DeviceNumber;
  /** `/dev/loopN`. */
  devicePath: string;
  /** The backing file's path as the kernel reports it (`/sys/block/loopN/loop/backing_file`). */
  backingFile: string;
  /**
   * Undefined when the backing file cannot be identified: it was deleted, or its path means
   * nothing in this mount namespace.
   */
  backing: LoopBacking | undefined;
  /** Where the device starts in its backing file, in bytes. */
  offset: number;
  /** How many bytes of the backing file it maps; 0 means up to the end of the file. */
  sizeLimit: number;
}

/** The kernel marks the path of a backing file that was unlinked after attaching. */
const DELETED_SUFFIX = ' (deleted)';

function backingOf(info: BigIntStats): LoopBacking | undefined {
  if (info.isBlockDevice()) return { kind: 'block-device', device: splitDeviceNumber(info.rdev) };
  if (info.isFile()) return { kind: 'file', dev: info.dev, ino: info.ino };
  return undefined;
}

async function identifyBacking(backingFile: string): Promise<LoopBacking | undefined> {
  // Another file may have taken a deleted file's name since: its identity would be wrong.
  if (backingFile.endsWith(DELETED_SUFFIX)) return undefined;
  const info = await stat(backingFile, { bigint: true }).catch(() => undefined);
  return info && backingOf(info);
}

async function readLoopDevice(name: string): Promise<LoopDevice | undefined> {
  const dir = path.join('/sys/block', name);
  let backingFile: string;
  try {
    // Only the newline sysfs appends is removed: a file name may end in spaces.
    backingFile = (await readFile(path.join(dir, 'loop', 'backing_file'), 'utf8')).replace(/\n$/, '');
  } catch {
    return undefined; // a free loop device, bound to nothing
  }
  const device = await readSysfsDeviceNumber(path.join(dir, 'dev'));
  if (!device) return undefined;
  return {
    device,
    devicePath: `/dev/${name}`,
    backingFile,
    backing: await identifyBacking(backingFile),
    offset: (await readSysfsInteger(path.join(dir, 'loop', 'offset'))) ?? 0,
    sizeLimit: (await readSysfsInteger(path.join(dir, 'loop', 'sizelimit'))) ?? 0,
  };
}

/** Every loop device that is bound to a backing file, from `/sys/block/loop*`. */
export async function listLoopDevices(): Promise<LoopDevice[]> {
  const names = (await readdir('/sys/block').catch(() => [])).filter((name) => /^loop\d+$/.test(name));
  const loops = await Promise.all(names.map(readLoopDevice));
  return loops.filter((loop): loop is LoopDevice => loop !== undefined);
}

export function sameBacking(a: LoopBacking | undefined, b: LoopBacking | undefined): boolean {
  if (!a || !b) return false;
  if (a.kind === 'block-device' && b.kind === 'block-device') return sameDeviceNumber(a.device, b.device);
  if (a.kind === 'file' && b.kind === 'file') return a.dev === b.dev && a.ino === b.ino;
  return false;
}

/** Whether two loop devices over the same backing file share any byte of it. */
export function loopRangesOverlap(a: Pick<LoopDevice, 'offset' | 'sizeLimit'>, b: Pick<LoopDevice, 'offset' | 'sizeLimit'>): boolean {
  const end = (loop: Pick<LoopDevice, 'offset' | 'sizeLimit'>) => (loop.sizeLimit === 0 ? Infinity : loop.offset + loop.sizeLimit);
  return a.offset < end(b) && b.offset < end(a);
}

/**
 * Loop devices whose backing file is `file` (a regular file or a block device, as `stat`
 * with `bigint: true` describes it), whatever path they were attached through.
 */
export async function findLoopDevicesBackedBy(file: BigIntStats): Promise<LoopDevice[]> {
  const backing = backingOf(file);
  return (await listLoopDevices()).filter((loop) => sameBacking(loop.backing, backing));
}
