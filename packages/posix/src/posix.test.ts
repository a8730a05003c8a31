import { execFileSync } from 'node:child_process';
import { chmodSync, constants, lstatSync, mkdirSync, openSync, closeSync, fstatSync, truncateSync, readdirSync, readFileSync, writeFileSync, symlinkSync, writeSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createCipheriv, randomBytes, randomInt, scryptSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { STAT_FIELDS, StatField, adviseHugePages, limitMallocArenas, releasePages, aesGcmOpenInto, aesGcmSealInto, dataRanges, gearCut, groupName, listXattrs, mknod, punchHole, zeroRange, readWhole, readWholeMany, scrypt, scryptSupported, setTimes, setXattr, listChildren, userName, DirentType, writeFileAndRename, writeFilesAndRename, type ListedChildren, type PosixError } from './index.js';

let dir: string;
const file = (name: string): string => path.join(dir, name);
const sh = (command: string, ...args: string[]): string => execFileSync(command, args, { encoding: 'utf8' });

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'cairn-posix-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function thrown(fn: () => unknown): PosixError {
  try {
    fn();
  } catch (error) {
    return error as PosixError;
  }
  throw new Error('expected a throw');
}

describe('listXattrs and setXattr', () => {
  it('lists what setfattr set, sorted by name, values as bytes', () => {
    writeFileSync(file('a'), 'x');
    sh('setfattr', '-n', 'user.zeta', '-v', 'last', file('a'));
    sh('setfattr', '-n', 'user.alpha', '-v', '0x00ff10', file('a'));
    sh('setfattr', '-n', 'user.empty', file('a'));
    expect(listXattrs(file('a'))).toEqual([
      { name: 'user.alpha', value: Buffer.from([0x00, 0xff, 0x10]) },
      { name: 'user.empty', value: Buffer.alloc(0) },
      { name: 'user.zeta', value: Buffer.from('last') },
    ]);
  });

  it('round-trips user.* and security.capability, read back by getfattr and getcap', () => {
    writeFileSync(file('src'), 'x');
    writeFileSync(file('dst'), 'x');
    sh('setfattr', '-n', 'user.big', '-v', '0x' + 'ab'.repeat(3000), file('src'));
    // cap_net_bind_service,cap_net_raw=ep as setcap writes it (VFS_CAP_REVISION_2)
    sh('setfattr', '-n', 'security.capability', '-v', '0x0100000200240000000000000000000000000000', file('src'));
    const attrs = listXattrs(file('src'));
    expect(attrs.map((a) => a.name)).toEqual(['security.capability', 'user.big']);
    for (const { name, value } of attrs) setXattr(file('dst'), name, value);
    expect(listXattrs(file('dst'))).toEqual(attrs);
    const dump = (f: string): string => sh('getfattr', '--absolute-names', '-e', 'hex', '-d', '-m', '-', f).split('\n').slice(1).join('\n');
    expect(dump(file('dst'))).toBe(dump(file('src')));
  });

  it('reads POSIX ACLs as system.posix_acl_* attributes', () => {
    sh('mkdir', file('d'));
    sh('setfacl', '-m', 'u:1234:rwx', '-m', 'd:g:5678:r-x', file('d'));
    const names = listXattrs(file('d')).map((a) => a.name);
    expect(names).toEqual(['system.posix_acl_access', 'system.posix_acl_default']);
  });

  it('does not follow a symlink, and takes Buffer paths with bytes that are not UTF-8', () => {
    const name = Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0x66, 0xff, 0xfe, 0x2e])]);
    writeFileSync(name, 'x');
    setXattr(name, 'user.raw', Buffer.from('v'));
    symlinkSync(name, file('link'));
    expect(listXattrs(name)).toEqual([{ name: 'user.raw', value: Buffer.from('v') }]);
    expect(listXattrs(file('link'))).toEqual([]);
    // user.* attributes are not allowed on symlinks: the refusal comes back as an errno error
    expect(thrown(() => setXattr(file('link'), 'user.x', Buffer.from('v'))).code).toBe('EPERM');
  });

  it('throws errors carrying code, errno, syscall and path', () => {
    const error = thrown(() => listXattrs(file('missing')));
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'llistxattr', path: file('missing') });
    expect(error.message).toBe(`ENOENT: no such file or directory, llistxattr '${file('missing')}'`);
    writeFileSync(file('a'), 'x');
    expect(thrown(() => setXattr(file('a'), 'nonamespace', Buffer.from('v')))).toMatchObject({ code: 'ENOTSUP', syscall: 'lsetxattr' });
    expect(() => listXattrs(42 as unknown as string)).toThrow(TypeError);
    expect(() => listXattrs('a\0b')).toThrow(/NUL/);
  });
});

