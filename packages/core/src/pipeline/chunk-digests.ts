import { Blake3Hasher } from '@napi-rs/blake-hash';
import { blake3OfZeros } from '../crypto/crypto.js';

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
  readonly #early = new Map<number, Uint8Array>();
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
    if (index < this.#next || this.#early.has(index)) throw new Error(`internal error: chunk ${index}'s digest was given twice`);
    this.#early.set(index, digest);
    for (let next = this.#early.get(this.#next); next !== undefined; next = this.#early.get(this.#next)) {
      this.#early.delete(this.#next);
      this.#hasher.update(Buffer.from(Buffer.from(next).toString('hex') + '\n', 'latin1'));
      this.#next++;
    }
  }

  /** The image digest, as hex; every chunk's digest must have been given. */
  hex(): string {
    if (this.#next !== this.end) throw new Error(`internal error: the image digest lacks chunk ${this.#next}'s digest`);
    return this.#hasher.digest('hex');
  }
}

const zeroDigests = new Map<number, Buffer>();

/** BLAKE3 of `length` zero bytes, computed once per length. */
export function zeroChunkDigest(length: number): Buffer {
  let digest = zeroDigests.get(length);
  if (!digest) zeroDigests.set(length, (digest = blake3OfZeros(length)));
  return digest;
}
