import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { CodecRegistration, CodecSettings } from '../codec.js';
import { SEAL_OVERHEAD, type BlobIdScheme, type StreamedDigestAlgorithm, type MasterKey } from '../crypto/crypto.js';
import { DamageError, PluginError } from '../errors.js';
import type { IDisposable } from '../lifecycle.js';
import type { ImageHashResult, ReplyFor, SealedSmallChunk, SharedBlob, WorkerFailure, WorkerReply, WorkerRequest } from './worker-protocol.js';
import { TripBatcher } from './trips.js';
import { holdYoungGeneration, memoryProfile, type MemoryProfile } from './memory-profile.js';
import { allocateAligned, releaseTail, useMemoryAdvice } from './aligned-memory.js';

// Unit tests run this module from TypeScript source; worker threads need the built JavaScript.
const WORKER_URL = import.meta.url.endsWith('.ts') ? new URL('../../dist/pipeline/worker.js', import.meta.url) : new URL('./worker.js', import.meta.url);

export interface CryptoSetup {
  masterKey: MasterKey;
  blobIdScheme: BlobIdScheme;
  codecs: CodecRegistration[];
  writeCodec: CodecSettings;
  writeCodecId: number;
}

/** One worker thread with a FIFO of outstanding requests (replies come back in order). */
class PooledWorker {
  readonly #worker: Worker;
  readonly #pending: Array<{ resolve(reply: WorkerReply): void; reject(err: Error): void }> = [];
  #failure: Error | undefined;

  constructor() {
    this.#worker = new Worker(WORKER_URL);
    // Its isolate, set up as the thread starts, let the main thread's young generation grow
    // again; stopped here, not only once the pool is ready (a busy start grew it to 16 MiB meanwhile).
    this.#worker.once('online', holdYoungGeneration);
    this.#worker.on('message', (reply: WorkerReply) => {
      const waiter = this.#pending.shift()!;
      if (reply.ok) waiter.resolve(reply);
      else waiter.reject(errorOf(reply));
    });
    const fail = (err: Error) => {
      this.#failure = err;
      for (const waiter of this.#pending.splice(0)) waiter.reject(err);
    };
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => {
      if (this.#pending.length > 0) fail(new Error(`worker thread exited with code ${code}`));
    });
  }

  get load(): number {
    return this.#pending.length;
  }

  request<R extends WorkerRequest>(message: R, transfer: ArrayBuffer[] = []): Promise<ReplyFor<R['op']>> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve: resolve as (reply: WorkerReply) => void, reject });
      this.#worker.postMessage(message, transfer);
    });
  }

  terminate(): Promise<number> {
    return this.#worker.terminate();
  }
}

/** Small chunks hashed and sealed in one trip to a worker at most (a trip per small file woke a worker each time). */
const SMALL_CHUNKS_PER_TRIP = 8;
/** Blobs opened in one trip to a worker at most (a trip per small file's blob woke a worker each time). */
const SHARED_BLOBS_PER_TRIP = 8;

/**
 * Worker threads for hashing, compression and encryption, plus, for the whole-image digests
 * of repository formats up to 5, one dedicated worker that keeps that digest (one serial
 * chain; keeping it off the main thread keeps I/O flowing), started when first needed.
 */
export class WorkerPool implements IDisposable {
  readonly #workers: PooledWorker[];
  #imageHasherThread: PooledWorker | undefined;
  #setup: CryptoSetup | undefined;

  /** How much the pipeline using this pool keeps in flight. */
  readonly memory: MemoryProfile;
  /** Blobs asked for in one turn of the event loop are opened by a worker together (see openShared). */
  readonly #sharedBlobs = new TripBatcher<SharedBlob, void>(SHARED_BLOBS_PER_TRIP, async (blobs) =>
    (await this.#leastBusy().request({ op: 'openShared', blobs })).failures.map((failure) => failure && errorOf(failure)),
  );
  /** Small chunks asked for in one turn of the event loop go to a worker together (see hashAndSeal). */
  readonly #smallChunks = new TripBatcher<{ slot: SharedArrayBuffer; length: number }, SealedSmallChunk>(
    SMALL_CHUNKS_PER_TRIP,
    async (chunks) => (await this.#leastBusy().request({ op: 'hashAndSeal', chunks })).sealed,
  );

  private constructor(size: number, env: NodeJS.ProcessEnv) {
    this.memory = memoryProfile(env, size);
    this.#workers = Array.from({ length: size }, () => new PooledWorker());
  }

  /**
   * Starts the threads without keys: they load their code while the caller opens the
   * repository and the source. `init` must come before any other request.
   */
  static spawn(size = defaultPoolSize(), env: NodeJS.ProcessEnv = {}): WorkerPool {
    // The pipeline's slots and pack buffers are allocated after init: by then they can have huge pages.
    void useMemoryAdvice();
    return new WorkerPool(size, env);
  }

