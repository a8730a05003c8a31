import { DamageError } from '../errors.js';
import type { ByteRange } from '../target.js';
import { BlobType, CHUNKS_PER_MAP, Keys, ZERO_CHUNK, encodeChunkMap, encodeIndex, type ChunkRecord, type IndexedPack } from '../repository/format.js';
import { forEachConcurrently, type BlobIndex, type BlobLocation, type DamagedObject, type Repository, type SnapshotSummary } from '../repository/repository.js';
import { readPackHeader } from '../repository/pack-header.js';
import { PACKS_PER_INDEX_FILE } from '../repository/orphan-packs.js';
import { isFileManifest, type FileSnapshotManifest, type SnapshotManifest } from '../repository/snapshot.js';
import { TreeReader } from '../files/tree-reader.js';
import { displayName, encodeTree, type TreeEntry } from '../files/tree.js';
import { loadChunkRecords } from './chunk-maps.js';
import { LostBlobs, NOT_INDEXED, blobsByPack, chunkRanges, findLostPacks, lostChunks, mergeRanges, rangeBytes, verifyBlobs, type LostReason } from './damage.js';
import { FileLossWalker } from './file-damage.js';
import { Packer } from './packer.js';
import type { Progress } from './progress.js';
import type { WorkerPool } from './worker-pool.js';


export interface RepairIndexReport {
  /** Packs now indexed, and the blobs they hold. */
  packs: number;
  blobs: number;
  indexFilesWritten: number;
  indexFilesRemoved: number;
  /** Packs the old index did not name (left by interrupted backups, or named by a lost index file), now indexed. */
  packsAdded: number;
  /** Packs the old index named that are gone: the blobs they held are lost (`repair snapshots` handles the snapshots that need them). */
  packsMissing: string[];
  /** Packs whose header cannot be read: not indexed; their blobs count as lost. */
  unreadablePacks: DamagedObject[];
}

/**
 * Rebuilds the index from the packs: reads every pack's header (ranged reads of its tail),
 * writes new index files naming every pack whose header opens, then removes the old index
 * files. New before old, so a crash leaves both (duplicates, harmless), never a gap.
 */
export async function runRepairIndex(repository: Repository, progress: Progress): Promise<RepairIndexReport> {
  const oldFiles = await repository.listIds('index');
  const old = await repository.loadIndex();
  const packs = await repository.listPacks();
  const report: RepairIndexReport = { packs: 0, blobs: 0, indexFilesWritten: 0, indexFilesRemoved: 0, packsAdded: 0, packsMissing: [], unreadablePacks: [] };
  const written = new Set<string>();
  let batch: IndexedPack[] = [];
  const flush = async () => {
    const packsOfFile = batch;
    batch = [];
    if (packsOfFile.length === 0) return;
    const { id } = await repository.putSealed('index', encodeIndex(packsOfFile));
    written.add(id);
    report.indexFilesWritten++;
  };

  const known = new Set(old.packIds);
  progress.start('repair index', packs.reduce((n, pack) => n + pack.size, 0));
  await forEachConcurrently(packs, 8, async (pack) => {
    try {
      const blobs = await readPackHeader(repository, pack);
      if (blobs.length > 0) {
        batch.push({ id: Buffer.from(pack.id, 'hex'), blobs });
        report.packs++;
        report.blobs += blobs.length;
        if (!known.has(pack.id)) report.packsAdded++;
        if (batch.length >= PACKS_PER_INDEX_FILE) await flush();
      }
    } catch (err) {
      if (!(err instanceof DamageError)) throw err;
      report.unreadablePacks.push({ object: Keys.pack(pack.id), message: err.message });
    }
    progress.advance(pack.size);
  });
  await flush();
  progress.done();

  const stored = new Set(packs.map((pack) => pack.id));
  report.packsMissing = old.packIds.filter((id) => !stored.has(id)).map(Keys.pack).sort();
  // Every pack is in a new, durable index file: the old files can go.
  for (const id of oldFiles) {
    if (written.has(id)) continue;
    await repository.removeSealed('index', id);
    report.indexFilesRemoved++;
  }
  report.unreadablePacks.sort((a, b) => a.object.localeCompare(b.object));
  return report;
}

/** A snapshot of a volume image: what `repair snapshots` rewrites. */
type VolumeSummary = SnapshotSummary & { manifest: SnapshotManifest };
type FileSummary = SnapshotSummary & { manifest: FileSnapshotManifest };

/** A snapshot to replace, and the chunks it lost. */
interface RepairPlan {
  summary: VolumeSummary;
  chunks: number[];
}

