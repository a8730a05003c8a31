import { SEAL_OVERHEAD, createPackIdHash, packIdOf, seal } from '../crypto/crypto.js';
import { encodeIndex, encodePackHeader, packHeaderLength, type BlobType, type IndexedPack, type PackedBlob } from '../repository/format.js';
import { packIdSchemeOf, type Repository } from '../repository/repository.js';
import { allocateAligned } from './aligned-memory.js';
import { PackStream, StagingBuffers } from './pack-stream.js';
import { SEALED_CHUNK_OVERHEAD } from './worker-pool.js';

/**
 * An index file is written after this many packs, or after the first pack this long after the
 * last index file: other writers into the repository deduplicate against what they can see.
 * (A killed run loses nothing either way: the next backup indexes the packs it left.)
 */
const PACKS_PER_INDEX = 16;
const INDEX_EVERY_MS = 10_000;
/** Blobs a pack buffer has header room for beyond what fills it; more small blobs close a pack early. */
const HEADER_ROOM_BLOBS = 256;

/** A pack closed and waiting for its turn to be stored. */
interface ClosedPack {
  store(): Promise<{ id: Buffer; length: number }>;
  discard(): Promise<void>;
}

/** Bytes that follow a pack's blobs: the sealed header and its length (u32). */
function packTailLength(blobCount: number): number {
  return packHeaderLength(blobCount) + SEAL_OVERHEAD + 4;
}

/**
 * Groups sealed blobs into packs, uploads them, and writes index files for uploaded packs.
 * `add` waits while too many uploads are in flight (backpressure). Index files only ever
 * name packs whose upload completed, so a crash cannot leave an index pointing at nothing.
 *
 * A pack is assembled in a page-aligned buffer that is used again once its upload settled:
 * a fresh 16 MiB buffer per pack cost page faults on every byte (a third of a second of the
 * main thread's time for a 4 GiB volume), and page-aligned memory lets a local target write
 * the pack with direct I/O instead of through the page cache. A target that takes objects
 * piece by piece (a local one) gets each pack as it fills instead (see PackStream), and no
 * pack buffer is held at all.
 */
export class Packer {
  #blobs: PackedBlob[] = [];
  /** The pack being filled; undefined until the first blob after a close. */
  #buffer: Uint8Array | undefined;
  #size = 0;
  readonly #spareBuffers: Uint8Array[] = [];
  /** Packs are written as they fill when the target can (see Target.openWriter). */
  readonly #streamed: boolean;
  /** The pack being filled when streamed; undefined until the first blob after a close. */
  #stream: PackStream | undefined;
  readonly #stagingBuffers = new StagingBuffers();
  /** Buffers of the standard length, which are used again (an oversized one is not). */
  readonly #reusable = new WeakSet<ArrayBufferLike>();
  readonly #bufferLength: number;
  readonly #uploads = new Set<Promise<void>>();
  /** Settles once the pack being closed has an upload slot; undefined when no close waits. */
  #closing: Promise<void> | undefined;
  #uploaded: IndexedPack[] = [];
  #failure: unknown;
  #lastIndexAt = performance.now();
  /** Bytes of packs and indexes this packer stored. */
  bytesWritten = 0;

  readonly #uploadsInFlight: number;

  /** `uploadsInFlight` defaults to what the repository's target serves at once (see MemoryProfile.uploadsInFlight). */
  constructor(
    private readonly repository: Repository,
    uploadsInFlight = repository.concurrentPuts,
  ) {
    this.#uploadsInFlight = uploadsInFlight;
    this.#streamed = repository.streamsPacks;
    const { packSize, chunkSize } = repository.config;
    // A pack closes before a blob that would take it past packSize, so a buffer of packSize
    // holds any pack (a sealed chunk larger than packSize gets one of its own): every page of
    // a buffer that fills is resident, so room past packSize would cost memory, not just address space.
    this.#bufferLength = Math.max(packSize, chunkSize + SEALED_CHUNK_OVERHEAD) + packTailLength(HEADER_ROOM_BLOBS);
  }

