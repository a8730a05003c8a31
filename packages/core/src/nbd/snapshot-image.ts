import { DamageError } from '../errors.js';
import { joinsFetchGroup, type FetchGroup } from '../pipeline/fetch-groups.js';
import { ChunkKind, Keys, type ChunkRecord } from '../repository/format.js';
import type { BlobIndex, Repository } from '../repository/repository.js';
import type { SnapshotManifest } from '../repository/snapshot.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { ExportExtent, ExportSource } from './export-source.js';
import { ChunkCache } from './chunk-cache.js';
import { checkRange, mergeExtents } from './extents.js';

/** Ranged pack reads in flight at once, for reads and read-ahead together. */
const FETCH_CONCURRENCY = 16;
/** Chunks fetched ahead of a sequential reader (fewer when the cache is small). */
export const DEFAULT_READ_AHEAD_CHUNKS = 8;

export interface SnapshotImageInput {
  repository: Repository;
  index: BlobIndex;
  pool: WorkerPool;
  snapshot: string;
  manifest: SnapshotManifest;
  records: readonly ChunkRecord[];
  /** The export's name ('' for the whole disk) and its NBD description. */
  name?: string;
  description?: string;
  /** Memory budget of decoded chunks; default DEFAULT_CACHE_BYTES (256 MiB). */
  cacheBytes?: number;
  readAheadChunks?: number;
}

/** What the reader did, for tests and `--json` statistics. */
export interface SnapshotImageStats {
  /** Blobs fetched and opened (each chunk once while it stays cached). */
  chunksFetched: number;
  /** Ranged pack reads. */
  packReads: number;
  /** Chunk lookups served from the cache or from a fetch already in flight. */
  cacheHits: number;
}

/** Neighbouring blobs of one pack, fetched with one ranged read. */

/**
 * A snapshot's image as a read-only export: any byte range, read on demand. Zero and unused
 * chunks read as zeros without I/O; data chunks come from an LRU cache of decoded chunks,
 * fetched with ranged pack reads (neighbours coalesced), opened in the worker pool and checked
 * against their keyed ids, as a partial restore checks them. A chunk that cannot be read fails
 * the read naming its blob and pack: wrong bytes are never returned. A read that follows on
 * from the chunk before it fetches a few chunks ahead.
 */
export class SnapshotImage implements ExportSource {
  readonly name: string;
  readonly description: string;
  readonly size: number;
  readonly writable = false;
  readonly stats: SnapshotImageStats = { chunksFetched: 0, packReads: 0, cacheHits: 0 };
  readonly #input: SnapshotImageInput;
  readonly #chunkSize: number;
  readonly #cache: ChunkCache;
  readonly #readAhead: number;
  readonly #fetchSlots = new Semaphore(FETCH_CONCURRENCY);

