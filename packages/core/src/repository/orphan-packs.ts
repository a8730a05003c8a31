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
 *
 * `listing` is the repository's packs (`listPacks()`), which the caller may list while the
 * index loads (on a remote target with many packs the listing is the slow part). Listed first
 * or last, a pack another writer uploads meanwhile is indexed by its writer or, if that one
 * dies first, adopted by the next backup.
 */
export async function adoptOrphanPacks(
  repository: Repository,
  index: BlobIndex,
  listing: Promise<Array<{ id: string; size: number }>> = repository.listPacks(),
): Promise<{ packs: number; bytes: number; unreadable: string[] }> {
  const orphans = (await listing).filter((p) => index.packDataEnd(p.id) === undefined && !index.marked.has(p.id));
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
