import { packIdOf } from '../crypto/crypto.js';
import { DamageError, UsageError } from '../errors.js';
import type { ByteRange } from '../target.js';
import { ChunkKind, Keys } from '../repository/format.js';
import { forEachConcurrently, packIdSchemeOf, type BlobIndex, type BlobLocation, type Repository, type RepositoryConfig } from '../repository/repository.js';
import { packHeaderOf } from '../repository/pack-header.js';
import { isFileManifest, type AnySnapshotManifest, type FileSnapshotManifest, type SnapshotManifest } from '../repository/snapshot.js';
import { TreeReader } from '../files/tree-reader.js';
import { displayName } from '../files/tree.js';
import { loadChunkRecords } from './chunk-maps.js';
import { LostBlobs, NOT_INDEXED, aboutObject, blobsByPack, chunkRange, findLostPacks, mergeRanges, verifyBlobs, type LostReason } from './damage.js';
import { FileLossWalker, byObject } from './file-damage.js';
import { SEALED_CHUNK_OVERHEAD, SlotPool, type WorkerPool } from './worker-pool.js';
import type { Progress } from './progress.js';
import { mainThreadGarbage } from './young-garbage.js';

export interface CheckProblem {
  /** The damaged object, e.g. `data/ab/ab12…`, `index/…` or `snapshots/…`. */
  object: string;
  message: string;
  /** Snapshots that can no longer be restored completely because of it. */
  snapshots: string[];
  /** Per affected volume snapshot, the image byte ranges it loses, merged (absent for a snapshot whose manifest is unreadable). */
  ranges: Record<string, ByteRange[]>;
  /**
   * Per affected file snapshot, the paths it loses: files whose content chunks are lost, and
   * folders whose tree is lost (their whole content); the first few and how many in all.
   * `/` stands for the whole snapshot (its root tree is lost). Absent when no file snapshot
   * is affected, so a volume-only report is what it always was.
   */
  paths?: Record<string, LostPaths>;
}

/** Paths a file snapshot loses through one damaged object: the first MAX_SHOWN_PATHS in walk order, and the count. */
export interface LostPaths {
  paths: string[];
  count: number;
}

/** How many lost paths a problem lists per snapshot (the rest are counted). */
export const MAX_SHOWN_PATHS = 10;

/** Which packs `--read-data-subset` reads: bucket `n` of `m` (by the first byte of the pack id), or a random `percent` of the pack bytes. */
export type ReadDataSubset = { bucket: number; of: number } | { percent: number };

export interface CheckReport {
  snapshots: number;
  packs: number;
  blobs: number;
  readData: boolean;
  /** The subset read, as given (`2/5`, `10%`), with --read-data-subset. */
  readDataSubset?: string;
  /** Packs read and verified (with readData). */
  packsRead: number;
  bytesRead: number;
  problems: CheckProblem[];
  /** Packs no index names: left by an interrupted backup; harmless, `prune` removes them. */
  unreferencedPacks: string[];
}

export interface CheckInput {
  repository: Repository;
  pool: WorkerPool;
  /**
   * Loads the index (and readies the pool's keys); called once the snapshots were read. A
   * backup writes its snapshot after its packs and index, so an index loaded after the
   * snapshots were listed covers every one of them, even while a backup finishes meanwhile.
   */
  loadIndex(): Promise<BlobIndex>;
  /** Read and verify every pack (or the subset), not only the structure. */
  readData: boolean;
  subset?: ReadDataSubset;
  progress: Progress;
  /** Picks the packs of a percentage subset; default Math.random. */
  random?: () => number;
}

/** `n/m` (1 ≤ n ≤ m) or `x%` (0 < x ≤ 100); UsageError otherwise. */
export function parseReadDataSubset(text: string): ReadDataSubset {
  const bucket = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (bucket) {
    const [n, m] = [Number(bucket[1]), Number(bucket[2])];
    if (n >= 1 && m >= 1 && n <= m && m <= 256) return { bucket: n, of: m };
  }
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(text.trim());
  if (percent && Number(percent[1]) > 0 && Number(percent[1]) <= 100) return { percent: Number(percent[1]) };
  throw new UsageError(`--read-data-subset must be n/m (1 ≤ n ≤ m ≤ 256: the packs whose id's first byte mod m is n-1) or a percentage such as 10%, not "${text}"`);
}

