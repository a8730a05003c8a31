import { mkdtemp, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OverlayError } from '../errors.js';
import type { ExportExtent, ExportSource } from './export-source.js';
import { checkRange } from './extents.js';
import { OVERLAY_BLOCK_SIZE as BLOCK, Overlay } from './overlay.js';

/*
 * The overlay's mechanics over a read-only export held in memory (the snapshot exports'
 * tests run it over a real snapshot): partial blocks, concurrent writes, what reaches
 * FILE.map and when, and the overlays it refuses.
 */

const SNAPSHOT = 'ab'.repeat(32);
/** Not a whole number of blocks: the last block is short. */
const SIZE = 40 * BLOCK + 1234;

/** A read-only disk in memory; its first half is data, the rest a hole. */
function memoryDisk(bytes: Buffer): ExportSource & { reads: number } {
  const half = Math.floor(bytes.length / 2);
  return {
    name: '',
    description: 'test disk',
    size: bytes.length,
    writable: false,
    reads: 0,
    async read(offset, length) {
      checkRange(this, offset, length);
      this.reads++;
      return Buffer.from(bytes.subarray(offset, offset + length));
    },
    async blockStatus(offset, length) {
      const extents: ExportExtent[] = [];
      if (offset < half) extents.push({ offset, length: Math.min(half, offset + length) - offset, hole: false, zero: false });
      if (offset + length > half) extents.push({ offset: Math.max(half, offset), length: offset + length - Math.max(half, offset), hole: true, zero: true });
      return extents;
    },
    async prefetch() {},
    async close() {},
  };
}

/** The bits of FILE.map as stored: which blocks it names written. */
async function storedBits(path: string): Promise<number[]> {
  const map = await readFile(`${path}.map`);
  const blocks: number[] = [];
  for (let block = 0; block < Math.ceil(SIZE / BLOCK); block++) if (map[64 + (block >> 3)]! & (1 << (block & 7))) blocks.push(block);
  return blocks;
}

