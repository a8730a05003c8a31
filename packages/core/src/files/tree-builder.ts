import { encodeEntry, treeOfEncodedEntries, type TreeEntry } from './tree.js';

/** The parent snapshot's tree of the same folder: its blob id and its entries, keyed by `keyOfName`. */
export interface PreviousTree {
  id: string;
  entries: ReadonlyMap<string, TreeEntry>;
}

/** A folder's finished tree: the parent's blob when every entry is the parent's, else the bytes of a new one. */
export type BuiltTree = { unchanged: true; id: string } | { unchanged: false; plain: Buffer };

/** Names as Map keys: latin1 maps every byte to one character, so distinct names stay distinct. */
export const keyOfName = (name: Buffer): string => name.toString('latin1');

/**
 * One folder's tree, built from its entries as each completes, in any order. An entry is
 * encoded as it arrives and not kept: a folder of 18,000 files otherwise held 18,000 entry
 * objects until its last file was read, the largest part of a first corpus backup's heap.
 * An entry equal to the parent's of the same name is not encoded: the parent's decoded tree
 * holds it anyway, and when every entry is the parent's, the tree is the parent's blob.
 */
export class TreeBuilder {
  readonly #previous: PreviousTree | undefined;
  readonly #encoded: Array<{ name: Buffer; text: string }> = [];
  readonly #sameAsPrevious: TreeEntry[] = [];
  #outstanding = 0;
  #failure: { error: unknown } | undefined;
  #allSettled: (() => void) | undefined;

  constructor(previous?: PreviousTree) {
    this.#previous = previous;
  }

  /** Takes the entry once it is complete (undefined: none, as for a socket). A failure fails the tree. */
  follow(entry: Promise<TreeEntry | undefined>): void {
    this.#outstanding++;
    entry.then(
      (complete) => this.#settled(() => complete && this.#add(complete)),
      (error: unknown) => this.#settled(() => (this.#failure ??= { error })),
    );
  }

  /** The tree, once every entry followed has settled; rejects with the first failure among them. */
  async finish(): Promise<BuiltTree> {
    if (this.#outstanding > 0) await new Promise<void>((resolve) => (this.#allSettled = resolve));
    if (this.#failure) throw this.#failure.error;
    const previous = this.#previous;
    if (previous && this.#encoded.length === 0 && this.#sameAsPrevious.length === previous.entries.size) return { unchanged: true, id: previous.id };
    for (const entry of this.#sameAsPrevious.splice(0)) this.#encoded.push({ name: entry.name, text: encodeEntry(entry) });
    return { unchanged: false, plain: treeOfEncodedEntries(this.#encoded) };
  }

  #settled(take: () => unknown): void {
    try {
      take();
    } catch (error) {
      this.#failure ??= { error };
    }
    if (--this.#outstanding === 0) this.#allSettled?.();
  }

  #add(entry: TreeEntry): void {
    const old = this.#previous?.entries.get(keyOfName(entry.name));
    if (old !== undefined && sameValue(entry, old)) this.#sameAsPrevious.push(old);
    else this.#encoded.push({ name: entry.name, text: encodeEntry(entry) });
  }
}

/**
 * Deep equality of tree entry values: bigints and strings by value, Buffers by bytes, arrays
 * and objects field by field (an absent field equals an undefined one). Generic on purpose: a
 * field added to entries later is compared too, so a tree is never taken for unchanged when
 * it is not. A difference that would encode the same (an empty xattr list) only costs a store.
 */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Buffer.isBuffer(a) || Buffer.isBuffer(b)) return Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.equals(b);
  if (Array.isArray(a) || Array.isArray(b)) return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((item, i) => sameValue(item, b[i]));
  // Every field `a` defines equals `b`'s, and `b` defines as many: then it defines no other.
  let fields = 0;
  for (const key in a) {
    const value = (a as Record<string, unknown>)[key];
    if (value === undefined) continue;
    fields++;
    if (!sameValue(value, (b as Record<string, unknown>)[key])) return false;
  }
  for (const key in b) if ((b as Record<string, unknown>)[key] !== undefined) fields--;
  return fields === 0;
}
