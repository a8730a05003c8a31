import type { Posix } from '@cairn/core';

type WholeRead = Awaited<ReturnType<Posix['readWhole']>>;

/** Small-file reads gathered into one trip at most. */
const FILES_PER_TRIP = 8;

interface Waiter {
  resolve(read: WholeRead): void;
  reject(error: unknown): void;
}

/**
 * Gathers the small-file reads asked for in one turn of the event loop into trips of up to
 * FILES_PER_TRIP files to the thread pool (Posix.readWholeMany): a trip per file woke a pool
 * thread each time, and on a 2-core virtual machine those wake-ups (and the woken thread taking
 * the core) cost the main thread a third of a small-files backup. Trips stay small so that
 * several still run at once on the pool's threads when the files are not cached.
 */
export class WholeReads {
  #paths: Buffer[] = [];
  #intos: Uint8Array[] = [];
  #waiters: Waiter[] = [];
  #scheduled = false;

  constructor(private readonly readMany: Posix['readWholeMany']) {}

  /** As Posix.readWhole: rejects with the file's own error. */
  read(path: Buffer, into: Uint8Array): Promise<WholeRead> {
    return new Promise((resolve, reject) => {
      this.#paths.push(path);
      this.#intos.push(into);
      this.#waiters.push({ resolve, reject });
      if (this.#paths.length >= FILES_PER_TRIP) this.#send();
      else if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          this.#send();
        });
      }
    });
  }

  #send(): void {
    if (this.#paths.length === 0) return;
    const paths = this.#paths;
    const intos = this.#intos;
    const waiters = this.#waiters;
    this.#paths = [];
    this.#intos = [];
    this.#waiters = [];
    let trip: Promise<Array<WholeRead | Error>>;
    try {
      trip = this.readMany(paths, intos);
    } catch (err) {
      trip = Promise.reject(err);
    }
    trip.then(
      (results) => results.forEach((result, i) => (result instanceof Error ? waiters[i]!.reject(result) : waiters[i]!.resolve(result))),
      (err: unknown) => waiters.forEach((waiter) => waiter.reject(err)),
    );
  }
}
