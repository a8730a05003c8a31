import { describe, expect, it } from 'vitest';
import { formatDeviceNumber, parseDeviceNumber, splitDeviceNumber } from './device-number.js';
import { loopRangesOverlap } from './loop-devices.js';

/** glibc's makedev(): the 12 low bits of the major above the 8 low bits of the minor, the rest above bit 32 and 20. */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

describe('device numbers', () => {
  it('splits a dev_t the way glibc does, high bits included', () => {
    expect(splitDeviceNumber(makedev(8, 1))).toEqual({ major: 8, minor: 1 });
    expect(splitDeviceNumber(0x801n)).toEqual({ major: 8, minor: 1 });
    expect(splitDeviceNumber(makedev(259, 70000))).toEqual({ major: 259, minor: 70000 });
    expect(splitDeviceNumber(makedev(0x7ffff, 0xfffff))).toEqual({ major: 0x7ffff, minor: 0xfffff });
    expect(splitDeviceNumber(Number(makedev(7, 300)))).toEqual({ major: 7, minor: 300 });
  });

  it('reads and writes major:minor', () => {
    expect(formatDeviceNumber({ major: 7, minor: 12 })).toBe('7:12');
    expect(parseDeviceNumber('7:12\n')).toEqual({ major: 7, minor: 12 });
    expect(parseDeviceNumber('7:')).toBeUndefined();
    expect(parseDeviceNumber('loop7')).toBeUndefined();
  });
});

describe('loop device ranges', () => {
  const MiB = 1024 * 1024;
  const range = (offset: number, sizeLimit: number) => ({ offset, sizeLimit });

  it('overlap when they share a byte of the backing file, and only then', () => {
    expect(loopRangesOverlap(range(0, 8 * MiB), range(4 * MiB, 8 * MiB))).toBe(true);
    expect(loopRangesOverlap(range(4 * MiB, 8 * MiB), range(0, 8 * MiB))).toBe(true);
    expect(loopRangesOverlap(range(0, 8 * MiB), range(8 * MiB, 8 * MiB))).toBe(false); // adjacent
    expect(loopRangesOverlap(range(8 * MiB, 8 * MiB), range(0, 8 * MiB))).toBe(false);
    expect(loopRangesOverlap(range(MiB, MiB), range(0, 16 * MiB))).toBe(true); // contained
  });

  it('take a size limit of 0 as reaching the end of the file', () => {
    expect(loopRangesOverlap(range(16 * MiB, 0), range(24 * MiB, MiB))).toBe(true);
    expect(loopRangesOverlap(range(16 * MiB, 0), range(8 * MiB, 8 * MiB))).toBe(false);
    expect(loopRangesOverlap(range(0, 0), range(1 << 40, 0))).toBe(true);
  });
});
