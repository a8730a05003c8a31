/** At most `permits` tasks at once; the others wait in order. */
export class Semaphore {
  #free: number;
  readonly #waiters: Array<() => void> = [];

  constructor(permits: number) {
    this.#free = permits;
  }

  /** Resolves once a permit is this caller's; give it back with `release`. */
  async acquire(): Promise<void> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free++;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await task();
    } finally {
      this.release();
    }
  }
}

/** A count of things waiting to be finished, and a way to wait until it is low enough. */
export class Backlog {
  #pending = 0;
  #waiters: Array<{ limit: number; resolve: () => void }> = [];

  add(count: number): void {
    this.#pending += count;
  }

  done(count: number): void {
    this.#pending -= count;
    const waiting = this.#waiters;
    this.#waiters = waiting.filter((waiter) => this.#pending >= waiter.limit);
    for (const waiter of waiting) if (this.#pending < waiter.limit) waiter.resolve();
  }

  /** Resolves once fewer than `limit` are pending. */
  below(limit: number): Promise<void> {
    if (this.#pending < limit) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ limit, resolve }));
  }
}
