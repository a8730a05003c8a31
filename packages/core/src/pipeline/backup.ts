import { hostname } from 'node:os';
import type { Extent, OpenedSource } from '../source.js';
import { imageDigestOf, type BlobIndex, type Repository } from '../repository/repository.js';
import { BlobType, CHUNKS_PER_MAP, encodeChunkMap } from '../repository/format.js';
import { manifestVersionFor, type SnapshotManifest } from '../repository/snapshot.js';
import type { ImageDigestAlgorithm } from '../crypto/crypto.js';
import { Packer } from './packer.js';
import { SEALED_CHUNK_OVERHEAD, SlotPool, type WorkerPool } from './worker-pool.js';
import { ImageFeed, type FeedTicket } from './image-feed.js';
import { DEFAULT_DETACH, DetachScheduler, type DetachPolicy } from './detach.js';
import { ChunkLedger } from './chunk-ledger.js';
import { ChunkDigests, zeroChunkDigest } from './chunk-digests.js';
import { TaskGroup } from './task-group.js';
import { SourceReader } from './source-reader.js';
import type { Progress } from './progress.js';

export { DEFAULT_DETACH, type DetachPolicy } from './detach.js';

export interface BackupInput {
  repository: Repository;
  index: BlobIndex;
  pool: WorkerPool;
  source: OpenedSource;
  sourceType: string;
  jobName: string;
  chunkSize: number;
  compression: string;
  progress: Progress;
  /** When the backup started: the snapshot's time (from the core's clock, or `backup --time`). */
  started: Date;
  /** The snapshot's tags (`backup --tag`); none are recorded when empty. */
  tags?: string[];
  /**
   * Called with the finished manifest once every pack and index it needs is durable, before
   * it is written; throwing stops the snapshot (nothing refers to the stored data yet).
   */
  beforeSnapshot?: (manifest: SnapshotManifest) => Promise<void>;
  /** No chunk is told new (and stored) before this settles, nor at all if it rejects (see ChunkLedger). */
  blobsKnownAfter?: Promise<unknown>;
  /** When chunks may be stored ahead of the image digest; the default suits any volume. */
  detach?: DetachPolicy;
  /**
   * Image around the parts of the source the medium cannot deliver: they are stored as zeros
   * and listed in the manifest's `unreadable`, instead of stopping the backup.
   */
  rescue?: boolean;
}

export interface BackupResult {
  snapshot: string;
  manifest: SnapshotManifest;
  bytesRead: number;
  bytesAdded: number;
  /** Things the user should know about this run. */
  warnings: string[];
}

/** Buffers for second reads: enough to keep the hasher fed while checks of earlier ones finish. */
const REREAD_SLOTS = 4;
/** Above this many used ranges in one chunk, one read of the whole chunk beats many small ones. */
const SCATTERED_RANGES = 8;
/**
 * Rescue mode reads every chunk once: a failing disk should be read as little as possible
 * (ddrescue's first rule), and what is stored, what the digest covers and what is recorded as
 * unreadable then come from the same read.
 */
const NEVER_DETACH: DetachPolicy = { zerosAhead: Infinity, maxPending: 0 };
/** Unreadable ranges named in the backup's warning; `cairn show` lists them all. */
const RANGES_IN_WARNING = 3;

/**
 * Reads the source chunk by chunk in order and stores every chunk the repository does not
 * have yet. Reading is sequential; hashing, compression and encryption run in the worker
 * pool, and the number of chunks in flight is bounded by the slot pool.
 */
export function runBackup(input: BackupInput): Promise<BackupResult> {
  return new BackupSession(input).run();
}

/** One used chunk on its way through the pipeline. */
class ChunkInFlight {
  /** The chunk is about to go to the image hasher from its slot: too late to detach it. */
  feeding = false;
  /** Stored from its slot without waiting for the hasher, which reads it again (see DetachPolicy). */
  detached = false;
  reread: SharedArrayBuffer | undefined;
  image!: FeedTicket;
  /** Settles once storing has decided whether to detach the chunk. */
  readonly decided: Promise<void>;
  decide!: () => void;

  constructor(
    readonly index: number,
    readonly start: number,
    readonly length: number,
    readonly ranges: readonly Extent[],
    readonly slot: SharedArrayBuffer,
    /** The hasher's queue of unused space when this chunk joined it (see DetachScheduler). */
    readonly position: number,
  ) {
    this.decided = new Promise<void>((resolve) => (this.decide = resolve));
  }

  /** The buffer the image hasher reads this chunk from. */
  get hashedFrom(): SharedArrayBuffer {
    return this.reread ?? this.slot;
  }
}

