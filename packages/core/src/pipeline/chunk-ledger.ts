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
 * a blob the repository has, or that this run stores already, is never stored twice. No blob
 * is told new before `knownAfter` settles (the packs that interrupted runs left are indexed
 * meanwhile, while the backup reads what is unchanged), nor at all if it rejects.
 */
export class ChunkLedger {
  readonly records: ChunkRecord[];
  readonly stats: ChunkStats = { bytesRead: 0, dataChunks: 0, zeroChunks: 0, unusedChunks: 0, newChunks: 0 };
  /** Blobs this run stores: a corpus backup's 60,000 as hex strings in a Set held 6 MB of the heap to its end. */
  readonly #stored = new IdTable();

  constructor(
    chunkCount: number,
    private readonly index: BlobIndex,
    private readonly knownAfter: Promise<unknown> = Promise.resolve(),
  ) {
    this.records = new Array(chunkCount);
  }

  recordUnused(i: number): void {
    this.records[i] = UNUSED_CHUNK;
    this.stats.unusedChunks++;
  }

  /** Records what chunk `i` holds; resolves to its blob id when it has data that is not stored yet. */
  async record(i: number, hash: ChunkHash): Promise<Buffer | undefined> {
    if (hash.zero) {
      this.records[i] = ZERO_CHUNK;
      this.stats.zeroChunks++;
      return undefined;
    }
    this.records[i] = { kind: ChunkKind.data, id: hash.id };
    this.stats.dataChunks++;
    if (!(await this.claim(hash.id.toString('hex')))) return undefined;
    this.stats.newChunks++;
    return hash.id;
  }

  /** Whether chunk `i` was recorded as holding what `hash` describes. */
  holds(i: number, hash: ChunkHash): boolean {
    const recorded = this.records[i]!;
    return hash.zero ? recorded.kind === ChunkKind.zero : recorded.kind === ChunkKind.data && recorded.id!.equals(hash.id);
  }

  /** Records chunk `i` anew (it changed between two reads); resolves to its blob id when it must be stored. */
  rerecord(i: number, hash: ChunkHash): Promise<Buffer | undefined> {
    if (this.records[i]!.kind === ChunkKind.zero) this.stats.zeroChunks--;
    else this.stats.dataChunks--;
    return this.record(i, hash);
  }

  /**
   * True when the blob is neither in the repository nor stored by this run yet; it is from now
   * on. A blob the index has is told at once; another waits for `knownAfter`, which may index it.
   */
  async claim(hexId: string): Promise<boolean> {
    if (this.index.has(hexId)) return false;
    await this.knownAfter;
    if (this.index.has(hexId)) return false;
    const stored = this.#stored.size;
    return this.#stored.addHex(hexId) === stored;
  }
}
