import { DamageError } from '../errors.js';
import { ChunkKind, Keys, decodeChunkMap, type ChunkRecord } from '../repository/format.js';
import type { BlobIndex, Repository } from '../repository/repository.js';
import type { SnapshotManifest } from '../repository/snapshot.js';
import type { WorkerPool } from './worker-pool.js';

/** Reads one blob's plaintext (decrypted, decompressed, verified against its id). */
export async function readBlob(repository: Repository, index: BlobIndex, pool: WorkerPool, id: string): Promise<Buffer> {
  const location = index.get(id);
  if (!location) throw new DamageError(`blob ${id.slice(0, 12)} is not in any index`);
  const sealed = await repository.readPack(location.pack, { offset: location.offset, length: location.length });
  try {
    return await pool.open(sealed, location.rawLength, id);
  } catch (err) {
    if (err instanceof DamageError) throw new DamageError(`pack ${Keys.pack(location.pack)} is damaged: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Every chunk record of a snapshot, in image order. */
export async function loadChunkRecords(
  repository: Repository,
  index: BlobIndex,
  pool: WorkerPool,
  manifest: SnapshotManifest,
): Promise<ChunkRecord[]> {
  const parts = await Promise.all(manifest.chunkMaps.map(async (id) => decodeVerified(id, await readBlob(repository, index, pool, id))));
  const records = parts.flat();
  if (records.length !== manifest.chunkCount) {
    throw new DamageError(`The snapshot's chunk maps hold ${records.length} chunks, expected ${manifest.chunkCount}`);
  }
  return records;
}

/** Data chunk ids of a snapshot that no index knows. */
export function missingBlobs(records: readonly ChunkRecord[], index: BlobIndex): string[] {
  const missing = new Set<string>();
  for (const record of records) {
    if (record.kind !== ChunkKind.data) continue;
    const id = record.id!.toString('hex');
    if (!index.has(id)) missing.add(id);
  }
  return [...missing];
}

/** A chunk map that matched its id decodes unless its writer erred; still damage, not a crash. */
function decodeVerified(id: string, plain: Buffer): ChunkRecord[] {
  try {
    return decodeChunkMap(plain);
  } catch (err) {
    throw new DamageError(`chunk map ${id.slice(0, 12)} is invalid: ${(err as Error).message}`, { cause: err });
  }
}
