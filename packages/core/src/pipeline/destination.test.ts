import { spawnSync } from 'node:child_process';
import { mkdtemp, open, readFile, readdir, rm, stat, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { allocateAligned, suitsDirectIo } from './aligned-memory.js';
import { RangeZeroer, Writer, openDestination } from './destination.js';

describe('restore destination writes', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-destination-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('takes direct I/O only for aligned data in aligned memory at an aligned offset', () => {
    const aligned = new Uint8Array(allocateAligned(64 * 1024));
    expect(suitsDirectIo(aligned, 8192)).toBe(true);
    expect(suitsDirectIo(aligned.subarray(4096, 8192), 0)).toBe(true);
    expect(suitsDirectIo(aligned.subarray(512, 4608), 0)).toBe(false);
    expect(suitsDirectIo(aligned.subarray(0, 1000), 0)).toBe(false);
    expect(suitsDirectIo(aligned, 512)).toBe(false);
    expect(suitsDirectIo(new Uint8Array(new SharedArrayBuffer(8192)), 0)).toBe(false);
  });

  it('falls back to the page cache, for good, when the filesystem refuses a direct write', async () => {
    const path = join(dir, 'out.img');
    const buffered = await open(path, 'w+');
    let directWrites = 0;
    let directClosed = false;
    // A stand-in for a filesystem that opens with O_DIRECT but refuses direct writes (EINVAL).
    const refusing = {
      async write() {
        directWrites++;
        throw Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' });
      },
      async close() {
        directClosed = true;
      },
    } as unknown as FileHandle;
    const writer = new Writer(buffered, refusing);
    const data = new Uint8Array(allocateAligned(16 * 1024));
    randomFillSync(data);
    await writer.write(data.subarray(0, 8192), 0);
    await writer.write(data.subarray(8192), 8192);
    await writer.settle();
    await buffered.close();
    expect(directWrites).toBe(1);
    expect(directClosed).toBe(true);
    expect((await readFile(path)).equals(Buffer.from(data))).toBe(true);
  });

  it('reports other errors of a direct write instead of hiding them', async () => {
    const buffered = await open(join(dir, 'out.img'), 'w+');
    const failing = {
      async write() {
        throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
      },
      async close() {},
    } as unknown as FileHandle;
    const writer = new Writer(buffered, failing);
    await expect(writer.write(new Uint8Array(allocateAligned(4096), 0, 4096), 0)).rejects.toThrow(/EIO/);
    await writer.settle();
    await buffered.close();
  });

  it('makes the zeros of an image restored in place in the background: done by commit, the rest kept, nothing allocated', async () => {
    const MiB = 1024 * 1024;
    const path = join(dir, 'in-place.img');
    await writeFile(path, Buffer.alloc(16 * MiB, 9));
    // A hole where a zero range is asked: it stays one.
    await truncate(path, 13 * MiB);
    await truncate(path, 16 * MiB);
    const blocksBefore = (await stat(path)).blocks;
    const destination = await openDestination(path, 16 * MiB, { force: true, delta: true });
    for (const offset of [4 * MiB, 8 * MiB, 13 * MiB]) await destination.zero!(offset, offset === 13 * MiB ? 3 * MiB : 4 * MiB);
    await destination.commit();
    const bytes = await readFile(path);
    const zeros = (from: number, to: number) => bytes.subarray(from * MiB, to * MiB).every((b) => b === 0);
    const nines = (from: number, to: number) => bytes.subarray(from * MiB, to * MiB).every((b) => b === 9);
    expect([nines(0, 4), zeros(4, 12), nines(12, 13), zeros(13, 16)]).toEqual([true, true, true, true]);
    expect(bytes.length).toBe(16 * MiB);
    expect((await stat(path)).blocks).toBeLessThanOrEqual(blocksBefore);
  });

  it('punches holes where the file system has no zero range (tmpfs), and keeps punching', async () => {
    const MiB = 1024 * 1024;
    const shm = await mkdtemp('/dev/shm/cairn-zeros-');
    try {
      const path = join(shm, 'in-place.img');
      await writeFile(path, Buffer.alloc(8 * MiB, 9));
      const handle = await open(path, 'r+');
      const zeros = new RangeZeroer(handle, new Writer(handle, undefined));
      await zeros.zero(0, 2 * MiB);
      await zeros.zero(4 * MiB, 2 * MiB);
      await zeros.settle();
      await handle.close();
      const bytes = await readFile(path);
      expect([0, 2, 4, 6].map((at) => bytes[at * MiB])).toEqual([0, 9, 0, 9]);
      expect(bytes.subarray(0, 2 * MiB).every((b) => b === 0) && bytes.subarray(4 * MiB, 6 * MiB).every((b) => b === 0)).toBe(true);
      expect((await stat(path)).blocks * 512, 'both ranges punched, not written').toBe(4 * MiB);
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  });

  it('keeps a bounded number of ranges waiting: a call beyond them returns once a range is done', async () => {
    const handle = await open(join(dir, 'queued.img'), 'w+');
    await handle.truncate(128 * 4096);
    const zeros = new RangeZeroer(handle, new Writer(handle, undefined), 64);
    const returned = new Set<number>();
    // One range being made zeros, 64 waiting, and one more.
    const calls = Array.from({ length: 66 }, (_, k) => zeros.zero(k * 4096, 4096).then(() => returned.add(k)));
    // A range completes in the thread pool, so not within these microtask turns.
    for (let turn = 0; turn < 10; turn++) await Promise.resolve();
    expect(returned.size).toBe(65);
    expect(returned.has(65)).toBe(false);
    await Promise.all(calls);
    await zeros.settle();
    await handle.close();
  });

  it('drops the ranges not started when the restore is abandoned', async () => {
    const MiB = 1024 * 1024;
    const path = join(dir, 'abandoned.img');
    await writeFile(path, Buffer.alloc(8 * MiB, 9));
    const handle = await open(path, 'r+');
    const zeros = new RangeZeroer(handle, new Writer(handle, undefined));
    for (let k = 0; k < 8; k++) await zeros.zero(k * MiB, MiB);
    await zeros.drop();
    await handle.close();
    const bytes = await readFile(path);
    // The first range was under way when the others were dropped.
    expect(bytes.subarray(0, MiB).every((b) => b === 0)).toBe(true);
    expect(bytes.subarray(MiB).every((b) => b === 9)).toBe(true);
  });

  it('reports a failed zero range at settle, and refuses further ranges', async () => {
    const handle = await open(join(dir, 'closed.img'), 'w+');
    const writer = new Writer(handle, undefined);
    const zeros = new RangeZeroer(handle, writer);
    await handle.close(); // its descriptor is gone: the zero range's first call (lseek) fails with EBADF
    await zeros.zero(0, 4096);
    await expect(zeros.settle()).rejects.toMatchObject({ code: 'EBADF', syscall: 'lseek' });
    await expect(zeros.zero(4096, 4096)).rejects.toThrow(/EBADF/);
  });

  it('removes what restores to the same file left when they were killed: only theirs, and only once their process is gone', async () => {
    const dead = spawnSync('true').pid!;
    const names = {
      dead: `.out.img.cairn-restore-0123456789ab-${dead}@${hostname()}`,
      running: `.out.img.cairn-restore-0123456789ab-${process.pid}@${hostname()}`,
      otherHost: `.out.img.cairn-restore-0123456789ab-${dead}@elsewhere.example`,
      // Made by an earlier cairn, whose names say nothing of their owner.
      unknownOwner: '.out.img.cairn-restore-0123456789ab',
      otherFile: `.other.img.cairn-restore-0123456789ab-${dead}@${hostname()}`,
    };
    for (const name of Object.values(names)) await writeFile(join(dir, name), 'partial');
    const destination = await openDestination(join(dir, 'out.img'), 4096, { force: false });
    const left = await readdir(dir);
    expect(left).not.toContain(names.dead);
    expect(left).toEqual(expect.arrayContaining([names.running, names.otherHost, names.unknownOwner, names.otherFile]));
    expect(left.filter((name) => name.endsWith(`-${process.pid}@${hostname()}`))).toHaveLength(2); // its own and the one kept
    await destination.abort();
  });
});
