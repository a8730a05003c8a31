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

/**
 * Keeps count of the unused space queued for and taken in by the image hasher, and of the
 * detached chunks waiting for their second read; decides which chunks to detach.
 */
export class DetachScheduler {
  /** Bytes of unused space queued for the hasher so far. */
  #zerosQueued = 0;
  /** Bytes of unused space the hasher has taken in so far. */
  #zerosHashed = 0;
  #pendingBytes = 0;

  constructor(private readonly policy: DetachPolicy) {}

  /** Unused space joins the hasher's queue. */
  queueZeros(length: number): void {
    this.#zerosQueued += length;
  }

  zerosHashed(length: number): void {
    this.#zerosHashed += length;
  }

  /** Where a chunk queued now stands: compare with `zerosAhead` later. */
  get position(): number {
    return this.#zerosQueued;
  }

  /** Whether enough zeros are still ahead of a chunk queued at `position` to make detaching it worth it. */
  worthDetaching(position: number): boolean {
    return position - this.#zerosHashed >= this.policy.zerosAhead;
  }

  /** Detaches a chunk if it is worth it and the pending bytes allow; the caller then calls `reread` when done. */
  tryDetach(position: number, length: number): boolean {
    if (!this.worthDetaching(position) || this.#pendingBytes + length > this.policy.maxPending) return false;
    this.#pendingBytes += length;
    return true;
  }

  /** A detached chunk's second read is confirmed (or failed). */
  reread(length: number): void {
    this.#pendingBytes -= length;
  }
}
