import { visitIndex, type BlobType, type IndexedPack } from './format.js';
import { IdTable } from './id-table.js';

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

/** A pack whose blobs BlobIndex is adding. */
interface AddingPack {
  number: number;
  marked: boolean;
  info: PackInfo;
}

interface PackInfo {
  id: string;
  marked: boolean;
  /** End of the last indexed blob in the pack. */
  end: number;
}

/**
 * Which pack holds which blob: the union of the repository's index files. Index files that
 * could not be read are listed in `unreadable`; the blobs they named are simply unknown, so
 * damage there costs only the data that is actually missing.
 *
 * A terabyte imaged in 4 MiB chunks is a quarter of a million blobs, so the blobs are kept in
 * typed arrays (about 86 bytes each, their packs included: 21.6 MB for such a terabyte, see
 * bench/index-memory.mjs) rather than as a Map of hex strings to objects (188 bytes each):
 * the ids in an IdTable, their locations in parallel columns by the table's entry numbers.
 */
export class BlobIndex {
  readonly #packs: PackInfo[] = [];
  readonly #packNumbers = new Map<string, number>();
  readonly #ids = new IdTable();
  #packOf = new Uint32Array(0);
  #offsets = new Float64Array(0);
  #lengths = new Uint32Array(0);
  #rawLengths = new Uint32Array(0);
  #types = new Uint8Array(0);
  /** Entries of the id table whose columns are set: every one but the one being added. */
  #filled = 0;
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
    return this.#ids.size;
  }

  get packIds(): string[] {
    return this.#packs.map((pack) => pack.id);
  }

  addPacks(packs: readonly IndexedPack[]): void {
    for (const pack of packs) {
      const adding = this.#addingPack(pack.id);
      if (!adding) continue;
      for (const blob of pack.blobs) this.#addBlob(adding, this.#ids.addBytes(blob.id), blob.type, blob.offset, blob.length, blob.rawLength);
    }
  }

  /** addPacks of an index file's plaintext, without an object per blob; throws (adding nothing) when it is malformed. */
  addIndex(plain: Buffer): void {
    let adding: AddingPack | undefined;
    visitIndex(plain, {
      start: (blobs) => this.#reserve(this.#ids.size + blobs),
      pack: (id) => void (adding = this.#addingPack(id)),
      blob: (type, bytes, idAt, offset, length, rawLength) => {
        if (adding) this.#addBlob(adding, this.#ids.addAt(bytes, idAt), type, offset, length, rawLength);
      },
    });
  }

  /** The pack whose blobs are being added; undefined when they are left out (a pack prune marked, for a writer). */
  #addingPack(id: Buffer): AddingPack | undefined {
    const packId = id.toString('hex');
    const marked = this.marked.has(packId);
    if (marked && this.purpose === 'write') return undefined;
    const number = this.#packNumber(packId, marked);
    return { number, marked, info: this.#packs[number]! };
  }

  /** `entry` is the blob's in the id table: new (it was just added) or one already there, which an unmarked pack's copy replaces if its pack is marked. */
  #addBlob(pack: AddingPack, entry: number, type: BlobType, offset: number, length: number, rawLength: number): void {
    pack.info.end = Math.max(pack.info.end, offset + length);
    if (entry === this.#filled) this.#append(entry, pack.number, type, offset, length, rawLength);
    else if (!pack.marked && this.#packs[this.#packOf[entry]!]!.marked) this.#place(entry, pack.number, type, offset, length, rawLength);
  }

  has(id: string): boolean {
    return this.#ids.findHex(id) >= 0;
  }

  get(id: string): BlobLocation | undefined {
    const entry = this.#ids.findHex(id);
    return entry < 0 ? undefined : this.#location(entry);
  }

  /** Every indexed blob and where it is, in the order they were added (as a Map's entries, blobs added meanwhile included). */
  *entries(): IterableIterator<[string, BlobLocation]> {
    for (let entry = 0; entry < this.#ids.size; entry++) yield [this.#ids.hexAt(entry), this.#location(entry)];
  }

  /** End of the last indexed blob in a pack: the pack's header starts there. */
  packDataEnd(packId: string): number | undefined {
    const number = this.#packNumbers.get(packId);
    return number === undefined ? undefined : this.#packs[number]!.end;
  }

  #packNumber(packId: string, marked: boolean): number {
    let number = this.#packNumbers.get(packId);
    if (number === undefined) {
      number = this.#packs.push({ id: packId, marked, end: 0 }) - 1;
      this.#packNumbers.set(packId, number);
    }
    return number;
  }

  #location(entry: number): BlobLocation {
    return {
      pack: this.#packs[this.#packOf[entry]!]!.id,
      type: this.#types[entry] as BlobType,
      offset: this.#offsets[entry]!,
      length: this.#lengths[entry]!,
      rawLength: this.#rawLengths[entry]!,
    };
  }

  /** Columns for a new entry of the id table. */
  #append(entry: number, pack: number, type: BlobType, offset: number, length: number, rawLength: number): void {
    if (entry === this.#packOf.length) this.#growEntries(Math.max(1024, Math.ceil(this.#ids.size * 1.5)));
    this.#place(entry, pack, type, offset, length, rawLength);
    this.#filled++;
  }

  #place(entry: number, pack: number, type: BlobType, offset: number, length: number, rawLength: number): void {
    this.#packOf[entry] = pack;
    this.#types[entry] = type;
    this.#offsets[entry] = offset;
    this.#lengths[entry] = length;
    this.#rawLengths[entry] = rawLength;
  }

  /** Room for `count` blobs in all, where the number to come is known. */
  #reserve(count: number): void {
    this.#ids.reserve(count);
    if (count > this.#packOf.length) this.#growEntries(count);
  }

  /** Room for `capacity` entries; grown by half again as many at a time (not twice: the columns are most of the index's memory). */
  #growEntries(capacity: number): void {
    this.#packOf = grown(this.#packOf, new Uint32Array(capacity));
    this.#offsets = grown(this.#offsets, new Float64Array(capacity));
    this.#lengths = grown(this.#lengths, new Uint32Array(capacity));
    this.#rawLengths = grown(this.#rawLengths, new Uint32Array(capacity));
    this.#types = grown(this.#types, new Uint8Array(capacity));
  }
}

function grown<T extends Uint8Array | Uint32Array | Float64Array>(old: T, larger: T): T {
  larger.set(old as never);
  return larger;
}
