import { hostname } from 'node:os';
import type { Extent, OpenedSource } from '../source.js';
import type { BackupRunHooks, JobInfo } from '../hooks.js';
import { imageDigestOf, type Repository, type BlobIndex } from '../repository/repository.js';
import { BlobType, CHUNKS_PER_MAP, ChunkKind, encodeChunkMap, type ChunkRecord } from '../repository/format.js';
import { manifestVersionFor, type SnapshotManifest } from '../repository/snapshot.js';
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
  /** When chunks may be stored ahead of the image digest; the default suits any volume. */
  detach?: DetachPolicy;
}

/**
 * The image digest is one serial chain through every byte, unused space included. A new chunk
 * is normally sealed only once the digest has taken it in, because its blob overwrites it in
 * its slot. Behind a long run of unused space that means every slot waits for the hasher and
 * compression stops: a third of a second per 700 MB here. So while enough zeros are queued
 * ahead of it, a new chunk is *detached*: sealed at once, its slot freed, and read a second
 * time when the digest gets to it. The second read is checked against the first (same blob
 * id), so the digest always describes the chunks the snapshot holds. Chunks the repository
 * already has are never detached: they cost little to keep, and a second read would cost more.
 */
export interface DetachPolicy {
  /** Detach a new chunk when at least this many bytes of unused space are queued ahead of it for the image hasher. */
  zerosAhead: number;
  /** Bytes of detached chunks waiting for their second read, at most: bounds the extra reads. */
  maxPending: number;
}

const MiB = 1024 * 1024;
export const DEFAULT_DETACH: DetachPolicy = { zerosAhead: 64 * MiB, maxPending: 256 * MiB };
/** Buffers for second reads: enough to keep the hasher fed while checks of earlier ones finish. */
const REREAD_SLOTS = 4;

export interface BackupResult {
  snapshot: string;
  manifest: SnapshotManifest;
  bytesRead: number;
  bytesAdded: number;
  /** Things the user should know about this run. */
  warnings: string[];
}

/**
 * Reads the source chunk by chunk in order and stores every chunk the repository does not
 * have yet. Reading is sequential; hashing, compression and encryption run in the worker
 * pool, and the number of chunks in flight is bounded by the slot pool.
 */