describe('setTimes', () => {
  it('sets atime and mtime to the nanosecond', () => {
    writeFileSync(file('a'), 'x');
    setTimes(file('a'), 1_234_567_890_123_456_789n, 987_654_321_987_654_321n);
    const stat = lstatSync(file('a'), { bigint: true });
    expect(stat.atimeNs).toBe(1_234_567_890_123_456_789n);
    expect(stat.mtimeNs).toBe(987_654_321_987_654_321n);
  });

  it('sets the times of a symlink itself, and times before 1970', () => {
    writeFileSync(file('target'), 'x');
    symlinkSync(file('target'), file('link'));
    const before = statSync(file('target'), { bigint: true }).mtimeNs;
    setTimes(file('link'), -1_500_000_001n, -1n);
    const link = lstatSync(file('link'), { bigint: true });
    expect(link.atimeNs).toBe(-1_500_000_001n);
    expect(link.mtimeNs).toBe(-1n);
    expect(statSync(file('target'), { bigint: true }).mtimeNs).toBe(before);
  });

  it('throws ENOENT for a missing path', () => {
    expect(thrown(() => setTimes(file('missing'), 0n, 0n))).toMatchObject({ code: 'ENOENT', syscall: 'utimensat' });
  });
});

describe('mknod', () => {
  it('creates character and block devices with their numbers, and FIFOs', () => {
    const rdev = (major: number, minor: number): bigint => BigInt((major << 8) | minor);
    mknod(file('null'), constants.S_IFCHR | 0o640, rdev(1, 3));
    mknod(file('loop'), constants.S_IFBLK | 0o600, rdev(7, 200));
    mknod(file('fifo'), constants.S_IFIFO | 0o644, 0n);
    const nul = lstatSync(file('null'));
    expect(nul.isCharacterDevice()).toBe(true);
    expect(nul.mode & 0o7777).toBe(0o640 & ~process.umask());
    expect(nul.rdev).toBe(0x103);
    const loop = lstatSync(file('loop'));
    expect(loop.isBlockDevice()).toBe(true);
    expect(sh('stat', '-c', '%Hr:%Lr', file('loop')).trim()).toBe('7:200');
    expect(lstatSync(file('fifo')).isFIFO()).toBe(true);
  });

  it('keeps large device numbers (major and minor above 255, glibc makedev encoding)', () => {
    const [major, minor] = [300n, 70_000n];
    const rdev = ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);
    mknod(file('big'), constants.S_IFCHR | 0o600, rdev);
    expect(lstatSync(file('big'), { bigint: true }).rdev).toBe(rdev);
    expect(sh('stat', '-c', '%Hr:%Lr', file('big')).trim()).toBe('300:70000');
  });

  it('throws EEXIST when the path exists', () => {
    writeFileSync(file('a'), 'x');
    expect(thrown(() => mknod(file('a'), constants.S_IFIFO | 0o600, 0n))).toMatchObject({ code: 'EEXIST', syscall: 'mknod' });
  });
});

describe('punchHole', () => {
  const MiB = 1024 * 1024;

  it('deallocates a range of a file on this file system: it reads as zeros, the size and the rest kept', async () => {
    writeFileSync(file('punched'), Buffer.alloc(4 * MiB, 9));
    const fd = openSync(file('punched'), 'r+');
    try {
      expect(await punchHole(fd, 1 * MiB, 2 * MiB)).toBe(true);
      expect(dataRanges(fd, 4 * MiB)).toEqual([
        { offset: 0, length: 1 * MiB },
        { offset: 3 * MiB, length: 1 * MiB },
      ]);
    } finally {
      closeSync(fd);
    }
    const bytes = readFileSync(file('punched'));
    expect(bytes.length).toBe(4 * MiB);
    expect(bytes.subarray(1 * MiB, 3 * MiB).every((b) => b === 0)).toBe(true);
    expect(bytes.subarray(0, 1 * MiB).every((b) => b === 9) && bytes.subarray(3 * MiB).every((b) => b === 9)).toBe(true);
  });

  it('rejects with a fs-style error for a bad descriptor, and throws for bad arguments', async () => {
    await expect(punchHole(987654, 0, 4096)).rejects.toMatchObject({ code: 'EBADF', syscall: 'fallocate' });
    expect(thrown(() => punchHole(0, -1, 4096))).toBeInstanceOf(TypeError);
  });
});

describe('zeroRange', () => {
  const MiB = 1024 * 1024;

  it('makes the data in a range zeros without freeing it, and leaves a hole in it a hole: the size and the rest kept', async () => {
    writeFileSync(file('zeroed'), Buffer.alloc(4 * MiB, 9));
    truncateSync(file('zeroed'), 3 * MiB);
    truncateSync(file('zeroed'), 6 * MiB);
    const fd = openSync(file('zeroed'), 'r+');
    try {
      const blocksBefore = fstatSync(fd).blocks;
      expect(await zeroRange(fd, 1 * MiB, 4 * MiB)).toBe(true);
      // Give or take an extent tree block (512-byte units).
      expect(Math.abs(fstatSync(fd).blocks - blocksBefore), 'neither freed nor allocated').toBeLessThanOrEqual(8);
    } finally {
      closeSync(fd);
    }
    const bytes = readFileSync(file('zeroed'));
    expect(bytes.length).toBe(6 * MiB);
    expect(bytes.subarray(0, 1 * MiB).every((b) => b === 9)).toBe(true);
    expect(bytes.subarray(1 * MiB).every((b) => b === 0)).toBe(true);
  });

  it('rejects with a fs-style error for a bad descriptor, and throws for bad arguments', async () => {
    await expect(zeroRange(987654, 0, 4096)).rejects.toMatchObject({ code: 'EBADF' });
    expect(thrown(() => zeroRange(0, 0, -1))).toBeInstanceOf(TypeError);
  });
});

