import { DamageError } from '../errors.js';
import { ChunkKind, Keys, type PackedBlob } from '../repository/format.js';
import { BlobIndex, forEachConcurrently, type Repository, type SnapshotSummary, type StoredPack } from '../repository/repository.js';
import { loadChunkRecords } from './chunk-maps.js';
import { isFileManifest, type AnySnapshotManifest } from '../repository/snapshot.js';
import { TreeReader, fileSnapshotBlobs } from '../files/tree-reader.js';
import type { WorkerPool } from './worker-pool.js';

/** Every index file and what it names: prune reads them whole, because it rewrites some. */
export interface IndexFiles {
  /** Index file id → the packs it names. */
  files: Map<string, string[]>;
  /** Pack id → its blobs (from whichever index file named it first). */
  packs: Map<string, PackedBlob[]>;
}

/** Reads every index file; a damaged one stops prune (its packs would look unused). */
export async function readIndexFiles(repository: Repository): Promise<IndexFiles> {
  const files = new Map<string, string[]>();
  const packs = new Map<string, PackedBlob[]>();
  await forEachConcurrently(await repository.listIds('index'), 8, async (id) => {
    let indexed;
    try {
      indexed = await repository.readIndexFile(id);
    } catch (err) {
      if (repository.isNotFound(err)) return;
      if (err instanceof DamageError) throw new DamageError(`${err.message}; prune cannot tell what its packs hold: run \`cairn repair index\` first`, { cause: err });
      throw err;
    }
    files.set(id, indexed.map((p) => p.id.toString('hex')));
    for (const pack of indexed) if (!packs.has(pack.id.toString('hex'))) packs.set(pack.id.toString('hex'), pack.blobs);
  });
  return { files, packs };
}

/** A BlobIndex over index files already read, with prune marks applied as a reader would. */
export function indexOf(indexFiles: IndexFiles, marked: ReadonlySet<string>): BlobIndex {
  const index = new BlobIndex(marked, 'read');
  index.addPacks([...indexFiles.packs].map(([id, blobs]) => ({ id: Buffer.from(id, 'hex'), blobs })));
  return index;
}

/**
 * The blobs snapshots need: their chunk maps and every data chunk the maps name. Snapshots
 * already in `known` are not read again (snapshots never change). A snapshot that cannot be
 * read, or that needs a blob no index names, stops prune: deleting on a guess loses data.
 */
export async function addReferencedBlobs(repository: Repository, index: BlobIndex, pool: WorkerPool, snapshots: readonly SnapshotSummary[], known: Map<string, string[]>): Promise<void> {
  // One reader for all: file snapshots of one job share most of their trees, read once while cached.
  const reader = new TreeReader(repository, index, pool);
  await forEachConcurrently(
    snapshots.filter((s) => !known.has(s.id)),
    4,
    async ({ id, manifest }) => {
      const blobs = await snapshotBlobs(repository, index, pool, reader, manifest);
      const missing = [...blobs].find((blob) => !index.has(blob));
      if (missing) {
        throw new DamageError(`${Keys.snapshot(id)} needs blob ${missing.slice(0, 12)}, which no index names; prune stops rather than guess (run \`cairn check\`, then \`cairn repair index\` or \`cairn repair snapshots\`)`);
      }
      known.set(id, [...blobs]);
    },
  );
}

/** Every blob a snapshot needs: its chunk maps and their data chunks, or its trees and their content chunks. */
async function snapshotBlobs(repository: Repository, index: BlobIndex, pool: WorkerPool, reader: TreeReader, manifest: AnySnapshotManifest): Promise<Set<string>> {
  if (isFileManifest(manifest)) return fileSnapshotBlobs(reader, manifest);
  const blobs = new Set(manifest.chunkMaps);
  for (const record of await loadChunkRecords(repository, index, pool, manifest)) {
    if (record.kind === ChunkKind.data) blobs.add(record.id!.toString('hex'));
  }
  return blobs;
}

/** Every blob id any of `known`'s snapshots needs. */
export function referencedSet(known: Map<string, string[]>, snapshots: readonly SnapshotSummary[]): Set<string> {
  const referenced = new Set<string>();
  for (const { id } of snapshots) for (const blob of known.get(id) ?? []) referenced.add(blob);
  return referenced;
}

/** How much of each stored pack snapshots still need. */
export interface PackUsage {
  pack: StoredPack;
  /** Blobs of the pack that snapshots need and that are counted here (one copy per blob). */
  used: PackedBlob[];
  usedBytes: number;
  /** Bytes of the pack's blobs that nothing needs (headers and framing are neither). */
  unusedBytes: number;
  indexed: boolean;
}

/**
 * Counts each needed blob once, in the first pack that holds it and is not marked, so a
 * blob stored twice leaves the second copy unused.
 */
export function packUsage(stored: readonly StoredPack[], indexFiles: IndexFiles, referenced: ReadonlySet<string>, marked: ReadonlySet<string>): PackUsage[] {
  const usage = new Map(stored.map((pack) => [pack.id, { pack, used: [] as PackedBlob[], usedBytes: 0, unusedBytes: 0, indexed: indexFiles.packs.has(pack.id) }]));
  const counted = new Set<string>();
  for (const [packId, blobs] of indexFiles.packs) {
    const entry = usage.get(packId);
    if (!entry || marked.has(packId)) continue;
    for (const blob of blobs) {
      const id = blob.id.toString('hex');
      if (!referenced.has(id) || counted.has(id)) {
        entry.unusedBytes += blob.length;
        continue;
      }
      counted.add(id);
      entry.used.push(blob);
      entry.usedBytes += blob.length;
    }
  }
  const lost = [...referenced].find((id) => !counted.has(id) && !inMarkedStoredPack(id, indexFiles, marked, usage));
  if (lost) throw new DamageError(`Blob ${lost.slice(0, 12)} is needed by a snapshot but is in no stored pack; prune stops (run \`cairn check\`)`);
  return [...usage.values()];
}

function inMarkedStoredPack(blob: string, indexFiles: IndexFiles, marked: ReadonlySet<string>, usage: Map<string, unknown>): boolean {
  for (const pack of marked) {
    if (usage.has(pack) && indexFiles.packs.get(pack)?.some((b) => b.id.toString('hex') === blob)) return true;
  }
  return false;
}