  /** Hands every worker its keys and codecs. On failure the pool is unusable; dispose it. */
  async init(setup: CryptoSetup): Promise<void> {
    this.#setup = setup;
    await Promise.all([...this.#workers.map((w) => w.request(initRequest(setup, 'pool'))), useMemoryAdvice()]);
  }

  /** The image hasher's thread, started (and handed its keys: requests are answered in order) on first use. */
  get #imageHasher(): PooledWorker {
    if (!this.#imageHasherThread) {
      if (!this.#setup) throw new Error('internal error: the worker pool was used before init');
      this.#imageHasherThread = new PooledWorker();
      this.#imageHasherThread.request(initRequest(this.#setup, 'image-hasher')).catch(() => undefined); // its failure fails the requests after it
    }
    return this.#imageHasherThread;
  }

  #leastBusy(): PooledWorker {
    let best = this.#workers[0]!;
    for (const worker of this.#workers) if (worker.load < best.load) best = worker;
    return best;
  }

  /** Keyed id of a chunk, or `zero` when every byte is 0; with `chunkDigest`, also its plain BLAKE3 (see ChunkDigests). */
  async hash(slot: SharedArrayBuffer, length: number, chunkDigest = false): Promise<ChunkHash> {
    const reply = await this.#leastBusy().request({ op: 'hash', slot, length, chunkDigest });
    if (reply.zero) return { zero: true };
    return { zero: false, id: Buffer.from(reply.id), ...(reply.chunkDigest && { chunkDigest: Buffer.from(reply.chunkDigest) }) };
  }

  /**
   * Compresses and encrypts the chunk in the first `length` bytes of the slot, and writes the
   * blob over it; resolves to the blob's length. The slot must have SEALED_CHUNK_OVERHEAD
   * bytes of room past the chunk, and nothing else may read the chunk meanwhile.
   */
  async sealInSlot(slot: SharedArrayBuffer, length: number): Promise<number> {
    const reply = await this.#leastBusy().request({ op: 'sealInSlot', slot, length });
    return reply.sealedLength;
  }

  /**
   * `hash` and `sealInSlot` in one round trip (the chunk is sealed whether or not the
   * repository needs it): for small chunks, where the trip costs more than the sealing.
   * The slot then holds the blob, not the chunk.
   */
  async hashAndSeal(slot: SharedArrayBuffer, length: number): Promise<ChunkHash & { sealedLength?: number }> {
    const sealed = await this.#smallChunks.call({ slot, length });
    return sealed.zero ? { zero: true } : { zero: false, id: Buffer.from(sealed.id), sealedLength: sealed.sealedLength };
  }

  async sealBytes(data: Uint8Array, options: { handOver?: boolean } = {}): Promise<{ id: Buffer; sealed: Buffer }> {
    // Handed over, a buffer that is all of its ArrayBuffer moves to the worker rather than being copied (it is then empty here).
    const movable = options.handOver && data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    const reply = await this.#leastBusy().request({ op: 'sealBytes', data }, movable ? [data.buffer as ArrayBuffer] : []);
    return { id: Buffer.from(reply.id), sealed: toBuffer(reply.sealed) };
  }

  /** Decrypts and decompresses a blob and checks it against its id. Rejects with DamageError. */
  async open(sealed: Buffer, rawLength: number, id: string): Promise<Buffer> {
    // Copy into a transferable buffer of its own: `sealed` is usually a slice of a larger read.
    const own = new Uint8Array(sealed);
    const reply = await this.#leastBusy().request({ op: 'open', sealed: own, rawLength, id, verifyId: true }, [own.buffer]);
    return toBuffer(reply.plain);
  }

  /** Checks a blob as `open` does, without sending its plaintext back (`check --read-data`). Rejects with DamageError. */
  async verify(sealed: Buffer, rawLength: number, id: string): Promise<void> {
    // A blob in shared memory (a pack read into a slot) is shared with the worker, not copied.
    if (sealed.buffer instanceof SharedArrayBuffer) return void (await this.#leastBusy().request({ op: 'verify', sealed, rawLength, id }));
    const own = new Uint8Array(sealed);
    await this.#leastBusy().request({ op: 'verify', sealed: own, rawLength, id }, [own.buffer]);
  }

  /**
   * Decrypts and decompresses a blob into the start of `into`. With `verifyId` it is also
   * checked against its id; without, only authenticated (when the image digest checks it).
   * With `chunkDigest`, resolves to the plain BLAKE3 of what it wrote (see ChunkDigests).
   */
  async openInto(into: SharedArrayBuffer, sealed: Buffer, rawLength: number, id: string, verifyId: boolean, chunkDigest = false): Promise<Buffer | undefined> {
    const own = new Uint8Array(sealed);
    const reply = await this.#leastBusy().request({ op: 'openInto', sealed: own, rawLength, id, verifyId, into, chunkDigest }, [own.buffer]);
    return reply.chunkDigest && Buffer.from(reply.chunkDigest);
  }

  /**
   * As `openInto`, for a blob read into the first `sealedLength` bytes of the slot it is
   * decoded into: nothing is copied between threads.
   */
  async openInSlot(slot: SharedArrayBuffer, sealedLength: number, rawLength: number, id: string, verifyId: boolean, chunkDigest = false): Promise<Buffer | undefined> {
    const reply = await this.#leastBusy().request({ op: 'openInSlot', slot, sealedLength, rawLength, id, verifyId, chunkDigest });
    return reply.chunkDigest && Buffer.from(reply.chunkDigest);
  }

  /**
   * Decrypts and decompresses a blob held in shared memory into `into`, a view of shared
   * memory as long as its plaintext, and checks it against its id: nothing is copied between
   * threads, nor allocated per blob. Rejects with DamageError.
   */
  async openShared(sealed: Uint8Array, into: Uint8Array, id: string): Promise<void> {
    if (!(sealed.buffer instanceof SharedArrayBuffer) || !(into.buffer instanceof SharedArrayBuffer)) throw new TypeError('openShared takes views of shared memory');
    await this.#sharedBlobs.call({ sealed, into, id });
  }

  /** Starts a new image digest, discarding whatever an earlier, failed run fed in. */
  imageReset(algorithm: StreamedDigestAlgorithm): Promise<unknown> {
    return this.#imageHasher.request({ op: 'imageReset', algorithm });
  }

  /** Feeds the first `length` bytes of the slot, which sit at `offset` in the image. Calls must come in image order. */
  imageUpdate(slot: SharedArrayBuffer, offset: number, length: number): Promise<unknown> {
    return this.#imageHasher.request({ op: 'imageUpdate', slot, length, offset });
  }

  imageZeros(offset: number, length: number): Promise<unknown> {
    return this.#imageHasher.request({ op: 'imageZeros', length, offset });
  }

  async imageDigest(): Promise<ImageHashResult> {
    return (await this.#imageHasher.request({ op: 'imageDigest' })).digest;
  }

  async dispose(): Promise<void> {
    const threads = this.#imageHasherThread ? [...this.#workers, this.#imageHasherThread] : this.#workers;
    await Promise.all(threads.map((w) => w.terminate()));
  }
}

function initRequest(setup: CryptoSetup, role: 'pool' | 'image-hasher'): WorkerRequest {
  return {
    op: 'init',
    role,
    encryptionKey: setup.masterKey.encryption,
    blobIdKey: setup.masterKey.blobId,
    blobIdScheme: setup.blobIdScheme,
    codecs: setup.codecs,
    writeCodec: setup.writeCodec,
    writeCodecId: setup.writeCodecId,
  };
}

/** A chunk's keyed id (and its plain BLAKE3 when asked for), or `zero` when every byte is 0. */
export type ChunkHash = { zero: true } | { zero: false; id: Buffer; chunkDigest?: Buffer };

function errorOf(failure: WorkerFailure): Error {
  if (failure.kind === 'damage') return new DamageError(failure.message);
  if (failure.kind === 'missing-codec') return new PluginError(undefined, failure.message);
  return new Error(failure.message);
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** How much longer a sealed chunk can be than the chunk: a codec byte, and the seal's nonce and tag (when compression does not help). */
export const SEALED_CHUNK_OVERHEAD = 1 + SEAL_OVERHEAD;

export function defaultPoolSize(): number {
  return Math.max(1, Math.min(8, availableParallelism()));
}

/**
 * Fixed set of shared chunk buffers. Acquiring waits while all are in use, which is what
 * bounds memory: at most `count × size` bytes of chunks are in flight, whatever the volume size.
 */
export class SlotPool {
  readonly #free: SharedArrayBuffer[];
  readonly #waiters: Array<(slot: SharedArrayBuffer) => void> = [];

  /** `keepResident`: a slot released after use past this many bytes gives the pages beyond back (see releaseTail). */
  constructor(
    count: number,
    size: number,
    private readonly keepResident = size,
  ) {
    this.#free = Array.from({ length: count }, () => allocateAligned(size));
  }

  acquire(): Promise<SharedArrayBuffer> {
    const slot = this.#free.pop();
    if (slot) return Promise.resolve(slot);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Gives the slot to the next waiter, or back to the pool; `used` is how far into it the last user wrote. */
  release(slot: SharedArrayBuffer, used = 0): void {
    if (used > this.keepResident) releaseTail(slot, this.keepResident);
    const waiter = this.#waiters.shift();
    if (waiter) waiter(slot);
    else this.#free.push(slot);
  }
}