describe('limitMallocArenas', () => {
  // A process that starts six worker threads, with or without the cap first, and counts glibc's
  // malloc arenas. Each arena other than the main one lives in 64 MiB-aligned heaps whose first
  // word (heap_info.ar_ptr) points at the arena; only an arena's first heap holds the arena
  // itself, so counting heaps that point into themselves counts arenas, not the extra heaps a
  // busy arena grows (which a loaded machine makes many of).
  const ADDON = fileURLToPath(new URL('../build/Release/posix.node', import.meta.url));
  const script = `
    const { Worker } = require('node:worker_threads');
    const fs = require('node:fs');
    const heap = 64n * 1024n * 1024n;
    function arenas() {
      const mem = fs.openSync('/proc/self/mem', 'r');
      const word = Buffer.alloc(8);
      let count = 0;
      for (const line of fs.readFileSync('/proc/self/maps', 'utf8').split('\\n')) {
        const start = /^[0-9a-f]+-[0-9a-f]+ rw/.test(line) ? BigInt('0x' + line.split('-')[0]) : 1n;
        if (start % heap !== 0n) continue;
        fs.readSync(mem, word, 0, 8, Number(start));
        const arena = word.readBigUInt64LE(0);
        if (arena >= start && arena < start + heap) count++;
      }
      fs.closeSync(mem);
      return count;
    }
    const before = arenas();
    if (process.argv[1] !== 'none') require(${JSON.stringify(ADDON)}).limitMallocArenas(Number(process.argv[1]));
    const workers = Array.from({ length: 6 }, () => new Worker('setInterval(() => {}, 1000)', { eval: true }));
    Promise.all(workers.map((worker) => new Promise((resolve) => worker.once('online', resolve)))).then(() => {
      console.log(arenas() - before);
      for (const worker of workers) worker.terminate();
    });`;
  const arenasAdded = (cap: string) => Number(execFileSync(process.execPath, ['-e', script, cap], { encoding: 'utf8' }).trim());

  it('caps the arenas threads get from then on', () => {
    // Here 10 more without the cap (idle or loaded), none or one more with it: a cap of 2 allows
    // the main arena and one other, which Node's own threads may have made before the cap.
    expect(arenasAdded('none')).toBeGreaterThanOrEqual(5);
    expect(arenasAdded('2')).toBeLessThanOrEqual(1);
  });

  it('refuses a count that is not a positive integer', () => {
    for (const count of [0, -1, 'two', undefined]) expect(thrown(() => limitMallocArenas(count as number))).toBeInstanceOf(TypeError);
    expect(limitMallocArenas(8)).toBe(true);
  });
});

describe('releasePages', () => {
  const KiB = 1024;
  const rssKb = () => Number(/Rss:\s+(\d+)/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))![1]);

  it('gives the whole pages back: they stop counting in RSS and read as zeros, the bytes around them kept', () => {
    const memory = new SharedArrayBuffer(32 * 1024 * KiB);
    const all = new Uint8Array(memory);
    all.fill(9);
    const before = rssKb();
    // From inside the first page to inside the last: the partial pages at both ends are kept.
    expect(releasePages(new Uint8Array(memory, 100, memory.byteLength - 200))).toBe(true);
    expect(before - rssKb()).toBeGreaterThan(30 * KiB);
    expect(all.subarray(0, 100).every((b) => b === 9)).toBe(true);
    expect(all.subarray(all.length - 100).every((b) => b === 9)).toBe(true);
    // Whatever the buffer's alignment, the pages from 8 KiB in to 8 KiB before the end were released.
    expect(all.subarray(8192, all.length - 8192).every((b) => b === 0)).toBe(true);
    all.fill(5, 8192, 16384);
    expect(all[8192]).toBe(5);
  });

  it('releases nothing without a whole page inside, and refuses what is not a Uint8Array', () => {
    const memory = new SharedArrayBuffer(8192);
    expect(releasePages(new Uint8Array(memory, 1, 4096))).toBe(false);
    expect(thrown(() => releasePages('x' as unknown as Uint8Array))).toBeInstanceOf(TypeError);
  });
});

describe('adviseHugePages', () => {
  const MiB = 1024 * 1024;
  const hugePagesKb = () => Number(/AnonHugePages:\s+(\d+)/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))![1]);
  const thp = readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8');

  it.runIf(!thp.includes('[never]'))('backs the whole 2 MiB pages of a fresh buffer with huge pages once touched, its content as written', () => {
    const buffer = new Uint8Array(new SharedArrayBuffer(16 * MiB));
    const before = hugePagesKb();
    expect(adviseHugePages(buffer)).toBe(true);
    buffer.fill(7);
    expect(hugePagesKb() - before).toBeGreaterThanOrEqual(2048);
    expect(buffer.every((b) => b === 7)).toBe(true);
  });

  it('advises nothing in a buffer without a whole huge page, and refuses what is not a Uint8Array', () => {
    expect(adviseHugePages(new Uint8Array(64 * 1024))).toBe(false);
    expect(thrown(() => adviseHugePages('x' as unknown as Uint8Array))).toBeInstanceOf(TypeError);
  });
});

