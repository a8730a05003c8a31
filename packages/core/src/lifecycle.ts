/** Something that holds a resource (a file handle, socket, timer, registration) and releases it. */
export interface IDisposable {
  dispose(): void | Promise<void>;
}

export function toDisposable(fn: () => void | Promise<void>): IDisposable {
  let done = false;
  return {
    dispose() {
      if (done) return;
      done = true;
      return fn();
    },
  };
}

/**
 * Disposes what it holds in reverse order of addition; one failing item does not stop
 * the others (the first error is rethrown at the end). Adding to a disposed store
 * disposes the item at once.
 */
export class DisposableStore implements IDisposable {
  readonly #items: IDisposable[] = [];
  #disposed = false;

  get isDisposed(): boolean {
    return this.#disposed;
  }

  add<T extends IDisposable>(item: T): T {
    if (this.#disposed) {
      void Promise.resolve()
        .then(() => item.dispose())
        .catch(() => undefined);
    } else {
      this.#items.push(item);
    }
    return item;
  }

  /** Same as add, for the `ctx.subscriptions.push(x)` habit from VS Code. */
  push(...items: IDisposable[]): void {
    for (const item of items) this.add(item);
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    let firstError: unknown;
    while (this.#items.length > 0) {
      const item = this.#items.pop()!;
      try {
        await item.dispose();
      } catch (err) {
        firstError ??= err;
      }
    }
    if (firstError !== undefined) throw firstError;
  }
}

/** Base class for services that own disposables. */
export abstract class Disposable implements IDisposable {
  protected readonly _store = new DisposableStore();
  protected _register<T extends IDisposable>(item: T): T {
    return this._store.add(item);
  }
  dispose(): Promise<void> {
    return this._store.dispose();
  }
}
