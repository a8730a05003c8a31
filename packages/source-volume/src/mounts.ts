import { readFile, readdir, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import path from 'node:path';
import {
  type DeviceNumber,
  deviceNodePath,
  devicesSharingBlocks,
  formatDeviceNumber,
  splitDeviceNumber,
} from './block-device.js';

/** One line of `/proc/self/mountinfo` (see proc(5)). */
export interface MountInfoEntry {
  /** Field 3: the device the mounted filesystem reports (`0:N` for btrfs and virtual filesystems). */
  device: DeviceNumber;
  mountPoint: string;
  /** Per-mount options (field 6), e.g. `rw`, `relatime`. */
  mountOptions: string[];
  fsType: string;
  /** Mount source as given to mount(8), e.g. `/dev/loop3`. */
  source: string;
  /** Per-superblock options. */
  superOptions: string[];
}

/** mountinfo writes space, tab, newline and backslash as octal escapes (`\040`). */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

export function parseMountInfo(text: string): MountInfoEntry[] {
  const entries: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    const deviceMatch = /^(\d+):(\d+)$/.exec(fields[2] ?? '');
    if (separator < 0 || !deviceMatch || fields.length < separator + 4) continue;
    entries.push({
      device: { major: Number(deviceMatch[1]), minor: Number(deviceMatch[2]) },
      mountPoint: unescapeMountField(fields[4]!),
      mountOptions: fields[5]!.split(','),
      fsType: fields[separator + 1]!,
      source: unescapeMountField(fields[separator + 2]!),
      superOptions: fields[separator + 3]!.split(','),
    });
  }
  return entries;
}

export interface DeviceMount {
  /** The device that is mounted: the one asked about, one of its partitions, or a device-mapper device on it. */
  device: DeviceNumber;
  /** `/dev/...` path of that device, or `major:minor` when the kernel gives no name. */
  devicePath: string;
  mountPoint: string;
  fsType: string;
  /** Writable through this mount (`rw` in the per-mount options). */
  readWrite: boolean;
}

async function sourceDeviceNumber(source: string): Promise<DeviceNumber | undefined> {
  if (!source.startsWith('/')) return undefined;
  try {
    const info = await stat(source, { bigint: true });
    return info.isBlockDevice() ? splitDeviceNumber(info.rdev) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Where a block device, or anything exposing its blocks (its partitions, device-mapper or md
 * devices on it), is mounted, as this process's mount namespace sees it. A mount matches on
 * the `major:minor` of mountinfo or, for filesystems such as btrfs that report an anonymous
 * device there, on the block device named as the mount source. Mounts made in other mount
 * namespaces (containers) are not visible.
 */
export async function findMounts(device: DeviceNumber, mountInfoPath = '/proc/self/mountinfo'): Promise<DeviceMount[]> {
  const related = new Map((await devicesSharingBlocks(device)).map((d) => [formatDeviceNumber(d), d]));
  const mounts: DeviceMount[] = [];
  for (const entry of parseMountInfo(await readFile(mountInfoPath, 'utf8'))) {
    let mounted = related.get(formatDeviceNumber(entry.device));
    if (!mounted) {
      const fromSource = await sourceDeviceNumber(entry.source);
      mounted = fromSource && related.get(formatDeviceNumber(fromSource));
    }
    if (!mounted) continue;
    mounts.push({
      device: mounted,
      devicePath: (await deviceNodePath(mounted)) ?? formatDeviceNumber(mounted),
      mountPoint: entry.mountPoint,
      fsType: entry.fsType,
      readWrite: entry.mountOptions.includes('rw'),
    });
  }
  return mounts;
}

export interface LoopDevice {
  device: DeviceNumber;
  devicePath: string;
}

/**
 * Loop devices whose backing file is `file`, matched on device and inode so that a path
 * given through a symlink or a bind mount is still recognised.
 */
export async function findLoopDevicesBackedBy(file: BigIntStats): Promise<LoopDevice[]> {
  const loops: LoopDevice[] = [];
  const names = (await readdir('/sys/block').catch(() => [])).filter((name) => name.startsWith('loop'));
  for (const name of names) {
    const dir = path.join('/sys/block', name);
    let backingFile: string;
    try {
      backingFile = (await readFile(path.join(dir, 'loop', 'backing_file'), 'utf8')).trimEnd();
    } catch {
      continue; // not bound to a file
    }
    const backing = await stat(backingFile.replace(/ \(deleted\)$/, ''), { bigint: true }).catch(() => undefined);
    if (!backing || backing.dev !== file.dev || backing.ino !== file.ino) continue;
    const numbers = /^(\d+):(\d+)$/.exec((await readFile(path.join(dir, 'dev'), 'utf8')).trim());
    if (!numbers) continue;
    loops.push({ device: { major: Number(numbers[1]), minor: Number(numbers[2]) }, devicePath: `/dev/${name}` });
  }
  return loops;
}