/** One run of `runBackup`: the state the chunk reader, the image feed and the chunk store share. */
class BackupSession {
  readonly #input: BackupInput;
  readonly #pool: WorkerPool;
  readonly #size: number;
  readonly #chunkCount: number;
  readonly #slots: SlotPool;
  readonly #rereadSlots: SlotPool;
  readonly #ledger: ChunkLedger;
  readonly #packer: Packer;
  readonly #feed = new ImageFeed();
  readonly #detach: DetachScheduler;
  readonly #tasks = new TaskGroup();
  readonly #digestAlgorithm: ImageDigestAlgorithm;
  /** The `blake3-chunks` digest, built from each chunk's own hash; undefined for a digest streamed through the image hasher. */
  readonly #chunkDigests: ChunkDigests | undefined;
  readonly #reader: SourceReader;
  /** The read before the next one: reads run one at a time, in order. */
  #previousRead: Promise<unknown> = Promise.resolve();
  /** Monotonic start, for the duration: the snapshot's time may come from a replaced clock. */
  readonly #startedAt = performance.now();
  #changedWhileRead = 0;

  constructor(input: BackupInput) {
    this.#input = input;
    this.#pool = input.pool;
    this.#size = input.source.layout.size;
    this.#chunkCount = Math.ceil(this.#size / input.chunkSize);
    this.#slots = new SlotPool(input.pool.memory.backupSlots, input.chunkSize + SEALED_CHUNK_OVERHEAD);
    this.#ledger = new ChunkLedger(this.#chunkCount, input.index, input.blobsKnownAfter);
    this.#packer = new Packer(input.repository, input.pool.memory.uploadsInFlight(input.repository.concurrentPuts));
    this.#detach = new DetachScheduler(input.rescue ? NEVER_DETACH : (input.detach ?? DEFAULT_DETACH));
    this.#reader = new SourceReader(input.source, input.rescue ?? false);
    this.#digestAlgorithm = imageDigestOf(input.repository.config);
    this.#chunkDigests = this.#digestAlgorithm === 'blake3-chunks' ? new ChunkDigests(0, this.#chunkCount) : undefined;
    // Second reads serve only a digest streamed through the image hasher.
    this.#rereadSlots = new SlotPool(this.#chunkDigests ? 0 : REREAD_SLOTS, input.chunkSize + SEALED_CHUNK_OVERHEAD);
  }

