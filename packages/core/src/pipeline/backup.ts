import { hostname } from 'node:os';
import type { Extent, OpenedSource } from '../source.js';
import type { BackupRunHooks, JobInfo } from '../hooks.js';
import type { Repository, BlobIndex } from '../repository/repository.js';
import { BlobType, CHUNKS_PER_MAP, ChunkKind, encodeChunkMap, type ChunkRecord } from '../repository/format.js';
import type { SnapshotManifest } from '../repository/snapshot.js';
import { Packer } from './packer.js';
import { SEALED_CHUNK_OVERHEAD, SlotPool, defaultPoolSize, type WorkerPool } from './worker-pool.js';
import type { Progress } from './progress.js';

export interface BackupInput {
  repository: Repository;
  index: BlobIndex;
  pool: WorkerPool;
  source: OpenedSource;
  sourceType: string;
  job: JobInfo;
  hooks: Readonly<BackupRunHooks>;
  chunkSize: number;
  compression: string;
  progress: Progress;
}

export interface BackupResult {
  snapshot: string;
  manifest: SnapshotManifest;
  bytesRead: number;
  bytesAdded: number;
}

/**
 * Reads the source chunk by chunk in order and stores every chunk the repository does not
 * have yet. Reading is sequential; hashing, compression and encryption run in the worker
 * pool, and the number of chunks in flight is bounded by the slot pool.
 */
