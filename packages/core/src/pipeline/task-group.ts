/**
 * Background tasks of one run, whose first failure fails the run. Tasks may start more tasks
 * while the group is being settled.
 */
export class TaskGroup {
  readonly #tasks = new Set<Promise<void>>();
  #failed = false;
  #failure: unknown;

  get failed(): boolean {
    return this.#failed;
  }

  /** The first failure, when `failed`. */
  get failure(): unknown {
    return this.#failure;
  }

  track(task: Promise<unknown>): void {
    const tracked: Promise<void> = task
      .then(
        () => undefined,
        (err: unknown) => {
          if (this.#failed) return;
          this.#failed = true;
          this.#failure = err;
        },
      )
      .finally(() => this.#tasks.delete(tracked));
    this.#tasks.add(tracked);
  }

  /** Waits until no task is in flight; throws the first failure. */
  async settle(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.all(this.#tasks);
    this.throwIfFailed();
  }

  /** Waits until no task is in flight, whatever happened (used after a failure). */
  async settleAll(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled(this.#tasks);
  }

  throwIfFailed(): void {
    if (this.#failed) throw this.#failure;
  }
}