export function describeSubset(subset: ReadDataSubset): string {
  return 'bucket' in subset ? `${subset.bucket}/${subset.of}` : `${subset.percent}%`;
}

/**
 * Verifies the repository. Structure: every snapshot, index and chunk map decrypts, every
 * blob a snapshot needs is indexed, every indexed pack exists and is long enough. With
 * `readData`: every pack (or the subset) is read whole, its content hash checked against its
 * name, its header decrypted and compared to the index, and every indexed blob decrypted,
 * decompressed and checked against its id. Each problem names the damaged object, the
 * snapshots it costs data and, per snapshot, the image ranges lost.
 */
export async function runCheck(input: CheckInput): Promise<CheckReport> {
  const { repository } = input;
  const problems = new Problems();
  const listed = await repository.listIds('snapshots');
  const manifests = await readManifests(repository, listed, problems);
  const index = await input.loadIndex();
  for (const { object, message } of index.unreadable) {
    problems.note(object, `${aboutObject(object, message)}; the blobs only it named are unknown (\`cairn repair index\` rebuilds the index from the packs)`);
  }

  const stored = new Map((await repository.listPacks()).map((pack) => [pack.id, pack.size]));
  const blobsOfPack = blobsByPack(index);
  const lost = new LostBlobs();
  for (const [object, message] of findLostPacks(index, stored, blobsOfPack, lost)) problems.note(object, message);

  let bytesRead = 0;
  let packsRead = 0;
  if (input.readData) {
    const readable = [...stored].filter(([id, size]) => blobsOfPack.has(id) && size >= index.packDataEnd(id)! + 4);
    const chosen = selectPacks(readable, input.subset, input.random ?? Math.random);
    input.progress.start('check', chosen.reduce((n, [, size]) => n + size, 0));
    const packsAtOnce = input.pool.memory.packsChecked;
    const packBuffers = new PackBuffers(packsAtOnce, repository.config);
    await forEachConcurrently(chosen, packsAtOnce, async ([pack, size]) => {
      await packBuffers.with(size, (buffer) => verifyPack(input, pack, buffer, blobsOfPack.get(pack) ?? [], lost, problems));
      bytesRead += size;
      packsRead++;
      input.progress.advance(size);
    });
    input.progress.done();
  }

  await attributeLosses(input, index, manifests, lost, problems);
  await forgetVanished(repository, manifests, problems);

  const indexed = new Set(index.packIds);
  return {
    snapshots: listed.length,
    packs: indexed.size,
    blobs: index.blobCount,
    readData: input.readData,
    ...(input.readData && input.subset && { readDataSubset: describeSubset(input.subset) }),
    packsRead,
    bytesRead,
    problems: problems.list(manifests),
    unreferencedPacks: [...stored.keys()].filter((id) => !indexed.has(id)).sort(),
  };
}

/** Each problem: its messages, and per snapshot the chunks it loses (or `whole`). */
/** What one snapshot loses through one object: volume chunks by number, file snapshot paths, or everything. */
type Loss = Set<number> | LostPaths | 'whole';

class Problems {
  readonly #found = new Map<string, { messages: string[]; affected: Map<string, Loss>; users: Set<string> }>();

