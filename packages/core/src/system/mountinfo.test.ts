import { describe, expect, it } from 'vitest';
import { parseMountInfo } from './mountinfo.js';

describe('parseMountInfo', () => {
  it('reads the fields around the optional ones and decodes escapes', () => {
    const line = '36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue';
    expect(parseMountInfo(`${line}\n`)).toEqual([
      {
        device: { major: 98, minor: 0 },
        mountPoint: '/mnt/with space',
        mountOptions: ['rw', 'noatime'],
        fsType: 'ext3',
        source: '/dev/root',
        superOptions: ['rw', 'errors=continue'],
      },
    ]);
  });

  it('decodes tab, newline and backslash in mount points and sources', () => {
    // What the kernel writes for a mount point "/mnt/a\tb\nc\\d" of a loop device named "/dev/my loop".
    const line = '40 27 7:3 / /mnt/a\\011b\\012c\\134d ro,relatime - ext4 /dev/my\\040loop ro';
    const [entry] = parseMountInfo(line);
    expect(entry?.mountPoint).toBe('/mnt/a\tb\nc\\d');
    expect(entry?.source).toBe('/dev/my loop');
    expect(entry?.mountOptions).toEqual(['ro', 'relatime']);
  });

  it('reads lines without optional fields and anonymous device numbers', () => {
    const text = [
      '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard',
      '88 27 0:61 / /mnt/ntfs rw,relatime shared:40 - fuseblk /dev/loop5 rw,user_id=0,group_id=0',
    ].join('\n');
    expect(parseMountInfo(text).map((entry) => [entry.device, entry.mountPoint, entry.fsType, entry.source])).toEqual([
      [{ major: 254, minor: 0 }, '/', 'ext4', '/dev/vda'],
      [{ major: 0, minor: 61 }, '/mnt/ntfs', 'fuseblk', '/dev/loop5'],
    ]);
  });

  it('skips blank and malformed lines', () => {
    const text = ['', 'garbage', '36 35 98:0 /mnt1 /mnt rw', '36 35 nonsense / /mnt rw - ext4 /dev/x rw', '37 35 8:1 / /boot rw - ext4 /dev/sda1 rw', ''].join('\n');
    expect(parseMountInfo(text).map((entry) => entry.mountPoint)).toEqual(['/boot']);
  });
});
