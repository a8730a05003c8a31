import { describe, expect, it } from 'vitest';
import type { TreeEntry } from '../files/tree.js';
import { deviceNumbers, entryJson, escapeName, isoTimeNs, longListing, modeString } from './format-entries.js';

const NS = BigInt(Date.parse('2026-12-01T02:03:04Z')) * 1_000_000n + 123_456_789n;

function entry(fields: Partial<TreeEntry>): TreeEntry {
  return { name: Buffer.from('x'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: NS, ctimeNs: NS, atimeNs: NS, size: 0, inode: 1n, device: 1n, links: 1, content: [], ...fields };
}

describe('ls -l formatting', () => {
  it('shows the mode as ls does, setuid, setgid and sticky bits included', () => {
    expect(modeString('file', 0o644)).toBe('-rw-r--r--');
    expect(modeString('file', 0o4755)).toBe('-rwsr-xr-x');
    expect(modeString('file', 0o4644)).toBe('-rwSr--r--');
    expect(modeString('dir', 0o2775)).toBe('drwxrwsr-x');
    expect(modeString('dir', 0o2745)).toBe('drwxr-Sr-x');
    expect(modeString('dir', 0o1777)).toBe('drwxrwxrwt');
    expect(modeString('dir', 0o1776)).toBe('drwxrwxrwT');
    expect(modeString('symlink', 0o777)).toBe('lrwxrwxrwx');
    expect(modeString('chardev', 0o620)).toBe('crw--w----');
    expect(modeString('blockdev', 0o660)).toBe('brw-rw----');
    expect(modeString('fifo', 0)).toBe('p---------');
  });

  it('escapes what could fool a terminal, and only that', () => {
    expect(escapeName(Buffer.from('plain name.txt'))).toBe('plain name.txt');
    expect(escapeName(Buffer.from('élan 日本 🎉'))).toBe('élan 日本 🎉');
    expect(escapeName(Buffer.from([0x61, 0xff, 0x62]))).toBe('a\\xffb');
    expect(escapeName(Buffer.from('a\nb\tc\x1b[31md\\e'))).toBe('a\\nb\\tc\\x1b[31md\\\\e');
    // A truncated sequence, an overlong encoding, a C1 control and a right-to-left override.
    expect(escapeName(Buffer.from([0xe6, 0x97]))).toBe('\\xe6\\x97');
    expect(escapeName(Buffer.from([0xc0, 0xaf]))).toBe('\\xc0\\xaf');
    expect(escapeName(Buffer.from('\u0085'))).toBe('\\u{85}');
    expect(escapeName(Buffer.from('evil\u202etxt.exe'))).toBe('evil\\u{202e}txt.exe');
  });

  it('gives times with nanoseconds, and device numbers as glibc splits them', () => {
    expect(isoTimeNs(NS)).toBe('2026-12-01T02:03:04.123456789Z');
    expect(isoTimeNs(0n)).toBe('1970-01-01T00:00:00.000000000Z');
    expect(isoTimeNs(-1n)).toBe('1969-12-31T23:59:59.999999999Z');
    expect(deviceNumbers(0x0103n)).toEqual({ major: 1, minor: 3 });
    // makedev(259, 65537): major 259 = 0x103, minor 0x10001.
    expect(deviceNumbers((0x103n << 8n) | 0x01n | (0x10000n << 12n))).toEqual({ major: 259, minor: 0x10001 });
  });

  it('aligns the columns of a listing', () => {
    const lines = longListing([
      { label: 'a', entry: entry({ size: 5, user: 'root', group: 'root' }) },
      { label: 'tool', entry: entry({ mode: 0o4755, size: 123456, uid: 1000, gid: 100, links: 12 }) },
      { label: 'null', entry: entry({ type: 'chardev', mode: 0o666, rdev: 0x103n, content: undefined }) },
      { label: 'link', entry: entry({ type: 'symlink', mode: 0o777, target: Buffer.from('to\nthere'), size: 8, content: undefined }) },
    ]);
    const time = lines[0]!.match(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/)![0];
    expect(lines).toEqual([
      `-rw-r--r--  1 root root      5 ${time} a`,
      `-rwsr-xr-x 12 1000 100  123456 ${time} tool`,
      `crw-rw-rw-  1 0    0      1, 3 ${time} null`,
      `lrwxrwxrwx  1 0    0         8 ${time} link -> to\\nthere`,
    ]);
  });

  it('gives the JSON of an entry, with base64 bytes for names that are not UTF-8', () => {
    const bad = Buffer.from([0x62, 0xff]);
    const json = entryJson(Buffer.concat([Buffer.from('/d/'), bad]), entry({ name: bad, type: 'symlink', target: bad, size: 2, content: undefined, xattrs: [{ name: 'user.a', value: Buffer.from('1') }] }));
    expect(json).toEqual({
      path: '/d/b\ufffd',
      pathBytes: Buffer.from('/d/b\xff', 'latin1').toString('base64'),
      name: 'b\ufffd',
      nameBytes: bad.toString('base64'),
      type: 'symlink',
      mode: 0o644,
      permissions: 'lrw-r--r--',
      uid: 0,
      gid: 0,
      size: 2,
      mtime: '2026-12-01T02:03:04.123456789Z',
      ctime: '2026-12-01T02:03:04.123456789Z',
      atime: '2026-12-01T02:03:04.123456789Z',
      links: 1,
      inode: '1',
      target: 'b\ufffd',
      targetBytes: bad.toString('base64'),
      xattrs: ['user.a'],
    });
  });
});
