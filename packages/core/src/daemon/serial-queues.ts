/**
 * Runs work one item at a time per key, different keys side by side: the daemon's jobs that
 * share a repository run one after the other (a backup never waits on a lock held by its
 * neighbour's prune), jobs on different repositories run at once.
 */
export class SerialQueues {
  readonly #tails = new Map<string, Promise<void>>();

  /** Resolves when `work` has run (after everything queued before it under `key`). */
  run(key: string, work: () => Promise<void>): Promise<void> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => undefined);
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return next;
  }
}
