import { BlobType } from '../repository/format.js';
import type { Extent } from '../source.js';
import type { Packer } from '../pipeline/packer.js';
import { SEALED_CHUNK_OVERHEAD, SlotPool, type WorkerPool } from '../pipeline/worker-pool.js';
import type { FastCdc } from './cdc.js';
import type { OpenedFile, OpenedFileTree } from './file-source.js';
import type { ContentChunk, EntryMetadata } from './tree.js';
import { Semaphore } from './semaphore.js';

/** What a backup counts of file content. */
export interface ContentStats {
  bytesRead: number;
  dataChunks: number;
  newChunks: number;
}

/** A failure of the file being read (not of the repository): the file is skipped, the run goes on. */
export class FileReadFailure extends Error {
  constructor(readonly error: unknown) {
    super((error as Error)?.message ?? String(error));
  }
}

/** The content of one file as read: its chunks (holes left out) and the length read. */
export interface ReadContent {
  content: ContentChunk[];
  size: number;
}

/** A file as read, with its size and times after reading (to tell whether it changed meanwhile). */
export interface FileRead extends ReadContent {
  after: Pick<EntryMetadata, 'size' | 'mtimeNs' | 'ctimeNs'>;
}

/**
 * A file up to `min` bytes is one chunk, read straight into a slot: a small slot (64 KiB) when
 * it fits, else a medium one (`min`). Nine in ten files of the corpus fit a small slot; 48 slots
 * all of `min` bytes were 20 MB resident by the end of a backup, these two kinds 7 MB.
 */
const SMALL_SLOTS = 40;
const SMALL_SLOT_BYTES = 64 * 1024;
const MEDIUM_SLOTS = 8;
/**
 * A large slot's pages past this many bytes are given back after a chunk that reached them:
 * chunks average 1 MiB, and four 8 MiB slots otherwise keep the pages of the largest chunk each
 * ever held. A whole huge page, so that one fault (not 512) brings the first 2 MiB back.
 */
const LARGE_SLOT_RESIDENT = 2 * 1024 * 1024;
/** Large files cut at once: each holds a large slot while it reads the next chunk into it. */
const LARGE_FILES_AT_ONCE = 2;
/**
 * Bytes read into a large slot at a time once it holds `min`: the bytes read past a cut (half
 * of this on average) are copied to the next slot, and each step is a read call.
 */
const READ_STEP = 256 * 1024;

/**
 * Reads file content, cuts it with FastCDC and stores every chunk the repository lacks
 * (hash, then compress and encrypt in its slot, then pack). Memory is bounded by the slots:
 * small files go straight into small slots, large files into large slots a chunk at a time.
 */
export class ContentStore {
  readonly stats: ContentStats = { bytesRead: 0, dataChunks: 0, newChunks: 0 };
  readonly #smallSlots: SlotPool;
  readonly #mediumSlots: SlotPool;
  /** The largest file a small slot takes. */
  readonly #smallFileBytes: number;
  readonly #largeSlots: SlotPool;
  readonly #largeFiles: Semaphore;

  constructor(
    private readonly pool: WorkerPool,
    private readonly packer: Packer,
    private readonly cdc: FastCdc,
    /** True when the blob must be stored by this run (neither in the repository nor claimed yet). */
    private readonly claim: (hexId: string) => Promise<boolean>,
    largeSlots: number,
    private readonly onRead: (bytes: number) => void = () => undefined,
  ) {
    const { min, max } = cdc.parameters;
    this.#smallFileBytes = Math.min(min, SMALL_SLOT_BYTES - SEALED_CHUNK_OVERHEAD);
    this.#smallSlots = new SlotPool(SMALL_SLOTS, this.#smallFileBytes + SEALED_CHUNK_OVERHEAD);
    this.#mediumSlots = new SlotPool(min > this.#smallFileBytes ? MEDIUM_SLOTS : 0, min + SEALED_CHUNK_OVERHEAD);
    this.#largeSlots = new SlotPool(largeSlots, max + SEALED_CHUNK_OVERHEAD, LARGE_SLOT_RESIDENT);
    // A file cutting its next chunk holds a slot and takes another before handing it on: more
    // files than slots at once could each hold one and wait for another forever.
    if (largeSlots <= LARGE_FILES_AT_ONCE) throw new Error(`${largeSlots} large slots are too few for ${LARGE_FILES_AT_ONCE} files cut at once`);
    this.#largeFiles = new Semaphore(LARGE_FILES_AT_ONCE);
  }