  #entry(object: string) {
    let entry = this.#found.get(object);
    if (!entry) this.#found.set(object, (entry = { messages: [], affected: new Map(), users: new Set() }));
    return entry;
  }

  /** Records that a snapshot needs blobs of the damaged pack `object` (lost or not). */
  use(object: string, snapshot: string): void {
    this.#found.get(object)?.users.add(snapshot);
  }

  note(object: string, message: string): void {
    const { messages } = this.#entry(object);
    if (!messages.includes(message)) messages.push(message);
  }

  affect(object: string, snapshot: string, chunk: number | 'whole'): void {
    const { affected } = this.#entry(object);
    const chunks = affected.get(snapshot);
    if (chunk === 'whole' || chunks === 'whole') affected.set(snapshot, 'whole');
    else if (chunks instanceof Set) chunks.add(chunk);
    else affected.set(snapshot, new Set([chunk]));
  }

  /** A file snapshot loses `path` (a file's content or a folder's listing) through `object`. */
  affectPath(object: string, snapshot: string, path: string): void {
    const { affected } = this.#entry(object);
    let paths = affected.get(snapshot);
    if (paths === 'whole') return;
    if (paths === undefined || paths instanceof Set) affected.set(snapshot, (paths = { paths: [], count: 0 }));
    paths.count++;
    if (paths.paths.length < MAX_SHOWN_PATHS) paths.paths.push(path);
  }

  has(object: string): boolean {
    return this.#found.has(object);
  }

  /** Forgets a snapshot that is gone: its own problem, and its share of the others. */
  forgetSnapshot(id: string): void {
    this.#found.delete(Keys.snapshot(id));
    for (const { affected, users } of this.#found.values()) {
      affected.delete(id);
      users.delete(id);
    }
  }

  /** Drops a problem altogether. */
  drop(object: string): void {
    this.#found.delete(object);
  }

  objects(): string[] {
    return [...this.#found.keys()];
  }

  list(manifests: ReadonlyMap<string, AnySnapshotManifest>): CheckProblem[] {
    return [...this.#found]
      .filter(([, { messages }]) => messages.length > 0)
      .map(([object, { messages, affected, users }]) => {
        const snapshots = [...affected.keys()].sort();
        // A pack damaged only where no snapshot reads (its header, a blob none needs): say who depends on it still.
        const unharmed = [...users].filter((id) => !affected.has(id)).sort();
        if (snapshots.length === 0 && unharmed.length > 0) {
          messages = [...messages, `used by snapshot(s) ${unharmed.map((id) => id.slice(0, 12)).join(', ')}, which lose nothing through it`];
        }
        const ranges: Record<string, ByteRange[]> = {};
        const paths: Record<string, LostPaths> = {};
        for (const id of snapshots) {
          const manifest = manifests.get(id);
          if (!manifest) continue;
          const loss = affected.get(id)!;
          if (isFileManifest(manifest)) paths[id] = loss === 'whole' || loss instanceof Set ? { paths: ['/'], count: 1 } : loss;
          else ranges[id] = lostRanges(manifest, loss);
        }
        return { object, message: messages.join('; '), snapshots, ranges, ...(Object.keys(paths).length > 0 && { paths }) };
      })
      .sort((a, b) => a.object.localeCompare(b.object));
  }
}

function lostRanges(manifest: SnapshotManifest, loss: Loss): ByteRange[] {
  if (loss instanceof Set) return mergeRanges([...loss].map((i) => chunkRange(i, manifest.chunkSize, manifest.size)));
  return [{ offset: 0, length: manifest.size }];
}

/** Every listed snapshot's manifest; a damaged one is a problem of its own, one removed meanwhile is left out. */
async function readManifests(repository: Repository, ids: readonly string[], problems: Problems): Promise<Map<string, AnySnapshotManifest>> {
  const manifests = new Map<string, AnySnapshotManifest>();
  await forEachConcurrently(ids, 8, async (id) => {
    try {
      manifests.set(id, await repository.loadSnapshot(id));
    } catch (err) {
      if (repository.isNotFound(err)) return;
      problems.note(Keys.snapshot(id), `${aboutObject(Keys.snapshot(id), (err as Error).message)}; nothing of this snapshot can be restored`);
      problems.affect(Keys.snapshot(id), id, 'whole');
    }
  });
  return manifests;
}

/** The packs to read: all, bucket n of m, or a random choice holding the given share of the bytes. */
export function selectPacks(packs: ReadonlyArray<[string, number]>, subset: ReadDataSubset | undefined, random: () => number): Array<[string, number]> {
  if (!subset) return [...packs];
  if ('bucket' in subset) return packs.filter(([id]) => Number.parseInt(id.slice(0, 2), 16) % subset.of === subset.bucket - 1);
  const shuffled = [...packs];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  const want = (shuffled.reduce((n, [, size]) => n + size, 0) * subset.percent) / 100;
  const chosen: Array<[string, number]> = [];
  let bytes = 0;
  for (const pack of shuffled) {
    if (bytes >= want) break;
    chosen.push(pack);
    bytes += pack[1];
  }
  return chosen;
}

/**
 * Buffers packs are read into, used again for every pack: a fresh 16 MiB buffer per pack left
 * the main thread's heap with as much again of garbage, and a blob sent to a worker from
 * shared memory is not copied. A pack larger than the repository writes gets a buffer of its own.
 */
class PackBuffers {
  readonly #slots: SlotPool;
  readonly #size: number;

  constructor(count: number, config: RepositoryConfig) {
    // Packs stay within packSize now, but those written before could pass it by a sealed chunk; and a header follows.
    this.#size = config.packSize + config.chunkSize + SEALED_CHUNK_OVERHEAD + 1024 * 1024;
    this.#slots = new SlotPool(count, this.#size);
  }

  async with<T>(size: number, use: (buffer: Uint8Array) => Promise<T>): Promise<T> {
    if (size > this.#size) return use(new Uint8Array(size));
    const slot = await this.#slots.acquire();
    try {
      return await use(new Uint8Array(slot, 0, size));
    } finally {
      this.#slots.release(slot);
    }
  }
}

/** Reads a pack whole into `buffer` (its size) and verifies its name, its header and every blob the index places in it. */
async function verifyPack(input: CheckInput, pack: string, buffer: Uint8Array, blobs: ReadonlyArray<[string, BlobLocation]>, lost: LostBlobs, problems: Problems): Promise<void> {
  const { repository, pool } = input;
  const key = Keys.pack(pack);
  try {
    await repository.readPackInto(pack, 0, [buffer]);
  } catch (err) {
    if (!(err instanceof DamageError)) throw err;
    // Gone since it was listed: prune removed it, or it is lost; the structure check decides below.
    return;
  }
  const bytes = Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const messages: string[] = [];
  if (packIdOf(packIdSchemeOf(repository.config), bytes).toString('hex') !== pack) messages.push('content does not match its name (bytes were changed)');
  const header = packHeaderOf(repository, bytes, bytes.length);
  if (typeof header === 'string') {
    messages.push(`${header}, so \`cairn repair index\` cannot index it`);
  } else {
    const inHeader = new Map(header.map((blob) => [blob.id.toString('hex'), blob]));
    const misplaced = blobs.filter(([id, location]) => {
      const listed = inHeader.get(id);
      return !listed || listed.offset !== location.offset || listed.length !== location.length;
    });
    if (misplaced.length > 0) messages.push(`${misplaced.length} blob(s) are at a different place than the index says, e.g. ${misplaced[0]![0].slice(0, 12)}`);
  }
  const damaged = await verifyBlobs(pool, bytes, blobs);
  if (!repository.readsPacksInPlace) mainThreadGarbage.dropped(bytes.length); // what the target's read gave, copied into the buffer
  for (const [id, message] of damaged) lost.add(id, { object: key, message });
  if (damaged.length > 0) messages.push(`${damaged.length} of ${blobs.length} blob(s) are damaged: ${damaged[0]![1]}${damaged.length > 1 ? ', …' : ''}`);
  else if (messages.length > 0) messages.push('every blob the index places in it verified');
  if (messages.length > 0) problems.note(key, messages.join('; '));
}

/**
 * Reads every snapshot's chunk maps, or walks its trees, and charges each lost chunk (or tree)
 * to the object that lost it.
 */
async function attributeLosses(input: CheckInput, index: BlobIndex, manifests: ReadonlyMap<string, AnySnapshotManifest>, lost: LostBlobs, problems: Problems): Promise<void> {
  const walker = new FileLossWalker(new TreeReader(input.repository, index, input.pool), index, lost);
  await forEachConcurrently([...manifests], 4, async ([id, manifest]) => {
    if (isFileManifest(manifest)) await attributeFileLosses(walker, index, id, manifest, problems);
    else await attributeVolumeLosses(input, index, id, manifest, lost, problems);
  });
}

/** A volume snapshot's lost chunks, by chunk number. */
async function attributeVolumeLosses(input: CheckInput, index: BlobIndex, id: string, manifest: SnapshotManifest, lost: LostBlobs, problems: Problems): Promise<void> {
  const { repository, pool } = input;
  let records;
  try {
    records = await loadChunkRecords(repository, index, pool, manifest);
  } catch (err) {
    if (!(err instanceof DamageError)) throw err;
    // Without its chunk maps nothing of the image can be placed: the whole snapshot is lost.
    const culprit = manifest.chunkMaps.map((map) => lost.reasonFor(map, index) ?? damagedChunkMapPack(index, map, err)).find((reason) => reason !== undefined);
    if (culprit && culprit.object !== NOT_INDEXED) {
      problems.note(culprit.object, culprit.message);
      problems.affect(culprit.object, id, 'whole');
    } else {
      const hint = index.unreadable.length > 0 ? '; a damaged index file may have named them (`cairn repair index`)' : '';
      problems.note(Keys.snapshot(id), `its chunk maps cannot be read (${err.message})${hint}; nothing of it can be restored`);
      problems.affect(Keys.snapshot(id), id, 'whole');
    }
    return;
  }
  let unindexed = 0;
  for (const map of manifest.chunkMaps) problems.use(Keys.pack(index.get(map)!.pack), id);
  records.forEach((record, i) => {
    if (record.kind !== ChunkKind.data) return;
    const blob = record.id!.toString('hex');
    const location = index.get(blob);
    if (location && problems.has(Keys.pack(location.pack))) problems.use(Keys.pack(location.pack), id);
    const reason = lost.reasonFor(blob, index);
    if (!reason) return;
    const object = reason.object === NOT_INDEXED ? Keys.snapshot(id) : reason.object;
    if (reason.object === NOT_INDEXED) unindexed++;
    problems.affect(object, id, i);
  });
  noteUnindexed(index, id, unindexed, 'chunk(s)', problems);
}

function noteUnindexed(index: BlobIndex, id: string, unindexed: number, what: string, problems: Problems): void {
  if (unindexed === 0) return;
  const why = index.unreadable.length > 0 ? 'a damaged index file may have named them' : 'their packs are not indexed, or lost';
  problems.note(Keys.snapshot(id), `${unindexed} ${what} are in no index (${why}; \`cairn repair index\`, then \`cairn repair snapshots\`)`);
}

/**
 * Walks a file snapshot's trees (each read and verified) and charges each file whose content
 * chunks are lost, and each folder whose tree is lost, to the object that lost them.
 */
async function attributeFileLosses(walker: FileLossWalker, index: BlobIndex, id: string, manifest: FileSnapshotManifest, problems: Problems): Promise<void> {
  let unindexed = 0;
  const charge = (reason: LostReason, path: Buffer | 'whole') => {
    const object = reason.object === NOT_INDEXED ? Keys.snapshot(id) : reason.object;
    if (reason.object === NOT_INDEXED) unindexed++;
    else if (!problems.has(object)) problems.note(object, reason.message);
    if (path === 'whole') problems.affect(object, id, 'whole');
    else problems.affectPath(object, id, displayName(path));
  };
  const use = (blob: string) => {
    const location = index.get(blob);
    if (!location || !problems.has(Keys.pack(location.pack))) return false;
    problems.use(Keys.pack(location.pack), id);
    return true;
  };
  use(manifest.tree);
  const rootLoss = await walker.treeLoss(manifest.tree);
  if (rootLoss) {
    charge({ ...rootLoss, message: `${rootLoss.message}; it holds the root tree of file snapshot ${id.slice(0, 12)}, nothing of which can be restored` }, 'whole');
  } else {
    await walker.walk(manifest.tree, Buffer.from('/'), {
      use,
      lostTree: (path, _tree, reason) => charge(reason, Buffer.concat([path, Buffer.from('/')])),
      lostContent: (path, _entry, chunks) => {
        for (const [, reasons] of byObject(chunks)) charge(reasons[0]!, path);
      },
    });
  }
  noteUnindexed(index, id, unindexed, 'blob(s) of its trees and files', problems);
}

/** A chunk map that failed to open where nothing else knew of damage: its pack is the damaged object. */
function damagedChunkMapPack(index: BlobIndex, map: string, err: DamageError): { object: string; message: string } | undefined {
  const location = index.get(map);
  if (!location) return undefined;
  const object = Keys.pack(location.pack);
  if (err.message.startsWith(`pack ${object} is damaged: `)) return { object, message: `chunk map ${aboutObject(object, err.message)}` };
  if (err.message.startsWith(`pack ${object} `)) return { object, message: aboutObject(object, err.message) };
  return undefined;
}

/**
 * A snapshot removed while the check ran (forget, then prune) is not damage: it and its
 * share of other problems are left out, and so is a "missing" pack that a fresh index no
 * longer names.
 */
async function forgetVanished(repository: Repository, manifests: Map<string, AnySnapshotManifest>, problems: Problems): Promise<void> {
  const still = new Set(await repository.listIds('snapshots'));
  const vanished = [...manifests.keys()].filter((id) => !still.has(id));
  if (vanished.length === 0) return;
  for (const id of vanished) {
    problems.forgetSnapshot(id);
    manifests.delete(id);
  }
  const fresh = new Set((await repository.loadIndex()).packIds);
  for (const object of problems.objects()) {
    if (object.startsWith('data/') && !fresh.has(object.slice(object.lastIndexOf('/') + 1))) problems.drop(object);
  }
}
