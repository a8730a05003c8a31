/** Default memory budget of a snapshot's decoded chunks (`cacheBytes`). */
export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;

/**
 * Decoded chunks of one snapshot by chunk index, within a budget of bytes, least recently used
 * out first; and the loads in flight, so that readers of one chunk at the same time share one
 * fetch. A failed load is forgotten: the next reader tries again (a network error may pass).
 */
export class ChunkCache {
  readonly #budget: number;
  /** In order of use, least recent first (a Map keeps insertion order). */
  readonly #chunks = new Map<number, Buffer>();
  readonly #loading = new Map<number, Promise<Buffer>>();
  #bytes = 0;

  constructor(budgetBytes = DEFAULT_CACHE_BYTES) {
    if (!(budgetBytes >= 0)) throw new RangeError(`cacheBytes must be 0 or more, not ${budgetBytes}`);
    this.#budget = budgetBytes;
  }

  get budget(): number {
    return this.#budget;
  }

  /** Bytes of the chunks held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether the chunk is held or being loaded; does not count as a use. */
  has(index: number): boolean {
    return this.#chunks.has(index) || this.#loading.has(index);
  }

  /** The chunk, held or in flight, as the most recently used; undefined when neither. */
  get(index: number): Promise<Buffer> | undefined {
    const chunk = this.#chunks.get(index);
    if (chunk) {
      this.#chunks.delete(index);
      this.#chunks.set(index, chunk);
      return Promise.resolve(chunk);
    }
    return this.#loading.get(index);
  }

  /** Registers the load of a chunk that is neither held nor in flight; the chunk is held once it arrives. */
  track(index: number, load: Promise<Buffer>): Promise<Buffer> {
    if (this.has(index)) throw new Error(`internal error: chunk ${index} is loaded twice`);
    this.#loading.set(index, load);
    load.then(
      (chunk) => {
        this.#loading.delete(index);
        this.#hold(index, chunk);
      },
      () => this.#loading.delete(index),
    );
    return load;
  }

  clear(): void {
    this.#chunks.clear();
    this.#bytes = 0;
  }

  #hold(index: number, chunk: Buffer): void {
    if (chunk.length > this.#budget) return;
    this.#chunks.set(index, chunk);
    this.#bytes += chunk.length;
    for (const [oldest, held] of this.#chunks) {
      if (this.#bytes <= this.#budget) break;
      this.#chunks.delete(oldest);
      this.#bytes -= held.length;
    }
  }
}