  /**
   * Opens, reads and stores a file listed with `size` bytes, and tells its size and times after
   * reading. Never reads past `size` (a file that grew is marked changed by the caller).
   * Rejects with FileReadFailure when the file cannot be opened or read.
   */
  async readFile(source: OpenedFileTree, path: Buffer, size: number): Promise<FileRead> {
    if (size <= this.cdc.parameters.min) {
      // The slot is taken before the file is opened: the slots bound the files open at once.
      const slots = size <= this.#smallFileBytes ? this.#smallSlots : this.#mediumSlots;
      const slot = await slots.acquire();
      try {
        if (source.readWhole) return await this.#readWhole(source, path, slot, size);
        return await this.#withFile(source, path, (file) => this.#readSmall(file, slot, size));
      } finally {
        slots.release(slot);
      }
    }
    return this.#largeFiles.run(() => this.#withFile(source, path, async (file) => this.#readLarge(file, await sourceCall(() => file.dataRanges(size)), size)));
  }

  async #withFile(source: OpenedFileTree, path: Buffer, read: (file: OpenedFile) => Promise<ReadContent>): Promise<FileRead> {
    const file = await sourceCall(() => source.open(path));
    try {
      const content = await read(file);
      return { ...content, after: await sourceCall(() => file.stat()) };
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  /** A small file through the source's fast path: open, read, fstat and close in one call. */
  async #readWhole(source: OpenedFileTree, path: Buffer, slot: SharedArrayBuffer, size: number): Promise<FileRead> {
    const { bytesRead, after } = await sourceCall(() => source.readWhole!(path, new Uint8Array(slot, 0, size)));
    this.#counted(bytesRead);
    const chunk = bytesRead > 0 ? await this.#storeSmall(slot, bytesRead) : undefined;
    return { content: chunk ? [chunk] : [], size: bytesRead, after };
  }

