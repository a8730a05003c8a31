import { ID_LENGTH } from './format.js';

const WORDS_PER_ID = ID_LENGTH / 4;
const EMPTY_SLOT = 0;

/**
 * A set of 32-byte ids, each numbered by when it was added: the ids side by side in one typed
 * array, found through an open-addressing table of entry numbers. About 40 bytes an id, where a
 * Set of hex strings costs about 100 and an object each for the collector to trace: the index
 * keeps every blob of the repository here, and a backup every blob it stored.
 */
export class IdTable {
  #count = 0;
  #ids = new Uint32Array(0);
  /** Entry number + 1 per slot, EMPTY_SLOT where none; its length is a power of two. */
  #slots = new Uint32Array(16);
  readonly #probe = new Uint32Array(WORDS_PER_ID);
  readonly #probeBytes = Buffer.from(this.#probe.buffer);

  get size(): number {
    return this.#count;
  }

  /** The entry of a hex id, or -1 (also for anything that is not a 64-digit hex id). */
  findHex(id: string): number {
    return this.#probeHex(id) ? this.#find() : -1;
  }

  /** The entry of an id given as its bytes (the first ID_LENGTH of them), or -1. */
  findBytes(id: Uint8Array): number {
    this.#probeBytes.set(id.subarray(0, ID_LENGTH));
    return this.#find();
  }

  /** The entry of an id given as its bytes, added as the next one if it is new (compare with `size` before to tell). */
  addBytes(id: Uint8Array): number {
    const found = this.findBytes(id);
    return found >= 0 ? found : this.#append();
  }

  /** `addBytes` of the id at `bytes[at, at + ID_LENGTH)`, without a view of it. */
  addAt(bytes: Buffer, at: number): number {
    bytes.copy(this.#probeBytes, 0, at, at + ID_LENGTH);
    const found = this.#find();
    return found >= 0 ? found : this.#append();
  }

  /** Makes room for `count` ids in all at once, where the number to come is known (an index being loaded). */
  reserve(count: number): void {
    if (count * WORDS_PER_ID > this.#ids.length) {
      const larger = new Uint32Array(count * WORDS_PER_ID);
      larger.set(this.#ids);
      this.#ids = larger;
    }
    let slots = this.#slots.length;
    while (count * 2 > slots) slots *= 2;
    if (slots === this.#slots.length) return;
    this.#slots = new Uint32Array(slots);
    for (let entry = 0; entry < this.#count; entry++) this.#insertSlot(entry);
  }

  /** `addBytes` for a hex id; throws on anything that is not a 64-digit hex id. */
  addHex(id: string): number {
    if (!this.#probeHex(id)) throw new TypeError(`not a ${ID_LENGTH}-byte hex id: ${JSON.stringify(id)}`);
    const found = this.#find();
    return found >= 0 ? found : this.#append();
  }

  /** The id of an entry, as hex. */
  hexAt(entry: number): string {
    return Buffer.from(this.#ids.buffer).toString('hex', entry * ID_LENGTH, (entry + 1) * ID_LENGTH);
  }

  #probeHex(id: string): boolean {
    return id.length === ID_LENGTH * 2 && this.#probeBytes.write(id, 'hex') === ID_LENGTH;
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
  #append(): number {
    if ((this.#count + 1) * WORDS_PER_ID > this.#ids.length) this.#growIds();
    if ((this.#count + 1) * 2 > this.#slots.length) this.#growSlots();
    const entry = this.#count++;
    this.#ids.set(this.#probe, entry * WORDS_PER_ID);
    this.#insertSlot(entry);
    return entry;
  }

  #insertSlot(entry: number): void {
    const mask = this.#slots.length - 1;
    let slot = slotHash(this.#ids, entry * WORDS_PER_ID) & mask;
    while (this.#slots[slot] !== EMPTY_SLOT) slot = (slot + 1) & mask;
    this.#slots[slot] = entry + 1;
  }

  /** Half again as many ids (not twice: they are most of the table's memory). */
  #growIds(): void {
    const larger = new Uint32Array(Math.max(1024, Math.ceil(this.#count * 1.5)) * WORDS_PER_ID);
    larger.set(this.#ids);
    this.#ids = larger;
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
