import { readFile, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';

/*
 * Facts about block devices that Node does not expose: size and sector size come from
 * sysfs (stat reports size 0 for a device), mounts from /proc/self/mountinfo.
 */

export function deviceNumbers(rdev: number | bigint): { major: number; minor: number } {
  // glibc's gnu_dev_major/gnu_dev_minor.
  const dev = BigInt(rdev);
  return {
    major: Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n)),
    minor: Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n)),
  };
}

export interface BlockDeviceInfo {
  major: number;
  minor: number;
  size: number;
  logicalSectorSize: number;
}

export async function blockDeviceInfo(path: string, stats?: Stats): Promise<BlockDeviceInfo> {
  const s = stats ?? (await stat(path));
  if (!s.isBlockDevice()) throw new Error(`${path} is not a block device`);
  const { major, minor } = deviceNumbers(s.rdev);
  const sys = `/sys/dev/block/${major}:${minor}`;
  const sectors = Number((await readFile(`${sys}/size`, 'utf8')).trim());
  let logicalSectorSize = 512;
  for (const candidate of [`${sys}/queue/logical_block_size`, `${sys}/../queue/logical_block_size`]) {
    try {
      logicalSectorSize = Number((await readFile(candidate, 'utf8')).trim());
      break;
    } catch {
      // A partition has no queue folder of its own; its parent's applies.
    }
  }
  return { major, minor, size: sectors * 512, logicalSectorSize };
}

export interface MountEntry {
  mountPoint: string;
  readWrite: boolean;
}

/** Where the device `major:minor` is mounted, from /proc/self/mountinfo. */
export async function mountsOf(major: number, minor: number): Promise<MountEntry[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    if (fields[2] !== `${major}:${minor}`) continue;
    mounts.push({ mountPoint: unescapeMountPath(fields[4] ?? ''), readWrite: (fields[5] ?? '').split(',').includes('rw') });
  }
  return mounts;
}

function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
