import { DamageError } from '../errors.js';
import { encodeIndex, type IndexedPack } from './format.js';
import type { BlobIndex } from './blob-index.js';
import { readPackHeader } from './pack-header.js';
import { forEachConcurrently, type Repository } from './repository.js';

/** Index files name at most this many packs, so that rewriting one stays cheap. */
export const PACKS_PER_INDEX_FILE = 256;

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
