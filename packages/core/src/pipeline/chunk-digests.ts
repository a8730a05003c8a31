import { Blake3Hasher } from '@napi-rs/blake-hash';
import { blake3OfZeros } from '../crypto/crypto.js';

/** Bytes of one line: 64 hex digits and a newline. */
const LINE = 65;
/** Lines hashed in one update: one native call per 64 KiB, not one per chunk. */
const LINES_PER_UPDATE = 1024;

/** Consecutive chunks given the same digest object, from the first (the key it is filed under) to `end`. */
interface Run {
  digest: Uint8Array;
  end: number;
}

/**
 * The `blake3-chunks` image digest (format version 6): BLAKE3 over one line per chunk of the
 * image, in order, each the lowercase hex BLAKE3 of the chunk's bytes (the last chunk may be
 * shorter) and a newline. That is exactly what standard tools print for a restored image:
 *
 *     split -b CHUNK_SIZE --filter='b3sum --no-names' IMAGE | b3sum --no-names
 *
 * Each chunk's BLAKE3 is computed by the worker that handles the chunk anyway, in parallel;
 * a chunk of zeros, or unused, costs one precomputed line: the work grows with the data, not
 * with the disk. Digests may arrive in any order; they are folded in in image order, so only
 * those ahead of a missing one are held.
 */
export class ChunkDigests {
  readonly #hasher = new Blake3Hasher();
  /**
   * Digests given ahead of the next one to fold in, as runs by first chunk. A backup's loop
   * gives the unused chunks at the end of a large disk while the last data chunks are still
   * being hashed: 500,000 of them on a 2 TiB disk, one run of the shared zero digest, not
   * 500,000 entries.
   */
  readonly #early = new Map<number, Run>();
  /** The run given last, which the next chunk extends when it follows with the same digest. */
  #latest: Run | undefined;
  readonly #lines = Buffer.alloc(LINE * LINES_PER_UPDATE);
  #lineCount = 0;
  #next: number;

  constructor(
    first: number,
    /** Exclusive. */
    readonly end: number,
  ) {
    this.#next = first;
  }

  /** Records chunk `index`'s BLAKE3 (32 bytes). */
  set(index: number, digest: Uint8Array): void {
    if (index < this.#next || this.#isEarly(index)) throw new Error(`internal error: chunk ${index}'s digest was given twice`);
    const latest = this.#latest;
    if (latest !== undefined && latest.end === index && latest.digest === digest) latest.end++;
    else this.#early.set(index, (this.#latest = { digest, end: index + 1 }));
    for (let run = this.#early.get(this.#next); run !== undefined; run = this.#early.get(this.#next)) {
      this.#early.delete(this.#next);
      if (run === this.#latest) this.#latest = undefined;
      this.#fold(run.digest, run.end - this.#next);
      this.#next = run.end;
    }
  }

  /** The image digest, as hex; every chunk's digest must have been given. */
  hex(): string {
    if (this.#next !== this.end) throw new Error(`internal error: the image digest lacks chunk ${this.#next}'s digest`);
    this.#flush();
    return this.#hasher.digest('hex');
  }

  #isEarly(index: number): boolean {
    for (const [first, run] of this.#early) if (index >= first && index < run.end) return true;
    return false;
  }

  /** Adds `count` lines of `digest`. */
  #fold(digest: Uint8Array, count: number): void {
    const line = Buffer.from(`${Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex')}\n`, 'latin1');
    for (let i = 0; i < count; i++) {
      line.copy(this.#lines, this.#lineCount * LINE);
      if (++this.#lineCount === LINES_PER_UPDATE) this.#flush();
    }
  }

  #flush(): void {
    this.#hasher.update(this.#lines.subarray(0, this.#lineCount * LINE));
    this.#lineCount = 0;
  }
}

const zeroDigests = new Map<number, Buffer>();

/** BLAKE3 of `length` zero bytes, computed once per length. */
export function zeroChunkDigest(length: number): Buffer {
  let digest = zeroDigests.get(length);
  if (!digest) zeroDigests.set(length, (digest = blake3OfZeros(length)));
  return digest;
}