  constructor(input: SnapshotImageInput) {
    const { manifest, records } = input;
    if (records.length !== Math.ceil(manifest.size / manifest.chunkSize)) {
      throw new DamageError(`Snapshot ${input.snapshot.slice(0, 12)} has ${records.length} chunk records for an image of ${manifest.size} bytes in chunks of ${manifest.chunkSize}`);
    }
    this.#input = input;
    this.name = input.name ?? '';
    this.description = input.description ?? `snapshot ${input.snapshot.slice(0, 12)}`;
    this.size = manifest.size;
    this.#chunkSize = manifest.chunkSize;
    this.#cache = new ChunkCache(input.cacheBytes);
    // Read-ahead takes at most a quarter of the cache, so that it does not push out what is read.
    const fitting = Math.floor(this.#cache.budget / 4 / this.#chunkSize);
    this.#readAhead = Math.max(0, Math.min(input.readAheadChunks ?? DEFAULT_READ_AHEAD_CHUNKS, fitting));
  }

  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, offset, length);
    if (length === 0) return Buffer.alloc(0);
    const first = Math.floor(offset / this.#chunkSize);
    const last = Math.floor((offset + length - 1) / this.#chunkSize);
    // The first chunk, or the one after a chunk just read: a reader going through the disk in order.
    const sequential = first === 0 || this.#cache.has(first - 1);
    const chunks = this.#chunks(first, last + 1);
    if (sequential) this.#fetchAhead(last + 1);
    // Most reads lie within one data chunk: a view of the cached chunk, not a copy (nothing writes to cached chunks).
    if (first === last && chunks.length === 1) {
      const from = offset - first * this.#chunkSize;
      return (await chunks[0]!.chunk).subarray(from, from + length);
    }
    // Zeros only where no data chunk will be copied in.
    const out = chunks.length === last - first + 1 ? Buffer.allocUnsafe(length) : Buffer.alloc(length);
    await Promise.all(
      chunks.map(async ({ index, chunk }) => {
        const start = index * this.#chunkSize;
        const from = Math.max(offset, start);
        const to = Math.min(offset + length, start + this.#chunkSize);
        (await chunk).copy(out, from - offset, from - start, to - start);
      }),
    );
    return out;
  }

  async blockStatus(offset: number, length: number): Promise<ExportExtent[]> {
    checkRange(this, offset, length);
    const extents: ExportExtent[] = [];
    const end = offset + length;
    for (let at = offset; at < end; ) {
      const index = Math.floor(at / this.#chunkSize);
      const next = Math.min(end, (index + 1) * this.#chunkSize);
      // Zero and unused chunks are stored as nothing: holes that read as zeros.
      const stored = this.#input.records[index]!.kind === ChunkKind.data;
      extents.push({ offset: at, length: next - at, hole: !stored, zero: !stored });
      at = next;
    }
    return mergeExtents(extents);
  }

  /** Fetches the data chunks of the range into the cache, as much of it as the cache holds; fails as a read would. */
  async prefetch(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    if (length === 0) return;
    const first = Math.floor(offset / this.#chunkSize);
    const wanted = Math.floor((offset + length - 1) / this.#chunkSize) + 1;
    const last = Math.min(wanted, first + Math.max(1, Math.floor(this.#cache.budget / 2 / this.#chunkSize)));
    await Promise.all(this.#chunks(first, last).map(({ chunk }) => chunk));
  }

  /** The cache stays for the next client; openSnapshotExports' close releases everything. */
  async close(): Promise<void> {}

  /** Drops the cached chunks. */
  release(): void {
    this.#cache.clear();
  }

  /** The data chunks of [first, last), each from the cache or a fetch started now (neighbours in one ranged read). */
  #chunks(first: number, last: number): Array<{ index: number; chunk: Promise<Buffer> }> {
    const data: number[] = [];
    for (let index = first; index < last; index++) if (this.#input.records[index]!.kind === ChunkKind.data) data.push(index);
    this.stats.cacheHits += data.filter((index) => this.#cache.has(index)).length;
    this.#startFetches(first, last);
    // Synchronous since the fetches started: nothing can have left the cache meanwhile.
    return data.map((index) => ({ index, chunk: this.#cache.get(index)! }));
  }

  /** Read-ahead: the next chunks after a sequential read, as far as the window reaches; failures wait for a real read. */
  #fetchAhead(from: number): void {
    const until = Math.min(this.#input.records.length, from + this.#readAhead);
    for (let index = from; index < until; index++) if (!this.#cache.has(index)) return this.#startFetches(index, until);
  }

  /** Starts fetching the data chunks of [first, last) that are neither cached nor in flight. */
  #startFetches(first: number, last: number): void {
    let group: FetchGroup | undefined;
    for (let index = first; index < last; index++) {
      const record = this.#input.records[index]!;
      if (record.kind !== ChunkKind.data) continue;
      if (this.#cache.has(index)) continue;
      const id = record.id!.toString('hex');
      const location = this.#input.index.get(id);
      if (!location) {
        this.#cache.track(index, Promise.reject(this.#unreadable(index, id, new DamageError(`blob ${id.slice(0, 12)} is not in any index`))));
        continue;
      }
      if (group && joinsFetchGroup(group, location)) {
        group.length += location.length;
        group.chunks.push({ index, id, location });
        continue;
      }
      if (group) this.#fetchGroup(group);
      group = { pack: location.pack, offset: location.offset, length: location.length, chunks: [{ index, id, location }] };
    }
    if (group) this.#fetchGroup(group);
  }

  /** One ranged read for the group; each blob opened (decrypted, decompressed, checked against its id) in the pool. */
  #fetchGroup(group: FetchGroup): void {
    const { repository, pool } = this.#input;
    this.stats.packReads++;
    const bytes = this.#fetchSlots.run(() => repository.readPack(group.pack, { offset: group.offset, length: group.length }));
    for (const { index, id, location } of group.chunks) {
      this.stats.chunksFetched++;
      const expected = Math.min(this.#chunkSize, this.size - index * this.#chunkSize);
      const opened = bytes.then(async (sealed) => {
        const blob = sealed.subarray(location.offset - group.offset, location.offset - group.offset + location.length);
        const plain = await pool.open(blob, location.rawLength, id).catch((err: unknown) => {
          throw err instanceof DamageError ? new DamageError(`pack ${Keys.pack(group.pack)} is damaged: ${err.message}`, { cause: err }) : err;
        });
        if (plain.length !== expected) throw new DamageError(`blob ${id.slice(0, 12)} holds ${plain.length} bytes, the chunk has ${expected}`);
        return plain;
      });
      this.#cache.track(
        index,
        opened.catch((err: unknown) => Promise.reject(err instanceof DamageError ? this.#unreadable(index, id, err) : err)),
      );
    }
  }

  #unreadable(index: number, id: string, cause: DamageError): DamageError {
    return new DamageError(
      `Snapshot ${this.#input.snapshot.slice(0, 12)}: blob ${id.slice(0, 12)} (image offset ${index * this.#chunkSize}) cannot be read: ${cause.message}; \`cairn check --read-data\` reports all damage`,
      { cause },
    );
  }
}


/** At most `limit` tasks at a time; the rest wait in order. */
class Semaphore {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.#free = limit;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}
