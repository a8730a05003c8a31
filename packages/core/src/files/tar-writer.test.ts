import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TarWriter, deviceNumbers } from './tar-writer.js';

/* The tar writer's output as GNU tar reads it (`tar -tv`, `--full-time`). */

describe('tar writer', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-tar-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function listing(write: (tar: TarWriter) => Promise<void>): Promise<string> {
    const parts: Buffer[] = [];
    const tar = new TarWriter(async (bytes) => void parts.push(Buffer.from(bytes)));
    await write(tar);
    await tar.finish();
    const file = join(dir, 'out.tar');
    await writeFile(file, Buffer.concat(parts));
    expect(Buffer.concat(parts).length % 512).toBe(0);
    return execFileSync('tar', ['-tv', '--full-time', '--numeric-owner', '-f', file], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
  }

  const base = { mode: 0o644, uid: 1000, gid: 100, size: 0, mtimeNs: 1_600_000_000_123_456_789n };

  it('writes long names, nanosecond times, large ids, links and device numbers that tar reads back', async () => {
    const long = 'd'.repeat(120) + '/' + 'f'.repeat(150);
    const text = await listing(async (tar) => {
      await tar.header({ ...base, path: Buffer.from(long), type: 'file', size: 5 });
      await tar.content(Buffer.from('hello'));
      await tar.endContent(5);
      await tar.header({ ...base, path: Buffer.from('link'), type: 'symlink', link: Buffer.from('t'.repeat(200)) });
      await tar.header({ ...base, path: Buffer.from('hard'), type: 'hardlink', link: Buffer.from(long) });
      await tar.header({ ...base, path: Buffer.from('null'), type: 'chardev', rdev: 0x103n });
      await tar.header({ ...base, path: Buffer.from('folder'), type: 'dir', mode: 0o1777, uid: 3_000_000, gid: 2_500_000 });
    });
    const lines = text.trim().split('\n');
    expect(lines[0]).toMatch(/^-rw-r--r-- 1000\/100 +5 2020-09-13 12:26:40\.123456789 d+\/f+$/);
    expect(lines[0]!.endsWith(long)).toBe(true);
    expect(lines[1]).toContain(`link -> ${'t'.repeat(200)}`);
    expect(lines[2]).toContain(`hard link to ${long}`);
    expect(lines[3]).toMatch(/^crw-r--r-- 1000\/100 +1,3 /);
    expect(lines[4]).toMatch(/^drwxrwxrwt 3000000\/2500000 .* folder\/$/);
  });

  it('splits Linux device numbers as glibc does', () => {
    expect(deviceNumbers(0x103n)).toEqual({ major: 1, minor: 3 });
    expect(deviceNumbers(0x7c8n)).toEqual({ major: 7, minor: 200 });
    // glibc's makedev: the low 12 bits of major at bit 8, the rest at bit 32; minor's low 8 bits at 0, the rest at bit 12.
    const makedev = (major: bigint, minor: bigint) => ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);
    expect(deviceNumbers(makedev(0x123456n, 0x9ab78n))).toEqual({ major: 0x123456, minor: 0x9ab78 });
  });
});
