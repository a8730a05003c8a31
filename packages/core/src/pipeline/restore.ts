import { DamageError } from '../errors.js';
import { joinsFetchGroup, type FetchGroup } from './fetch-groups.js';
import type { ByteRange } from '../target.js';
import { ChunkKind, Keys, type ChunkRecord } from '../repository/format.js';
import type { BlobIndex, Repository } from '../repository/repository.js';
import type { SnapshotManifest } from '../repository/snapshot.js';
import type { Destination } from './destination.js';
import { loadChunkRecords, missingBlobs } from './chunk-maps.js';
import { NOT_INDEXED, aboutObject, chunkRange, mergeRanges, rangesInWindow, type LostReason } from './damage.js';
import { SEALED_CHUNK_OVERHEAD, SlotPool, type WorkerPool } from './worker-pool.js';
import { ChunkDigests, zeroChunkDigest } from './chunk-digests.js';
import { allocateAligned } from './aligned-memory.js';
import type { Progress } from './progress.js';
import { mainThreadGarbage } from './young-garbage.js';

const FETCH_CONCURRENCY = 4;
/**
 * What `#decoded` holds for a chunk with nothing to fetch: one settled promise for all of them,
 * as the planner schedules holes far ahead of the writer (a 2 TiB disk has 500,000 of them).
 */
const NOTHING_TO_FETCH: Promise<void> = Promise.resolve();
/** Chunks of the destination read and hashed ahead of the planner in a delta restore. */
const COMPARE_AHEAD = 8;

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
  progress: Progress;
  /** Called once the snapshot is known to be complete, before the first write; throwing stops the restore. */
  beforeWrite?: () => Promise<void>;
  /** Restore only this part of the image. */
  window?: RestoreWindow;
  /** On a block device, write zeros over unused chunks too (by default they are left as they are). */
  zeroUnused?: boolean;
  /**
   * Write zeros where a blob is missing or damaged, and go on, instead of failing; every
   * chunk is then verified against its id (the image digest cannot match), and the result
   * lists what was lost.
   */
  ignoreDamage?: boolean;
}

/** Data a restore with `ignoreDamage` could not read, and where it wrote zeros instead. */
export interface RestoreDamage {
  /** The damaged object: a pack `data/xx/<id>`, or `index` for blobs no index names. */
  object: string;
  message: string;
  /** Ranges of the destination (offsets in it) that hold zeros instead of this object's data, merged. */
  ranges: ByteRange[];
}

export interface RestoreOutcome {
  /** Bytes written to the destination, zeros included. */
  bytesWritten: number;
  /**
   * Zeros made in an image file restored in place, not compared: zero ranges or punched holes
   * (written as zeros, and still counted here, only on a file system that has neither; see RangeZeroer).
   */
  bytesZeroed: number;
  /** Bytes read from the repository's packs (ranged reads). */
  bytesFetched: number;
  /** Delta restore: bytes the destination held already, neither fetched nor written. */
  bytesUnchanged: number;
  /** Unused blocks left as a block device held them (no zeroUnused): the image digest covers them as zeros. */
  bytesLeftUnused: number;
  /** Empty unless `ignoreDamage` wrote zeros for lost data. */
  damage: RestoreDamage[];
}

/**
 * Writes a snapshot's image (or one window of it) to the destination. Blobs are fetched
 * with ranged reads (neighbours coalesced), opened in the worker pool and written at their
 * offsets. A whole image is fed in order to the image hasher and committed only when its
 * digest matches the snapshot's; a window, which has no recorded digest, is verified blob by
 * blob against the blobs' keyed ids instead, and so is an image in which zeros stand in for
 * lost data (`ignoreDamage`, or a snapshot `repair snapshots` wrote).
 */
