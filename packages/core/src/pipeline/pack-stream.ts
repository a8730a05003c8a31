import type { PackIdHash } from '../crypto/crypto.js';
import type { PackWriter } from '../repository/repository.js';
import { allocateAligned } from './aligned-memory.js';

/**
 * Bytes of a streamed pack gathered before they are written: whole blocks of page-aligned
 * memory, which a local target writes with direct I/O. Two per pack being written.
 */
export const STAGING_LENGTH = 1024 * 1024;

/** Staging buffers used again from one pack to the next. */
export class StagingBuffers {
  readonly #spare: Uint8Array[] = [];

  take(): Uint8Array {
    return this.#spare.pop() ?? new Uint8Array(allocateAligned(STAGING_LENGTH));
  }

  give(buffer: Uint8Array): void {
    this.#spare.push(buffer);
  }
}

/**
 * A pack written to the target as it fills (a target with `openWriter`). Blobs are copied into
 * one of two staging buffers; a buffer that fills is hashed and written while the other
 * fills. A backup then holds 2 MiB of the pack it fills, not the whole pack (and not a second
 * one being uploaded): 30 MB less at the peak of a files backup.
 */
export class PackStream {
  readonly #writer: Promise<PackWriter>;
  readonly #hash: PackIdHash;
  readonly #buffers: StagingBuffers;
  #staging: Uint8Array;
  #spare: Uint8Array;
  #filled = 0;
  /** The write of the spare buffer, which must end before it is filled again. */
  #writing: Promise<void> = Promise.resolve();
  /** Appends run one after another, in the order they were called: each may wait for a buffer. */
  #queue: Promise<void> = Promise.resolve();
  #released = false;
  #failure: { error: unknown } | undefined;
  /** Bytes appended so far. */
  length = 0;

  constructor(writer: Promise<PackWriter>, hash: PackIdHash, buffers: StagingBuffers) {
    this.#writer = writer;
    // A writer that cannot be opened fails the first write; until then nobody waits for it.
    writer.catch(() => undefined);
    this.#hash = hash;
    this.#buffers = buffers;
    this.#staging = buffers.take();
    this.#spare = buffers.take();
  }

  /** Appends `bytes`; settles once they are copied, so that their memory may be used again. */
  append(bytes: Uint8Array): Promise<void> {
    this.length += bytes.length;
    const appended = this.#queue.then(() => {
      if (this.#failure) throw this.#failure.error;
      return this.#copy(bytes);
    });
    // A pack missing some bytes must never be committed: the first failure fails every later call.
    this.#queue = appended.catch((error: unknown) => void (this.#failure ??= { error }));
    return appended;
  }

  /** Appends the pack's last bytes, writes what is left and commits the pack under the hash of all its bytes, which it returns. */
  async finish(tail: Uint8Array): Promise<Buffer> {
    try {
      // Rejects when any append failed.
      await this.append(tail);
      await this.#writing;
      const last = this.#staging.subarray(0, this.#filled);
      this.#hash.update(last);
      const writer = await this.#writer;
      if (last.length > 0) await writer.write(last);
      const id = this.#hash.digest();
      await writer.commit(id.toString('hex'));
      return id;
    } catch (err) {
      await this.abort();
      throw err;
    } finally {
      this.#release();
    }
  }

  /** Discards the pack once the appends under way are done; nothing of it becomes visible. */
  async abort(): Promise<void> {
    await this.#queue;
    await this.#writing.catch(() => undefined);
    const writer = await this.#writer.catch(() => undefined);
    await writer?.abort();
    this.#release();
  }

  async #copy(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length; ) {
      const count = Math.min(bytes.length - at, this.#staging.length - this.#filled);
      this.#staging.set(bytes.subarray(at, at + count), this.#filled);
      this.#filled += count;
      at += count;
      if (this.#filled === this.#staging.length) await this.#writeStaging();
    }
  }

  /** Hashes the full staging buffer and starts its write, once the spare's write has ended; then fills the spare. */
  async #writeStaging(): Promise<void> {
    await this.#writing;
    const full = this.#staging;
    this.#hash.update(full);
    const writing = this.#writer.then((writer) => writer.write(full));
    // Awaited before the buffer is filled again, or by finish; a failure meanwhile is not unhandled.
    writing.catch(() => undefined);
    this.#writing = writing;
    this.#staging = this.#spare;
    this.#spare = full;
    this.#filled = 0;
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#buffers.give(this.#staging);
    this.#buffers.give(this.#spare);
  }
}