describe('AES-256-GCM into buffers', () => {
  const key = randomBytes(32);
  const nonce = randomBytes(12);
  const parts = [Uint8Array.of(3), randomBytes(1_000_003), randomBytes(17)];
  const message = Buffer.concat(parts);
  const nodeSealed = () => {
    const cipher = createCipheriv('aes-256-gcm', key, nonce);
    return Buffer.concat([cipher.update(message), cipher.final(), cipher.getAuthTag()]);
  };

  it('seals as Node does, into a shared buffer at an offset', () => {
    const out = new Uint8Array(new SharedArrayBuffer(message.length + 64));
    expect(aesGcmSealInto(key, nonce, parts, out, 12)).toBe(message.length + 16);
    expect(Buffer.from(out.subarray(12, 12 + message.length + 16)).equals(nodeSealed())).toBe(true);
  });

  it('opens what Node sealed, and refuses a flipped bit or a wrong tag', () => {
    const sealed = nodeSealed();
    const ciphertext = sealed.subarray(0, message.length);
    const tag = sealed.subarray(message.length);
    const out = new Uint8Array(new SharedArrayBuffer(message.length));
    expect(aesGcmOpenInto(key, nonce, ciphertext, tag, out)).toBe(true);
    expect(Buffer.from(out).equals(message)).toBe(true);
    const flipped = Buffer.from(ciphertext);
    flipped[500_000]! ^= 1;
    expect(aesGcmOpenInto(key, nonce, flipped, tag, out)).toBe(false);
    expect(aesGcmOpenInto(key, nonce, ciphertext, Buffer.alloc(16), out)).toBe(false);
  });

  it('refuses a wrong key or nonce length, and an output without room', () => {
    const out = new Uint8Array(message.length + 15);
    expect(thrown(() => aesGcmSealInto(key.subarray(1), nonce, parts, out, 0))).toBeInstanceOf(TypeError);
    expect(thrown(() => aesGcmSealInto(key, nonce.subarray(1), parts, out, 0))).toBeInstanceOf(TypeError);
    expect(thrown(() => aesGcmSealInto(key, nonce, parts, out, 0))).toBeInstanceOf(RangeError);
    expect(thrown(() => aesGcmOpenInto(key, nonce, message, Buffer.alloc(16), new Uint8Array(10)))).toBeInstanceOf(RangeError);
  });
});

describe('scrypt', () => {
  it('gives RFC 7914 test vector 1', async () => {
    const key = await scrypt(Buffer.alloc(0), Buffer.alloc(0), 16, 1, 1, 64);
    expect(key.toString('hex')).toBe('77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906');
  });

  it.each([
    [2, 1, 1, 1],
    [1024, 8, 16, 64],
    [256, 3, 5, 100],
    [2 ** 15, 8, 1, 32],
  ])('derives the key Node derives, N=%i r=%i p=%i, %i bytes', async (N, r, p, keyLength) => {
    const password = randomBytes(17);
    const salt = new Uint8Array(new SharedArrayBuffer(32));
    salt.set(randomBytes(32));
    const expected = scryptSync(password, salt, keyLength, { N, r, p, maxmem: 2 ** 31 });
    expect((await scrypt(password, salt, N, r, p, keyLength)).equals(expected)).toBe(true);
  });

  it('tells which parameters it takes, and refuses the others', () => {
    expect(scryptSupported(2 ** 15, 8, 1)).toBe(true);
    for (const [N, r, p] of [[3, 8, 1], [1, 8, 1], [2 ** 21, 8, 1], [2 ** 16, 1, 1], [1024, 0, 1], [1024, 8, 65], [1024, 8.5, 1]] as const) {
      expect(scryptSupported(N, r, p), `${N} ${r} ${p}`).toBe(false);
      expect(() => scrypt(Buffer.from('pw'), Buffer.from('salt'), N, r, p, 32), `${N} ${r} ${p}`).toThrow(TypeError);
    }
    expect(() => scrypt(Buffer.from('pw'), Buffer.from('salt'), 1024, 8, 1, 0)).toThrow(/keyLength/);
    expect(() => scrypt('pw' as unknown as Buffer, Buffer.from('salt'), 1024, 8, 1, 32)).toThrow(/Uint8Array/);
  });
});