  async add(type: BlobType, id: Buffer, sealed: Uint8Array, rawLength: number): Promise<void> {
    // Blobs are added by many chunks at once: while a closed pack waits for an upload slot,
    // each of them would otherwise take a buffer of its own (five or six 20 MiB buffers seen).
    // Other adds run while this one waits: the open pack is looked at again after every wait,
    // and the blob is placed with no wait between that look and its copy.
    for (;;) {
      while (this.#closing) await this.#closing;
      this.#throwIfFailed();
      if (this.#blobs.length === 0 || this.#fits(sealed.length)) break;
      await this.#closePack();
    }
    if (this.#streamed) return this.#addStreamed(type, id, sealed, rawLength);
    const buffer = (this.#buffer ??= this.#takeBuffer(sealed.length));
    buffer.set(sealed, this.#size);
    this.#blobs.push({ type, id, offset: this.#size, length: sealed.length, rawLength });
    this.#size += sealed.length;
    if (this.#size >= this.repository.config.packSize) await this.#closePack();
  }

  /** Places the blob in the streamed pack; settles once it is copied (and the pack closed, when this blob filled it). */
  async #addStreamed(type: BlobType, id: Buffer, sealed: Uint8Array, rawLength: number): Promise<void> {
    const stream = (this.#stream ??= this.#openStream());
    this.#blobs.push({ type, id, offset: this.#size, length: sealed.length, rawLength });
    this.#size += sealed.length;
    const appended = stream.append(sealed);
    appended.catch((err: unknown) => (this.#failure ??= err));
    const closed = this.#size >= this.repository.config.packSize ? this.#closePack() : undefined;
    await Promise.all([appended, closed]);
  }

  #openStream(): PackStream {
    return new PackStream(this.repository.openPackWriter(), createPackIdHash(packIdSchemeOf(this.repository.config)), this.#stagingBuffers);
  }

  /** Whether a blob of `length` bytes joins the open pack without taking it past packSize or its buffer. */
  #fits(length: number): boolean {
    if (this.#size + length > this.repository.config.packSize) return false;
    return this.#streamed || this.#size + length + packTailLength(this.#blobs.length + 1) <= this.#buffer!.length;
  }

  /** Closes the open pack, waits for every upload and writes the remaining index. */
  async flush(): Promise<void> {
    if (this.#blobs.length > 0) await this.#closePack();
    await Promise.allSettled(this.#uploads);
    this.#throwIfFailed();
    await this.#writeIndex();
  }

  /** Waits for uploads in flight without writing anything more (used after a failure). */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.#uploads);
    const stream = this.#stream;
    this.#stream = undefined;
    await stream?.abort();
  }

  /** A buffer for a new pack whose first blob has `firstBlobLength` bytes. */
  #takeBuffer(firstBlobLength: number): Uint8Array {
    const needed = firstBlobLength + packTailLength(1);
    // Only a blob larger than any chunk (none is written today) gets a buffer of its own.
    if (needed > this.#bufferLength) return new Uint8Array(allocateAligned(needed));
    const spare = this.#spareBuffers.pop();
    if (spare) return spare;
    const buffer = new Uint8Array(allocateAligned(this.#bufferLength));
    this.#reusable.add(buffer.buffer);
    return buffer;
  }

  #recycle(buffer: Uint8Array): void {
    if (this.#reusable.has(buffer.buffer)) this.#spareBuffers.push(buffer);
  }

  async #closePack(): Promise<void> {
    const blobs = this.#blobs;
    const header = seal(this.repository.masterKey.encryption, encodePackHeader(blobs));
    const pack = this.#streamed ? this.#detachStream(header) : this.#detachBuffer(header);
    this.#blobs = [];
    this.#size = 0;

    const slot = this.#uploadSlot();
    const closing = (this.#closing = slot.catch(() => undefined));
    try {
      await slot;
    } catch (err) {
      await pack.discard();
      throw err;
    } finally {
      if (this.#closing === closing) this.#closing = undefined;
    }
    const upload = pack.store().then(
      async ({ id, length }) => {
        this.bytesWritten += length;
        this.#uploaded.push({ id, blobs });
        if (this.#uploaded.length >= PACKS_PER_INDEX || performance.now() - this.#lastIndexAt > INDEX_EVERY_MS) await this.#writeIndex();
      },
      (err: unknown) => {
        this.#failure ??= err;
      },
    );
    const tracked = upload.finally(() => this.#uploads.delete(tracked));
    this.#uploads.add(tracked);
  }

  /** The open pack's buffer with the sealed header and its length after the blobs, ready to be stored whole. */
  #detachBuffer(header: Uint8Array): ClosedPack {
    const buffer = this.#buffer!;
    this.#buffer = undefined;
    buffer.set(header, this.#size);
    const length = this.#size + header.length + 4;
    new DataView(buffer.buffer, buffer.byteOffset).setUint32(length - 4, header.length, true);
    const pack = buffer.subarray(0, length);
    return {
      store: async () => {
        try {
          const id = packIdOf(packIdSchemeOf(this.repository.config), pack);
          await this.repository.savePack(id.toString('hex'), pack);
          return { id, length };
        } finally {
          this.#recycle(buffer);
        }
      },
      discard: async () => this.#recycle(buffer),
    };
  }

  /** The streamed pack, to be finished with the sealed header and its length. */
  #detachStream(header: Uint8Array): ClosedPack {
    const stream = this.#stream!;
    this.#stream = undefined;
    const tail = new Uint8Array(header.length + 4);
    tail.set(header);
    new DataView(tail.buffer).setUint32(header.length, header.length, true);
    return {
      store: async () => {
        const id = await stream.finish(tail);
        return { id, length: stream.length };
      },
      discard: () => stream.abort(),
    };
  }

  async #uploadSlot(): Promise<void> {
    while (this.#uploads.size >= this.#uploadsInFlight) await Promise.race(this.#uploads);
    this.#throwIfFailed();
  }

  async #writeIndex(): Promise<void> {
    if (this.#uploaded.length === 0) return;
    const packs = this.#uploaded;
    this.#uploaded = [];
    this.#lastIndexAt = performance.now();
    try {
      const { size } = await this.repository.putSealed('index', encodeIndex(packs));
      this.bytesWritten += size;
    } catch (err) {
      this.#failure ??= err;
    }
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }
}
