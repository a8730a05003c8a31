import type { ByteRange, ObjectInfo, Target } from '../target.js';

export type TargetOperation = 'put' | 'get' | 'stat' | 'list' | 'remove';

/** The error a `FaultyTarget` raises when a test did not supply its own. */
export class InjectedFaultError extends Error {
  readonly code = 'CAIRN_INJECTED_FAULT';
  constructor(readonly operation: TargetOperation, readonly key: string) {
    super(`Injected ${operation} failure on '${key}'`);
    this.name = 'InjectedFaultError';
  }
}

interface FaultRule {
  operation: TargetOperation;
  /** Successful calls still to come before this rule starts failing them. */
  successesLeft: number;
  /** Calls this rule still fails once it has started; the rule is dropped at 0. */
  failuresLeft: number;
  error: ((key: string) => unknown) | undefined;
}

/**
 * Wraps a target and makes chosen calls fail, for the failure paths of the core
 * (retries, a disk that fills up, a pack that comes back damaged). Without rules it
 * behaves exactly like the wrapped target. An injected `put` failure happens before
 * anything is written, like a connection lost before the upload started.
 */
export class FaultyTarget implements Target {
  /** How many times each operation was called, failed calls included. */
  readonly calls: Record<TargetOperation, number> = { put: 0, get: 0, stat: 0, list: 0, remove: 0 };
  readonly #rules: FaultRule[] = [];
  #corruptGetsLeft = 0;

  constructor(readonly inner: Target) {}

  get location(): string {
    return this.inner.location;
  }

  /**
   * Fails the next `count` calls of `operation`. `error` is thrown as given or, if it is a
   * function, called with the key to build the error; by default an `InjectedFaultError`.
   */
  failNext(operation: TargetOperation, error?: unknown, count = 1): void {
    if (!(count >= 1)) throw new RangeError(`failNext needs a count of at least 1, got ${count}`);
    this.#rules.push({ operation, successesLeft: 0, failuresLeft: count, error: errorFactory(error) });
  }

  /** Lets `successes` more calls of `operation` succeed, then fails every later one (a disk that fills up). */
  failAfter(operation: TargetOperation, successes: number, error?: unknown): void {
    if (!(successes >= 0)) throw new RangeError(`failAfter needs a count of at least 0, got ${successes}`);
    this.#rules.push({ operation, successesLeft: successes, failuresLeft: Infinity, error: errorFactory(error) });
  }

  /** Flips one bit in the middle of what each of the next `count` gets return (the stored object is unharmed). */
  corruptNextGets(count = 1): void {
    this.#corruptGetsLeft += count;
  }

  /** Removes every pending failure and corruption. */
  heal(): void {
    this.#rules.length = 0;
    this.#corruptGetsLeft = 0;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    this.#enter('put', key);
    return this.inner.put(key, data);
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    this.#enter('get', key);
    const data = await this.inner.get(key, range);
    if (this.#corruptGetsLeft > 0 && data.length > 0) {
      this.#corruptGetsLeft--;
      const damaged = Buffer.from(data);
      damaged[damaged.length >> 1]! ^= 0x01;
      return damaged;
    }
    return data;
  }

  async stat(key: string): Promise<ObjectInfo> {
    this.#enter('stat', key);
    return this.inner.stat(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.#enter('list', prefix);
    yield* this.inner.list(prefix);
  }

  async remove(key: string): Promise<void> {
    this.#enter('remove', key);
    return this.inner.remove(key);
  }

  isNotFound(err: unknown): boolean {
    return this.inner.isNotFound(err);
  }

  dispose(): void | Promise<void> {
    return this.inner.dispose();
  }

  /** Counts the call and throws if a rule says this one fails; rules apply in the order they were added. */
  #enter(operation: TargetOperation, key: string): void {
    this.calls[operation]++;
    const rules = this.#rules.filter((rule) => rule.operation === operation);
    const due = rules.find((rule) => rule.successesLeft === 0);
    if (due === undefined) {
      for (const rule of rules) rule.successesLeft--;
      return;
    }
    due.failuresLeft--;
    if (due.failuresLeft === 0) this.#rules.splice(this.#rules.indexOf(due), 1);
    throw due.error ? due.error(key) : new InjectedFaultError(operation, key);
  }
}

function errorFactory(error: unknown): FaultRule['error'] {
  if (error === undefined) return undefined;
  return typeof error === 'function' ? (error as (key: string) => unknown) : () => error;
}
