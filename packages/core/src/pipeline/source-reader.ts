import { SourceReadError } from '../errors.js';
import type { Extent, OpenedSource } from '../source.js';

/**
 * Piece sizes a failed read is narrowed down through, largest first. Reads of an image file
 * or a block device go through the page cache, which fails a whole 4 KiB page when one of its
 * sectors is bad, so smaller pieces would only repeat failing reads of a dying disk.
 */
export const NARROWING_STEPS = [64 * 1024, 4096] as const;

/** Byte ranges in increasing order, neighbours merged. */
export class RangeList {
  readonly #ranges: Extent[] = [];

  add(offset: number, length: number): void {
    if (length <= 0) return;
    let start = offset;
    let end = offset + length;
    // The first range that ends at or after `start`: everything before it stays as it is.
    let i = this.#ranges.findIndex((r) => r.offset + r.length >= start);
    if (i === -1) i = this.#ranges.length;
    let j = i;
    while (j < this.#ranges.length && this.#ranges[j]!.offset <= end) {
      start = Math.min(start, this.#ranges[j]!.offset);
      end = Math.max(end, this.#ranges[j]!.offset + this.#ranges[j]!.length);
      j++;
    }
    this.#ranges.splice(i, j - i, { offset: start, length: end - start });
  }

  get ranges(): Extent[] {
    return this.#ranges.map((r) => ({ ...r }));
  }

  get totalBytes(): number {
    return this.#ranges.reduce((sum, r) => sum + r.length, 0);
  }
}

/**
 * Reads the source for a backup. A read the medium fails (`SourceReadError`) is read again in
 * smaller and smaller aligned pieces (`NARROWING_STEPS`), as partclone's and ddrescue's rescue
 * modes do, to find the pieces that stay unreadable. By default the first such piece stops
 * the backup, named exactly. In rescue mode it is zeroed in the buffer and recorded, and the
 * reading goes on.
 */
export class SourceReader {
  readonly unreadable = new RangeList();

  constructor(
    private readonly source: OpenedSource,
    private readonly rescue: boolean,
  ) {}

  /** One read, as the source does it; false where the medium failed it (the caller then reads otherwise). */
  async tryRead(into: Uint8Array, offset: number, length: number): Promise<boolean> {
    try {
      await this.source.read(into, offset, length);
      return true;
    } catch (err) {
      if (err instanceof SourceReadError) return false;
      throw err;
    }
  }

  async read(into: Uint8Array, offset: number, length: number): Promise<void> {
    try {
      await this.source.read(into, offset, length);
    } catch (err) {
      if (!(err instanceof SourceReadError)) throw err;
      await this.#narrow(into, offset, length, 0, err);
    }
  }

  /** `into` holds [offset, offset+length) at index 0; reads it again in pieces of `NARROWING_STEPS[step]` or smaller. */
  async #narrow(into: Uint8Array, offset: number, length: number, step: number, failure: SourceReadError): Promise<void> {
    // Sizes that would cut the range into one piece, itself, would only read it again.
    while (step < NARROWING_STEPS.length && withinOnePiece(offset, length, NARROWING_STEPS[step]!)) step++;
    const size = NARROWING_STEPS[step];
    if (size === undefined) {
      if (!this.rescue) throw failure;
      into.fill(0, 0, length);
      this.unreadable.add(offset, length);
      return;
    }
    const end = offset + length;
    for (let at = offset; at < end; ) {
      const next = Math.min(end, (Math.floor(at / size) + 1) * size);
      const piece = into.subarray(at - offset, next - offset);
      try {
        await this.source.read(piece, at, next - at);
      } catch (err) {
        if (!(err instanceof SourceReadError)) throw err;
        await this.#narrow(piece, at, next - at, step + 1, err);
      }
      at = next;
    }
  }
}

function withinOnePiece(offset: number, length: number, size: number): boolean {
  return Math.floor(offset / size) === Math.floor((offset + length - 1) / size);
}
