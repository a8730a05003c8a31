import { open as openSealed, packIdOf } from '../crypto/crypto.js';
import { ChunkKind, Keys, decodePackHeader } from '../repository/format.js';
import { forEachConcurrently, packIdSchemeOf, type BlobIndex, type Repository } from '../repository/repository.js';
import { loadChunkRecords } from './chunk-maps.js';
import type { WorkerPool } from './worker-pool.js';
import type { Progress } from './progress.js';

export interface CheckProblem {
  /** The damaged object, e.g. `data/ab/ab12…` or `snapshots/…`. */
  object: string;
  message: string;
  /** Snapshots that can no longer be restored completely because of it. */
  snapshots: string[];
}

export interface CheckReport {
  snapshots: number;
  packs: number;
  blobs: number;
  readData: boolean;
  bytesRead: number;
  problems: CheckProblem[];
  /** Packs no index names: left by an interrupted backup; harmless, `prune` removes them. */
  unreferencedPacks: string[];
}

/**
 * Verifies the repository. Structure: every snapshot, index and chunk map decrypts, every
 * blob a snapshot needs is indexed, every indexed pack exists and is long enough. With
 * `readData`: every pack is read whole, its content hash checked against its name, its
 * header decrypted and compared to the index, and every blob decrypted, decompressed and
 * checked against its id.
 */
export async function runCheck(repository: Repository, index: BlobIndex, pool: WorkerPool, readData: boolean, progress: Progress): Promise<CheckReport> {
  const problems: CheckProblem[] = [];
  const { snapshotIds, packsOfSnapshot } = await checkSnapshots(repository, index, pool, problems);
  const affected = (pack: string) => [...packsOfSnapshot].filter(([, packs]) => packs.has(pack)).map(([id]) => id).sort();

  const stored = new Map((await repository.listPacks()).map((pack) => [pack.id, pack.size]));
  const indexed = new Set(index.packIds);
  for (const pack of indexed) {
    const size = stored.get(pack);
    if (size === undefined) problems.push({ object: Keys.pack(pack), message: 'pack is missing', snapshots: affected(pack) });
    else if (size < index.packDataEnd(pack)! + 4) problems.push({ object: Keys.pack(pack), message: `pack is truncated (${size} bytes)`, snapshots: affected(pack) });
  }
  const readable = [...stored].filter(([id]) => indexed.has(id));
  const bytesRead = readData ? await readEveryPack(repository, index, pool, readable, progress, (pack, message) => problems.push({ object: Keys.pack(pack), message, snapshots: affected(pack) })) : 0;

  return {
    snapshots: snapshotIds.length,
    packs: indexed.size,
    blobs: index.blobCount,
    readData,
    bytesRead,
    problems: problems.sort((a, b) => a.object.localeCompare(b.object)),
    unreferencedPacks: [...stored.keys()].filter((id) => !indexed.has(id)).sort(),
  };
}

/** Decodes every snapshot and its chunk maps; returns the packs each one needs. */
async function checkSnapshots(repository: Repository, index: BlobIndex, pool: WorkerPool, problems: CheckProblem[]) {
  const packsOfSnapshot = new Map<string, Set<string>>();
  const snapshotIds = await repository.listIds('snapshots');
  await forEachConcurrently(snapshotIds, 4, async (id) => {
    const packs = new Set<string>();
    packsOfSnapshot.set(id, packs);
    try {
      const manifest = await repository.loadSnapshot(id);
      for (const mapId of manifest.chunkMaps) {
        const location = index.get(mapId);
        if (location) packs.add(location.pack);
      }
      let missing = 0;
      for (const record of await loadChunkRecords(repository, index, pool, manifest)) {
        if (record.kind !== ChunkKind.data) continue;
        const location = index.get(record.id!.toString('hex'));
        if (location) packs.add(location.pack);
        else missing++;
      }
      if (missing > 0) problems.push({ object: Keys.snapshot(id), message: `${missing} chunk(s) are in no index`, snapshots: [id] });
    } catch (err) {
      problems.push({ object: Keys.snapshot(id), message: (err as Error).message, snapshots: [id] });
    }
  });
  return { snapshotIds, packsOfSnapshot };
}

/** Reads and verifies every pack in `packs` ([id, size]); returns the bytes read. */
async function readEveryPack(
  repository: Repository,
  index: BlobIndex,
  pool: WorkerPool,
  packs: Array<[string, number]>,
  progress: Progress,
  report: (pack: string, problem: string) => void,
): Promise<number> {
  let bytesRead = 0;
  progress.start('check', packs.reduce((n, [, size]) => n + size, 0));
  await forEachConcurrently(packs, 2, async ([pack, size]) => {
    const problem = await verifyPack(repository, index, pool, pack);
    bytesRead += size;
    progress.advance(size);
    if (problem) report(pack, problem);
  });
  progress.done();
  return bytesRead;
}

/** Returns what is wrong with a pack, or undefined when every byte checks out. */
async function verifyPack(repository: Repository, index: BlobIndex, pool: WorkerPool, pack: string): Promise<string | undefined> {
  const bytes = await repository.readPack(pack);
  if (packIdOf(packIdSchemeOf(repository.config), bytes).toString('hex') !== pack) return 'content does not match its name (bytes were changed)';
  if (bytes.length < 4) return 'pack is too short';
  const headerLength = bytes.readUInt32LE(bytes.length - 4);
  if (headerLength + 4 > bytes.length) return 'pack header length is out of range';
  let blobs;
  try {
    blobs = decodePackHeader(openSealed(repository.masterKey.encryption, bytes.subarray(bytes.length - 4 - headerLength, bytes.length - 4)));
  } catch (err) {
    return `pack header is unreadable: ${(err as Error).message}`;
  }
  for (const blob of blobs) {
    const id = blob.id.toString('hex');
    const location = index.get(id);
    if (location && location.pack === pack && (location.offset !== blob.offset || location.length !== blob.length)) {
      return `blob ${id.slice(0, 12)} is at a different place than the index says`;
    }
    try {
      await pool.open(bytes.subarray(blob.offset, blob.offset + blob.length), blob.rawLength, id);
    } catch (err) {
      return (err as Error).message;
    }
  }
  return undefined;
}