export interface RepairSnapshotsInput {
  repository: Repository;
  pool: WorkerPool;
  index: BlobIndex;
  progress: Progress;
  /** Also read every pack and count blobs that fail verification as lost. */
  readData: boolean;
  /** Say what would be done, change nothing. */
  dryRun: boolean;
  /** Remove snapshots that cannot be repaired (unreadable manifest or chunk maps) instead of only naming them. */
  forget: boolean;
}

export interface RepairedSnapshot {
  snapshot: string;
  /** The replacement's id (absent in a dry run). */
  replacement?: string;
  /** Image ranges lost by this repair (zeros from now on), merged; empty for a file snapshot. */
  lost: ByteRange[];
  /** Bytes lost: of the image, or of the files' content (a lost folder listing counts nothing here). */
  lostBytes: number;
  /** File snapshot: paths lost by this repair (files with lost content, folders ending in `/` whose listing is lost), the first MAX_LOST_PATHS. */
  lostPaths?: string[];
  /** File snapshot: how many paths this repair lost in all. */
  lostPathCount?: number;
}

export interface RepairSnapshotsReport {
  snapshots: number;
  dryRun: boolean;
  readData: boolean;
  repaired: RepairedSnapshot[];
  /** Snapshots nothing can be saved of; `removed` with `forget` (not in a dry run). */
  unrepairable: Array<DamagedObject & { removed: boolean }>;
}

/**
 * Replaces every snapshot that needs lost blobs (no index names them, their pack is gone,
 * or, with `readData`, they fail verification) with one whose lost chunks are zero chunks
 * and whose manifest lists the lost ranges (`lost`) and the snapshot it replaces
 * (`repairedFrom`); then removes the old one. New chunk maps are packed and indexed before
 * the new snapshots are written, and those before the old ones are removed.
 *
 * Refuses while the index itself is in doubt (a damaged index file, an indexed pack that is
 * missing or truncated, or packs no index names while blobs are unindexed): blobs only seem
 * lost then, and `cairn repair index` must run first.
 */
export async function runRepairSnapshots(input: RepairSnapshotsInput): Promise<RepairSnapshotsReport> {
  const { repository, index } = input;
  const damagedManifests: DamagedObject[] = [];
  const summaries = await repository.listSnapshots(damagedManifests);
  const snapshots = summaries.filter((s): s is VolumeSummary => !isFileManifest(s.manifest));
  const fileSnapshots = summaries.filter((s): s is FileSummary => isFileManifest(s.manifest));
  const stored = new Map((await repository.listPacks()).map((pack) => [pack.id, pack.size]));
  const byPack = blobsByPack(index);
  const lost = new LostBlobs();
  refuseDoubtfulIndex(index, findLostPacks(index, stored, byPack, lost));
  if (input.readData) await verifyEveryPack(input, stored, byPack, lost);

  const report: RepairSnapshotsReport = { snapshots: summaries.length + damagedManifests.length, dryRun: input.dryRun, readData: input.readData, repaired: [], unrepairable: [] };
  const unrepairable = [...damagedManifests];
  // Only the lost chunks' numbers are kept: the chunk maps are read again when the replacement is written.
  const plans: RepairPlan[] = [];
  const unindexedPacks = [...stored.keys()].some((id) => index.packDataEnd(id) === undefined);
  await forEachConcurrently(snapshots, 4, async (summary) => {
    let records: ChunkRecord[];
    try {
      records = await loadChunkRecords(repository, index, input.pool, summary.manifest);
    } catch (err) {
      if (!(err instanceof DamageError)) throw err;
      unrepairable.push({ object: Keys.snapshot(summary.id), message: `its chunk maps cannot be read (${err.message}); nothing of it can be restored` });
      return;
    }
    const chunks = lostChunks(records, (id) => lost.reasonFor(id, index) !== undefined);
    if (chunks.length === 0) return;
    if (unindexedPacks && chunks.some((i) => !index.has(records[i]!.id!.toString('hex')))) {
      throw new DamageError(`Snapshot ${summary.id.slice(0, 12)} needs blobs no index names, and some packs are in no index: run \`cairn repair index\` first, it may find them there`);
    }
    plans.push({ summary, chunks });
  });
  plans.sort((a, b) => a.summary.manifest.time.localeCompare(b.summary.manifest.time) || a.summary.id.localeCompare(b.summary.id));

  const packer = input.dryRun ? undefined : new Packer(repository, input.pool.memory.uploadsInFlight(repository.concurrentPuts));
  let volumeManifests: SnapshotManifest[] = [];
  let fileRepairs: FileRepair[];
  try {
    if (packer) volumeManifests = await rewriteVolumes(input, plans, packer);
    fileRepairs = await repairFileSnapshots(input, fileSnapshots, lost, { packer, unindexedPacks, unrepairable });
    await packer?.flush();
  } catch (err) {
    await packer?.abandon();
    throw err;
  }
  const replacements: string[] = [];
  for (const manifest of volumeManifests) replacements.push((await repository.saveSnapshot(manifest)).id);
  for (const [k, { summary, chunks }] of plans.entries()) {
    const ranges = chunkRanges(chunks, summary.manifest.chunkSize, summary.manifest.size);
    report.repaired.push({ snapshot: summary.id, ...(replacements[k] && { replacement: replacements[k] }), lost: ranges, lostBytes: rangeBytes(ranges) });
  }
  for (const repair of fileRepairs) {
    const replacement = repair.manifest && (await repository.saveSnapshot(repair.manifest)).id;
    report.repaired.push({ snapshot: repair.summary.id, ...(replacement && { replacement }), lost: [], lostBytes: repair.lostBytes, lostPaths: repair.lostPaths, lostPathCount: repair.lostPathCount });
  }
  // The replacements are durable: the snapshots they replace can go.
  if (!input.dryRun) for (const { summary } of [...plans, ...fileRepairs]) await repository.removeSealed('snapshots', summary.id);

  for (const object of unrepairable.sort((a, b) => a.object.localeCompare(b.object))) {
    const removed = input.forget && !input.dryRun;
    if (removed) await repository.removeSealed('snapshots', object.object.slice(object.object.lastIndexOf('/') + 1));
    report.unrepairable.push({ ...object, removed });
  }
  return report;
}

