import { afterAll, onTestFinished } from 'vitest';

/**
 * A stack of teardown steps run last-in, first-out: a mount made after its loop device is
 * undone before the device is detached, and both before the folder holding the image is
 * removed. Every step runs even when an earlier one fails; the failures are reported
 * together afterwards.
 */
export class Scope {
  readonly #steps: Array<{ what: string; fn: () => unknown }> = [];
  #disposed = false;

  /** Registers `fn` to run at teardown. */
  defer(what: string, fn: () => unknown): void {
    if (this.#disposed) throw new Error(`Scope already disposed; cannot defer "${what}"`);
    this.#steps.push({ what, fn });
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const errors: Error[] = [];
    for (const step of this.#steps.reverse()) {
      try {
        await step.fn();
      } catch (err) {
        errors.push(new Error(`teardown "${step.what}" failed: ${(err as Error)?.message ?? String(err)}`, { cause: err }));
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, errors.map((e) => e.message).join('; '));
  }
}

/** A scope disposed when the current test finishes (pass or fail). Call inside a test. */
export function useScope(): Scope {
  const scope = new Scope();
  onTestFinished(() => scope.dispose());
  return scope;
}

/**
 * A scope disposed after all tests of the enclosing `describe` (or file). Call at describe level:
 * called inside a hook, its `afterAll` is never registered and nothing is cleaned up.
 */
export function useSuiteScope(): Scope {
  const scope = new Scope();
  afterAll(() => scope.dispose());
  return scope;
}