  async run(): Promise<BackupResult> {
    const { progress } = this.#input;
    const extents = new ExtentCursor(this.#input.source.extents, this.#size);
    if (this.#digestAlgorithm !== 'blake3-chunks') await this.#pool.imageReset(this.#digestAlgorithm);
    progress.start('backup', this.#size);
    try {
      await this.#readAll(extents);
      // Confirming a second read is tracked when the chunk is detached, which can be after the last read.
      await this.#tasks.settle();
      const chunkMaps = await this.#storeChunkMaps();
      await this.#packer.flush();
      const digest = await this.#imageDigest();
      progress.done();
      return await this.#saveSnapshot(chunkMaps, digest);
    } catch (err) {
      progress.done();
      await this.#tasks.settleAll();
      await this.#packer.abandon();
      throw this.#tasks.failed ? this.#tasks.failure : err;
    }
  }

  async #imageDigest(): Promise<string> {
    if (this.#chunkDigests) return this.#chunkDigests.hex();
    await this.#feed.posted();
    return (await this.#pool.imageDigest()).image!;
  }

  /** Reads every chunk in order (unused ones only go to the image hash), each as soon as a slot is free. */
  async #readAll(extents: ExtentCursor): Promise<void> {
    const { chunkSize } = this.#input;
    for (let i = 0; i < this.#chunkCount && !this.#tasks.failed; i++) {
      const start = i * chunkSize;
      const length = Math.min(chunkSize, this.#size - start);
      const ranges = extents.within(start, length);
      if (ranges.length === 0) this.#queueUnused(i, start, length);
      else if (this.#chunkDigests) await this.#queueHashedAlone(i, start, length, ranges);
      else await this.#queueUsed(i, start, length, ranges);
    }
    this.#tasks.throwIfFailed();
  }

  #queueUnused(i: number, start: number, length: number): void {
    this.#ledger.recordUnused(i);
    if (this.#chunkDigests) {
      this.#chunkDigests.set(i, zeroChunkDigest(length));
      this.#input.progress.advance(length);
      return;
    }
    this.#detach.queueZeros(length);
    const ticket = this.#feed.enqueue(
      () => undefined,
      () => this.#pool.imageZeros(start, length).finally(() => this.#detach.zerosHashed(length)),
    );
    ticket.hashed.catch(() => undefined);
    this.#input.progress.advance(length);
  }

  /**
   * A used chunk of an image whose digest is made of each chunk's own hash (`blake3-chunks`):
   * read into a free slot (one read at a time, in order, as in #queueUsed), then hashed, with
   * its plain BLAKE3 for the digest, and stored if new, while the next chunks are read.
   */
  async #queueHashedAlone(i: number, start: number, length: number, ranges: readonly Extent[]): Promise<void> {
    const slot = await this.#slots.acquire();
    const read = this.#previousRead.then(() => readUsedParts(this.#reader, new Uint8Array(slot, 0, length), start, ranges));
    this.#previousRead = read.catch(() => undefined);
    const stored = read
      .then(async () => {
        this.#ledger.stats.bytesRead += bytesReadOf(ranges, length);
        const hash = await this.#pool.hash(slot, length, true);
        this.#chunkDigests!.set(i, hash.zero ? zeroChunkDigest(length) : hash.chunkDigest!);
        const id = await this.#ledger.record(i, hash);
        if (id) await this.#seal(id, slot, length);
      })
      .finally(() => this.#slots.release(slot));
    this.#tasks.track(stored.then(() => this.#input.progress.advance(length)));
  }

  /**
   * Starts reading a used chunk into a free slot, queues it for the image hash and, once read,
   * for storing. One read at a time, in order: concurrent reads of one file contend in the
   * kernel (four at once took ten times the kernel CPU of the same reads in sequence from the
   * page cache here), and the kernel reads ahead of a sequential reader on its own.
   */
  async #queueUsed(i: number, start: number, length: number, ranges: readonly Extent[]): Promise<void> {
    const slot = await this.#slots.acquire();
    const chunk = new ChunkInFlight(i, start, length, ranges, slot, this.#detach.position);
    const read = this.#previousRead.then(() => this.#readInto(chunk.slot, chunk));
    this.#previousRead = read.catch(() => undefined);
    chunk.image = this.#feed.enqueue(
      () => this.#prepareForHasher(chunk, read),
      () => this.#pool.imageUpdate(chunk.hashedFrom, start, length),
    );
    const stored = read.then(
      () => {
        this.#ledger.stats.bytesRead += bytesReadOf(ranges, length);
        return this.#storeChunk(chunk);
      },
      (err: unknown) => {
        this.#slots.release(slot);
        throw err;
      },
    );
    this.#tasks.track(stored.then(() => this.#input.progress.advance(length)));
  }

  /** Runs when the hasher is about to get the chunk: a detached chunk is read a second time for it. */
  async #prepareForHasher(chunk: ChunkInFlight, read: Promise<void>): Promise<void> {
    await read;
    // With zeros enough ahead, the hasher can spare the wait for the blob id, which says
    // whether the chunk is new and worth detaching.
    if (!chunk.detached && this.#detach.worthDetaching(chunk.position)) await chunk.decided;
    chunk.feeding = !chunk.detached;
    if (!chunk.detached) return;
    chunk.reread = await this.#rereadSlots.acquire();
    await this.#readInto(chunk.reread, chunk);
  }

  #readInto(buffer: SharedArrayBuffer, chunk: ChunkInFlight): Promise<void> {
    return readUsedParts(this.#reader, new Uint8Array(buffer, 0, chunk.length), chunk.start, chunk.ranges);
  }

  /** Stores a chunk if the repository lacks it, then gives its slot back. */
  async #storeChunk(chunk: ChunkInFlight): Promise<void> {
    try {
      const id = await this.#ledger.record(chunk.index, await this.#pool.hash(chunk.slot, chunk.length));
      if (!id) return;
      if (!chunk.feeding && this.#detach.tryDetach(chunk.position, chunk.length)) {
        chunk.detached = true;
        chunk.decide();
        this.#tasks.track(this.#confirmReread(chunk));
      } else {
        chunk.decide();
        // Sealing writes the blob over the chunk: the image hasher must be done reading it.
        await chunk.image.hashed;
      }
      await this.#seal(id, chunk.slot, chunk.length);
    } finally {
      chunk.decide();
      if (!chunk.detached) await chunk.image.hashed.catch(() => undefined);
      this.#slots.release(chunk.slot);
    }
  }

  /**
   * Checks a detached chunk's second read, which the image hasher took in, against the first,
   * which was stored. A chunk that changed in between (a busy, mounted volume) is recorded and
   * stored as read the second time, because that is what the digest covers.
   */
  async #confirmReread(chunk: ChunkInFlight): Promise<void> {
    try {
      await chunk.image.posted;
      const again = await this.#pool.hash(chunk.reread!, chunk.length);
      if (!this.#ledger.holds(chunk.index, again)) {
        this.#changedWhileRead++;
        const id = await this.#ledger.rerecord(chunk.index, again);
        if (id) {
          await chunk.image.hashed; // sealing writes over the bytes the hasher reads
          await this.#seal(id, chunk.reread!, chunk.length);
        }
      }
      await chunk.image.hashed;
    } finally {
      await chunk.image.hashed.catch(() => undefined);
      if (chunk.reread) this.#rereadSlots.release(chunk.reread);
      this.#detach.reread(chunk.length);
    }
  }