export async function runRestore(input: RestoreInput): Promise<RestoreOutcome> {
  let records: ChunkRecord[];
  try {
    records = await loadChunkRecords(input.repository, input.index, input.pool, input.manifest).catch((err: unknown) => {
      if (!(err instanceof DamageError)) throw err;
      throw new DamageError(`Snapshot ${input.snapshot.slice(0, 12)} cannot be restored: its chunk maps cannot be read (${err.message}); ${whereToLook(input.index)}`, { cause: err });
    });
    const { first, last } = chunkSpan(input);
    const missing = missingBlobs(records.slice(first, last), input.index);
    if (missing.length > 0 && !input.ignoreDamage) throw new DamageError(describeMissing(input, missing));
    await input.beforeWrite?.();
  } catch (err) {
    // Nothing was written, but an image file's temporary name exists already.
    await input.destination.abort();
    throw err;
  }
  return new RestoreSession(input, records).run();
}

/** The chunks [first, last) the restore writes. */
function chunkSpan({ manifest, window }: RestoreInput): { from: number; to: number; first: number; last: number } {
  const from = window?.offset ?? 0;
  const to = window ? window.offset + window.length : manifest.size;
  return { from, to, first: Math.floor(from / manifest.chunkSize), last: Math.ceil(to / manifest.chunkSize) };
}

function describeMissing({ snapshot, index }: RestoreInput, missing: readonly string[]): string {
  return `Snapshot ${snapshot.slice(0, 12)} needs ${missing.length} blob(s) that no index knows, e.g. ${missing[0]!.slice(0, 12)}; ${whereToLook(index)}. Nothing was written; --ignore-damage restores the rest, with zeros for them`;
}

/** What to do about blobs the index does not know. */
function whereToLook(index: BlobIndex): string {
  const damagedIndexes = index.unreadable.map((d) => d.object);
  return damagedIndexes.length
    ? `the damaged index file(s) ${damagedIndexes.join(', ')} may have named them: \`cairn repair index\` rebuilds the index from the packs`
    : '`cairn check` tells more; `cairn repair index` indexes packs no index names';
}

/**
 * One restore: a planner walks the chunks in image order and fetches and decodes their blobs
 * (bounded by the slots), while a writer follows it, writing each chunk once it is decoded.
 */
class RestoreSession {
  readonly #input: RestoreInput;
  readonly #records: readonly ChunkRecord[];
  readonly #chunkSize: number;
  readonly #from: number;
  readonly #to: number;
  readonly #firstChunk: number;
  /** Exclusive. */
  readonly #lastChunk: number;
  readonly #slots: SlotPool;
  readonly #slotSize: number;
  readonly #zeros: Uint8Array | undefined;
  /** Per chunk: resolves when it is ready to be written: decoded into its slot (`#slotOf`), or nothing to fetch. */
  readonly #decoded: Array<Promise<void>>;
  /** The slots of the chunks fetched and not yet written, by chunk (a Map: they are few, the chunks of a large disk many). */
  readonly #slotOf = new Map<number, SharedArrayBuffer>();
  /** Chunks that could not be read (with ignoreDamage), and why: written as zeros. */
  readonly #lost = new Map<number, LostReason>();
  /** Delta restore: chunks the destination holds already; hashed for the image digest, not written. */
  readonly #unchanged = new Set<number>();
  /** Unused chunks must end up as zeros: on a file (its image has zeros there), or on a device with zeroUnused. */
  readonly #zeroUnused: boolean;
  /** A `blake3-chunks` digest being checked: each data chunk's own BLAKE3, from where it was decoded or compared. */
  readonly #chunkDigests: ChunkDigests | undefined;
  readonly #digestOf = new Map<number, Buffer>();
  #bytesWritten = 0;
  #bytesFetched = 0;
  #bytesUnchanged = 0;
  #bytesLeftUnused = 0;
  #bytesZeroed = 0;
  #failure: unknown;
  #planned = false;
  /** Settles when the writer stops, done or failed: from then on no slot is freed, so the planner must not wait for one. */
  #writerStopped: Promise<undefined> = Promise.resolve(undefined);
  /** Wakes the writer when the planner has scheduled another chunk. */
  #wakeWriter: (() => void) | undefined;

