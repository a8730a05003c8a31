import { mkdtemp, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { allocateAligned, suitsDirectIo } from './aligned-memory.js';
import { Writer } from './destination.js';

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
});