export async function runBackup(input: BackupInput): Promise<BackupResult> {
  const { repository, index, pool, source, chunkSize, progress } = input;
  const started = new Date();
  const size = source.layout.size;
  const chunkCount = Math.ceil(size / chunkSize);
  const records: ChunkRecord[] = new Array(chunkCount);
  const slots = new SlotPool(2 * defaultPoolSize() + 6, chunkSize + SEALED_CHUNK_OVERHEAD);
  const stored = new Set<string>();
  const packer = new Packer(repository);
  const stats = { bytesRead: 0, dataChunks: 0, zeroChunks: 0, unusedChunks: 0, newChunks: 0 };
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;

  async function storeChunk(i: number, slot: SharedArrayBuffer, length: number, imageHashed: Promise<unknown>): Promise<void> {
    try {
      const hashed = await pool.hash(slot, length);
      if (hashed.zero) {
        records[i] = { kind: ChunkKind.zero };
        stats.zeroChunks++;
        return;
      }
      const id = hashed.id.toString('hex');
      records[i] = { kind: ChunkKind.data, id: hashed.id };
      stats.dataChunks++;
      if (index.has(id) || stored.has(id)) return;
      stored.add(id);
      stats.newChunks++;
      // Sealing writes the blob over the chunk: the image hasher must be done reading it.
      await imageHashed;
      const sealedLength = await pool.sealInSlot(slot, length);
      await packer.add(BlobType.chunk, hashed.id, new Uint8Array(slot, 0, sealedLength), length);
    } finally {
      await imageHashed.catch(() => undefined);
      slots.release(slot);
    }
  }

  // Chunks are processed concurrently (as many as there are free slots), but the image hasher must
  // see the chunks in order: `feed` settles once every chunk so far has been posted to it.
  let feed: Promise<void> = Promise.resolve();
  const feedImage = (after: Promise<unknown>, post: () => Promise<unknown>): Promise<unknown> => {
    let acknowledged: Promise<unknown> = Promise.resolve();
    feed = feed.then(() => after).then(() => {
      acknowledged = post();
    });
    feed.catch(() => undefined);
    return feed.then(() => acknowledged);
  };

  // One read at a time, in order, each started as soon as a slot is free. Concurrent reads of
  // one file contend in the kernel: four at once took ten times the kernel CPU of the same
  // reads in sequence from the page cache here, and the kernel reads ahead of a sequential
  // reader on its own.
  let previousRead: Promise<unknown> = Promise.resolve();
  const extents = new ExtentCursor(source.extents, size);
  await pool.imageReset();
  progress.start('backup', size);
  try {
    for (let i = 0; i < chunkCount && failure === undefined; i++) {
      const start = i * chunkSize;
      const length = Math.min(chunkSize, size - start);
      const ranges = extents.within(start, length);
      if (ranges.length === 0) {
        records[i] = { kind: ChunkKind.unused };
        stats.unusedChunks++;
        feedImage(Promise.resolve(), () => pool.imageZeros(start, length)).catch(() => undefined);
        progress.advance(length);
        continue;
      }
      const slot = await slots.acquire();
      const read = previousRead.then(() => readUsedParts(source, new Uint8Array(slot, 0, length), start, ranges));
      previousRead = read.catch(() => undefined);
      const imageHashed = feedImage(read, () => pool.imageUpdate(slot, start, length));
      const task = read
        .then(
          () => {
            stats.bytesRead += ranges.length > SCATTERED_RANGES ? length : ranges.reduce((n, r) => n + r.length, 0);
            return storeChunk(i, slot, length, imageHashed);
          },
          (err: unknown) => {
            slots.release(slot);
            throw err;
          },
        )
        .then(
          () => progress.advance(length),
          (err: unknown) => {
            failure ??= err;
          },
        );
      const tracked = task.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;

    const chunkMaps: string[] = [];
    for (let first = 0; first < chunkCount; first += CHUNKS_PER_MAP) {
      const plain = encodeChunkMap(records.slice(first, first + CHUNKS_PER_MAP));
      const { id, sealed } = await pool.sealBytes(plain);
      const hex = id.toString('hex');
      if (!index.has(hex) && !stored.has(hex)) {
        stored.add(hex);
        await packer.add(BlobType.chunkMap, id, sealed, plain.length);
      }
      chunkMaps.push(hex);
    }
    await packer.flush();
    await feed;
    const digest = await pool.imageDigest();
    progress.done();

    await input.hooks.beforeSnapshot.promise();
    const manifest: SnapshotManifest = {
      version: 1,
      time: started.toISOString(),
      hostname: hostname(),
      job: input.job.name,
      source: { type: input.sourceType, path: source.path },
      layout: source.layout,
      size,
      chunkSize,
      chunkCount,
      chunkMaps,
      sha256: digest.image!,
      compression: input.compression,
      stats: { ...stats, bytesAdded: packer.bytesWritten, durationMs: Date.now() - started.getTime() },
    };
    const saved = await repository.saveSnapshot(manifest);
    const bytesAdded = packer.bytesWritten + saved.size;
    await input.hooks.snapshotSaved.promise({ id: saved.id, time: manifest.time, bytesRead: stats.bytesRead, bytesAdded });
    return { snapshot: saved.id, manifest, bytesRead: stats.bytesRead, bytesAdded };
  } catch (err) {
    progress.done();
    await Promise.allSettled(inFlight);
    await packer.abandon();
    throw failure ?? err;
  }
}

/** Above this many used ranges in one chunk, one read of the whole chunk beats many small ones. */
const SCATTERED_RANGES = 8;

/** Fills `bytes` (the chunk at `start`) with the used ranges and zeros elsewhere. */
async function readUsedParts(source: OpenedSource, bytes: Uint8Array, start: number, ranges: readonly Extent[]): Promise<void> {
  if (ranges.length > SCATTERED_RANGES) {
    await source.read(bytes, start, bytes.length);
  } else {
    for (const range of ranges) await source.read(bytes.subarray(range.offset - start), range.offset, range.length);
  }
  // Unused bytes must not reach the repository: stale data in free space is not part of the
  // image. Only the gaps are cleared; a slot still holds the previous chunk's bytes.
  let at = start;
  for (const range of ranges) {
    bytes.fill(0, at - start, range.offset - start);
    at = range.offset + range.length;
  }
  bytes.fill(0, at - start);
}

/** Walks sorted extents alongside increasing chunk offsets. */
class ExtentCursor {
  #at = 0;
  constructor(
    private readonly extents: readonly Extent[],
    size: number,
  ) {
    // Chunks are filled and their gaps cleared on the strength of this order: a source that
    // breaks it would store wrong images, so it is refused before anything is read.
    let end = 0;
    for (const { offset, length } of extents) {
      if (!(offset >= end && length >= 0 && offset + length <= size)) {
        throw new Error(`The source reported extents that are not sorted, non-overlapping ranges within its ${size} bytes (at offset ${offset}, length ${length}); this is a bug in its plugin`);
      }
      end = offset + length;
    }
  }

  /** The parts of [start, start+length) covered by extents, clipped to that range. */
  within(start: number, length: number): Extent[] {
    const end = start + length;
    while (this.#at < this.extents.length && this.extents[this.#at]!.offset + this.extents[this.#at]!.length <= start) this.#at++;
    const ranges: Extent[] = [];
    for (let j = this.#at; j < this.extents.length; j++) {
      const extent = this.extents[j]!;
      if (extent.offset >= end) break;
      const from = Math.max(start, extent.offset);
      const to = Math.min(end, extent.offset + extent.length);
      if (to > from) ranges.push({ offset: from, length: to - from });
    }
    return ranges;
  }
}