  constructor(input: RestoreInput, records: readonly ChunkRecord[]) {
    this.#input = input;
    this.#records = records;
    const { manifest, window, destination } = input;
    this.#chunkSize = manifest.chunkSize;
    const span = chunkSpan(input);
    this.#from = span.from;
    this.#to = span.to;
    this.#firstChunk = span.first;
    this.#lastChunk = span.last;
    // A slot takes a chunk's blob as read from its pack, then the chunk it decodes to.
    this.#slotSize = this.#chunkSize + SEALED_CHUNK_OVERHEAD;
    this.#slots = new SlotPool(input.pool.memory.restoreSlots, this.#slotSize);
    this.#zeros = destination.needsZeros ? new Uint8Array(allocateAligned(this.#chunkSize), 0, this.#chunkSize) : undefined;
    this.#zeroUnused = input.zeroUnused === true || destination.kind === 'file';
    this.#decoded = new Array(records.length);
    this.#chunkDigests = this.#hashImage && manifest.imageDigest.algorithm === 'blake3-chunks' ? new ChunkDigests(this.#firstChunk, this.#lastChunk) : undefined;
  }

  /** Whether the image digest is streamed through the pool's image hasher (format versions up to 5). */
  get #streamsDigest(): boolean {
    return this.#hashImage && this.#chunkDigests === undefined;
  }

  /**
   * Whether the whole image's digest is computed and checked. Otherwise (a window, lost data
   * replaced with zeros, a repaired snapshot) every blob is verified against its id instead.
   */
  get #hashImage(): boolean {
    const { window, ignoreDamage, manifest } = this.#input;
    return window === undefined && !ignoreDamage && !manifest.lost?.length;
  }

  async run(): Promise<RestoreOutcome> {
    const { pool, manifest, destination, progress } = this.#input;
    const { algorithm } = manifest.imageDigest;
    if (this.#streamsDigest && algorithm !== 'blake3-chunks') await pool.imageReset(algorithm);
    progress.start('restore', this.#to - this.#from);
    const writing = this.#writeInOrder();
    // Awaited below; handled now so that a failure while the planner is waiting does not crash the process as an unhandled rejection.
    this.#writerStopped = writing.then(
      () => undefined,
      () => undefined,
    );
    try {
      await this.#fetchAll();
      const digest = await writing;
      if (this.#failure !== undefined) throw this.#failure;
      this.#checkDigest(digest);
      await destination.commit();
      progress.done();
      return { bytesWritten: this.#bytesWritten, bytesFetched: this.#bytesFetched, bytesUnchanged: this.#bytesUnchanged, bytesLeftUnused: this.#bytesLeftUnused, bytesZeroed: this.#bytesZeroed, damage: this.#damage() };
    } catch (err) {
      progress.done();
      this.#failure ??= err;
      this.#scheduled();
      await writing.catch(() => undefined);
      await destination.abort();
      throw this.#failure;
    }
  }

  #checkDigest(digest: string | undefined): void {
    const expected = this.#input.manifest.imageDigest;
    if (this.#hashImage && digest !== expected.hex) {
      throw new DamageError(`The restored image's ${expected.algorithm} ${digest?.slice(0, 16)}… differs from the snapshot's ${expected.hex.slice(0, 16)}…; the destination was not committed`);
    }
  }

  #scheduled(): void {
    this.#wakeWriter?.();
    this.#wakeWriter = undefined;
  }

  /** Schedules every chunk in image order: holes at once, data as ranged reads, as many as slots and fetch concurrency allow. */
  async #fetchAll(): Promise<void> {
    const fetches = new Set<Promise<void>>();
    const items = this.#input.destination.read ? this.#deltaPlan() : plan(this.#records, this.#input.index, this.#firstChunk, this.#lastChunk);
    for await (const item of items) {
      if (this.#failure !== undefined) break;
      if ('kind' in item) {
        if (item.kind === 'lost') this.#lost.set(item.index, { object: NOT_INDEXED, message: 'no index names its blob' });
        this.#decoded[item.index] = NOTHING_TO_FETCH;
        this.#scheduled();
        continue;
      }
      const groupSlots: SharedArrayBuffer[] = [];
      for (const chunk of item.chunks) {
        // A delta restore's chunk keeps the slot it was compared in.
        const slot = this.#slotOf.get(chunk.index) ?? (await this.#slotUnlessStopped());
        if (!slot) break;
        this.#slotOf.set(chunk.index, slot);
        groupSlots.push(slot);
      }
      if (groupSlots.length < item.chunks.length) break;
      while (fetches.size >= FETCH_CONCURRENCY) await Promise.race(fetches);
      const fetched = this.#fetchGroup(item, groupSlots);
      const tracked = fetched.finally(() => fetches.delete(tracked));
      fetches.add(tracked);
    }
    this.#planned = true;
    this.#scheduled();
  }

  /**
   * A delta restore's plan: each chunk the destination must hold is read from it and hashed
   * (COMPARE_AHEAD at a time, in image order); what it holds already is neither fetched nor
   * written, the rest is planned as `plan` does. Any chunk that is not fetched ends the
   * current group, so a group never waits for slots held by chunks after it.
   */
  async *#deltaPlan(): AsyncGenerator<PlanItem> {
    let group: FetchGroup | undefined;
    for await (const { index, same } of this.#compared()) {
      const record = this.#records[index]!;
      const id = record.kind === ChunkKind.data ? record.id!.toString('hex') : undefined;
      const location = id !== undefined && !same ? this.#input.index.get(id) : undefined;
      if (location === undefined) {
        if (group) yield group;
        group = undefined;
        yield this.#notFetched(index, record.kind, same === true);
      } else if (group && joinsFetchGroup(group, location)) {
        group.length += location.length;
        group.chunks.push({ index, id: id!, location });
      } else {
        if (group) yield group;
        group = { pack: location.pack, offset: location.offset, length: location.length, chunks: [{ index, id: id!, location }] };
      }
    }
    if (group) yield group;
  }

  /** A chunk a delta restore does not fetch: unchanged, a hole, or data no index names (its compare slot is freed). */
  #notFetched(index: number, kind: ChunkKind, same: boolean): PlanItem {
    if (same) {
      this.#unchanged.add(index);
      this.#bytesUnchanged += this.#spanOf(index).end - this.#spanOf(index).start;
      return { index, kind: 'unchanged' };
    }
    const slot = this.#slotOf.get(index);
    this.#slotOf.delete(index);
    if (slot) this.#slots.release(slot);
    return { index, kind: kind === ChunkKind.data ? 'lost' : kind };
  }

  /** Chunks in image order, each with whether the destination holds it already (undefined: not compared), compared ahead. */
  async *#compared(): AsyncGenerator<{ index: number; same: boolean | undefined }> {
    const ahead: Array<{ index: number; same: Promise<boolean | undefined> }> = [];
    for (let i = this.#firstChunk; i < this.#lastChunk; i++) {
      const same = this.#compare(i);
      same.catch(() => undefined);
      ahead.push({ index: i, same });
      if (ahead.length >= COMPARE_AHEAD) {
        const next = ahead.shift()!;
        yield { index: next.index, same: await next.same };
      }
    }
    for (const next of ahead) yield { index: next.index, same: await next.same };
  }

  /**
   * Reads chunk `i` from the destination into a slot and compares its keyed hash with the
   * snapshot's (zero and unused chunks: whether it is all zeros; in a file they are made zeros
   * in place without a look). A data chunk keeps the slot:
   * it is written from it unchanged, or its blob is decoded into it. A chunk cut by a
   * window's edge cannot be compared with its blob, and is restored.
   */
  async #compare(i: number): Promise<boolean | undefined> {
    const record = this.#records[i]!;
    if (record.kind === ChunkKind.unused && !this.#zeroUnused) return undefined;
    // A zero range (or a hole) costs less than reading what is there to see whether it is zeros already.
    if (record.kind !== ChunkKind.data && this.#input.destination.zero) return false;
    const { start, end } = this.#spanOf(i);
    const chunkStart = i * this.#chunkSize;
    const whole = start === chunkStart && end === Math.min(chunkStart + this.#chunkSize, this.#input.manifest.size);
    const slot = await this.#slotUnlessStopped();
    if (!slot) throw this.#failure ?? new Error('internal error: the restore stopped writing before comparing every chunk');
    if (record.kind === ChunkKind.data) this.#slotOf.set(i, slot);
    try {
      if (!whole) return false;
      await this.#input.destination.read!(new Uint8Array(slot, 0, end - start), start - this.#from);
      const hash = await this.#input.pool.hash(slot, end - start, this.#chunkDigests !== undefined);
      const same = record.kind === ChunkKind.data ? !hash.zero && hash.id.equals(record.id!) : hash.zero;
      if (same && !hash.zero && this.#chunkDigests) this.#digestOf.set(i, hash.chunkDigest!);
      return same;
    } finally {
      if (record.kind !== ChunkKind.data) this.#slots.release(slot);
    }
  }

  /** A free slot, or undefined once the writer stopped (it failed): only the writer frees slots. */
  #slotUnlessStopped(): Promise<SharedArrayBuffer | undefined> {
    return Promise.race([this.#slots.acquire(), this.#writerStopped]);
  }

  /** The part [start, end) of the image that chunk `i` restores. */
  #spanOf(i: number): { start: number; end: number } {
    return { start: Math.max(i * this.#chunkSize, this.#from), end: Math.min((i + 1) * this.#chunkSize, this.#input.manifest.size, this.#to) };
  }

  /** Fetches a group with one ranged read and decodes each blob into its slot; settles when all are done. */
  #fetchGroup(group: FetchGroup, slots: SharedArrayBuffer[]): Promise<void> {
    const { repository } = this.#input;
    this.#bytesFetched += group.length;
    // Blobs are read into their slots unless one is larger than any sealed chunk (only in a damaged repository).
    const inPlace = group.chunks.every((chunk) => chunk.location.length <= this.#slotSize);
    const opened = inPlace ? this.#openedInSlots(group, slots) : this.#openedFromRead(group, slots);
    group.chunks.forEach((chunk, k) => {
      const decoded = opened[k]!.then((digest) => void (this.#chunkDigests && digest && this.#digestOf.set(chunk.index, digest))).catch((err: unknown) => this.#chunkFailed(chunk, slots[k]!, err));
      decoded.catch(() => undefined);
      this.#decoded[chunk.index] = decoded;
    });
    this.#scheduled();
    const settled = Promise.allSettled(group.chunks.map((c) => this.#decoded[c.index]));
    if (inPlace && repository.readsPacksInPlace) return settled.then(() => undefined);
    // Every blob was copied out of the read by now: it is garbage the main thread should free soon.
    return settled.then(() => mainThreadGarbage.dropped(group.length));
  }

  /** Reads the group's blobs straight into their slots (one ranged read) and opens each where it lies. */
  #openedInSlots(group: FetchGroup, slots: SharedArrayBuffer[]): Array<Promise<Buffer | undefined>> {
    const { repository, pool, ignoreDamage } = this.#input;
    const sealedIn = (k: number) => new Uint8Array(slots[k]!, 0, group.chunks[k]!.location.length);
    const read = repository.readPackInto(group.pack, group.offset, group.chunks.map((_, k) => sealedIn(k)));
    read.catch(() => undefined);
    return group.chunks.map((chunk, k) => {
      const { location } = chunk;
      const sealed = read.catch((err: unknown) =>
        // A truncated pack may still hold the first blobs of the group: read them one by one.
        ignoreDamage && err instanceof DamageError && group.chunks.length > 1 ? repository.readPackInto(group.pack, location.offset, [sealedIn(k)]) : Promise.reject(err),
      );
      return sealed.then(() => this.#namingPack(group, pool.openInSlot(slots[k]!, location.length, location.rawLength, chunk.id, !this.#hashImage, this.#chunkDigests !== undefined)));
    });
  }

  /** Reads the group into a buffer of its own and opens each blob from there into its slot. */
  #openedFromRead(group: FetchGroup, slots: SharedArrayBuffer[]): Array<Promise<Buffer | undefined>> {
    const { repository, pool, ignoreDamage } = this.#input;
    const fetched = repository.readPack(group.pack, { offset: group.offset, length: group.length });
    fetched.catch(() => undefined);
    return group.chunks.map((chunk, k) => {
      const { location } = chunk;
      const sealed = fetched.then(
        (bytes) => bytes.subarray(location.offset - group.offset, location.offset - group.offset + location.length),
        (err: unknown) => (ignoreDamage && err instanceof DamageError && group.chunks.length > 1 ? repository.readPack(group.pack, { offset: location.offset, length: location.length }) : Promise.reject(err)),
      );
      return sealed.then((bytes) => this.#namingPack(group, pool.openInto(slots[k]!, bytes, location.rawLength, chunk.id, !this.#hashImage, this.#chunkDigests !== undefined)));
    });
  }

  /** A blob that fails to open is damage of its pack: the message names it. */
  #namingPack<T>(group: FetchGroup, opening: Promise<T>): Promise<T> {
    return opening.catch((err: unknown) => {
      throw err instanceof DamageError ? new DamageError(`pack ${Keys.pack(group.pack)} is damaged: ${err.message}`, { cause: err }) : err;
    });
  }

  /** A chunk that could not be read: zeros instead with ignoreDamage, else the restore fails naming its blob and pack. */
  #chunkFailed(chunk: FetchGroup['chunks'][number], slot: SharedArrayBuffer, err: unknown): void {
    if (err instanceof DamageError && this.#input.ignoreDamage) {
      // The pack is the object named with the message: the message need not name it again.
      const object = Keys.pack(chunk.location.pack);
      this.#lost.set(chunk.index, { object, message: aboutObject(object, err.message) });
      this.#slotOf.delete(chunk.index);
      this.#slots.release(slot);
      return;
    }
    if (err instanceof DamageError) {
      const offset = chunk.index * this.#chunkSize;
      err = new DamageError(
        `Blob ${chunk.id.slice(0, 12)} (image offset ${offset}) cannot be restored: ${err.message}. ${this.#input.destination.kind === 'file' ? 'Nothing was committed' : `${this.#input.destination.path} holds a partial image`}; \`cairn check --read-data\` reports all damage, and \`restore --ignore-damage\` writes zeros where data is lost`,
        { cause: err },
      );
    }
    this.#failure ??= err;
    throw this.#failure;
  }

  /** What was lost, per damaged object, in destination offsets. */
  #damage(): RestoreDamage[] {
    const { manifest } = this.#input;
    const byObject = new Map<string, { message: string; ranges: ByteRange[] }>();
    for (const [i, reason] of [...this.#lost].sort(([a], [b]) => a - b)) {
      let entry = byObject.get(reason.object);
      if (!entry) byObject.set(reason.object, (entry = { message: reason.message, ranges: [] }));
      entry.ranges.push(chunkRange(i, this.#chunkSize, manifest.size));
    }
    const window = { offset: this.#from, length: this.#to - this.#from };
    return [...byObject]
      .map(([object, { message, ranges }]) => ({ object, message, ranges: mergeRanges(rangesInWindow(ranges, window)) }))
      .sort((a, b) => a.object.localeCompare(b.object));
  }

  /**
   * Walks the chunks in image order, waiting for each to be decoded: writes it, feeds the
   * image hash (whole images), frees its slot, reports progress. One write at a time, in
   * order: concurrent writes to one file contend for its inode lock in the kernel (on ext4
   * they cost several times the CPU of the same writes in sequence), and sequential writes
   * let the filesystem allocate contiguous extents.
   */
  async #writeInOrder(): Promise<string | undefined> {
    for (let i = this.#firstChunk; i < this.#lastChunk; i++) {
      await this.#whenDecoded(i);
      const { start, end } = this.#spanOf(i);
      const slot = this.#slotOf.get(i);
      this.#slotOf.delete(i);
      // Lost data is written as a zero chunk would be.
      const kind = this.#lost.has(i) ? ChunkKind.zero : this.#records[i]!.kind;
      this.#chunkDigests?.set(i, slot ? this.#digestOf.get(i)! : zeroChunkDigest(end - start));
      this.#digestOf.delete(i);
      if (slot) await this.#writeChunk(slot, i, start, end);
      else await this.#writeHole(kind, i, start, end);
      this.#input.progress.advance(end - start);
    }
    if (this.#chunkDigests) return this.#chunkDigests.hex();
    return this.#streamsDigest ? (await this.#input.pool.imageDigest()).image : undefined;
  }

  async #whenDecoded(i: number): Promise<void> {
    while (this.#decoded[i] === undefined) {
      if (this.#failure !== undefined) throw this.#failure;
      if (this.#planned) throw new Error(`internal error: chunk ${i} was never scheduled`);
      await new Promise<void>((resolve) => (this.#wakeWriter = resolve));
    }
    await this.#decoded[i];
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Writes the part [start, end) of chunk `i` from its slot, and feeds it to the image hash. */
  async #writeChunk(slot: SharedArrayBuffer, i: number, start: number, end: number): Promise<void> {
    const { pool, destination } = this.#input;
    // The hash reads the slot while it is written; the slot is free once both are done.
    const hashed = this.#streamsDigest ? pool.imageUpdate(slot, start, end - start) : Promise.resolve();
    // A failed update also fails imageDigest(); this rejection (e.g. the pool disposed after a failure) needs no handling here.
    hashed.catch(() => undefined);
    try {
      if (this.#unchanged.has(i)) return;
      await destination.write(new Uint8Array(slot, start - i * this.#chunkSize, end - start), start - this.#from);
      this.#bytesWritten += end - start;
    } catch (err) {
      this.#failure ??= err;
      throw this.#failure;
    } finally {
      hashed.finally(() => this.#slots.release(slot)).catch(() => undefined);
    }
  }

  /** A zero or unused chunk: hashed as zeros, and written only where the destination keeps old bytes (and, by delta, holds others). */
  async #writeHole(kind: ChunkKind, i: number, start: number, end: number): Promise<void> {
    if (this.#streamsDigest) this.#input.pool.imageZeros(start, end - start).catch(() => undefined);
    if (this.#zeros !== undefined && kind === ChunkKind.unused && !this.#zeroUnused) this.#bytesLeftUnused += end - start;
    const writeZeros = this.#zeros !== undefined && !this.#unchanged.has(i) && (kind === ChunkKind.zero || (kind === ChunkKind.unused && this.#zeroUnused));
    if (!writeZeros) return;
    const { destination } = this.#input;
    if (destination.zero) {
      await destination.zero(start - this.#from, end - start);
      this.#bytesZeroed += end - start;
      return;
    }
    await destination.write(this.#zeros!.subarray(0, end - start), start - this.#from);
    this.#bytesWritten += end - start;
  }
}

/** A group of chunks to fetch, or one chunk that is not fetched: a hole, data no index names, or (delta) what the destination holds already. */
type PlanItem = FetchGroup | { index: number; kind: ChunkKind | 'lost' | 'unchanged' };

/**
 * Chunks [first, last) in image order: holes as they are, data coalesced into ranged reads of
 * one pack, data whose blob no index names as `lost` (only with ignoreDamage; otherwise the
 * restore refused to start).
 */
function* plan(records: readonly ChunkRecord[], index: BlobIndex, first: number, last: number): Generator<PlanItem> {
  let group: FetchGroup | undefined;
  for (let i = first; i < last; i++) {
    const record = records[i]!;
    if (record.kind !== ChunkKind.data) {
      if (group) yield group;
      group = undefined;
      yield { index: i, kind: record.kind };
      continue;
    }
    const id = record.id!.toString('hex');
    const location = index.get(id);
    if (!location) {
      if (group) yield group;
      group = undefined;
      yield { index: i, kind: 'lost' };
      continue;
    }
    if (group && joinsFetchGroup(group, location)) {
      group.length += location.length;
      group.chunks.push({ index: i, id, location });
    } else {
      if (group) yield group;
      group = { pack: location.pack, offset: location.offset, length: location.length, chunks: [{ index: i, id, location }] };
    }
  }
  if (group) yield group;
}

