import type { BlobType, IndexedPack } from './format.js';

/** Where one blob is stored. */
export interface BlobLocation {
  pack: string;
  type: BlobType;
  offset: number;
  length: number;
  rawLength: number;
}

/** A stored object that could not be used, and why. */
export interface DamagedObject {
  /** The object's key, e.g. `index/ab12…`. */
  object: string;
  message: string;
}

/**
 * A reader may use a pack that prune marked for deletion, for blobs no other pack holds; a
 * writer must not count on such a pack (it stores the blob anew), see docs/FORMAT.md, Prune.
 */
export type IndexPurpose = 'read' | 'write';

/**
 * Which pack holds which blob: the union of the repository's index files. Index files that
 * could not be read are listed in `unreadable`; the blobs they named are simply unknown, so
 * damage there costs only the data that is actually missing.
 */
export class BlobIndex {
  readonly #blobs = new Map<string, BlobLocation>();
  readonly #packs = new Map<string, { blobs: number; end: number }>();
  /** Index files that could not be read. */
  readonly unreadable: DamagedObject[] = [];
  /** Ids of the index files taken in (a writer takes in others' new ones as it goes). */
  readonly files = new Set<string>();

  constructor(
    /** Packs that prune marked for deletion. */
    readonly marked: ReadonlySet<string> = new Set(),
    readonly purpose: IndexPurpose = 'read',
  ) {}

  get blobCount(): number {
    return this.#blobs.size;
  }

  get packIds(): string[] {
    return [...this.#packs.keys()];
  }

  addPacks(packs: readonly IndexedPack[]): void {
    for (const pack of packs) {
      const packId = pack.id.toString('hex');
      const marked = this.marked.has(packId);
      if (marked && this.purpose === 'write') continue;
      let info = this.#packs.get(packId);
      if (!info) this.#packs.set(packId, (info = { blobs: pack.blobs.length, end: 0 }));
      for (const blob of pack.blobs) {
        info.end = Math.max(info.end, blob.offset + blob.length);
        const id = blob.id.toString('hex');
        const known = this.#blobs.get(id);
        if (!known || (!marked && this.marked.has(known.pack))) {
          this.#blobs.set(id, { pack: packId, type: blob.type, offset: blob.offset, length: blob.length, rawLength: blob.rawLength });
        }
      }
    }
  }

  has(id: string): boolean {
    return this.#blobs.has(id);
  }

  get(id: string): BlobLocation | undefined {
    return this.#blobs.get(id);
  }

  /** Every indexed blob and where it is. */
  entries(): IterableIterator<[string, BlobLocation]> {
    return this.#blobs.entries();
  }

  /** End of the last indexed blob in a pack: the pack's header starts there. */
  packDataEnd(packId: string): number | undefined {
    return this.#packs.get(packId)?.end;
  }
}