describe('gearCut', () => {
  /** The loop as core's files/cdc.ts writes it in JavaScript. */
  function reference(gear: Int32Array, data: Uint8Array, warm: number, from: number, normal: number, limit: number, maskSmall: number, maskLarge: number): number {
    let h = 0;
    let i = warm;
    for (; i < from; i++) h = ((h << 1) + gear[data[i]!]!) | 0;
    for (; i < normal; i++) if (((h = ((h << 1) + gear[data[i]!]!) | 0) & maskSmall) === 0) return i + 1;
    for (; i < limit; i++) if (((h = ((h << 1) + gear[data[i]!]!) | 0) & maskLarge) === 0) return i + 1;
    return -1;
  }
  const gear = new Int32Array(randomBytes(1024).buffer);
  const data = new Uint8Array(new SharedArrayBuffer(1 << 20));
  data.set(randomBytes(data.length));

  it('finds the cut the JavaScript loop finds, with either mask, after feeding the warm-up bytes, in shared memory', () => {
    const masks = [-(1 << 12), -(1 << 16), -(1 << 20), -1 << 31, 0x7fff0000];
    const found = new Set<boolean>();
    for (let round = 0; round < 300; round++) {
      const [a, b, c, d] = Array.from({ length: 4 }, () => randomInt(data.length + 1)).sort((x, y) => x - y) as [number, number, number, number];
      const [small, large] = [masks[round % masks.length]!, masks[(round * 7 + 3) % masks.length]!];
      const cut = gearCut(gear, data, a, b, c, d, small, large);
      expect(cut, `${a} ${b} ${c} ${d}`).toBe(reference(gear, data, a, b, c, d, small, large));
      found.add(cut >= 0);
    }
    expect(found).toEqual(new Set([true, false]));
    // Zeros everywhere but the gear: a mask of no bits cuts after the first byte tested, of all bits only by chance.
    expect(gearCut(gear, data, 10, 20, 30, 40, 0, 0)).toBe(21);
    expect(gearCut(new Uint32Array(256), data, 0, 0, 100, 1000, -1, -1)).toBe(1);
    expect(gearCut(new Uint32Array(256).fill(1), new Uint8Array(100), 0, 0, 50, 100, -1, -1)).toBe(-1);
  });

  it('refuses positions out of order or past the data, and arguments of the wrong type', () => {
    expect(() => gearCut(gear, data, 5, 4, 10, 20, 0, 0)).toThrow(RangeError);
    expect(() => gearCut(gear, data, 0, 0, 30, 20, 0, 0)).toThrow(RangeError);
    expect(() => gearCut(gear, data, 0, 0, 0, data.length + 1, 0, 0)).toThrow(RangeError);
    expect(() => gearCut(gear, data, -1, 0, 0, 10, 0, 0)).toThrow(TypeError);
    expect(() => gearCut(new Int32Array(255), data, 0, 0, 0, 10, 0, 0)).toThrow(/256/);
    expect(() => gearCut(gear, new Uint16Array(10) as unknown as Uint8Array, 0, 0, 0, 10, 0, 0)).toThrow(/Uint8Array/);
  });
});

describe('dataRanges', () => {
  const MiB = 1024 * 1024;

  it('finds the data of a sparse file made with truncate and writes at offsets', () => {
    sh('truncate', '-s', String(64 * MiB), file('sparse'));
    const fd = openSync(file('sparse'), 'r+');
    try {
      writeSync(fd, Buffer.alloc(4096, 1), 0, 4096, 8 * MiB);
      writeSync(fd, Buffer.alloc(3 * MiB, 2), 0, 3 * MiB, 20 * MiB);
      writeSync(fd, Buffer.alloc(10, 3), 0, 10, 64 * MiB - 10);
      expect(dataRanges(fd, 64 * MiB)).toEqual([
        { offset: 8 * MiB, length: 4096 },
        { offset: 20 * MiB, length: 3 * MiB },
        { offset: 64 * MiB - 4096, length: 4096 },
      ]);
      // Only ranges below the size asked for, cut at it.
      expect(dataRanges(fd, 21 * MiB)).toEqual([
        { offset: 8 * MiB, length: 4096 },
        { offset: 20 * MiB, length: 1 * MiB },
      ]);
    } finally {
      closeSync(fd);
    }
  });

  it('is one range for a dense file, none for an empty or all-hole file', () => {
    writeFileSync(file('dense'), Buffer.alloc(100_000, 7));
    sh('truncate', '-s', '1G', file('hole'));
    writeFileSync(file('empty'), '');
    for (const [name, size, expected] of [
      ['dense', 100_000, [{ offset: 0, length: 100_000 }]],
      ['hole', 1024 * MiB, []],
      ['empty', 0, []],
    ] as const) {
      const fd = openSync(file(name), 'r');
      try {
        expect(dataRanges(fd, size)).toEqual(expected);
      } finally {
        closeSync(fd);
      }
    }
  });

  it('throws EBADF for a closed descriptor', () => {
    writeFileSync(file('a'), 'x');
    const fd = openSync(file('a'), 'r');
    closeSync(fd);
    expect(thrown(() => dataRanges(fd, 1))).toMatchObject({ code: 'EBADF', syscall: 'lseek' });
  });
});

describe('userName and groupName', () => {
  it('names root and what getent knows, and nothing for unknown ids', () => {
    expect(userName(0)).toBe('root');
    expect(groupName(0)).toBe('root');
    expect(userName(65534)).toBe(sh('getent', 'passwd', '65534').split(':')[0]);
    expect(userName(4_000_000)).toBeUndefined();
    expect(groupName(4_000_000)).toBeUndefined();
  });
});

