/** A piece of a RingArena, to be released once its bytes are no longer needed. */
export interface ArenaPiece {
  /** A view of the arena's shared memory. */
  readonly bytes: Buffer;
  release(): void;
}

interface Allocation {
  start: number;
  end: number;
  released: boolean;
}

/**
 * Shared memory handed out in pieces in ring order, each contiguous; pieces may be released
 * in any order, and the space of the oldest ones comes back as they go. Allocations wait for
 * room, first come first served, so memory stays bounded and nothing is allocated per piece:
 * a restore's buffers are reused instead of collected, and workers read and write them in
 * place. A piece must be released, or the ring stops at it.
 */
export class RingArena {
  readonly #memory: SharedArrayBuffer;
  /** Live allocations, oldest first. */
  readonly #live: Allocation[] = [];
  readonly #waiting: Array<{ length: number; resolve: (piece: ArenaPiece) => void }> = [];

  constructor(readonly capacity: number) {
    this.#memory = new SharedArrayBuffer(capacity);
  }

  /** A piece of `length` bytes, once there is room for it. */
  allocate(length: number): Promise<ArenaPiece> {
    if (length > this.capacity) throw new RangeError(`a piece of ${length} bytes does not fit an arena of ${this.capacity}`);
    // An empty piece takes no room (and would make a full ring look empty).
    if (length === 0) return Promise.resolve({ bytes: Buffer.alloc(0), release: () => undefined });
    const piece = this.#waiting.length === 0 ? this.#tryAllocate(length) : undefined;
    if (piece) return Promise.resolve(piece);
    return new Promise((resolve) => this.#waiting.push({ length, resolve }));
  }

  #tryAllocate(length: number): ArenaPiece | undefined {
    const start = this.#fit(length);
    if (start === undefined) return undefined;
    const allocation: Allocation = { start, end: start + length, released: false };
    this.#live.push(allocation);
    return {
      bytes: Buffer.from(this.#memory, start, length),
      release: () => this.#release(allocation),
    };
  }

  /** Where a piece of `length` bytes goes next, if there is room. */
  #fit(length: number): number | undefined {
    const oldest = this.#live[0];
    const newest = this.#live[this.#live.length - 1];
    if (!oldest || !newest) return 0;
    if (newest.end > oldest.start) {
      // The live pieces sit in [oldest.start, newest.end): room after them, or else from the start.
      if (newest.end + length <= this.capacity) return newest.end;
      return length <= oldest.start ? 0 : undefined;
    }
    // They wrap: the room is between the newest's end and the oldest's start.
    return newest.end + length <= oldest.start ? newest.end : undefined;
  }

  #release(allocation: Allocation): void {
    if (allocation.released) return;
    allocation.released = true;
    while (this.#live[0]?.released) this.#live.shift();
    while (this.#waiting.length > 0) {
      const piece = this.#tryAllocate(this.#waiting[0]!.length);
      if (!piece) return;
      this.#waiting.shift()!.resolve(piece);
    }
  }
}