function refuseDoubtfulIndex(index: BlobIndex, packProblems: ReadonlyMap<string, string>): void {
  const doubts = [...index.unreadable.map((d) => `${d.object} is damaged`), ...[...packProblems].map(([object, message]) => `${object}: ${message}`)];
  if (doubts.length === 0) return;
  const shown = doubts.slice(0, 3).join('; ') + (doubts.length > 3 ? `; and ${doubts.length - 3} more` : '');
  throw new DamageError(`The index does not match the packs (${shown}): run \`cairn repair index\` first, then \`cairn repair snapshots\``);
}

/** Reads every indexed pack and adds the blobs that fail verification to `lost`. */
async function verifyEveryPack(input: RepairSnapshotsInput, stored: ReadonlyMap<string, number>, byPack: ReadonlyMap<string, Array<[string, BlobLocation]>>, lost: LostBlobs): Promise<void> {
  const packs = [...byPack.keys()].filter((id) => stored.has(id));
  input.progress.start('verify', packs.reduce((n, id) => n + stored.get(id)!, 0));
  await forEachConcurrently(packs, 2, async (pack) => {
    const bytes = await input.repository.readPack(pack);
    for (const [id, message] of await verifyBlobs(input.pool, bytes, byPack.get(pack)!)) lost.add(id, { object: Keys.pack(pack), message });
    input.progress.advance(stored.get(pack)!);
  });
  input.progress.done();
}

/** Packs the new chunk maps (the caller flushes `packer`); returns the replacement manifests in order. */
async function rewriteVolumes(input: RepairSnapshotsInput, plans: readonly RepairPlan[], packer: Packer): Promise<SnapshotManifest[]> {
  const { repository, pool, index } = input;
  const added = new Set<string>();
  const manifests: SnapshotManifest[] = [];
  for (const { summary, chunks } of plans) {
    const repaired = await loadChunkRecords(repository, index, pool, summary.manifest);
    for (const i of chunks) repaired[i] = ZERO_CHUNK;
    const chunkMaps: string[] = [];
    for (let first = 0; first < repaired.length; first += CHUNKS_PER_MAP) {
      const plain = encodeChunkMap(repaired.slice(first, first + CHUNKS_PER_MAP));
      const { id, sealed } = await pool.sealBytes(plain);
      const hex = id.toString('hex');
      if (!index.has(hex) && !added.has(hex)) {
        added.add(hex);
        await packer.add(BlobType.chunkMap, id, sealed, plain.length);
      }
      chunkMaps.push(hex);
    }
    const { manifest } = summary;
    const lost = mergeRanges([...(manifest.lost ?? []), ...chunkRanges(chunks, manifest.chunkSize, manifest.size)]);
    manifests.push({ ...manifest, chunkMaps, lost, repairedFrom: summary.id });
  }
  return manifests;
}

/** How many lost paths a repair report and a repaired manifest list (the rest are counted). */
export const MAX_LOST_PATHS = 1000;

/** A file snapshot that lost data: its replacement (absent in a dry run) and what it lost. */
interface FileRepair {
  summary: FileSummary;
  manifest?: FileSnapshotManifest;
  lostPaths: string[];
  lostPathCount: number;
  lostBytes: number;
}