describe('listChildren', () => {
  const listedNames = (found: ListedChildren): Buffer[] => [...found.nameEnds].map((end, i) => found.names.subarray(i === 0 ? 0 : found.nameEnds[i - 1], end));

  it('returns the names as fs.readdir sorts them, with lstat fields, symlink targets, xattrs and readdir types, in one call', async () => {
    writeFileSync(file('f'), 'hello');
    sh('setfattr', '-n', 'user.b', '-v', '2', file('f'));
    sh('setfattr', '-n', 'user.a', '-v', '1', file('f'));
    symlinkSync('f', file('link'));
    mkdirSync(file('sub'));
    mknod(file('fifo'), constants.S_IFIFO | 0o600, 0n);
    const odd = Buffer.from([0x6f, 0xff]);
    const long = Buffer.from('n'.repeat(255));
    for (const name of [odd, long]) writeFileSync(Buffer.concat([Buffer.from(dir + '/'), name]), '');
    setTimes(file('f'), 5_000_000_001n, 6_000_000_002n);
    const found = await listChildren(dir);
    const names = listedNames(found);
    expect(names).toEqual(readdirSync(dir, { encoding: 'buffer' }));
    const at = (name: string | Buffer): number => names.findIndex((n) => n.equals(Buffer.from(name)));
    expect(found.stats.length).toBe(STAT_FIELDS * names.length);
    const fields = (name: string | Buffer): bigint[] => [...found.stats.subarray(at(name) * STAT_FIELDS, (at(name) + 1) * STAT_FIELDS)];
    const stat = lstatSync(file('f'), { bigint: true });
    expect(fields('f')).toEqual([stat.mode, stat.uid, stat.gid, 5n, stat.ino, stat.dev, 1n, 0n, 5_000_000_001n, 6_000_000_002n, stat.ctimeNs]);
    expect(found.xattrs[at('f')]).toEqual([{ name: 'user.a', value: Buffer.from('1') }, { name: 'user.b', value: Buffer.from('2') }]);
    expect(found.targets[at('f')]).toBeUndefined();
    expect(found.targets[at('link')]).toEqual(Buffer.from('f'));
    expect(fields('link')[StatField.size]).toBe(1n);
    expect(fields(odd)[StatField.ino]).toBe(lstatSync(Buffer.concat([Buffer.from(dir + '/'), odd]), { bigint: true }).ino);
    expect(fields(long)[StatField.size]).toBe(0n);
    expect(['f', 'link', 'sub', 'fifo'].map((name) => found.direntTypes[at(name)])).toEqual([DirentType.file, DirentType.symlink, DirentType.dir, DirentType.fifo]);
    expect(found.errors.filter((e) => e !== undefined)).toEqual([]);
  });

  it('reads device numbers and many children; an empty folder; rejects as fs.readdir does when the folder cannot be listed', async () => {
    for (let i = 0; i < 2000; i++) writeFileSync(file(`n${i}`), String(i));
    mknod(file('dev'), constants.S_IFBLK | 0o600, 0x0801n);
    const found = await listChildren(Buffer.from(dir));
    const names = listedNames(found).map(String);
    expect(names.length).toBe(2001);
    expect(found.stats[names.indexOf('dev') * STAT_FIELDS + StatField.rdev]).toBe(0x801n);
    expect(found.stats[names.indexOf('n1999') * STAT_FIELDS + StatField.size]).toBe(4n);
    expect(found.errors.filter((e) => e !== undefined)).toEqual([]);
    await expect(listChildren(file('missing'))).rejects.toMatchObject({ code: 'ENOENT', syscall: 'scandir', path: file('missing') });
    await expect(listChildren(file('n1'))).rejects.toMatchObject({ code: 'ENOTDIR', syscall: 'scandir' });
    symlinkSync(dir, file('link'));
    await expect(listChildren(file('link'))).rejects.toMatchObject({ code: 'ENOTDIR' }); // not followed (O_NOFOLLOW with O_DIRECTORY)
    mkdirSync(file('empty'));
    const empty = await listChildren(file('empty'));
    expect(empty).toMatchObject({ targets: [], xattrs: [], errors: [] });
    expect([empty.names.length, empty.nameEnds.length, empty.stats.length, empty.direntTypes.length]).toEqual([0, 0, 0, 0]);
  });

  it('gives a child that cannot be read its own error and keeps its readdir type (a folder a non-root user may read but not search)', () => {
    chmodSync(dir, 0o755);
    mkdirSync(file('listable'));
    writeFileSync(file('listable/f'), 'x');
    mkdirSync(file('listable/sub'));
    chmodSync(file('listable'), 0o644);
    // Run as nobody: root may search any folder.
    const script = `import { listChildren } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
      const found = await listChildren(${JSON.stringify(file('listable'))});
      console.log(JSON.stringify({ names: found.names.toString(), types: [...found.direntTypes], errors: found.errors.map((e) => e && { code: e.code, syscall: e.syscall, path: e.path }) }));`;
    const out = execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({
      names: 'fsub',
      types: [DirentType.file, DirentType.dir],
      errors: [
        { code: 'EACCES', syscall: 'lstat', path: file('listable/f') },
        { code: 'EACCES', syscall: 'lstat', path: file('listable/sub') },
      ],
    });
  });
});

