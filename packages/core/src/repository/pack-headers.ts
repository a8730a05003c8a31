import { DamageError } from '../errors.js';
import { AuthenticationError, SEAL_OVERHEAD, open } from '../crypto/crypto.js';
import { Keys, decodePackHeader, encodeIndex, packHeaderLength, type IndexedPack, type PackedBlob } from './format.js';
import type { BlobIndex } from './blob-index.js';
import { forEachConcurrently, type Repository, type StoredPack } from './repository.js';

/** Bytes read from a pack's end in one go: the header of a pack of up to ~1500 blobs. */
const TAIL_READ = 64 * 1024;
/** Index files name at most this many packs, so that rewriting one stays cheap. */
export const PACKS_PER_INDEX_FILE = 256;

/**
 * The blobs a pack holds, from its own sealed header (the pack's tail), without reading the
 * blobs. DamageError when the header is unreadable or does not fit the pack.
 */
export async function readPackHeader(repository: Repository, pack: StoredPack): Promise<PackedBlob[]> {
  const name = Keys.pack(pack.id);
  if (pack.size < 4 + SEAL_OVERHEAD + packHeaderLength(0)) throw new DamageError(`${name} is too short to be a pack (${pack.size} bytes)`);
  const tailLength = Math.min(pack.size, TAIL_READ);
  let tail = await repository.readPack(pack.id, { offset: pack.size - tailLength, length: tailLength });
  const headerLength = tail.readUInt32LE(tail.length - 4);
  if (headerLength + 4 > pack.size) throw new DamageError(`${name} is damaged: its header length ${headerLength} does not fit the pack`);
  if (headerLength + 4 > tail.length) tail = await repository.readPack(pack.id, { offset: pack.size - headerLength - 4, length: headerLength + 4 });
  let blobs: PackedBlob[];
  try {
    blobs = decodePackHeader(open(repository.masterKey.encryption, tail.subarray(tail.length - 4 - headerLength, tail.length - 4)));
  } catch (err) {
    const why = err instanceof AuthenticationError ? 'it fails authentication' : (err as Error).message;
    throw new DamageError(`${name} is damaged: its header is unreadable (${why})`, { cause: err });
  }
  const end = blobs.reduce((n, b) => Math.max(n, b.offset + b.length), 0);
  if (end + headerLength + 4 !== pack.size) throw new DamageError(`${name} is damaged: its header does not describe its ${pack.size} bytes`);
  return blobs;
}

/**
 * Indexes the packs no index names and no prune mark claims: packs that a killed backup
 * uploaded but did not get to index. A target shows only complete objects, so such a pack
 * is whole; its header says what it holds. Writes index files for them and adds them to
 * `index`, so this run stores none of their blobs again. Packs that are unreadable are left
 * for `check` and `prune`.
 */
export async function adoptOrphanPacks(repository: Repository, index: BlobIndex): Promise<{ packs: number; bytes: number; unreadable: string[] }> {
  const orphans = (await repository.listPacks()).filter((p) => index.packDataEnd(p.id) === undefined && !index.marked.has(p.id));
  const adopted: IndexedPack[] = [];
  const unreadable: string[] = [];
  let bytes = 0;
  await forEachConcurrently(orphans, 4, async (pack) => {
    try {
      adopted.push({ id: Buffer.from(pack.id, 'hex'), blobs: await readPackHeader(repository, pack) });
      bytes += pack.size;
    } catch (err) {
      if (!(err instanceof DamageError) && !repository.isNotFound(err)) throw err;
      unreadable.push(pack.id);
    }
  });
  for (let i = 0; i < adopted.length; i += PACKS_PER_INDEX_FILE) {
    const batch = adopted.slice(i, i + PACKS_PER_INDEX_FILE);
    const { id } = await repository.putSealed('index', encodeIndex(batch));
    index.addPacks(batch);
    index.files.add(id);
  }
  return { packs: adopted.length, bytes, unreadable };
}