  /** Compresses and encrypts the chunk in the slot, over it, and packs the blob. */
  async #seal(id: Buffer, slot: SharedArrayBuffer, length: number): Promise<void> {
    const sealedLength = await this.#pool.sealInSlot(slot, length);
    await this.#packer.add(BlobType.chunk, id, new Uint8Array(slot, 0, sealedLength), length);
  }

  /** Stores the chunk records as chunk-map blobs (deduplicated like chunks); returns their ids in order. */
  async #storeChunkMaps(): Promise<string[]> {
    const chunkMaps: string[] = [];
    for (let first = 0; first < this.#chunkCount; first += CHUNKS_PER_MAP) {
      const plain = encodeChunkMap(this.#ledger.records.slice(first, first + CHUNKS_PER_MAP));
      const { id, sealed } = await this.#pool.sealBytes(plain);
      const hex = id.toString('hex');
      if (await this.#ledger.claim(hex)) await this.#packer.add(BlobType.chunkMap, id, sealed, plain.length);
      chunkMaps.push(hex);
    }
    return chunkMaps;
  }

  async #saveSnapshot(chunkMaps: string[], digest: string): Promise<BackupResult> {
    const { source, started, repository } = this.#input;
    const stats = this.#ledger.stats;
    const unreadable = this.#reader.unreadable.ranges;
    const manifest: SnapshotManifest = {
      version: manifestVersionFor(this.#digestAlgorithm),
      time: started.toISOString(),
      hostname: hostname(),
      job: this.#input.jobName,
      ...(this.#input.tags?.length && { tags: this.#input.tags }),
      source: { type: this.#input.sourceType, path: source.path },
      layout: source.layout,
      size: this.#size,
      chunkSize: this.#input.chunkSize,
      chunkCount: this.#chunkCount,
      chunkMaps,
      imageDigest: { algorithm: this.#digestAlgorithm, hex: digest },
      compression: this.#input.compression,
      stats: { ...stats, bytesAdded: this.#packer.bytesWritten, durationMs: Math.round(performance.now() - this.#startedAt) },
      ...(unreadable.length > 0 && { unreadable }),
    };
    await this.#input.beforeSnapshot?.(manifest);
    const saved = await repository.saveSnapshot(manifest);
    return { snapshot: saved.id, manifest, bytesRead: stats.bytesRead, bytesAdded: this.#packer.bytesWritten + saved.size, warnings: this.#warnings() };
  }

  #warnings(): string[] {
    const warnings: string[] = [];
    const path = this.#input.source.path;
    const unreadable = this.#reader.unreadable.ranges;
    if (unreadable.length > 0) {
      const named = unreadable.slice(0, RANGES_IN_WARNING).map((r) => `${r.length} bytes at offset ${r.offset}`);
      const more = unreadable.length > RANGES_IN_WARNING ? `, and ${unreadable.length - RANGES_IN_WARNING} more` : '';
      warnings.push(
        `${unreadable.length} range(s) of ${path} could not be read (${this.#reader.unreadable.totalBytes} bytes in all) and were stored as zeros: ${named.join(', ')}${more}; \`cairn show\` lists them all`,
      );
    }
    if (this.#changedWhileRead > 0) {
      warnings.push(
        `${this.#changedWhileRead} chunk(s) of ${path} changed while the backup was reading them; the snapshot holds what was read last. For a consistent image, freeze the filesystem during the backup (a "before" hook running fsfreeze -f) or back up a snapshot of the volume.`,
      );
    }
    return warnings;
  }
}

/** What reading a chunk's used ranges reads: the whole chunk when they are scattered (see readUsedParts). */
function bytesReadOf(ranges: readonly Extent[], length: number): number {
  return ranges.length > SCATTERED_RANGES ? length : ranges.reduce((n, r) => n + r.length, 0);
}

/** Fills `bytes` (the chunk at `start`) with the used ranges and zeros elsewhere. */
async function readUsedParts(source: SourceReader, bytes: Uint8Array, start: number, ranges: readonly Extent[]): Promise<void> {
  // Where the one read fails, the used ranges are read one by one: an unreadable sector in
  // unused space must neither stop the backup nor count as lost.
  const whole = ranges.length > SCATTERED_RANGES && (await source.tryRead(bytes, start, bytes.length));
  if (!whole) {
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