  /** One chunk: the whole file (no data-range lookup: two syscalls more per file, for holes in at most `min` bytes). */
  async #readSmall(file: OpenedFile, slot: SharedArrayBuffer, size: number): Promise<ReadContent> {
    const length = await readFully(file, new Uint8Array(slot, 0, size), 0);
    this.#counted(length);
    const chunk = length > 0 ? await this.#storeSmall(slot, length) : undefined;
    return { content: chunk ? [chunk] : [], size: length };
  }

  async #readLarge(file: OpenedFile, ranges: readonly Extent[], size: number): Promise<ReadContent> {
    const chunks: Array<Promise<ContentChunk | undefined>> = [];
    let readEnd = 0;
    let failure: unknown;
    try {
      for (const range of ranges) {
        const end = Math.min(range.offset + range.length, size);
        if (range.offset >= end) continue;
        readEnd = await this.#cutRange(file, range.offset, end, chunks);
        if (readEnd < end) break; // the file ended early (it shrank)
      }
    } catch (err) {
      failure = err;
    }
    // Chunks already on their way are stored even when reading failed: their slots must come back.
    const settled = await Promise.allSettled(chunks);
    for (const result of settled) if (result.status === 'rejected') throw result.reason;
    if (failure !== undefined) throw failure;
    const content = settled.map((r) => (r as PromiseFulfilledResult<ContentChunk | undefined>).value).filter((c): c is ContentChunk => c !== undefined);
    return { content, size: readEnd };
  }

  /**
   * Cuts `[start, end)` of the file into chunks and starts storing each; resolves to where
   * reading stopped. The file is read straight into a large slot, a step at a time until the
   * bytes in it decide the chunk; the bytes read past the cut start the next slot. (Reading into
   * a window of `max` bytes and copying each chunk out of it cost a window per file and a copy
   * of every byte.)
   */
  async #cutRange(file: OpenedFile, start: number, end: number, chunks: Array<Promise<ContentChunk | undefined>>): Promise<number> {
    let slot = await this.#largeSlots.acquire();
    let position = start; // next byte to read
    let chunkStart = start; // the file offset of the slot's first byte
    let filled = 0;
    let scanned = 0;
    let ended = false;
    try {
      for (;;) {
        const data = new Uint8Array(slot, 0, this.cdc.parameters.max);
        const length = this.cdc.boundary(data, 0, filled, ended, scanned);
        if (length === 0) return position;
        if (length === undefined) {
          scanned = filled;
          const want = Math.min(this.#readStep(filled), end - position);
          const got = await readFully(file, data.subarray(filled, filled + want), position);
          this.#counted(got);
          position += got;
          filled += got;
          ended = got < want || position >= end;
          continue;
        }
        slot = await this.#handOn(slot, length, filled, chunkStart, chunks);
        chunkStart += length;
        filled -= length;
        scanned = 0;
      }
    } finally {
      this.#largeSlots.release(slot, filled);
    }
  }

  /**
   * Starts storing the slot's first `length` bytes, the chunk at `offset`, and resolves to the
   * next slot, which starts with the bytes read past the cut. That slot is taken before this one
   * is handed on (the bytes past the cut move into it).
   */
  async #handOn(slot: SharedArrayBuffer, length: number, filled: number, offset: number, chunks: Array<Promise<ContentChunk | undefined>>): Promise<SharedArrayBuffer> {
    const next = await this.#largeSlots.acquire();
    new Uint8Array(next, 0, filled - length).set(new Uint8Array(slot, length, filled - length));
    const used = Math.max(filled, length + SEALED_CHUNK_OVERHEAD);
    chunks.push(this.#store(slot, length, offset).finally(() => this.#largeSlots.release(slot, used)));
    return next;
  }

  /** How much to read into a slot holding `filled` bytes: up to `min` at once (no cut comes sooner), then READ_STEP at a time. */
  #readStep(filled: number): number {
    const { min, max } = this.cdc.parameters;
    return Math.min(max - filled, filled < min ? min - filled + READ_STEP : READ_STEP);
  }

  /** Stores the chunk in the first `length` bytes of the slot unless the repository has it; undefined for zeros (a hole). */
  async #store(slot: SharedArrayBuffer, length: number, offset: number): Promise<ContentChunk | undefined> {
    const hash = await this.pool.hash(slot, length);
    if (hash.zero) return undefined;
    const id = hash.id.toString('hex');
    this.stats.dataChunks++;
    if (await this.claim(id)) {
      this.stats.newChunks++;
      const sealedLength = await this.pool.sealInSlot(slot, length);
      await this.packer.add(BlobType.chunk, hash.id, new Uint8Array(slot, 0, sealedLength), length);
    }
    return { offset, length, id };
  }

  /** A small file's one chunk: hashed and sealed in one trip to the workers (files of a few KiB are bound by such trips). */
  async #storeSmall(slot: SharedArrayBuffer, length: number): Promise<ContentChunk | undefined> {
    const hash = await this.pool.hashAndSeal(slot, length);
    if (hash.zero) return undefined;
    const id = hash.id.toString('hex');
    this.stats.dataChunks++;
    if (await this.claim(id)) {
      this.stats.newChunks++;
      await this.packer.add(BlobType.chunk, hash.id, new Uint8Array(slot, 0, hash.sealedLength!), length);
    }
    return { offset: 0, length, id };
  }

  #counted(bytes: number): void {
    this.stats.bytesRead += bytes;
    this.onRead(bytes);
  }
}

/** Calls the source; its failure becomes a FileReadFailure (the file's problem, not the run's). */
export async function sourceCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw new FileReadFailure(err);
  }
}

/** Reads `into.length` bytes at `position`, fewer only at the end of the file; resolves to the bytes read. */
async function readFully(file: OpenedFile, into: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < into.length) {
    const got = await sourceCall(() => file.read(into, done, into.length - done, position + done));
    if (got === 0) break;
    done += got;
  }
  return done;
}
