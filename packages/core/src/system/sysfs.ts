import { readFile, readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { type DeviceNumber, formatDeviceNumber, parseDeviceNumber } from './device-number.js';

/*
 * What sysfs tells about a block device that Node does not: its size (stat reports 0 bytes
 * for a device), its sector size, its name, and the devices the kernel builds on it.
 */

export function sysfsDir(device: DeviceNumber): string {
  return `/sys/dev/block/${formatDeviceNumber(device)}`;
}

export async function readSysfsInteger(file: string): Promise<number | undefined> {
  try {
    const value = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isSafeInteger(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export async function readSysfsDeviceNumber(file: string): Promise<DeviceNumber | undefined> {
  try {
    return parseDeviceNumber(await readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}

export interface BlockDeviceGeometry {
  /** Bytes. */
  size: number;
  logicalSectorSize: number;
}

/**
 * Size and logical sector size from sysfs. sysfs counts `size` in 512-byte units whatever the
 * device's sector size. A partition has no `queue` directory of its own, so its sector size is
 * read from the parent disk. Undefined when sysfs does not know the device.
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

/** `/dev/<name>`, or `major:minor` when the kernel gives the device no name. */
export async function deviceLabel(device: DeviceNumber): Promise<string> {
  return (await deviceNodePath(device)) ?? formatDeviceNumber(device);
}

export interface SysfsPartition {
  device: DeviceNumber;
  /** The partition number (1 for sda1). */
  number: number;
}

/** The partitions of a disk: subdirectories of its sysfs folder that carry a `partition` attribute. */
export async function readPartitions(device: DeviceNumber): Promise<SysfsPartition[]> {
  const dir = await realpath(sysfsDir(device)).catch(() => undefined);
  if (dir === undefined) return [];
  const partitions: SysfsPartition[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!entry.isDirectory()) continue;
    const number = await readSysfsInteger(path.join(dir, entry.name, 'partition'));
    const partition = number === undefined ? undefined : await readSysfsDeviceNumber(path.join(dir, entry.name, 'dev'));
    if (number !== undefined && partition) partitions.push({ device: partition, number });
  }
  return partitions;
}

/**
 * The devices the kernel lists as built on this one (`holders`: device-mapper, md RAID,
 * bcache). Loop devices are not listed there; see loop-devices.ts.
 */
export async function readHolders(device: DeviceNumber): Promise<DeviceNumber[]> {
  const holdersDir = path.join(sysfsDir(device), 'holders');
  const holders: DeviceNumber[] = [];
  for (const name of await readdir(holdersDir).catch(() => [])) {
    const holder = await readSysfsDeviceNumber(path.join(holdersDir, name, 'dev'));
    if (holder) holders.push(holder);
  }
  return holders;
}
