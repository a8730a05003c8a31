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

/** Small-file slots: a file up to `min` bytes is one chunk, read straight into a slot. */
const SMALL_SLOTS = 48;
/** Large files cut at once: each has a window of `max` bytes that chunks are cut from. */
const LARGE_FILES_AT_ONCE = 4;

/**
 * Reads file content, cuts it with FastCDC and stores every chunk the repository lacks
 * (hash, then compress and encrypt in its slot, then pack). Memory is bounded by the slots:
 * small files go straight into small slots; a large file is read into a window of `max`
 * bytes, and each chunk cut from it is copied to a large slot for the workers.
 */
export class ContentStore {
  readonly stats: ContentStats = { bytesRead: 0, dataChunks: 0, newChunks: 0 };
  readonly #smallSlots: SlotPool;
  readonly #largeSlots: SlotPool;
  readonly #windows: Semaphore;
  readonly #spareWindows: Buffer[] = [];

  constructor(
    private readonly pool: WorkerPool,
    private readonly packer: Packer,
    private readonly cdc: FastCdc,
    /** True when the blob must be stored by this run (neither in the repository nor claimed yet). */
    private readonly claim: (hexId: string) => boolean,
    largeSlots: number,
    private readonly onRead: (bytes: number) => void = () => undefined,
  ) {
    const { min, max } = cdc.parameters;
    this.#smallSlots = new SlotPool(SMALL_SLOTS, min + SEALED_CHUNK_OVERHEAD);
    this.#largeSlots = new SlotPool(largeSlots, max + SEALED_CHUNK_OVERHEAD);
    this.#windows = new Semaphore(LARGE_FILES_AT_ONCE);
  }

  /**
   * Opens, reads and stores a file listed with `size` bytes, and tells its size and times after
   * reading. Never reads past `size` (a file that grew is marked changed by the caller).
   * Rejects with FileReadFailure when the file cannot be opened or read.
   */
  async readFile(source: OpenedFileTree, path: Buffer, size: number): Promise<FileRead> {
    if (size <= this.cdc.parameters.min) {
      // The slot is taken before the file is opened: the small slots bound the files open at once.
      const slot = await this.#smallSlots.acquire();
      try {
        if (source.readWhole) return await this.#readWhole(source, path, slot, size);
        return await this.#withFile(source, path, (file) => this.#readSmall(file, slot, size));
      } finally {
        this.#smallSlots.release(slot);
      }
    }
    return this.#windows.run(() => this.#withFile(source, path, async (file) => this.#readLarge(file, await sourceCall(() => file.dataRanges(size)), size)));
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
    const window = this.#spareWindows.pop() ?? Buffer.allocUnsafe(this.cdc.parameters.max);
    const chunks: Array<Promise<ContentChunk | undefined>> = [];
    let readEnd = 0;
    let failure: unknown;
    try {
      for (const range of ranges) {
        const end = Math.min(range.offset + range.length, size);
        if (range.offset >= end) continue;
        readEnd = await this.#cutRange(file, window, range.offset, end, chunks);
        if (readEnd < end) break; // the file ended early (it shrank)
      }
    } catch (err) {
      failure = err;
    }
    this.#spareWindows.push(window);
    // Chunks already on their way are stored even when reading failed: their slots must come back.
    const settled = await Promise.allSettled(chunks);
    for (const result of settled) if (result.status === 'rejected') throw result.reason;
    if (failure !== undefined) throw failure;
    const content = settled.map((r) => (r as PromiseFulfilledResult<ContentChunk | undefined>).value).filter((c): c is ContentChunk => c !== undefined);
    return { content, size: readEnd };
  }

  /**
   * Cuts `[start, end)` of the file into chunks and starts storing each; resolves to where
   * reading stopped. The window is refilled only when the bytes left in it do not decide the
   * next chunk, so only that remainder moves to the window's start, not the whole window after
   * every chunk (which copied seven times the data).
   */
  async #cutRange(file: OpenedFile, window: Buffer, start: number, end: number, chunks: Array<Promise<ContentChunk | undefined>>): Promise<number> {
    let position = start; // next byte to read
    let chunkStart = start; // the file offset of window[begin]
    let begin = 0;
    let filled = 0;
    let ended = false;
    for (;;) {
      const length = this.cdc.boundary(window, begin, filled, ended);
      if (length === 0) return position;
      if (length === undefined) {
        window.copyWithin(0, begin, filled);
        filled -= begin;
        begin = 0;
        const want = Math.min(window.length - filled, end - position);
        const got = await readFully(file, window.subarray(filled, filled + want), position);
        this.#counted(got);
        position += got;
        filled += got;
        ended = got < want || position >= end;
        continue;
      }
      const slot = await this.#largeSlots.acquire();
      new Uint8Array(slot, 0, length).set(window.subarray(begin, begin + length));
      const offset = chunkStart;
      chunks.push(this.#store(slot, length, offset).finally(() => this.#largeSlots.release(slot)));
      begin += length;
      chunkStart += length;
    }
  }

  /** Stores the chunk in the first `length` bytes of the slot unless the repository has it; undefined for zeros (a hole). */
  async #store(slot: SharedArrayBuffer, length: number, offset: number): Promise<ContentChunk | undefined> {
    const hash = await this.pool.hash(slot, length);
    if (hash.zero) return undefined;
    const id = hash.id.toString('hex');
    this.stats.dataChunks++;
    if (this.claim(id)) {
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
    if (this.claim(id)) {
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
