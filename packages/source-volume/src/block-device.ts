import { readFile, readdir, realpath } from 'node:fs/promises';
import path from 'node:path';

/** A block device as the kernel numbers it (the `major:minor` of sysfs and mountinfo). */
export interface DeviceNumber {
  major: number;
  minor: number;
}

/**
 * Splits a Linux `dev_t` the way glibc's `major()`/`minor()` do. Takes a bigint because
 * the 64-bit encoding keeps the high bits of both numbers above bit 32.
 */
export function splitDeviceNumber(rdev: bigint): DeviceNumber {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

export function formatDeviceNumber({ major, minor }: DeviceNumber): string {
  return `${major}:${minor}`;
}

function sysfsDir(device: DeviceNumber): string {
  return `/sys/dev/block/${formatDeviceNumber(device)}`;
}

async function readSysfsInteger(file: string): Promise<number | undefined> {
  try {
    const value = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isSafeInteger(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export interface BlockDeviceGeometry {
  size: number;
  logicalSectorSize: number;
}

/**
 * Size and logical sector size from sysfs: `stat` reports 0 bytes for a block device.
 * sysfs counts `size` in 512-byte units whatever the device's sector size. A partition has
 * no `queue` directory of its own, so its sector size is read from the parent disk.
 */
export async function readBlockDeviceGeometry(device: DeviceNumber): Promise<BlockDeviceGeometry | undefined> {
  const dir = sysfsDir(device);
  const sectors = await readSysfsInteger(path.join(dir, 'size'));
  if (sectors === undefined) return undefined;
  let logicalSectorSize = await readSysfsInteger(path.join(dir, 'queue', 'logical_block_size'));
  if (logicalSectorSize === undefined) {
    const parent = path.dirname(await realpath(dir).catch(() => dir));
    logicalSectorSize = (await readSysfsInteger(path.join(parent, 'queue', 'logical_block_size'))) ?? 512;
  }
  return { size: sectors * 512, logicalSectorSize };
}

/** `/dev/<name>` from the kernel's own name for the device (sysfs `uevent` DEVNAME). */
export async function deviceNodePath(device: DeviceNumber): Promise<string | undefined> {
  try {
    const uevent = await readFile(path.join(sysfsDir(device), 'uevent'), 'utf8');
    const name = /^DEVNAME=(.+)$/m.exec(uevent)?.[1];
    return name === undefined ? undefined : `/dev/${name}`;
  } catch {
    return undefined;
  }
}

async function readDeviceNumberFile(file: string): Promise<DeviceNumber | undefined> {
  try {
    const match = /^(\d+):(\d+)$/.exec((await readFile(file, 'utf8')).trim());
    return match ? { major: Number(match[1]), minor: Number(match[2]) } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The device itself and every device that exposes its blocks: its partitions and, through
 * `holders`, device-mapper or md devices built on it (recursively). Mounting any of them
 * writes to the device's blocks.
 */
export async function devicesSharingBlocks(device: DeviceNumber): Promise<DeviceNumber[]> {
  const seen = new Map<string, DeviceNumber>();
  const pending: DeviceNumber[] = [device];
  while (pending.length > 0) {
    const current = pending.pop()!;
    const key = formatDeviceNumber(current);
    if (seen.has(key)) continue;
    seen.set(key, current);
    const dir = await realpath(sysfsDir(current)).catch(() => undefined);
    if (dir === undefined) continue;
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      // Partitions are subdirectories that carry a `partition` attribute and a `dev` file.
      if (!entry.isDirectory()) continue;
      const partitionDir = path.join(dir, entry.name);
      if ((await readSysfsInteger(path.join(partitionDir, 'partition'))) === undefined) continue;
      const partition = await readDeviceNumberFile(path.join(partitionDir, 'dev'));
      if (partition) pending.push(partition);
    }
    const holders = await readdir(path.join(dir, 'holders')).catch(() => []);
    for (const holder of holders) {
      const holderDevice = await readDeviceNumberFile(path.join(dir, 'holders', holder, 'dev'));
      if (holderDevice) pending.push(holderDevice);
    }
  }
  return [...seen.values()];
}
