import type { RestoreRunHooks } from '../hooks.js';
import { DamageError } from '../errors.js';
import { ChunkKind, Keys, type ChunkRecord } from '../repository/format.js';
import type { BlobIndex, BlobLocation, Repository } from '../repository/repository.js';
import type { SnapshotManifest } from '../repository/snapshot.js';
import type { Destination } from './destination.js';
import { loadChunkRecords, missingBlobs } from './chunk-maps.js';
import { SlotPool, defaultPoolSize, type WorkerPool } from './worker-pool.js';
import type { ImageHashResult } from './worker.js';
import { allocateAligned } from './aligned-memory.js';
import type { Progress } from './progress.js';

/** Largest single ranged read: neighbouring blobs of one pack are fetched together up to this. */
const MAX_READ = 8 * 1024 * 1024;
/** Chunks per ranged read; every chunk of a read holds a slot, so this must stay well under the slot count. */
const MAX_CHUNKS_PER_READ = 8;
const FETCH_CONCURRENCY = 4;

/** A byte range of the image to restore alone (a partition); the destination receives it at offset 0. */
export interface RestoreWindow {
  offset: number;
  length: number;
}

export interface RestoreInput {
  repository: Repository;
  index: BlobIndex;
  pool: WorkerPool;
  snapshot: string;
  manifest: SnapshotManifest;
  destination: Destination;
  hooks: Readonly<RestoreRunHooks>;
  progress: Progress;
  /** Restore only this part of the image. */
  window?: RestoreWindow;
  /** On a block device, write zeros over unused chunks too (by default they are left as they are). */
  zeroUnused?: boolean;
}

interface Group {
  pack: string;
  offset: number;
  length: number;
  chunks: Array<{ index: number; id: string; location: BlobLocation }>;
}

/**
 * Writes a snapshot's image (or one window of it) to the destination. Blobs are fetched
 * with ranged reads (neighbours coalesced), opened in the worker pool and written at their
 * offsets. A whole image is fed in order to the image hasher and committed only when its
 * digest matches the snapshot's; a window, which has no recorded digest, is verified blob by
 * blob against the blobs' keyed ids instead.
 */