export async function runBackup(input: BackupInput): Promise<BackupResult> {
  const { repository, index, pool, source, chunkSize, progress } = input;
  const detach = input.detach ?? DEFAULT_DETACH;
  const started = new Date();
  const size = source.layout.size;
  const chunkCount = Math.ceil(size / chunkSize);
  const records: ChunkRecord[] = new Array(chunkCount);
  const slots = new SlotPool(2 * defaultPoolSize() + 6, chunkSize + SEALED_CHUNK_OVERHEAD);
  const rereadSlots = new SlotPool(REREAD_SLOTS, chunkSize + SEALED_CHUNK_OVERHEAD);
  const stored = new Set<string>();
  const packer = new Packer(repository);
  const stats = { bytesRead: 0, dataChunks: 0, zeroChunks: 0, unusedChunks: 0, newChunks: 0 };
  let changedWhileRead = 0;
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  const track = (task: Promise<void>) => {
    const tracked = task.then(undefined, (err: unknown) => {
      failure ??= err;
    }).finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };

  /** Records what chunk `i` holds; returns its blob id when it has data that is not stored yet. */
  function record(i: number, hashed: Awaited<ReturnType<WorkerPool['hash']>>): Buffer | undefined {
    if (hashed.zero) {
      records[i] = { kind: ChunkKind.zero };
      stats.zeroChunks++;
      return undefined;
    }
    records[i] = { kind: ChunkKind.data, id: hashed.id };
    stats.dataChunks++;
    const id = hashed.id.toString('hex');
    if (index.has(id) || stored.has(id)) return undefined;
    stored.add(id);
    stats.newChunks++;
    return hashed.id;
  }

  /** Compresses and encrypts the chunk in the slot, over it, and packs the blob. */
  async function seal(id: Buffer, slot: SharedArrayBuffer, length: number): Promise<void> {
    const sealedLength = await pool.sealInSlot(slot, length);
    await packer.add(BlobType.chunk, id, new Uint8Array(slot, 0, sealedLength), length);
  }

  // Chunks are processed concurrently (as many as there are free slots), but the image hasher must
  // see the chunks in order. Each piece of the image joins `feed`: `prepare` runs when every
  // earlier piece has been posted to the hasher, then `post` hands this one over. `posted`
  // settles then, `hashed` once the hasher has taken it in.
  let feed: Promise<void> = Promise.resolve();
  const feedImage = (prepare: () => unknown, post: () => Promise<unknown>) => {
    let acknowledged: Promise<unknown> = Promise.resolve();
    const posted = feed.then(prepare).then(() => {
      acknowledged = post();
    });
    posted.catch(() => undefined);
    feed = posted;
    return { posted, hashed: posted.then(() => acknowledged) };
  };
  // Bytes of unused space queued for the hasher so far, and hashed so far: a chunk queued when
  // the first was Z has max(0, Z - zerosHashed) bytes of zeros ahead of it.
  let zerosQueued = 0;
  let zerosHashed = 0;
  let detachedPending = 0;
  const zerosAhead = (chunk: ChunkInFlight) => chunk.zerosBefore - zerosHashed;

  /** One used chunk on its way through the pipeline. */
  interface ChunkInFlight {
    index: number;
    length: number;
    slot: SharedArrayBuffer;
    zerosBefore: number;
    /** The chunk is about to go to the image hasher from its slot: too late to detach it. */
    feeding: boolean;
    /** Settles once storing has decided whether to detach the chunk. */
    decided: Promise<void>;
    decide(): void;
    /** Stored from its slot without waiting for the hasher, which reads it again (see DetachPolicy). */
    detached: boolean;
    reread?: SharedArrayBuffer;
    image: { posted: Promise<void>; hashed: Promise<unknown> };
  }

  /** Stores a chunk if the repository lacks it, then gives its slot back. */
  async function storeChunk(chunk: ChunkInFlight): Promise<void> {
    try {
      const id = record(chunk.index, await pool.hash(chunk.slot, chunk.length));
      if (!id) return;
      if (!chunk.feeding && zerosAhead(chunk) >= detach.zerosAhead && detachedPending + chunk.length <= detach.maxPending) {
        chunk.detached = true;
        detachedPending += chunk.length;
        chunk.decide();
        track(confirmReread(chunk));
      } else {
        chunk.decide();
        // Sealing writes the blob over the chunk: the image hasher must be done reading it.
        await chunk.image.hashed;
      }
      await seal(id, chunk.slot, chunk.length);
    } finally {
      chunk.decide();
      if (!chunk.detached) await chunk.image.hashed.catch(() => undefined);
      slots.release(chunk.slot);
    }
  }

  /**
   * Checks a detached chunk's second read, which the image hasher took in, against the first,
   * which was stored. A chunk that changed in between (a busy, mounted volume) is recorded and
   * stored as read the second time, because that is what the digest covers.
   */
  async function confirmReread(chunk: ChunkInFlight): Promise<void> {
    try {
      await chunk.image.posted;
      const again = await pool.hash(chunk.reread!, chunk.length);
      const before = records[chunk.index]!;
      const same = again.zero ? before.kind === ChunkKind.zero : before.kind === ChunkKind.data && before.id!.equals(again.id);
      if (!same) {
        changedWhileRead++;
        if (before.kind === ChunkKind.zero) stats.zeroChunks--;
        else stats.dataChunks--;
        const id = record(chunk.index, again);
        if (id) {
          await chunk.image.hashed; // sealing writes over the bytes the hasher reads
          await seal(id, chunk.reread!, chunk.length);
        }
      }
      await chunk.image.hashed;
    } finally {
      await chunk.image.hashed.catch(() => undefined);
      if (chunk.reread) rereadSlots.release(chunk.reread);
      detachedPending -= chunk.length;
    }
  }

  // One read at a time, in order, each started as soon as a slot is free. Concurrent reads of
  // one file contend in the kernel: four at once took ten times the kernel CPU of the same
  // reads in sequence from the page cache here, and the kernel reads ahead of a sequential
  // reader on its own.
  let previousRead: Promise<unknown> = Promise.resolve();
  const extents = new ExtentCursor(source.extents, size);
  const digestAlgorithm = imageDigestOf(repository.config);
  await pool.imageReset(digestAlgorithm);
  progress.start('backup', size);
  try {
    for (let i = 0; i < chunkCount && failure === undefined; i++) {
      const start = i * chunkSize;
      const length = Math.min(chunkSize, size - start);
      const ranges = extents.within(start, length);
      if (ranges.length === 0) {
        records[i] = { kind: ChunkKind.unused };
        stats.unusedChunks++;
        zerosQueued += length;
        feedImage(
          () => undefined,
          () => pool.imageZeros(start, length).finally(() => (zerosHashed += length)),
        ).hashed.catch(() => undefined);
        progress.advance(length);
        continue;
      }
      const slot = await slots.acquire();
      const read = previousRead.then(() => readUsedParts(source, new Uint8Array(slot, 0, length), start, ranges));
      previousRead = read.catch(() => undefined);
      let decide!: () => void;
      const decided = new Promise<void>((resolve) => (decide = resolve));
      const chunk: ChunkInFlight = { index: i, length, slot, zerosBefore: zerosQueued, feeding: false, detached: false, decided, decide, image: undefined! };
      chunk.image = feedImage(
        async () => {
          await read;
          // With zeros enough ahead, the hasher can spare the wait for the blob id, which says
          // whether the chunk is new and worth detaching.
          if (!chunk.detached && zerosAhead(chunk) >= detach.zerosAhead) await chunk.decided;
          chunk.feeding = !chunk.detached;
          if (!chunk.detached) return;
          chunk.reread = await rereadSlots.acquire();
          await readUsedParts(source, new Uint8Array(chunk.reread, 0, length), start, ranges);
        },
        () => pool.imageUpdate(chunk.reread ?? slot, start, length),
      );
      const stored = read.then(
        () => {
          stats.bytesRead += ranges.length > SCATTERED_RANGES ? length : ranges.reduce((n, r) => n + r.length, 0);
          return storeChunk(chunk);
        },
        (err: unknown) => {
          slots.release(slot);
          throw err;
        },
      );
      track(stored.then(() => progress.advance(length)));
    }
    // Confirming a second read is tracked when the chunk is detached, which can be after this point.
    while (inFlight.size > 0) await Promise.all(inFlight);
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
      version: manifestVersionFor(digestAlgorithm),
      time: started.toISOString(),
      hostname: hostname(),
      job: input.job.name,
      source: { type: input.sourceType, path: source.path },
      layout: source.layout,
      size,
      chunkSize,
      chunkCount,
      chunkMaps,
      imageDigest: { algorithm: digestAlgorithm, hex: digest.image! },
      compression: input.compression,
      stats: { ...stats, bytesAdded: packer.bytesWritten, durationMs: Date.now() - started.getTime() },
    };
    const saved = await repository.saveSnapshot(manifest);
    const bytesAdded = packer.bytesWritten + saved.size;
    await input.hooks.snapshotSaved.promise({ id: saved.id, time: manifest.time, bytesRead: stats.bytesRead, bytesAdded });
    const warnings =
      changedWhileRead === 0
        ? []
        : [`${changedWhileRead} chunk(s) of ${source.path} changed while the backup was reading them; the snapshot holds what was read last. For a consistent image, freeze the filesystem during the backup (a "before" hook running fsfreeze -f) or back up a snapshot of the volume.`];
    return { snapshot: saved.id, manifest, bytesRead: stats.bytesRead, bytesAdded, warnings };
  } catch (err) {
    progress.done();
    while (inFlight.size > 0) await Promise.allSettled(inFlight);
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
