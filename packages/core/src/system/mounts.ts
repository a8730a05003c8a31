import { readFile, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { type DeviceNumber, formatDeviceNumber, splitDeviceNumber } from './device-number.js';
import { parseMountInfo } from './mountinfo.js';
import { type RelatedBlockDevice, findBlockDevicesOverFile, findRelatedBlockDevices } from './related-devices.js';

/** A mounted block device: the one asked about or one built on it (see findRelatedBlockDevices). */
export interface DeviceMount extends RelatedBlockDevice {
  mountPoint: string;
  fsType: string;
  /** Writable through this mount (`rw` in the per-mount options). */
  readWrite: boolean;
}

const MOUNT_INFO = '/proc/self/mountinfo';

/**
 * Where a block device, or anything built on it (findRelatedBlockDevices), is mounted, as
 * this process's mount namespace sees it. Mounts made in other mount namespaces
 * (containers) are not visible here.
 */
export async function findMounts(device: DeviceNumber, mountInfoPath = MOUNT_INFO): Promise<DeviceMount[]> {
  return mountsOf(await findRelatedBlockDevices(device), mountInfoPath);
}

/** Where an image file is mounted through loop devices attached to it, or anything built on them. */
export async function findMountsOfFile(file: BigIntStats, mountInfoPath = MOUNT_INFO): Promise<DeviceMount[]> {
  return mountsOf(await findBlockDevicesOverFile(file), mountInfoPath);
}

/**
 * A mount matches on the `major:minor` of mountinfo or, for filesystems such as btrfs and
 * FUSE (ntfs-3g) that report an anonymous device there, on the block device named as the
 * mount source.
 */
async function mountsOf(devices: RelatedBlockDevice[], mountInfoPath: string): Promise<DeviceMount[]> {
  const byNumber = new Map(devices.map((related) => [formatDeviceNumber(related.device), related]));
  const mounts: DeviceMount[] = [];
  for (const entry of parseMountInfo(await readFile(mountInfoPath, 'utf8'))) {
    let mounted = byNumber.get(formatDeviceNumber(entry.device));
    if (!mounted) {
      const fromSource = await sourceDeviceNumber(entry.source);
      mounted = fromSource && byNumber.get(formatDeviceNumber(fromSource));
    }
    if (!mounted) continue;
    mounts.push({ ...mounted, mountPoint: entry.mountPoint, fsType: entry.fsType, readWrite: entry.mountOptions.includes('rw') });
  }
  return mounts;
}

async function sourceDeviceNumber(source: string): Promise<DeviceNumber | undefined> {
  if (!source.startsWith('/')) return undefined;
  const info = await stat(source, { bigint: true }).catch(() => undefined);
  return info?.isBlockDevice() ? splitDeviceNumber(info.rdev) : undefined;
}
