import { ID_LENGTH, type BlobType, type IndexedPack } from './format.js';

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

interface PackInfo {
  id: string;
  marked: boolean;
  /** End of the last indexed blob in the pack. */
  end: number;
}

const WORDS_PER_ID = ID_LENGTH / 4;
const EMPTY_SLOT = 0;

/**
 * Which pack holds which blob: the union of the repository's index files. Index files that
 * could not be read are listed in `unreadable`; the blobs they named are simply unknown, so
 * damage there costs only the data that is actually missing.
 *
 * A terabyte imaged in 4 MiB chunks is a quarter of a million blobs, so the blobs are kept in
 * typed arrays (about 86 bytes each, their packs included: 21.6 MB for such a terabyte, see
 * bench/index-memory.mjs) rather than as a Map of hex strings to objects (188 bytes each):
 * ids side by side in one byte array, their locations in parallel columns, found through an
 * open-addressing table of entry numbers.
 */
export class BlobIndex {
  readonly #packs: PackInfo[] = [];
  readonly #packNumbers = new Map<string, number>();
  #count = 0;
  #ids = new Uint32Array(0);
  #packOf = new Uint32Array(0);
  #offsets = new Float64Array(0);
  #lengths = new Uint32Array(0);
  #rawLengths = new Uint32Array(0);
  #types = new Uint8Array(0);
  /** Entry number + 1 per slot, EMPTY_SLOT where none; its length is a power of two. */
  #slots = new Uint32Array(16);
  readonly #probe = new Uint32Array(WORDS_PER_ID);
  readonly #probeBytes = Buffer.from(this.#probe.buffer);
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
    return this.#count;
  }

  get packIds(): string[] {
    return this.#packs.map((pack) => pack.id);
  }

  addPacks(packs: readonly IndexedPack[]): void {
    for (const pack of packs) {
      const packId = pack.id.toString('hex');
      const marked = this.marked.has(packId);
      if (marked && this.purpose === 'write') continue;
      const number = this.#packNumber(packId, marked);
      const info = this.#packs[number]!;
      for (const blob of pack.blobs) {
        info.end = Math.max(info.end, blob.offset + blob.length);
        this.#probeBytes.set(blob.id.subarray(0, ID_LENGTH));
        const known = this.#find();
        if (known < 0) this.#append(number, blob);
        else if (!marked && this.#packs[this.#packOf[known]!]!.marked) this.#place(known, number, blob);
      }
    }
  }

  has(id: string): boolean {
    return this.#lookUp(id) >= 0;
  }

  get(id: string): BlobLocation | undefined {
    const entry = this.#lookUp(id);
    return entry < 0 ? undefined : this.#location(entry);
  }

  /** Every indexed blob and where it is, in the order they were added (as a Map's entries, blobs added meanwhile included). */
  *entries(): IterableIterator<[string, BlobLocation]> {
    let ids = Buffer.from(this.#ids.buffer);
    for (let entry = 0; entry < this.#count; entry++) {
      if (ids.buffer !== this.#ids.buffer) ids = Buffer.from(this.#ids.buffer); // grown meanwhile
      yield [ids.toString('hex', entry * ID_LENGTH, (entry + 1) * ID_LENGTH), this.#location(entry)];
    }
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

  /** The entry of a hex id, or -1 (also for anything that is not a 64-digit hex id). */
  #lookUp(id: string): number {
    if (id.length !== ID_LENGTH * 2 || this.#probeBytes.write(id, 'hex') !== ID_LENGTH) return -1;
    return this.#find();
  }

  /** The entry of the id in `#probe`, or -1. */
  #find(): number {
    const mask = this.#slots.length - 1;
    for (let slot = slotHash(this.#probe, 0) & mask; ; slot = (slot + 1) & mask) {
      const stored = this.#slots[slot]!;
      if (stored === EMPTY_SLOT) return -1;
      if (this.#idEqualsProbe(stored - 1)) return stored - 1;
    }
  }

  #idEqualsProbe(entry: number): boolean {
    const base = entry * WORDS_PER_ID;
    for (let word = 0; word < WORDS_PER_ID; word++) {
      if (this.#ids[base + word] !== this.#probe[word]) return false;
    }
    return true;
  }

  /** Adds the id in `#probe` as a new entry. */
  #append(pack: number, blob: IndexedPack['blobs'][number]): void {
    if (this.#count === this.#packOf.length) this.#growEntries();
    if ((this.#count + 1) * 2 > this.#slots.length) this.#growSlots();
    const entry = this.#count++;
    this.#ids.set(this.#probe, entry * WORDS_PER_ID);
    this.#place(entry, pack, blob);
    this.#insertSlot(entry);
  }

  #place(entry: number, pack: number, blob: IndexedPack['blobs'][number]): void {
    this.#packOf[entry] = pack;
    this.#types[entry] = blob.type;
    this.#offsets[entry] = blob.offset;
    this.#lengths[entry] = blob.length;
    this.#rawLengths[entry] = blob.rawLength;
  }

  #insertSlot(entry: number): void {
    const mask = this.#slots.length - 1;
    let slot = slotHash(this.#ids, entry * WORDS_PER_ID) & mask;
    while (this.#slots[slot] !== EMPTY_SLOT) slot = (slot + 1) & mask;
    this.#slots[slot] = entry + 1;
  }

  /** Half again as many entries (not twice: the columns are most of the index's memory). */
  #growEntries(): void {
    const capacity = Math.max(1024, Math.ceil(this.#count * 1.5));
    this.#ids = grown(this.#ids, new Uint32Array(capacity * WORDS_PER_ID));
    this.#packOf = grown(this.#packOf, new Uint32Array(capacity));
    this.#offsets = grown(this.#offsets, new Float64Array(capacity));
    this.#lengths = grown(this.#lengths, new Uint32Array(capacity));
    this.#rawLengths = grown(this.#rawLengths, new Uint32Array(capacity));
    this.#types = grown(this.#types, new Uint8Array(capacity));
  }

  /** Twice the slots, so at most half are used and probes stay short. */
  #growSlots(): void {
    this.#slots = new Uint32Array(this.#slots.length * 2);
    for (let entry = 0; entry < this.#count; entry++) this.#insertSlot(entry);
  }
}

/**
 * Real ids are uniform hashes, but ids that share their first bytes (made up in tests, or
 * crafted) must not pile into one run of slots: three words are mixed (murmur3's finalizer).
 */
function slotHash(words: Uint32Array, base: number): number {
  let hash = words[base]! ^ words[base + 3]! ^ words[base + WORDS_PER_ID - 1]!;
  hash = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return (hash ^ (hash >>> 16)) >>> 0;
}

function grown<T extends Uint8Array | Uint32Array | Float64Array>(old: T, larger: T): T {
  larger.set(old as never);
  return larger;
}
