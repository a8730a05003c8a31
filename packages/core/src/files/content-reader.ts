import { DamageError } from '../errors.js';
import { Keys } from '../repository/format.js';
import type { BlobIndex, BlobLocation, Repository } from '../repository/repository.js';
import { MAX_READ } from '../pipeline/fetch-groups.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import { RingArena, type ArenaPiece } from './ring-arena.js';

/** Ranged reads in flight at once. */
const READS_IN_FLIGHT = 8;
/**
 * Shared memory for the sealed bytes of the reads in flight (each spans at most MAX_READ; most
 * far less, as a read's plaintext is at most a quarter of the plaintext ring save for a single
 * larger chunk). Twice this restored the corpus no faster (six each: 7.8-9.8 against 8.0-9.5 s)
 * and peaked 9 MB higher: every page is resident once the ring has wrapped.
 */
const READ_ARENA = MAX_READ;
/** Blobs per ranged read: small files' chunks sit near each other in a pack, and one read takes many. */
const BLOBS_PER_READ = 256;

/** A blob a reader asks for, by id (hex). */
export interface BlobRequest {
  id: string;
}

interface ReadGroup {
  pack: string;
  offset: number;
  length: number;
  rawLength: number;
  blobs: Array<{ id: string; location: BlobLocation }>;
  /** A blob no index names: the group stands for it alone and fails when read. */
  missing?: string;
}

/**
 * Fetches blobs in the order they are asked for: neighbours in one pack come with one ranged
 * read, several reads are in flight, each blob is opened (decrypted, decompressed) in the
 * worker pool and verified against its id. Reads and plaintext live in two rings of shared
 * memory, so what waits for the consumer is bounded whatever the size of what is read, and
 * nothing is allocated, copied between threads or collected per blob.
 */
export class BlobStream {
  readonly #reads = new RingArena(READ_ARENA);
  readonly #plain: RingArena;
  /** Plaintext of one ranged read at most: its blobs are handed out together, so it must fit the arena with room to spare. */
  readonly #maxGroupPlain: number;

  constructor(
    private readonly repository: Repository,
    private readonly index: BlobIndex,
    private readonly pool: WorkerPool,
  ) {
    // Plaintext fetched ahead of the consumer and held by it: what bounds memory.
    this.#plain = new RingArena(pool.memory.fileRestoreRing);
    this.#maxGroupPlain = this.#plain.capacity / 4;
  }

  /** The plaintext of each requested blob, in order, in a buffer of its own. A missing or damaged blob rejects with DamageError. */
  async *read(requests: Iterable<BlobRequest>): AsyncGenerator<Buffer> {
    for await (const blob of this.readShared(requests)) {
      const copy = Buffer.from(blob.bytes);
      blob.release();
      yield copy;
    }
  }

  /**
   * The plaintext of each requested blob, in order, in shared memory: the consumer releases
   * each once done with it (the stream stops when the blobs it holds fill the memory). A
   * missing or damaged blob rejects with DamageError. One stream at a time per BlobStream: two
   * would share its rings, and each could wait for memory the other's consumer holds.
   */
  async *readShared(requests: Iterable<BlobRequest>): AsyncGenerator<ArenaPiece> {
    const groups = this.#groups(requests);
    const queue: Array<Promise<ArenaPiece[]>> = [];
    const fill = () => {
      while (queue.length < READS_IN_FLIGHT) {
        const next = groups.next();
        if (next.done) return;
        const blobs = this.#fetch(next.value);
        // Awaited in order below; a consumer that stops early must not leave an unhandled rejection.
        blobs.catch(() => undefined);
        queue.push(blobs);
      }
    };
    let pending: ArenaPiece[] = [];
    try {
      fill();
      while (queue.length > 0) {
        pending = await queue.shift()!;
        fill();
        while (pending.length > 0) yield pending.shift()!;
      }
    } finally {
      // A consumer that stops early leaves blobs fetched for it: their memory goes back.
      for (const piece of pending) piece.release();
      for (const blobs of queue) blobs.then((pieces) => pieces.forEach((piece) => piece.release()), () => undefined);
    }
  }

  /**
   * Requests grouped into ranged reads: consecutive blobs of one pack whose span stays within
   * MAX_READ. They need not be neighbours: a backup's workers seal blobs out of order, so
   * consecutive small files' blobs sit near each other, not side by side; the bytes between
   * them are read along (at most MAX_READ per read), which costs far less than a read each.
   */
  *#groups(requests: Iterable<BlobRequest>): Generator<ReadGroup> {
    let group: ReadGroup | undefined;
    for (const { id } of requests) {
      const location = this.index.get(id);
      if (!location) {
        if (group) yield group;
        group = undefined;
        yield { pack: '', offset: 0, length: 0, rawLength: 0, blobs: [], missing: id };
        continue;
      }
      if (group && joins(group, location, this.#maxGroupPlain)) {
        const end = Math.max(group.offset + group.length, location.offset + location.length);
        group.offset = Math.min(group.offset, location.offset);
        group.length = end - group.offset;
        group.rawLength += location.rawLength;
        group.blobs.push({ id, location });
        continue;
      }
      if (group) yield group;
      group = { pack: location.pack, offset: location.offset, length: location.length, rawLength: location.rawLength, blobs: [{ id, location }] };
    }
    if (group) yield group;
  }

  /** The group's blobs, opened into pieces of plaintext memory asked for now, so that pieces are handed out in request order. */
  async #fetch(group: ReadGroup): Promise<ArenaPiece[]> {
    if (group.missing !== undefined) throw new DamageError(`blob ${group.missing.slice(0, 12)} is not in any index (\`cairn check\` tells more, \`cairn repair index\` may help)`);
    const plain = group.blobs.map(({ location }) => this.#plain.allocate(location.rawLength));
    const read = await this.#reads.allocate(group.length);
    let opened: Array<PromiseSettledResult<ArenaPiece>>;
    try {
      await this.repository.readPackInto(group.pack, group.offset, [read.bytes]);
      opened = await Promise.allSettled(group.blobs.map(({ id, location }, k) => this.#open(read.bytes, group.offset, id, location, plain[k]!)));
    } catch (err) {
      for (const piece of plain) void piece.then((p) => p.release());
      throw err;
    } finally {
      read.release();
    }
    const failed = opened.find((result) => result.status === 'rejected');
    if (!failed) return opened.map((result) => (result as PromiseFulfilledResult<ArenaPiece>).value);
    for (const piece of plain) void piece.then((p) => p.release());
    throw failed.reason;
  }

  async #open(read: Buffer, readOffset: number, id: string, location: BlobLocation, plain: Promise<ArenaPiece>): Promise<ArenaPiece> {
    const start = location.offset - readOffset;
    const into = await plain;
    try {
      await this.pool.openShared(read.subarray(start, start + location.length), into.bytes, id);
    } catch (err) {
      if (err instanceof DamageError) throw new DamageError(`pack ${Keys.pack(location.pack)} is damaged: ${err.message}`, { cause: err });
      throw err;
    }
    return into;
  }
}

function joins(group: ReadGroup, location: BlobLocation, maxGroupPlain: number): boolean {
  if (group.pack !== location.pack || group.blobs.length >= BLOBS_PER_READ || group.rawLength + location.rawLength > maxGroupPlain) return false;
  const span = Math.max(group.offset + group.length, location.offset + location.length) - Math.min(group.offset, location.offset);
  return span <= MAX_READ;
}
