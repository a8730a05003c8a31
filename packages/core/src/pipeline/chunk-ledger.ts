import { ChunkKind, UNUSED_CHUNK, ZERO_CHUNK, type ChunkRecord } from '../repository/format.js';
import type { BlobIndex } from '../repository/repository.js';
import { IdTable } from '../repository/id-table.js';
import type { ChunkHash } from './worker-pool.js';

export interface ChunkStats {
  bytesRead: number;
  dataChunks: number;
  zeroChunks: number;
  unusedChunks: number;
  newChunks: number;
}

/**
 * What a backup records of each chunk of the image, its counts, and which blobs it stores:
 * a blob the repository has, or that this run stores already, is never stored twice.
 */
export class ChunkLedger {
  readonly records: ChunkRecord[];
  readonly stats: ChunkStats = { bytesRead: 0, dataChunks: 0, zeroChunks: 0, unusedChunks: 0, newChunks: 0 };
  /** Blobs this run stores: a corpus backup's 60,000 as hex strings in a Set held 6 MB of the heap to its end. */
  readonly #stored = new IdTable();

  constructor(
    chunkCount: number,
    private readonly index: BlobIndex,
  ) {
    this.records = new Array(chunkCount);
  }

  recordUnused(i: number): void {
    this.records[i] = UNUSED_CHUNK;
    this.stats.unusedChunks++;
  }

  /** Records what chunk `i` holds; returns its blob id when it has data that is not stored yet. */
  record(i: number, hash: ChunkHash): Buffer | undefined {
    if (hash.zero) {
      this.records[i] = ZERO_CHUNK;
      this.stats.zeroChunks++;
      return undefined;
    }
    this.records[i] = { kind: ChunkKind.data, id: hash.id };
    this.stats.dataChunks++;
    if (!this.claim(hash.id.toString('hex'))) return undefined;
    this.stats.newChunks++;
    return hash.id;
  }

  /** Whether chunk `i` was recorded as holding what `hash` describes. */
  holds(i: number, hash: ChunkHash): boolean {
    const recorded = this.records[i]!;
    return hash.zero ? recorded.kind === ChunkKind.zero : recorded.kind === ChunkKind.data && recorded.id!.equals(hash.id);
  }

  /** Records chunk `i` anew (it changed between two reads); returns its blob id when it must be stored. */
  rerecord(i: number, hash: ChunkHash): Buffer | undefined {
    if (this.records[i]!.kind === ChunkKind.zero) this.stats.zeroChunks--;
    else this.stats.dataChunks--;
    return this.record(i, hash);
  }

  /** True when the blob is neither in the repository nor stored by this run yet; it is from now on. */
  claim(hexId: string): boolean {
    if (this.index.has(hexId)) return false;
    const stored = this.#stored.size;
    return this.#stored.addHex(hexId) === stored;
  }
}
