import { spawnSync } from 'node:child_process';
import { mkdtemp, open, readFile, readdir, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { allocateAligned, suitsDirectIo } from './aligned-memory.js';
import { Writer, openDestination } from './destination.js';

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