describe('readWhole', () => {
  it('reads a file from its start into a Uint8Array or a SharedArrayBuffer view, with its size and times after', async () => {
    writeFileSync(file('f'), 'hello, world');
    setTimes(file('f'), 1_000_000_000n, 2_000_000_000_000_000_123n); // atime before mtime: relatime would update it
    const into = Buffer.alloc(5);
    const read = await readWhole(file('f'), into);
    const stat = lstatSync(file('f'), { bigint: true });
    expect(read).toEqual({ bytesRead: 5, size: 12, mtimeNs: 2_000_000_000_000_000_123n, ctimeNs: stat.ctimeNs });
    expect(into.toString()).toBe('hello');
    const shared = new Uint8Array(new SharedArrayBuffer(64), 8, 40);
    expect((await readWhole(Buffer.from(file('f')), shared)).bytesRead).toBe(12); // fewer at the end
    expect(Buffer.from(shared.subarray(0, 12)).toString()).toBe('hello, world');
    expect(stat.atimeNs).toBe(1_000_000_000n);
    expect(lstatSync(file('f'), { bigint: true }).atimeNs).toBe(1_000_000_000n); // O_NOATIME
  });

  it('reads nothing of an empty file, and refuses a FIFO (something that replaced a file) without blocking', async () => {
    writeFileSync(file('empty'), '');
    expect(await readWhole(file('empty'), new Uint8Array(10))).toMatchObject({ bytesRead: 0, size: 0 });
    mknod(file('fifo'), constants.S_IFIFO | 0o600, 0n);
    await expect(readWhole(file('fifo'), new Uint8Array(10))).rejects.toMatchObject({ code: 'ESPIPE', syscall: 'read' });
  });

  it('refuses a symlink and a missing file with fs-style errors, and a destination that is not a Uint8Array', async () => {
    writeFileSync(file('f'), 'x');
    symlinkSync('f', file('link'));
    await expect(readWhole(file('link'), new Uint8Array(1))).rejects.toMatchObject({ code: 'ELOOP', syscall: 'open', path: file('link') });
    await expect(readWhole(file('missing'), new Uint8Array(1))).rejects.toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open' });
    await expect(readWhole(dir, new Uint8Array(1))).rejects.toMatchObject({ code: 'EISDIR', syscall: 'read' });
    expect(() => readWhole(file('f'), new Uint16Array(1) as unknown as Uint8Array)).toThrow(TypeError);
  });

  it('readWholeMany: several files in one call, each with its result or its own error, as readWhole gives them', async () => {
    writeFileSync(file('a'), 'first file');
    writeFileSync(file('b'), 'second');
    writeFileSync(file('empty'), '');
    symlinkSync('a', file('link'));
    const paths = [file('a'), Buffer.from(file('missing')), file('b'), file('link'), file('empty'), dir];
    const shared = new SharedArrayBuffer(64);
    const intos = [Buffer.alloc(5), new Uint8Array(1), new Uint8Array(shared, 0, 32), new Uint8Array(1), new Uint8Array(4), new Uint8Array(shared, 32, 8)];
    const results = await readWholeMany(paths, intos);
    expect(results).toHaveLength(6);
    for (const k of [0, 2, 4]) expect(results[k]).toEqual(await readWhole(paths[k]!, new Uint8Array(intos[k]!.length)));
    expect(results[0]).toMatchObject({ bytesRead: 5, size: 10 });
    expect(Buffer.from(intos[0]!).toString()).toBe('first');
    expect(Buffer.from(intos[2]!.subarray(0, 6)).toString()).toBe('second');
    expect(results[1]).toMatchObject({ code: 'ENOENT', syscall: 'open', path: file('missing') });
    expect(results[1]).toBeInstanceOf(Error);
    expect(results[3]).toMatchObject({ code: 'ELOOP', syscall: 'open' });
    expect(results[5]).toMatchObject({ code: 'EISDIR', syscall: 'read' });
    expect(await readWholeMany([], [])).toEqual([]);
    expect(() => readWholeMany([file('a')], [])).toThrow(TypeError);
    expect(() => readWholeMany([file('a')], [new Uint16Array(1) as unknown as Uint8Array])).toThrow(TypeError);
  });
});

