/** A block device as the kernel numbers it: the `major:minor` of sysfs and mountinfo. */
export interface DeviceNumber {
  major: number;
  minor: number;
}

/**
 * Splits a Linux `dev_t` (`stat().rdev`) the way glibc's `major()`/`minor()` do. The 64-bit
 * encoding keeps the high bits of both numbers above bit 32, hence the bigint arithmetic;
 * a number from a plain `stat()` is accepted too (real device numbers fit in 53 bits).
 */
export function splitDeviceNumber(rdev: bigint | number): DeviceNumber {
  const dev = BigInt(rdev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/** `major:minor`, as sysfs and mountinfo write it. */
export function formatDeviceNumber({ major, minor }: DeviceNumber): string {
  return `${major}:${minor}`;
}

/** Reads `major:minor` (a sysfs `dev` file, field 3 of mountinfo); undefined for anything else. */
export function parseDeviceNumber(text: string): DeviceNumber | undefined {
  const match = /^(\d+):(\d+)$/.exec(text.trim());
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : undefined;
}

export function sameDeviceNumber(a: DeviceNumber, b: DeviceNumber): boolean {
  return a.major === b.major && a.minor === b.minor;
}