export async function runRestore(input: RestoreInput): Promise<{ bytesWritten: number }> {
  const { repository, index, pool, manifest, destination, progress, window } = input;
  const records = await loadChunkRecords(repository, index, pool, manifest);
  const missing = missingBlobs(records, index);
  if (missing.length > 0) {
    throw new DamageError(`Snapshot ${input.snapshot.slice(0, 12)} needs ${missing.length} blob(s) that no index knows, e.g. ${missing[0]!.slice(0, 12)}; run \`cairn check\``);
  }
  await input.hooks.beforeWrite.promise({ destination: destination.path, snapshot: input.snapshot });

  const chunkSize = manifest.chunkSize;
  const from = window?.offset ?? 0;
  const to = window ? window.offset + window.length : manifest.size;
  /** The part of chunk i inside the restored range, in image coordinates. */
  const partOf = (i: number) => ({ start: Math.max(i * chunkSize, from), end: Math.min((i + 1) * chunkSize, manifest.size, to) });
  const firstChunk = Math.floor(from / chunkSize);
  const lastChunk = Math.ceil(to / chunkSize); // exclusive
  const slots = new SlotPool(2 * MAX_CHUNKS_PER_READ + defaultPoolSize(), chunkSize);
  const zeros = destination.needsZeros ? new Uint8Array(allocateAligned(chunkSize), 0, chunkSize) : undefined;
  const writeZeros = (kind: ChunkKind) => zeros !== undefined && (kind === ChunkKind.zero || (kind === ChunkKind.unused && input.zeroUnused === true));
  // Per chunk: resolves when it is ready to be written: its bytes decoded into `slotOf[i]`, or nothing to fetch.
  const decoded: Array<Promise<void>> = new Array(records.length);
  const slotOf: Array<SharedArrayBuffer | undefined> = new Array(records.length);
  let bytesWritten = 0;
  let failure: unknown;
  let planned = false;
  // Wakes the writer when the planner has scheduled another chunk.
  let wakeWriter: (() => void) | undefined;
  const scheduled = () => {
    wakeWriter?.();
    wakeWriter = undefined;
  };

  const verifyIds = window !== undefined;
  await pool.imageReset(manifest.imageDigest.algorithm);
  progress.start('restore', to - from);
  const writing = writeInOrder();
  // Awaited below; handled now so that a failure while the planner is waiting does not crash the process as an unhandled rejection.
  writing.catch(() => undefined);
  try {
    const fetches = new Set<Promise<void>>();
    for (const item of plan(records, index, firstChunk, lastChunk)) {
      if (failure !== undefined) break;
      if ('kind' in item) {
        decoded[item.index] = Promise.resolve();
        scheduled();
        continue;
      }
      const groupSlots: SharedArrayBuffer[] = [];
      for (const chunk of item.chunks) {
        const slot = await slots.acquire();
        slotOf[chunk.index] = slot;
        groupSlots.push(slot);
      }
      while (fetches.size >= FETCH_CONCURRENCY) await Promise.race(fetches);
      const fetched = repository.target.get(Keys.pack(item.pack), { offset: item.offset, length: item.length });
      fetched.catch(() => undefined);
      item.chunks.forEach((chunk, k) => {
        decoded[chunk.index] = fetched
          .then(async (bytes) => {
            const at = chunk.location.offset - item.offset;
            await pool.open(bytes.subarray(at, at + chunk.location.length), chunk.location.rawLength, chunk.id, { into: groupSlots[k], verifyId: verifyIds });
          })
          .catch((err: unknown) => {
            failure ??= err instanceof DamageError ? new DamageError(`Pack ${item.pack.slice(0, 12)} is damaged: ${err.message}`, { cause: err }) : err;
            throw failure;
          });
        decoded[chunk.index]!.catch(() => undefined);
      });
      scheduled();
      const all = Promise.allSettled(item.chunks.map((c) => decoded[c.index])).then(() => undefined);
      const tracked = all.finally(() => fetches.delete(tracked));
      fetches.add(tracked);
    }
    planned = true;
    scheduled();
    const digest = await writing;
    if (failure !== undefined) throw failure;
    const expected = manifest.imageDigest;
    if (!window && digest?.image !== expected.hex) {
      throw new DamageError(`The restored image's ${expected.algorithm} ${digest?.image?.slice(0, 16)}… differs from the snapshot's ${expected.hex.slice(0, 16)}…; the destination was not committed`);
    }
    await destination.commit();
    progress.done();
    await input.hooks.done.promise({ destination: destination.path, snapshot: input.snapshot, bytesWritten, manifest, partial: window !== undefined });
    return { bytesWritten };
  } catch (err) {
    progress.done();
    failure ??= err;
    scheduled();
    await writing.catch(() => undefined);
    await destination.abort();
    throw failure;
  }

  /**
   * Walks the chunks in image order, waiting for each to be decoded: writes it, feeds the
   * image hash (whole images), frees its slot, reports progress. One write at a time, in
   * order: concurrent writes to one file contend for its inode lock in the kernel (on ext4
   * they cost several times the CPU of the same writes in sequence), and sequential writes
   * let the filesystem allocate contiguous extents.
   */
  async function writeInOrder(): Promise<ImageHashResult | undefined> {
    for (let i = firstChunk; i < lastChunk; i++) {
      while (decoded[i] === undefined) {
        if (failure !== undefined) throw failure;
        if (planned) throw new Error(`internal error: chunk ${i} was never scheduled`);
        await new Promise<void>((resolve) => (wakeWriter = resolve));
      }
      await decoded[i];
      if (failure !== undefined) throw failure;
      const { start, end } = partOf(i);
      const slot = slotOf[i];
      slotOf[i] = undefined;
      const kind = records[i]!.kind;
      if (slot) {
        const inSlot = start - i * chunkSize;
        // The hash reads the slot while it is written; the slot is free once both are done.
        const hashed = window ? Promise.resolve() : pool.imageUpdate(slot, start, end - start);
        // A failed update also fails imageDigest(); this rejection (e.g. the pool disposed after a failure) needs no handling here.
        hashed.catch(() => undefined);
        try {
          await destination.write(new Uint8Array(slot, inSlot, end - start), start - from);
        } catch (err) {
          failure ??= err;
          throw failure;
        } finally {
          hashed.finally(() => slots.release(slot)).catch(() => undefined);
        }
      } else {
        if (!window) pool.imageZeros(start, end - start).catch(() => undefined);
        if (writeZeros(kind)) await destination.write(zeros!.subarray(0, end - start), start - from);
      }
      bytesWritten += kind === ChunkKind.unused ? 0 : end - start;
      progress.advance(end - start);
    }
    return window ? undefined : pool.imageDigest();
  }
}

/** Chunks [first, last) in image order: holes as they are, data coalesced into ranged reads of one pack. */
function* plan(records: readonly ChunkRecord[], index: BlobIndex, first: number, last: number): Generator<Group | { index: number; kind: ChunkKind }> {
  let group: Group | undefined;
  for (let i = first; i < last; i++) {
    const record = records[i]!;
    if (record.kind !== ChunkKind.data) {
      if (group) yield group;
      group = undefined;
      yield { index: i, kind: record.kind };
      continue;
    }
    const id = record.id!.toString('hex');
    const location = index.get(id)!;
    const joins =
      group !== undefined &&
      group.pack === location.pack &&
      group.offset + group.length === location.offset &&
      group.chunks.length < MAX_CHUNKS_PER_READ &&
      group.length + location.length <= MAX_READ;
    if (group && joins) {
      group.length += location.length;
      group.chunks.push({ index: i, id, location });
    } else {
      if (group) yield group;
      group = { pack: location.pack, offset: location.offset, length: location.length, chunks: [{ index: i, id, location }] };
    }
  }
  if (group) yield group;
}
