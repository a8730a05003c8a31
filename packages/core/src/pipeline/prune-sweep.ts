import { encodeIndex } from '../repository/format.js';
import { forEachConcurrently, type Repository, type StoredPack } from '../repository/repository.js';
import type { StoredMark } from '../repository/marks.js';
import { PACKS_PER_INDEX_FILE } from '../repository/orphan-packs.js';
import { addReferencedBlobs, indexOf, readIndexFiles, referencedSet, type IndexFiles } from './prune-usage.js';
import type { WorkerPool } from './worker-pool.js';

export interface SweepResult {
  /** Marked packs deleted, and their bytes. */
  deletedPacks: number;
  deletedBytes: number;
  /** Marked packs kept after all, because a snapshot written meanwhile needs them. */
  keptPacks: number;
  indexFilesBefore: number;
  indexFilesAfter: number;
}

/** Above this many index files, small ones are merged while prune rewrites the index. */
export const MERGE_ABOVE_FILES = 16;
const SMALL_FILE_PACKS = 64;

/**
 * Prune's second phase, for marks that no operation which started before them can still
 * use: reads the snapshots as they are now (backups that finished since the mark count),
 * keeps every marked pack that holds a needed blob found nowhere else, rewrites the index
 * files that name the other marked packs (new files first, then the old ones go), deletes
 * those packs, and last the marks. Killed at any point, it leaves an index that names only
 * existing packs, and marks that the next prune finishes.
 */
export async function sweepMarks(repository: Repository, pool: WorkerPool, marks: readonly StoredMark[], allMarked: ReadonlySet<string>, known: Map<string, string[]>): Promise<SweepResult> {
  const sweeping = new Set(marks.flatMap((m) => m.mark.packs));
  const indexFiles = await readIndexFiles(repository);
  const snapshots = await repository.listSnapshots();
  await addReferencedBlobs(repository, indexOf(indexFiles, allMarked), pool, snapshots, known);
  const keep = packsStillNeeded(sweeping, indexFiles, referencedSet(known, snapshots));
  const drop = new Set([...sweeping].filter((pack) => !keep.has(pack)));
  const indexFilesBefore = indexFiles.files.size;
  const indexFilesAfter = await rewriteIndexFiles(repository, indexFiles, drop);
  const sizes = new Map((await repository.listPacks()).map((p) => [p.id, p.size]));
  const deleted: StoredPack[] = [...drop].filter((id) => sizes.has(id)).map((id) => ({ id, size: sizes.get(id)! }));
  await forEachConcurrently(deleted, 8, (pack) => repository.removePack(pack.id));
  for (const { id } of marks) await repository.removeSealed('marks', id);
  return { deletedPacks: deleted.length, deletedBytes: deleted.reduce((n, p) => n + p.size, 0), keptPacks: keep.size, indexFilesBefore, indexFilesAfter };
}

/** Marked packs holding a needed blob that no unswept pack holds: every such copy stays. */
function packsStillNeeded(sweeping: ReadonlySet<string>, indexFiles: IndexFiles, referenced: ReadonlySet<string>): Set<string> {
  const elsewhere = new Set<string>();
  for (const [pack, blobs] of indexFiles.packs) {
    if (!sweeping.has(pack)) for (const blob of blobs) elsewhere.add(blob.id.toString('hex'));
  }
  const keep = new Set<string>();
  for (const pack of sweeping) {
    const blobs = indexFiles.packs.get(pack) ?? [];
    if (blobs.some((blob) => referenced.has(blob.id.toString('hex')) && !elsewhere.has(blob.id.toString('hex')))) keep.add(pack);
  }
  return keep;
}

/**
 * Replaces every index file that names a dropped pack (and, when there are many, the small
 * ones, so that concurrent writers' files merge) by new files naming the rest. The new
 * files are written before the old ones go. Returns the number of index files afterwards.
 */
async function rewriteIndexFiles(repository: Repository, indexFiles: IndexFiles, drop: ReadonlySet<string>): Promise<number> {
  const merge = indexFiles.files.size > MERGE_ABOVE_FILES;
  const replaced = [...indexFiles.files].filter(([, packs]) => packs.some((p) => drop.has(p)) || (merge && packs.length < SMALL_FILE_PACKS)).map(([id]) => id);
  if (replaced.length === 0) return indexFiles.files.size;
  const remaining = [...new Set(replaced.flatMap((id) => indexFiles.files.get(id)!))].filter((pack) => !drop.has(pack));
  let written = 0;
  for (let i = 0; i < remaining.length; i += PACKS_PER_INDEX_FILE) {
    const batch = remaining.slice(i, i + PACKS_PER_INDEX_FILE).map((pack) => ({ id: Buffer.from(pack, 'hex'), blobs: indexFiles.packs.get(pack)! }));
    await repository.putSealed('index', encodeIndex(batch));
    written++;
  }
  await forEachConcurrently(replaced, 8, (id) => repository.removeSealed('index', id));
  return indexFiles.files.size - replaced.length + written;
}