interface FileRepairContext {
  /** Where new trees go; absent in a dry run. */
  packer: Packer | undefined;
  unindexedPacks: boolean;
  unrepairable: DamagedObject[];
}

/**
 * Walks every file snapshot's trees and, for each that lost content chunks or trees, writes
 * new trees: a file keeps its entry with the lost chunks taken out of `content` (they restore
 * as holes) and an `error` saying so; a folder whose tree is lost keeps its entry, with no
 * subtree and an `error`. Every folder above a changed one gets a new tree, up to a new root.
 * A snapshot whose root tree is lost cannot be repaired.
 */
async function repairFileSnapshots(input: RepairSnapshotsInput, snapshots: readonly FileSummary[], lost: LostBlobs, context: FileRepairContext): Promise<FileRepair[]> {
  const { repository, pool, index } = input;
  const walker = new FileLossWalker(new TreeReader(repository, index, pool), index, lost);
  const added = new Set<string>();
  const storeTree = async (entries: TreeEntry[]): Promise<string> => {
    const plain = encodeTree(entries);
    const { id, sealed } = await pool.sealBytes(plain);
    const hex = id.toString('hex');
    if (context.packer && !index.has(hex) && !added.has(hex)) {
      added.add(hex);
      await context.packer.add(BlobType.tree, id, sealed, plain.length);
    }
    return hex;
  };
  const repairs: FileRepair[] = [];
  // One at a time: they share the packer, and trees shared between them are rewritten once.
  for (const summary of [...snapshots].sort((a, b) => a.manifest.time.localeCompare(b.manifest.time) || a.id.localeCompare(b.id))) {
    const rootLoss = await walker.treeLoss(summary.manifest.tree);
    if (rootLoss) {
      refuseIfUnindexed(summary.id, rootLoss.object === NOT_INDEXED, context.unindexedPacks);
      context.unrepairable.push({ object: Keys.snapshot(summary.id), message: `its root tree cannot be read (${rootLoss.object === NOT_INDEXED ? rootLoss.message : `${rootLoss.object}: ${rootLoss.message}`}); nothing of it can be restored` });
      continue;
    }
    const repair = await repairFileSnapshot(walker, summary, storeTree, context);
    if (repair) repairs.push(repair);
  }
  return repairs;
}

async function repairFileSnapshot(walker: FileLossWalker, summary: FileSummary, storeTree: (entries: TreeEntry[]) => Promise<string>, context: FileRepairContext): Promise<FileRepair | undefined> {
  const found = { lostPaths: [] as string[], lostPathCount: 0, lostBytes: 0, unindexed: false };
  const note = (path: string, reasons: LostReason[]) => {
    found.lostPathCount++;
    if (found.lostPaths.length < MAX_LOST_PATHS) found.lostPaths.push(path);
    found.unindexed ||= reasons.some((reason) => reason.object === NOT_INDEXED);
  };
  const rootEntries = await walker.walk(summary.manifest.tree, Buffer.from('/'), {
    storeTree,
    lostTree: (path, _tree, reason) => note(`${displayName(path)}/`, [reason]),
    lostContent: (path, _entry, chunks) => {
      found.lostBytes += chunks.reduce((n, [chunk]) => n + chunk.length, 0);
      note(displayName(path), chunks.map(([, reason]) => reason));
    },
  });
  if (!rootEntries) return undefined;
  refuseIfUnindexed(summary.id, found.unindexed, context.unindexedPacks);
  const { lostPaths, lostPathCount, lostBytes } = found;
  if (!context.packer) return { summary, lostPaths, lostPathCount, lostBytes };
  const { manifest } = summary;
  // An earlier repair's losses stay listed first.
  const allLost = [...(manifest.lostPaths ?? []), ...lostPaths];
  const total = (manifest.lostPathCount ?? manifest.lostPaths?.length ?? 0) + lostPathCount;
  const { lostPathCount: _earlier, ...rest } = manifest;
  const replacement: FileSnapshotManifest = {
    ...rest,
    tree: await storeTree(rootEntries),
    lostPaths: allLost.slice(0, MAX_LOST_PATHS),
    ...(total > Math.min(allLost.length, MAX_LOST_PATHS) && { lostPathCount: total }),
    repairedFrom: summary.id,
  };
  return { summary, manifest: replacement, lostPaths, lostPathCount, lostBytes };
}

/** Blobs that only seem lost, because their packs are in no index: `repair index` must run first. */
function refuseIfUnindexed(snapshot: string, unindexed: boolean, unindexedPacks: boolean): void {
  if (unindexedPacks && unindexed) {
    throw new DamageError(`Snapshot ${snapshot.slice(0, 12)} needs blobs no index names, and some packs are in no index: run \`cairn repair index\` first, it may find them there`);
  }
}
