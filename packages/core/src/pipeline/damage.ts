import type { ByteRange } from '../target.js';
import { DamageError } from '../errors.js';
import { ChunkKind, Keys, type ChunkRecord } from '../repository/format.js';
import type { BlobIndex, BlobLocation } from '../repository/repository.js';
import type { WorkerPool } from './worker-pool.js';

/**
 * Bookkeeping of damage shared by check, restore and repair: which blobs are lost and
 * because of which object, and which byte ranges of an image that costs.
 */

/** Why a blob cannot be read: the damaged object (a pack, or `index` for a blob no index knows) and what is wrong. */
export interface LostReason {
  object: string;
  message: string;
}

/** The object named for blobs that no (readable) index file knows. */
export const NOT_INDEXED = 'index';

/** Blobs known to be unreadable, each with its reason. */
export class LostBlobs {
  readonly #blobs = new Map<string, LostReason>();

  get size(): number {
    return this.#blobs.size;
  }

  add(id: string, reason: LostReason): void {
    if (!this.#blobs.has(id)) this.#blobs.set(id, reason);
  }

  get(id: string): LostReason | undefined {
    return this.#blobs.get(id);
  }

  /** Why the data chunk `id` cannot be restored with this index, or undefined when it can. */
  reasonFor(id: string, index: BlobIndex): LostReason | undefined {
    return this.#blobs.get(id) ?? (index.has(id) ? undefined : { object: NOT_INDEXED, message: 'no index names this blob' });
  }
}

/**
 * A damage message about the object `key`, for a report that names the object already:
 * `pack data/ab/… is missing` becomes `pack is missing`, `pack data/ab/… is damaged: blob …`
 * becomes `blob …`, `index/… is damaged: its content …` becomes `its content …`.
 */
export function aboutObject(key: string, message: string): string {
  return message.replace(`pack ${key} is damaged: `, '').replace(`${key} is damaged: `, '').replace(`pack ${key} `, 'pack ');
}

/** Sorts ranges and merges overlapping and adjacent ones. */
export function mergeRanges(ranges: Iterable<ByteRange>): ByteRange[] {
  const sorted = [...ranges].filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const merged: ByteRange[] = [];
  for (const range of sorted) {
    const last = merged.at(-1);
    if (last && range.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, range.offset + range.length - last.offset);
    } else {
      merged.push({ offset: range.offset, length: range.length });
    }
  }
  return merged;
}

/** The image bytes of chunk `i` of an image of `size` bytes cut in chunks of `chunkSize`. */
export function chunkRange(i: number, chunkSize: number, size: number): ByteRange {
  const offset = i * chunkSize;
  return { offset, length: Math.min(chunkSize, size - offset) };
}

/** Merged image ranges of the chunks `chunks`. */
export function chunkRanges(chunks: Iterable<number>, chunkSize: number, size: number): ByteRange[] {
  const ranges: ByteRange[] = [];
  for (const i of chunks) ranges.push(chunkRange(i, chunkSize, size));
  return mergeRanges(ranges);
}

/** Indexes of the data chunks whose blob satisfies `lost`. */
export function lostChunks(records: readonly ChunkRecord[], lost: (id: string) => boolean): number[] {
  const chunks: number[] = [];
  records.forEach((record, i) => {
    if (record.kind === ChunkKind.data && lost(record.id!.toString('hex'))) chunks.push(i);
  });
  return chunks;
}

/** Total bytes of some ranges. */
export function rangeBytes(ranges: readonly ByteRange[]): number {
  return ranges.reduce((n, r) => n + r.length, 0);
}

/** The parts of `ranges` inside `window`, moved so that the window starts at 0. */
export function rangesInWindow(ranges: readonly ByteRange[], window: ByteRange): ByteRange[] {
  const inside: ByteRange[] = [];
  for (const range of ranges) {
    const start = Math.max(range.offset, window.offset);
    const end = Math.min(range.offset + range.length, window.offset + window.length);
    if (end > start) inside.push({ offset: start - window.offset, length: end - start });
  }
  return inside;
}

/** Every indexed blob, grouped by the pack the index places it in. */
export function blobsByPack(index: BlobIndex): Map<string, Array<[string, BlobLocation]>> {
  const packs = new Map<string, Array<[string, BlobLocation]>>();
  for (const [id, location] of index.entries()) {
    let blobs = packs.get(location.pack);
    if (!blobs) packs.set(location.pack, (blobs = []));
    blobs.push([id, location]);
  }
  return packs;
}

/**
 * Indexed packs that are missing lose every blob the index places in them; truncated ones
 * the blobs past their end. Adds those blobs to `lost`; returns what is wrong, per pack key.
 */
export function findLostPacks(index: BlobIndex, stored: ReadonlyMap<string, number>, byPack: ReadonlyMap<string, Array<[string, BlobLocation]>>, lost: LostBlobs): Map<string, string> {
  const problems = new Map<string, string>();
  for (const pack of index.packIds) {
    const size = stored.get(pack);
    const dataEnd = index.packDataEnd(pack)!;
    if (size !== undefined && size >= dataEnd + 4) continue;
    const key = Keys.pack(pack);
    const message = size === undefined ? 'pack is missing' : `pack is truncated (${size} bytes; its indexed blobs alone take ${dataEnd})`;
    problems.set(key, message);
    for (const [id, location] of byPack.get(pack) ?? []) {
      if (size === undefined || location.offset + location.length > size) lost.add(id, { object: key, message });
    }
  }
  return problems;
}

/** Opens every blob of `blobs` in a pack's `bytes` and checks it against its id; returns the damaged ones with why. */
export async function verifyBlobs(pool: WorkerPool, bytes: Buffer, blobs: ReadonlyArray<[string, BlobLocation]>): Promise<Array<[string, string]>> {
  const damaged: Array<[string, string]> = [];
  for (const [id, location] of blobs) {
    if (location.offset + location.length > bytes.length) {
      damaged.push([id, `blob ${id.slice(0, 12)} lies past the pack's end`]);
      continue;
    }
    try {
      await pool.verify(bytes.subarray(location.offset, location.offset + location.length), location.rawLength, id);
    } catch (err) {
      if (!(err instanceof DamageError)) throw err;
      damaged.push([id, err.message]);
    }
  }
  return damaged;
}
