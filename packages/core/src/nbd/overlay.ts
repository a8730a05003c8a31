import { constants } from 'node:fs';
import { open, readFile, rename, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { OverlayError } from '../errors.js';
import type { ExportExtent, ExportSource } from './export-source.js';
import { checkRange, mergeExtents } from './extents.js';

/*
 * A copy-on-write overlay over a read-only export (`cairn serve --overlay FILE`): writes go to
 * FILE, never to the snapshot. Two files:
 *
 * - FILE: a sparse file exactly as large as the disk; a written block sits at its own offset.
 * - FILE.map: which blocks of FILE hold written data. A 64-byte header
 *     "CAIRNOVL" ‖ u32 version (1) ‖ u32 block size (4096) ‖ u64 disk size ‖
 *     snapshot id [32 bytes] ‖ 12 zero bytes
 *   (integers little-endian), then a bitmap of ceil(size / block size) bits, one per block,
 *   block n in bit (n mod 8) of byte n div 8 (least significant first): 1 = read from FILE,
 *   0 = read from the snapshot.
 *
 * Bits only ever go from 0 to 1, and a bit reaches FILE.map only after its block's data was
 * synced to FILE (on NBD_CMD_FLUSH): after a crash, every block the map names holds what was
 * written, and a write that was not flushed may be lost, as on a disk. Blocks written in part
 * are read from the snapshot first. Reopening the same FILE continues the overlay, after
 * checking it was made for the same snapshot and disk size.
 */

export const OVERLAY_BLOCK_SIZE = 4096;
const MAGIC = Buffer.from('CAIRNOVL');
const MAP_VERSION = 1;
const HEADER_LENGTH = 64;
/** writeZeroes writes zeros in pieces this large. */
const ZERO_PIECE = 1024 * 1024;

interface MapHeader {
  blockSize: number;
  size: number;
  snapshot: string;
}

/** A run of blocks clipped to a range: written (in FILE) or not (in the snapshot). */
interface Run {
  offset: number;
  length: number;
  written: boolean;
}

export class Overlay implements ExportSource {
  readonly writable = true;
  readonly name: string;
  readonly description: string;
  readonly size: number;
  readonly #base: ExportSource;
  readonly #data: FileHandle;
  readonly #map: FileHandle;
  /** Which blocks hold written data, as reads see it. */
  readonly #bitmap: Buffer;
  /** What FILE.map holds on disk. */
  readonly #durable: Buffer;
  readonly #locks = new BlockLocks();
  /** Block runs written since the last flush began. */
  #pending: Array<[number, number]> = [];
  /** Written since the last flush began (also over blocks written before). */
  #dirty = false;
  #flushing: Promise<void> = Promise.resolve();
  #writtenBlocks: number;
  #released = false;

  private constructor(base: ExportSource, data: FileHandle, map: FileHandle, bitmap: Buffer) {
    this.#base = base;
    this.name = base.name;
    this.description = `${base.description} (writes go to an overlay)`;
    this.size = base.size;
    this.#data = data;
    this.#map = map;
    this.#bitmap = bitmap;
    this.#durable = Buffer.from(bitmap);
    this.#writtenBlocks = countBits(bitmap);
  }

  /**
   * Opens the overlay at `path` over `base` (the disk of snapshot `snapshot`): continues one
   * made for the same snapshot and size, creates one where there is none. OverlayError otherwise.
   */
  static async open(path: string, base: ExportSource, snapshot: string): Promise<Overlay> {
    const mapPath = `${path}.map`;
    const stored = await readFile(mapPath).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
    const bitmapLength = Math.ceil(Math.ceil(base.size / OVERLAY_BLOCK_SIZE) / 8);
    let bitmap: Buffer;
    if (stored) {
      checkHeader(decodeHeader(stored, mapPath), { blockSize: OVERLAY_BLOCK_SIZE, size: base.size, snapshot }, path);
      if (stored.length !== HEADER_LENGTH + bitmapLength) throw new OverlayError(`${mapPath} is damaged: it has ${stored.length} bytes, expected ${HEADER_LENGTH + bitmapLength}`);
      bitmap = Buffer.from(stored.subarray(HEADER_LENGTH));
    } else {
      await refuseForeignFile(path, mapPath);
      await createMap(mapPath, { blockSize: OVERLAY_BLOCK_SIZE, size: base.size, snapshot }, bitmapLength);
      bitmap = Buffer.alloc(bitmapLength);
    }
    const data = await openData(path, base.size, countBits(bitmap) > 0);
    const map = await open(mapPath, 'r+').catch(async (err: unknown) => {
      await data.close();
      throw err;
    });
    return new Overlay(base, data, map, bitmap);
  }

  /** Bytes of the disk that were written (whole blocks). */
  get writtenBytes(): number {
    const lastBlock = Math.ceil(this.size / OVERLAY_BLOCK_SIZE) - 1;
    const shortBy = bitOf(this.#bitmap, lastBlock) ? (lastBlock + 1) * OVERLAY_BLOCK_SIZE - this.size : 0;
    return this.#writtenBlocks * OVERLAY_BLOCK_SIZE - shortBy;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    const parts = await Promise.all(this.#runs(offset, length).map((run) => (run.written ? readAt(this.#data, run.offset, run.length) : this.#base.read(run.offset, run.length))));
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
  }

  async blockStatus(offset: number, length: number): Promise<ExportExtent[]> {
    checkRange(this, offset, length);
    const parts = await Promise.all(
      this.#runs(offset, length).map((run) => (run.written ? [{ offset: run.offset, length: run.length, hole: false, zero: false }] : this.#base.blockStatus(run.offset, run.length))),
    );
    return mergeExtents(parts.flat());
  }

  async prefetch(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    await Promise.all(this.#runs(offset, length).map((run) => (run.written ? undefined : this.#base.prefetch(run.offset, run.length))));
  }

  async write(offset: number, data: Buffer): Promise<void> {
    checkRange(this, offset, data.length);
    if (data.length === 0) return;
    this.#checkOpen();
    const first = Math.floor(offset / OVERLAY_BLOCK_SIZE);
    const last = Math.floor((offset + data.length - 1) / OVERLAY_BLOCK_SIZE);
    await this.#locks.with(first, last, async () => {
      const start = first * OVERLAY_BLOCK_SIZE;
      const end = Math.min((last + 1) * OVERLAY_BLOCK_SIZE, this.size);
      const blocks = start === offset && end === offset + data.length ? data : await this.#fillBlocks(start, end, offset, data);
      await writeAt(this.#data, blocks, start);
      // Only now may reads (and the next flush) take these blocks from FILE.
      this.#mark(first, last);
    });
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    const zeros = Buffer.alloc(Math.min(length, ZERO_PIECE));
    for (let at = offset; at < offset + length; at += zeros.length) await this.write(at, zeros.subarray(0, Math.min(zeros.length, offset + length - at)));
  }

  /** Syncs FILE, then records in FILE.map the blocks written before this call. Flushes run one at a time. */
  flush(): Promise<void> {
    const flushed = this.#flushing.then(() => this.#flushNow());
    this.#flushing = flushed.catch(() => undefined);
    return flushed;
  }

  /** Makes what was written durable; the files stay open for the next client (release() closes them). */
  async close(): Promise<void> {
    if (!this.#released) await this.flush();
  }

  /** Flushes and closes the overlay's files. */
  async release(): Promise<void> {
    if (this.#released) return;
    try {
      await this.flush();
    } finally {
      this.#released = true;
      await Promise.allSettled([this.#data.close(), this.#map.close()]);
    }
  }

  #checkOpen(): void {
    if (this.#released) throw new OverlayError('The overlay was closed');
  }

  /** The whole blocks [start, end) around a partial write: the current bytes of its first and last block, with `data` over them. */
  async #fillBlocks(start: number, end: number, offset: number, data: Buffer): Promise<Buffer> {
    const blocks = Buffer.alloc(end - start);
    if (offset > start) (await this.read(start, Math.min(OVERLAY_BLOCK_SIZE, end - start))).copy(blocks, 0);
    const lastStart = Math.floor((end - 1) / OVERLAY_BLOCK_SIZE) * OVERLAY_BLOCK_SIZE;
    if (offset + data.length < end) (await this.read(lastStart, end - lastStart)).copy(blocks, lastStart - start);
    data.copy(blocks, offset - start);
    return blocks;
  }

  #mark(first: number, last: number): void {
    for (let block = first; block <= last; block++) {
      const byte = block >> 3;
      const bit = 1 << (block & 7);
      if ((this.#bitmap[byte]! & bit) === 0) {
        this.#bitmap[byte]! |= bit;
        this.#writtenBlocks++;
      }
    }
    this.#pending.push([first, last]);
    this.#dirty = true;
  }

  async #flushNow(): Promise<void> {
    if (!this.#dirty || this.#released) return;
    const pending = this.#pending;
    this.#pending = [];
    this.#dirty = false;
    try {
      // Data first: the map must never name a block whose data could still be lost.
      await this.#data.datasync();
      if (pending.length === 0) return;
      // Only the bits of these writes: a block written since the sync began may not be on disk yet.
      for (const [first, last] of pending) for (let block = first; block <= last; block++) this.#durable[block >> 3]! |= 1 << (block & 7);
      for (const [from, to] of mergeByteRanges(pending)) {
        await writeAt(this.#map, this.#durable.subarray(from, to + 1), HEADER_LENGTH + from);
      }
      await this.#map.datasync();
    } catch (err) {
      this.#pending.unshift(...pending);
      this.#dirty = true;
      throw err;
    }
  }

  /** [offset, offset + length) cut where blocks change between written and not. */
  #runs(offset: number, length: number): Run[] {
    if (length === 0) return [{ offset, length: 0, written: false }];
    if (this.#writtenBlocks === 0) return [{ offset, length, written: false }];
    const end = offset + length;
    const runs: Run[] = [];
    let block = Math.floor(offset / OVERLAY_BLOCK_SIZE);
    const lastBlock = Math.floor((end - 1) / OVERLAY_BLOCK_SIZE);
    while (block <= lastBlock) {
      const written = bitOf(this.#bitmap, block);
      const next = nextChange(this.#bitmap, block, lastBlock + 1, written);
      const from = Math.max(offset, block * OVERLAY_BLOCK_SIZE);
      const to = Math.min(end, next * OVERLAY_BLOCK_SIZE);
      runs.push({ offset: from, length: to - from, written });
      block = next;
    }
    return runs;
  }
}

/** Waits for writes to overlapping block ranges, so that a partial block's read, merge and write is not interleaved. */
class BlockLocks {
  readonly #held = new Set<{ first: number; last: number; done: Promise<void> }>();

  async with<T>(first: number, last: number, fn: () => Promise<T>): Promise<T> {
    for (;;) {
      const blocker = [...this.#held].find((held) => held.first <= last && first <= held.last);
      if (!blocker) break;
      await blocker.done;
    }
    let release = () => {};
    const entry = { first, last, done: new Promise<void>((resolve) => (release = resolve)) };
    this.#held.add(entry);
    try {
      return await fn();
    } finally {
      this.#held.delete(entry);
      release();
    }
  }
}

function decodeHeader(stored: Buffer, mapPath: string): MapHeader {
  if (stored.length < HEADER_LENGTH || !stored.subarray(0, 8).equals(MAGIC)) throw new OverlayError(`${mapPath} is not a cairn overlay map`);
  const version = stored.readUInt32LE(8);
  if (version !== MAP_VERSION) throw new OverlayError(`${mapPath} is an overlay map of version ${version}; this cairn reads version ${MAP_VERSION}`);
  return { blockSize: stored.readUInt32LE(12), size: Number(stored.readBigUInt64LE(16)), snapshot: stored.subarray(24, 56).toString('hex') };
}

function encodeHeader(header: MapHeader): Buffer {
  const out = Buffer.alloc(HEADER_LENGTH);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(MAP_VERSION, 8);
  out.writeUInt32LE(header.blockSize, 12);
  out.writeBigUInt64LE(BigInt(header.size), 16);
  Buffer.from(header.snapshot, 'hex').copy(out, 24);
  return out;
}

function checkHeader(found: MapHeader, expected: MapHeader, path: string): void {
  if (found.snapshot !== expected.snapshot || found.size !== expected.size) {
    throw new OverlayError(
      `The overlay ${path} belongs to snapshot ${found.snapshot.slice(0, 12)} (a disk of ${found.size} bytes), not to snapshot ${expected.snapshot.slice(0, 12)} (${expected.size} bytes); give another --overlay file`,
    );
  }
  if (found.blockSize !== expected.blockSize) throw new OverlayError(`The overlay ${path} uses blocks of ${found.blockSize} bytes; this cairn writes ${expected.blockSize}`);
}

/** A file at `path` without a map is not an overlay: it is never taken over (it might be anything of the user's). */
async function refuseForeignFile(path: string, mapPath: string): Promise<void> {
  const existing = await stat(path).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
  if (existing && !(existing.isFile() && existing.size === 0)) {
    throw new OverlayError(`${path} exists and is not a cairn overlay (there is no ${mapPath}); give the name of a new file, or of an overlay cairn made`);
  }
}

/** Writes the map of a new overlay under a temporary name, then renames it into place. */
async function createMap(mapPath: string, header: MapHeader, bitmapLength: number): Promise<void> {
  const temporary = `${mapPath}.tmp-${process.pid}`;
  const file = await open(temporary, 'w');
  try {
    await writeAt(file, encodeHeader(header), 0);
    // The bitmap starts all zeros: a sparse tail.
    await file.truncate(HEADER_LENGTH + bitmapLength);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, mapPath);
  await syncFolder(dirname(mapPath));
}

/** FILE, created (sparse, the disk's size) when missing and nothing was written yet. */
async function openData(path: string, size: number, anyWritten: boolean): Promise<FileHandle> {
  const flags = anyWritten ? constants.O_RDWR : constants.O_RDWR | constants.O_CREAT;
  const file = await open(path, flags, 0o600).catch((err: NodeJS.ErrnoException) => {
    throw err.code === 'ENOENT' ? new OverlayError(`The overlay ${path} is missing, but ${path}.map records blocks written to it`, { cause: err }) : err;
  });
  const { size: found } = await file.stat();
  if (found === 0 && !anyWritten) {
    await file.truncate(size);
    await file.sync();
    await syncFolder(dirname(path));
  } else if (found !== size) {
    await file.close();
    throw new OverlayError(`The overlay ${path} has ${found} bytes; its disk has ${size}`);
  }
  return file;
}

async function syncFolder(path: string): Promise<void> {
  const folder = await open(path, 'r');
  try {
    await folder.sync();
  } finally {
    await folder.close();
  }
}

async function readAt(file: FileHandle, offset: number, length: number): Promise<Buffer> {
  const out = Buffer.alloc(length);
  for (let done = 0; done < length; ) {
    const { bytesRead } = await file.read(out, done, length - done, offset + done);
    if (bytesRead === 0) throw new OverlayError(`The overlay file ended at ${offset + done} bytes; it was truncated by something else`);
    done += bytesRead;
  }
  return out;
}

async function writeAt(file: FileHandle, data: Buffer, offset: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const { bytesWritten } = await file.write(data, done, data.length - done, offset + done);
    done += bytesWritten;
  }
}

function bitOf(bitmap: Buffer, block: number): boolean {
  return (bitmap[block >> 3]! & (1 << (block & 7))) !== 0;
}

/** The first block in [from, to) whose bit differs from `value`, or `to`; whole bytes are skipped at once. */
function nextChange(bitmap: Buffer, from: number, to: number, value: boolean): number {
  const same = value ? 0xff : 0x00;
  let block = from;
  while (block < to) {
    if ((block & 7) === 0 && block + 8 <= to && bitmap[block >> 3] === same) {
      block += 8;
      continue;
    }
    if (bitOf(bitmap, block) !== value) return block;
    block++;
  }
  return to;
}

const BITS_IN_BYTE = Uint8Array.from({ length: 256 }, (_, byte) => byte.toString(2).replaceAll('0', '').length);

/** Blocks marked written (bits past the last block are never set). */
function countBits(bitmap: Buffer): number {
  let count = 0;
  for (const byte of bitmap) count += BITS_IN_BYTE[byte]!;
  return count;
}

/** The bitmap bytes that block runs touch, sorted and merged, as inclusive [first, last] byte indexes. */
function mergeByteRanges(runs: ReadonlyArray<[number, number]>): Array<[number, number]> {
  const bytes = runs.map(([first, last]): [number, number] => [first >> 3, last >> 3]).sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [from, to] of bytes) {
    const previous = merged.at(-1);
    if (previous && from <= previous[1] + 1) previous[1] = Math.max(previous[1], to);
    else merged.push([from, to]);
  }
  return merged;
}
