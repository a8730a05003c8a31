import type { ByteRange, ObjectInfo, Target } from '../target.js';

/** Raised by `MemoryTarget` for a key it does not hold; `MemoryTarget.isNotFound` recognises it. */
export class ObjectNotFoundError extends Error {
  readonly code = 'CAIRN_OBJECT_NOT_FOUND';
  constructor(readonly key: string) {
    super(`No object '${key}'`);
    this.name = 'ObjectNotFoundError';
  }
}

/**
 * A `Target` that keeps objects in a `Map`, for unit tests of the core. It copies on `put`
 * and `get`, so a caller that reuses its buffers cannot change what is stored, just as
 * with a real store. Every method is asynchronous so that concurrent callers interleave.
 */
export class MemoryTarget implements Target {
  readonly location: string;
  readonly #objects = new Map<string, Buffer>();
  #disposed = false;

  constructor(location = 'memory:') {
    this.location = location;
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    this.#assertOpen();
    await Promise.resolve();
    this.#objects.set(key, Buffer.from(data));
  }

  async get(key: string, range?: ByteRange): Promise<Buffer> {
    const object = await this.#read(key);
    if (range === undefined) return Buffer.from(object);
    assertRangeWithin(range, object.length, key);
    return Buffer.from(object.subarray(range.offset, range.offset + range.length));
  }

  async stat(key: string): Promise<ObjectInfo> {
    const object = await this.#read(key);
    return { key, size: object.length };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.#assertOpen();
    // Snapshot the keys first: a put or remove during iteration must not break the walk.
    const matching = [...this.#objects].filter(([key]) => key.startsWith(prefix));
    for (const [key, object] of matching) {
      await Promise.resolve();
      yield { key, size: object.length };
    }
  }

  async remove(key: string): Promise<void> {
    await this.#read(key);
    this.#objects.delete(key);
  }

  isNotFound(err: unknown): boolean {
    return err instanceof ObjectNotFoundError;
  }

  dispose(): void {
    this.#disposed = true;
  }

  async #read(key: string): Promise<Buffer> {
    this.#assertOpen();
    await Promise.resolve();
    const object = this.#objects.get(key);
    if (object === undefined) throw new ObjectNotFoundError(key);
    return object;
  }

  #assertOpen(): void {
    if (this.#disposed) throw new Error(`${this.location} is used after dispose()`);
  }
}

/** Rejects a range that is malformed or reaches past the end of an object of `size` bytes. */
function assertRangeWithin(range: ByteRange, size: number, key: string): void {
  const { offset, length } = range;
  const wellFormed = Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length >= 0;
  if (!wellFormed || offset + length > size) {
    throw new RangeError(`Range ${offset}+${length} is outside object '${key}' of ${size} bytes`);
  }
}

/**
 * A view of `target` whose dispose() leaves it open: a target factory in a test hands this out,
 * so that the repository outlives each operation (which disposes the target it opened).
 */
export function sharedView(target: Target): Target {
  return {
    location: target.location,
    put: (key, data) => target.put(key, data),
    get: (key, range) => target.get(key, range),
    stat: (key) => target.stat(key),
    list: (prefix) => target.list(prefix),
    remove: (key) => target.remove(key),
    isNotFound: (err) => target.isNotFound(err),
    dispose() {},
  };
}

/** A MemoryTarget that also reads straight into buffers (`Target.readInto`), and records each such read. */
export class ReadIntoMemoryTarget extends MemoryTarget {
  readonly reads: Array<{ key: string; buffers: number }> = [];

  async readInto(key: string, offset: number, into: readonly Uint8Array[]): Promise<void> {
    this.reads.push({ key, buffers: into.length });
    const bytes = await this.get(key, { offset, length: into.reduce((n, b) => n + b.length, 0) });
    let at = 0;
    for (const buffer of into) at += bytes.copy(buffer, 0, at, at + buffer.length);
  }
}