describe('writeFileAndRename', () => {
  const times = { atimeNs: 1_500_000_000_123_456_789n, mtimeNs: 1_600_000_000_987_654_321n };

  it('writes pieces at their offsets with holes between and after, sets owner, mode, xattrs and times, and renames', async () => {
    const cap = Buffer.from('0100000200040000000000000000000000000000', 'hex'); // cap_net_bind_service=ep
    const failures = await writeFileAndRename(file('.tmp'), file('f'), [Buffer.from('head'), new Uint8Array(new SharedArrayBuffer(8)).fill(0x41, 0, 3).subarray(0, 3)], [0, 1 << 20], 3 << 20, {
      mode: 0o104750,
      uid: 1234,
      gid: 5678,
      ...times,
      xattrs: [{ name: 'security.capability', value: cap }, { name: 'user.note', value: Buffer.from('kept') }],
    });
    expect(failures).toEqual([]);
    expect(readdirSync(dir)).toEqual(['f']);
    const stat = lstatSync(file('f'), { bigint: true });
    expect({ mode: stat.mode, uid: stat.uid, gid: stat.gid, size: stat.size, nlink: stat.nlink }).toEqual({ mode: 0o104750n, uid: 1234n, gid: 5678n, size: 3n << 20n, nlink: 1n });
    expect({ atimeNs: stat.atimeNs, mtimeNs: stat.mtimeNs }).toEqual(times);
    const content = readFileSync(file('f'));
    expect(content.subarray(0, 4).toString()).toBe('head');
    expect(content.subarray(1 << 20, (1 << 20) + 4).toString('latin1')).toBe('AAA\0');
    expect(content.subarray(4, 1 << 20).every((b) => b === 0)).toBe(true);
    expect(stat.blocks * 512n).toBeLessThan(1n << 20n); // the holes are holes
    expect(sh('getcap', file('f'))).toContain('cap_net_bind_service=ep');
    expect(sh('getfattr', '--absolute-names', '-n', 'user.note', '--only-values', file('f'))).toBe('kept');
  });

  it('leaves the owner alone without a uid, writes an empty file, and replaces a file under the name', async () => {
    writeFileSync(file('empty'), 'old content');
    expect(await writeFileAndRename(Buffer.from(file('.tmp')), Buffer.from(file('empty')), [], [], 0, { mode: 0o640, ...times, xattrs: [] })).toEqual([]);
    const stat = lstatSync(file('empty'));
    expect({ mode: stat.mode & 0o7777, uid: stat.uid, size: stat.size }).toEqual({ mode: 0o640, uid: process.getuid!(), size: 0 });
  });

  it('reports metadata it cannot set and still makes the file', async () => {
    const failures = await writeFileAndRename(file('.tmp'), file('f'), [Buffer.from('x')], [0], 1, { mode: 0o600, ...times, xattrs: [{ name: 'bogus.name', value: Buffer.from('v') }] });
    expect(failures).toEqual([{ what: 'xattr', name: 'bogus.name', error: expect.objectContaining({ code: 'ENOTSUP', syscall: 'fsetxattr', path: file('f') }) }]);
    expect(readFileSync(file('f'), 'utf8')).toBe('x');
  });

  it('refuses a temporary name that is taken, a folder in the way or a missing folder, leaving the temporary name as it was', async () => {
    writeFileSync(file('.taken'), 'old');
    await expect(writeFileAndRename(file('.taken'), file('f'), [Buffer.from('new')], [0], 3, { mode: 0o600, ...times, xattrs: [] })).rejects.toMatchObject({ code: 'EEXIST', syscall: 'open' });
    expect(readFileSync(file('.taken'), 'utf8')).toBe('old');
    mkdirSync(file('folder'));
    writeFileSync(file('folder/inside'), 'kept');
    await expect(writeFileAndRename(file('.tmp'), file('folder'), [Buffer.from('new')], [0], 3, { mode: 0o600, ...times, xattrs: [] })).rejects.toMatchObject({ code: 'EISDIR', syscall: 'rename' });
    expect(readdirSync(dir).sort()).toEqual(['.taken', 'folder']);
    await expect(writeFileAndRename(file('missing/.tmp'), file('missing/f'), [], [], 0, { mode: 0o600, ...times, xattrs: [] })).rejects.toMatchObject({ code: 'ENOENT', syscall: 'open' });
    expect(() => writeFileAndRename(file('.tmp'), file('g'), [Buffer.from('x')], [], 1, { mode: 0o600, ...times, xattrs: [] })).toThrow(TypeError);
  });

  it('writeFilesAndRename: several files in one call, each with its own failures or error, as writeFileAndRename gives them', async () => {
    writeFileSync(file('.taken'), 'old');
    const metadata = { mode: 0o640, ...times, xattrs: [] };
    const results = await writeFilesAndRename([
      { temp: file('.t1'), path: file('a'), pieces: [Buffer.from('first')], offsets: [0], size: 5, metadata },
      { temp: file('.taken'), path: file('b'), pieces: [Buffer.from('second')], offsets: [0], size: 6, metadata },
      { temp: Buffer.from(file('.t3')), path: file('c'), pieces: [new Uint8Array(new SharedArrayBuffer(4)).fill(0x43)], offsets: [1 << 20], size: 2 << 20, metadata },
      { temp: file('.t4'), path: file('d'), pieces: [Buffer.from('x')], offsets: [0], size: 1, metadata: { ...metadata, xattrs: [{ name: 'bogus.name', value: Buffer.from('v') }] } },
    ]);
    expect(results[0]).toEqual([]);
    expect(results[1]).toMatchObject({ code: 'EEXIST', syscall: 'open', path: file('b') });
    expect(results[1]).toBeInstanceOf(Error);
    expect(results[2]).toEqual([]);
    expect(results[3]).toEqual([{ what: 'xattr', name: 'bogus.name', error: expect.objectContaining({ code: 'ENOTSUP', syscall: 'fsetxattr', path: file('d') }) }]);
    expect(readdirSync(dir).sort()).toEqual(['.taken', 'a', 'c', 'd']);
    expect(readFileSync(file('a'), 'utf8')).toBe('first');
    expect(readFileSync(file('.taken'), 'utf8')).toBe('old');
    const c = lstatSync(file('c'), { bigint: true });
    expect({ size: c.size, mode: c.mode & 0o7777n, mtimeNs: c.mtimeNs }).toEqual({ size: 2n << 20n, mode: 0o640n, mtimeNs: times.mtimeNs });
    expect(readFileSync(file('c')).subarray(1 << 20, (1 << 20) + 4).toString()).toBe('CCCC');
    expect(await writeFilesAndRename([])).toEqual([]);
    expect(() => writeFilesAndRename([{ temp: file('.t5'), path: file('e'), pieces: [Buffer.from('x')], offsets: [], size: 1, metadata }])).toThrow(TypeError);
    expect(readdirSync(dir)).not.toContain('e');
  });
});