describe('Overlay', () => {
  let dir: string;
  let path: string;
  let image: Buffer;
  let overlay: Overlay | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-overlay-'));
    path = join(dir, 'disk.overlay');
    image = randomBytes(SIZE);
    image.fill(0, SIZE / 2);
  });
  afterEach(async () => {
    await overlay?.release();
    overlay = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  async function openOverlay(base: ExportSource = memoryDisk(image), snapshot = SNAPSHOT): Promise<Overlay> {
    overlay = await Overlay.open(path, base, snapshot);
    return overlay;
  }

  it('writes a documented map header and a sparse data file of the disk size', async () => {
    await openOverlay();
    const map = await readFile(`${path}.map`);
    expect(map.subarray(0, 8).toString()).toBe('CAIRNOVL');
    expect([map.readUInt32LE(8), map.readUInt32LE(12), Number(map.readBigUInt64LE(16))]).toEqual([1, BLOCK, SIZE]);
    expect(map.subarray(24, 56).toString('hex')).toBe(SNAPSHOT);
    expect(map.length).toBe(64 + Math.ceil(Math.ceil(SIZE / BLOCK) / 8));
    expect((await readFile(path)).equals(Buffer.alloc(SIZE))).toBe(true);
  });

  it('merges partial writes with the blocks under them, up to the short last block', async () => {
    const base = memoryDisk(image);
    const model = Buffer.from(image);
    await openOverlay(base);
    for (const [offset, length] of [
      [100, 10],
      [BLOCK - 5, 10],
      [3 * BLOCK, 2 * BLOCK],
      [SIZE - 1000, 1000],
      [SIZE - 1, 1],
      [7 * BLOCK + 1, 5 * BLOCK],
    ] as const) {
      const data = randomBytes(length);
      await overlay!.write(offset, data);
      data.copy(model, offset);
      expect((await overlay!.read(0, SIZE)).equals(model), `after ${length} bytes at ${offset}`).toBe(true);
    }
    await overlay!.writeZeroes(20 * BLOCK - 7, 3 * BLOCK);
    model.fill(0, 20 * BLOCK - 7, 23 * BLOCK - 7);
    expect((await overlay!.read(0, SIZE)).equals(model)).toBe(true);
    // Blocks 0-1, 3-4, 7-12, 19-22 and the short last one.
    expect(overlay!.writtenBytes).toBe(14 * BLOCK + 1234);
  });

  it('keeps both of two partial writes to one block made at the same time', async () => {
    await openOverlay();
    const model = Buffer.from(image);
    const writes = Array.from({ length: 8 }, (_, i) => ({ offset: 5 * BLOCK + i * 512, data: randomBytes(512) }));
    await Promise.all(writes.map(({ offset, data }) => overlay!.write(offset, data)));
    for (const { offset, data } of writes) data.copy(model, offset);
    expect((await overlay!.read(4 * BLOCK, 3 * BLOCK)).equals(model.subarray(4 * BLOCK, 7 * BLOCK))).toBe(true);
  });

  it('reports written blocks as data, the rest as the disk below reports it', async () => {
    await openOverlay();
    const half = Math.floor(SIZE / 2);
    await overlay!.write(39 * BLOCK + 5, Buffer.alloc(10, 1));
    await overlay!.write(BLOCK, Buffer.alloc(10, 1));
    expect(await overlay!.blockStatus(0, SIZE)).toEqual([
      { offset: 0, length: half, hole: false, zero: false },
      { offset: half, length: 39 * BLOCK - half, hole: true, zero: true },
      { offset: 39 * BLOCK, length: BLOCK, hole: false, zero: false },
      { offset: 40 * BLOCK, length: 1234, hole: true, zero: true },
    ]);
    expect(await overlay!.blockStatus(39 * BLOCK + 100, 10)).toEqual([{ offset: 39 * BLOCK + 100, length: 10, hole: false, zero: false }]);
  });

  it('records a write in FILE.map only on flush, after its data', async () => {
    await openOverlay();
    await overlay!.write(2 * BLOCK + 10, Buffer.from('first'));
    await overlay!.write(30 * BLOCK, Buffer.alloc(2 * BLOCK, 9));
    expect(await storedBits(path)).toEqual([]);
    await overlay!.flush();
    expect(await storedBits(path)).toEqual([2, 30, 31]);
    expect((await readFile(path)).subarray(2 * BLOCK + 10, 2 * BLOCK + 15).toString()).toBe('first');
    await overlay!.write(39 * BLOCK, Buffer.alloc(1));
    expect(await storedBits(path)).toEqual([2, 30, 31]);
    // What was flushed is what a reopened overlay reads; an unflushed write may be lost, as on a disk.
    await overlay!.release();
    expect(await storedBits(path)).toEqual([2, 30, 31, 39]);
  });

  it('reopens with what was written, reading nothing written from the disk below', async () => {
    await openOverlay();
    const data = randomBytes(4 * BLOCK);
    await overlay!.write(8 * BLOCK, data);
    await overlay!.release();
    const base = memoryDisk(image);
    await openOverlay(base);
    expect((await overlay!.read(8 * BLOCK, 4 * BLOCK)).equals(data)).toBe(true);
    expect(base.reads).toBe(0);
  });

  it('refuses an overlay of another snapshot or size, a damaged map, and a data file of the wrong size', async () => {
    await openOverlay();
    await overlay!.write(0, Buffer.alloc(BLOCK, 1));
    await overlay!.release();
    overlay = undefined;
    await expect(openOverlay(memoryDisk(image), 'cd'.repeat(32))).rejects.toThrow(`The overlay ${path} belongs to snapshot ababababab`);
    await expect(openOverlay(memoryDisk(image.subarray(0, SIZE - 1)))).rejects.toThrow(OverlayError);

    await truncate(path, SIZE - 1);
    await expect(openOverlay()).rejects.toThrow(`The overlay ${path} has ${SIZE - 1} bytes; its disk has ${SIZE}`);
    await unlink(path);
    await expect(openOverlay()).rejects.toThrow(`The overlay ${path} is missing, but ${path}.map records blocks written to it`);

    await writeFile(`${path}.map`, 'not a map at all, but long enough to hold a header of sixty-four bytes');
    await expect(openOverlay()).rejects.toThrow(`${path}.map is not a cairn overlay map`);
  });

  it('takes over an empty file given as the overlay, never one with content', async () => {
    await writeFile(path, '');
    await openOverlay();
    await overlay!.release();
    overlay = undefined;
    await writeFile(join(dir, 'precious'), 'data');
    await expect(Overlay.open(join(dir, 'precious'), memoryDisk(image), SNAPSHOT)).rejects.toThrow(OverlayError);
    expect(await readFile(join(dir, 'precious'), 'utf8')).toBe('data');
  });
});
