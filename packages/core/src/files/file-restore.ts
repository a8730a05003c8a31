import { chmod, lchown, link, lstat, mkdir, open, readdir, rename, rm, symlink, unlink, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { DamageError, UsageError } from '../errors.js';
import { TEMP_PREFIX, tempName, tempWriterIsGone } from '../temp-names.js';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import type { Progress } from '../pipeline/progress.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { MetadataFailure, NewFile, Posix } from './posix.js';
import { TripBatcher } from '../pipeline/trips.js';
import { displayName, type ContentChunk, type TreeEntry } from './tree.js';
import type { TreeReader } from './tree-reader.js';
import type { BlobStream } from './content-reader.js';
import type { ArenaPiece } from './ring-arena.js';
import { PathSelection } from './restore-patterns.js';
import { selectedEntries, type PathEntry } from './selected-entries.js';
import { EntryVerifier, typeOf } from './restore-verify.js';

/**
 * What to do with a path that exists already:
 * - `always`: replace it with the snapshot's entry;
 * - `if-changed` (default): keep a regular file whose size and mtime (to the nanosecond)
 *   are the snapshot's and whose bytes match the snapshot's chunk ids (it is read to tell), and
 *   a symlink, device node or FIFO of the same kind and target or device number; their
 *   owner, mode, extended attributes and times are set again; anything else is replaced;
 * - `never`: keep whatever is there (a folder is always kept and restored into).
 * A folder on the path of a file is never removed: the entry is skipped with a warning.
 */
export type OverwriteMode = 'always' | 'if-changed' | 'never';
export const OVERWRITE_MODES: readonly OverwriteMode[] = ['always', 'if-changed', 'never'];

export interface FileRestoreOptions {
  include?: readonly string[];
  exclude?: readonly string[];
  overwrite?: OverwriteMode;
  /** Read every restored file back and compare it with the snapshot. */
  verify?: boolean;
}

export interface FileRestoreInput {
  reader: TreeReader;
  blobs: BlobStream;
  pool: WorkerPool;
  posix: Posix;
  snapshot: string;
  manifest: FileSnapshotManifest;
  /** The folder to restore into (absolute); the snapshot's paths go below it. */
  to: string;
  options: FileRestoreOptions;
  progress: Progress;
  warn(message: string): void;
}

export interface FileRestoreCounts {
  /** Entries the snapshot selection holds (with the folders above included ones). */
  entries: number;
  /** Entries written: files, folders created, links, nodes. */
  restored: number;
  /** Entries already there as in the snapshot (`if-changed`), or folders that existed. */
  unchanged: number;
  /** Entries left as they were (`never`, or a folder in the way). */
  skipped: number;
  bytesWritten: number;
  /** Metadata that could not be set (each was warned about). */
  warnings: number;
}

export interface VerifyReport {
  entries: number;
  mismatches: Array<{ path: string; problem: string }>;
}

type Action = 'create' | 'link' | 'unchanged' | 'skip';

interface Planned extends PathEntry {
  /** Where it goes: `to` + its snapshot path. */
  dest: Buffer;
  action: Action;
  /** For `link`: the restored path it is a hard link of. */
  linkTo?: Buffer;
  /** Something not a folder is in the way of a folder (removed first). */
  replace?: boolean;
}

/** Entries being finished at once (see #write). */
const ENTRIES_IN_FLIGHT = 32;
/** Files up to this size are read whole from the blob stream and finished by a task of their own. */
const SMALL_FILE = 2 * 1024 * 1024;
/** Chunk writes of a large file in flight at once. */
const WRITES_PER_FILE = 4;
/** Small files written in one trip to the thread pool at most (see TripBatcher). */
const SMALL_FILES_PER_TRIP = 8;

/** What a MetadataFailure of writeFileAndRename could not set, in #setMetadata's words. */
const FAILED_METADATA: Record<MetadataFailure['what'], (name?: string) => string> = {
  owner: () => 'the owner',
  mode: () => 'the mode',
  xattr: (name) => `extended attribute ${name}`,
  times: () => 'the times',
};

const S_IFMT_OF: Partial<Record<TreeEntry['type'], number>> = { chardev: constants.S_IFCHR, blockdev: constants.S_IFBLK, fifo: constants.S_IFIFO };

/**
 * Writes the selected entries of a file snapshot below a folder. Every file, link and node is
 * made under a temporary name in its folder, given its metadata, and renamed to its real name
 * only then: a killed restore leaves no half-written file under a real name, and the next one
 * removes the temporary files of restores that are gone. Folders get their metadata last,
 * deepest first, after their children (whose creation changes a folder's times).
 */
export class FileTreeRestore {
  readonly #input: FileRestoreInput;
  readonly #overwrite: OverwriteMode;
  readonly #owners = process.getuid?.() === 0;
  readonly #verifier: EntryVerifier;
  /** Hard link groups (device:inode) to the first path restored of each. */
  readonly #links = new Map<string, Buffer>();
  /** When each first name of a hard-linked file is complete (its other names are links to it). */
  readonly #finished = new Map<string, Promise<void>>();
  /** Folders this restore creates. */
  readonly #newFolders = new Set<string>();
  /** Folders skipped (their destination is not a folder): what is below them is skipped too. */
  readonly #skippedFolders = new Set<string>();
  readonly #counts: FileRestoreCounts = { entries: 0, restored: 0, unchanged: 0, skipped: 0, bytesWritten: 0, warnings: 0 };
  readonly #smallFiles: TripBatcher<NewFile, MetadataFailure[]>;

  constructor(input: FileRestoreInput) {
    this.#input = input;
    this.#overwrite = input.options.overwrite ?? 'if-changed';
    this.#verifier = new EntryVerifier(input.pool, input.posix, input.manifest.chunker.max, this.#owners);
    this.#smallFiles = new TripBatcher<NewFile, MetadataFailure[]>(SMALL_FILES_PER_TRIP, (files) => input.posix.writeFilesAndRename(files));
  }

  async run(): Promise<{ counts: FileRestoreCounts; verified?: VerifyReport }> {
    const { reader, manifest, options } = this.#input;
    const selection = new PathSelection(options.include, options.exclude);
    const walk = selectedEntries(reader, manifest, selection)[Symbol.asyncIterator]();
    const batchSize = this.#input.pool.memory.fileRestoreBatch;
    let batch = await nextBatch(walk, batchSize);
    if (batch.length === 0 && !selection.includesAll) throw new UsageError(`Nothing in snapshot ${this.#input.snapshot.slice(0, 12)} matches --include ${options.include!.join(' ')}`);
    await this.#prepareDestination();
    const folders: Planned[] = [];
    const toVerify: Planned[] = [];
    this.#input.progress.start('restore', selection.includesAll ? manifest.stats.totalBytes : await this.#bytesSelected(selection));
    try {
      for (; batch.length > 0; batch = await nextBatch(walk, batchSize)) {
        const planned: Planned[] = [];
        for (const item of batch) planned.push(await this.#plan(item));
        this.#counts.entries += planned.length;
        await this.#write(planned);
        for (const item of planned) {
          if (item.action === 'skip') continue;
          if (item.entry.type === 'dir') folders.push(item);
          if (options.verify) toVerify.push(item);
        }
      }
    } finally {
      this.#input.progress.done();
    }
    await this.#setFolderMetadata(folders);
    const verified = options.verify ? await this.#verify(toVerify) : undefined;
    return { counts: this.#counts, ...(verified && { verified }) };
  }

  /**
   * Each folder's metadata, once everything in it is written (creating an entry changes the
   * folder's mtime), and deepest first, so that a folder whose mode shuts its owner out is not
   * closed before what is inside it has its own. The folders of one depth are independent and
   * go ENTRIES_IN_FLIGHT at once: one after the other, the corpus's 3,734 folders took about
   * half a second of trips to the thread pool at the end of its restore, with nothing else to do.
   */
  async #setFolderMetadata(folders: readonly Planned[]): Promise<void> {
    const byDepth = new Map<number, Planned[]>();
    for (const item of folders) {
      const depth = slashesIn(item.dest);
      const level = byDepth.get(depth);
      if (level) level.push(item);
      else byDepth.set(depth, [item]);
    }
    for (const depth of [...byDepth.keys()].sort((a, b) => b - a)) {
      const tasks = new BoundedTasks(ENTRIES_IN_FLIGHT);
      for (const item of byDepth.get(depth)!) await tasks.start(() => this.#setMetadata(item.dest, item.entry));
      await tasks.settle();
    }
  }

  /** The bytes of the files a partial selection takes (for progress): a walk of the trees it reaches, holding nothing. */
  async #bytesSelected(selection: PathSelection): Promise<number> {
    let bytes = 0;
    for await (const piece of selectedEntries(this.#input.reader, this.#input.manifest, selection)) for (const { entry } of piece) if (entry.type === 'file') bytes += entry.size;
    return bytes;
  }

  /** The destination must be a folder (created when missing); leftovers of killed restores in it go. */
  async #prepareDestination(): Promise<void> {
    const { to } = this.#input;
    const stats = await lstat(to).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!stats) {
      await mkdir(to, { recursive: true });
      return;
    }
    if (stats.isBlockDevice()) throw new UsageError(`${to} is a block device; a file snapshot is restored into a folder (--to <folder>)`);
    if (!stats.isDirectory()) throw new UsageError(`${to} exists and is not a folder; a file snapshot is restored into a folder (--to <folder>)`);
    await this.#removeLeftovers(Buffer.from(to));
  }

  /** Removes temporary files of restores (of this host) that are no longer running. */
  async #removeLeftovers(folder: Buffer): Promise<void> {
    const names = await readdir(folder, { encoding: 'buffer' }).catch(() => [] as Buffer[]);
    for (const name of names) {
      if (!name.subarray(0, TEMP_PREFIX.length).equals(Buffer.from(TEMP_PREFIX)) || !tempWriterIsGone(name.toString('latin1'))) continue;
      await unlink(joinBytes(folder, name)).catch(() => undefined);
    }
  }

  async #plan(item: PathEntry): Promise<Planned> {
    const dest = Buffer.concat([Buffer.from(this.#input.to === '/' ? '' : this.#input.to), item.path]);
    const planned: Planned = { ...item, dest, action: 'create' };
    // Said once per entry, not counted among the metadata warnings: the snapshot holds it so.
    if (item.entry.error !== undefined) this.#input.warn(`${displayName(item.path)} is incomplete in the snapshot (${item.entry.error}); it is restored as stored`);
    const parent = parentOf(dest).toString('latin1');
    if (this.#skippedFolders.has(parent)) return this.#skip(planned);
    // Nothing can be in a folder this restore creates: no need to look.
    const existing = this.#newFolders.has(parent) ? undefined : await existingAt(dest);
    const type = existing && typeOf(existing);
    if (item.entry.type === 'dir') {
      if (type === 'dir') return { ...planned, action: 'unchanged' };
      if (!existing) {
        this.#newFolders.add(dest.toString('latin1'));
        return planned;
      }
      return this.#overwrite === 'never' ? this.#skip(planned) : { ...planned, replace: true };
    }
    const linkTo = this.#hardLinkOf(item.entry, dest);
    if (linkTo) planned.action = 'link';
    if (!existing) return { ...planned, linkTo };
    if (type === 'dir') {
      this.#warn(`${displayName(dest)} is a folder; the snapshot's ${item.entry.type} is not restored there`);
      return this.#skip(planned);
    }
    if (this.#overwrite === 'never') return this.#skip(planned);
    if (this.#overwrite === 'if-changed' && (await this.#isUnchanged(planned, existing, linkTo))) return { ...planned, action: 'unchanged' };
    return { ...planned, linkTo };
  }

  #skip(planned: Planned): Planned {
    if (planned.entry.type === 'dir') this.#skippedFolders.add(planned.dest.toString('latin1'));
    return { ...planned, action: 'skip' };
  }

  /** The path restored first of the entry's hard link group, or undefined when it is the first (or not linked). */
  #hardLinkOf(entry: TreeEntry, dest: Buffer): Buffer | undefined {
    if (entry.links < 2 || entry.type === 'dir') return undefined;
    const key = `${entry.device}:${entry.inode}`;
    const first = this.#links.get(key);
    if (!first) this.#links.set(key, dest);
    return first;
  }

  async #isUnchanged(planned: Planned, existing: { mode: bigint; size: bigint; mtimeNs: bigint; rdev: bigint; ino: bigint; dev: bigint }, linkTo: Buffer | undefined): Promise<boolean> {
    const { entry, dest } = planned;
    if (typeOf(existing) !== entry.type) return false;
    if (linkTo) {
      const first = await lstat(linkTo, { bigint: true }).catch(() => undefined);
      return first !== undefined && first.ino === existing.ino && first.dev === existing.dev;
    }
    if (entry.type === 'file') return Number(existing.size) === entry.size && existing.mtimeNs === entry.mtimeNs && (await this.#verifier.contentProblem(dest, entry)) === undefined;
    if (entry.type === 'symlink') return (await this.#verifier.problems(dest, entry)).every((p) => p !== 'the link target differs');
    if (entry.rdev !== undefined) return existing.rdev === entry.rdev;
    return true;
  }

  /**
   * Creates a batch of entries in order, file contents from one stream of blobs fetched ahead. Folders
   * are made in turn (their children need them); files, links and nodes are finished by tasks,
   * many at once: each takes several file system calls that wait on the disk, and small files
   * restore several times faster with their calls overlapping. A small file's blobs are taken
   * from the stream before its task starts; a large one is written in turn, from the stream.
   */
  async #write(planned: readonly Planned[]): Promise<void> {
    const toFetch = planned.filter((p) => p.action === 'create' && p.entry.type === 'file');
    const contents = this.#input.blobs.readShared(toFetch.flatMap((p) => p.entry.content!))[Symbol.asyncIterator]();
    const tasks = new BoundedTasks(ENTRIES_IN_FLIGHT);
    try {
      for (const item of planned) await this.#writeEntry(item, contents, tasks);
      await tasks.settle();
    } finally {
      await tasks.settleAll();
      await contents.return?.(undefined);
    }
  }

  async #writeEntry(item: Planned, contents: AsyncIterator<ArenaPiece>, tasks: BoundedTasks): Promise<void> {
    const { entry, dest, action } = item;
    // Progress counts every file's size (the total is the selection's): what is not written passes at once.
    if (entry.type === 'file' && action !== 'create') this.#input.progress.advance(entry.size);
    if (action === 'skip') return void this.#counts.skipped++;
    if (entry.type === 'dir') return this.#makeFolder(item);
    if (action === 'unchanged') {
      this.#counts.unchanged++;
      if (!item.linkTo) await tasks.start(() => this.#setMetadata(dest, entry));
      return;
    }
    this.#counts.restored++;
    if (action === 'link') {
      const first = this.#finished.get(item.linkTo!.toString('latin1'));
      await tasks.start(async () => {
        await first;
        await this.#atTempName(dest, (temp) => link(item.linkTo!, temp));
      });
      return;
    }
    let finished: Promise<void>;
    if (entry.type !== 'file') finished = (await tasks.start(() => this.#atTempName(dest, (temp) => this.#createNode(temp, entry)))).done;
    else if (entry.size <= SMALL_FILE) {
      finished = (await this.#startSmallFile(entry, dest, await this.#take(entry, contents, dest), tasks)).done;
    } else {
      finished = this.#atTempName(dest, (temp) => this.#writeFile(temp, entry, contents, dest));
      await finished;
    }
    if (entry.links > 1) this.#finished.set(dest.toString('latin1'), finished);
  }

  /** Makes the entry at a temporary name next to `dest` (`make`), gives it its metadata (not to a hard link: its first name has it), renames it. */
  async #atTempName(dest: Buffer, make: (temp: Buffer) => Promise<void>): Promise<void> {
    const temp = joinBytes(parentOf(dest), Buffer.from(tempName()));
    try {
      await make(temp);
      await rename(temp, dest);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
  }

  /** Starts the task that writes a small file from its blobs and then releases them (as `tasks.start`). */
  async #startSmallFile(entry: TreeEntry, dest: Buffer, blobs: ArenaPiece[], tasks: BoundedTasks): Promise<{ done: Promise<void> }> {
    const write = () => this.#writeSmallFile(dest, entry, blobs).finally(() => releaseAll(blobs));
    try {
      return await tasks.start(write);
    } catch (err) {
      releaseAll(blobs);
      throw err;
    }
  }

  /** A small file's blobs, taken from the stream (the task that writes them releases them). */
  async #take(entry: TreeEntry, contents: AsyncIterator<ArenaPiece>, dest: Buffer): Promise<ArenaPiece[]> {
    const blobs: ArenaPiece[] = [];
    try {
      for (const chunk of entry.content!) blobs.push(await nextBlob(contents, chunk, dest));
    } catch (err) {
      releaseAll(blobs);
      throw err;
    }
    return blobs;
  }

  async #makeFolder(item: Planned): Promise<void> {
    if (item.action === 'unchanged') {
      this.#counts.unchanged++;
      return this.#removeLeftovers(item.dest);
    }
    if (item.replace) await rm(item.dest, { force: true });
    // Owner-only until its metadata is set at the end: nobody else sees a half-restored folder's contents.
    await mkdir(item.dest, { mode: 0o700 });
    this.#counts.restored++;
  }

  /** A symlink, device node or FIFO, with its metadata. */
  async #createNode(temp: Buffer, entry: TreeEntry): Promise<void> {
    if (entry.type === 'symlink') await symlink(entry.target!, temp);
    else this.#input.posix.mknod(temp, S_IFMT_OF[entry.type]! | entry.mode, entry.rdev ?? 0n);
    await this.#setMetadata(temp, entry);
  }

  /**
   * A small file in one trip to the thread pool, with others (posix.writeFilesAndRename): made at
   * a temporary name, written, given its metadata and renamed, as #atTempName and #writeFile do in
   * several.
   */
  async #writeSmallFile(dest: Buffer, entry: TreeEntry, blobs: readonly ArenaPiece[]): Promise<void> {
    const temp = joinBytes(parentOf(dest), Buffer.from(tempName()));
    const chunks = entry.content!;
    const owner = this.#owners ? { uid: entry.uid, gid: entry.gid } : {};
    const metadata = { mode: entry.mode, ...owner, atimeNs: entry.atimeNs, mtimeNs: entry.mtimeNs, xattrs: entry.xattrs ?? [] };
    const failures = await this.#smallFiles.call({ temp, path: dest, pieces: blobs.map((blob) => blob.bytes), offsets: chunks.map((chunk) => chunk.offset), size: entry.size, metadata });
    for (const failure of failures) this.#warn(`${displayName(dest)}: cannot set ${FAILED_METADATA[failure.what](failure.name)}: ${failure.error.message}`);
    this.#wrote(contentBytes(entry));
    this.#passHoles(entry);
  }

  /**
   * Writes a large file's chunks at their offsets, WRITES_PER_FILE at once, as they come from
   * the stream, and sets the size (bytes no chunk covers stay holes), then the metadata.
   */
  async #writeFile(temp: Buffer, entry: TreeEntry, blobs: AsyncIterator<ArenaPiece>, dest: Buffer): Promise<void> {
    const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    const writes = new Set<Promise<void>>();
    let failure: { error: unknown } | undefined;
    try {
      for (const chunk of entry.content!) {
        const blob = await nextBlob(blobs, chunk, dest);
        const write: Promise<void> = writeFully(handle, blob.bytes, chunk.offset)
          .then(() => this.#wrote(chunk.length), (error: unknown) => void (failure ??= { error }))
          .finally(() => (blob.release(), writes.delete(write)));
        writes.add(write);
        while (writes.size >= WRITES_PER_FILE) await Promise.race(writes);
        if (failure) throw failure.error;
      }
      await Promise.all(writes);
      if (failure) throw failure.error;
      // A hole at the end: the size says where the file ends.
      const last = entry.content!.at(-1);
      if ((last ? last.offset + last.length : 0) < entry.size) await handle.truncate(entry.size);
    } finally {
      await Promise.all(writes);
      await handle.close();
    }
    this.#passHoles(entry);
    await this.#setMetadata(temp, entry);
  }

  #wrote(bytes: number): void {
    this.#counts.bytesWritten += bytes;
    this.#input.progress.advance(bytes);
  }

  /** A written file's holes count as done once its chunks are written. */
  #passHoles(entry: TreeEntry): void {
    this.#input.progress.advance(entry.size - contentBytes(entry));
  }

  /**
   * Owner (as root; it clears setuid bits and capabilities, so it comes first), mode (not on
   * symlinks: Linux has none), extended attributes (ACLs and capabilities among them), times.
   * A failure is a warning: the content is there.
   */
  async #setMetadata(path: Buffer, entry: TreeEntry): Promise<void> {
    const { posix } = this.#input;
    const attempt = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        this.#warn(`${displayName(path)}: cannot set ${what}: ${(err as Error).message}`);
      }
    };
    if (this.#owners) await attempt('the owner', () => lchown(path, entry.uid, entry.gid));
    if (entry.type !== 'symlink') await attempt('the mode', () => chmod(path, entry.mode));
    for (const xattr of entry.xattrs ?? []) await attempt(`extended attribute ${xattr.name}`, () => posix.setXattr(path, xattr.name, xattr.value));
    await attempt('the times', () => posix.setTimes(path, entry.atimeNs, entry.mtimeNs));
  }

  async #verify(planned: readonly Planned[]): Promise<VerifyReport> {
    const report: VerifyReport = { entries: 0, mismatches: [] };
    for (const item of planned) {
      if (item.action === 'skip') continue;
      report.entries++;
      for (const problem of await this.#verifier.problems(item.dest, item.entry)) report.mismatches.push({ path: displayName(item.dest), problem });
    }
    return report;
  }

  #warn(message: string): void {
    this.#counts.warnings++;
    this.#input.warn(message);
  }
}

function contentBytes(entry: TreeEntry): number {
  return entry.content!.reduce((sum, chunk) => sum + chunk.length, 0);
}

/**
 * The next entries of the walk, `size` or a piece more; none when it is over. A restore holds
 * one batch's entries at a time (and the folders, whose metadata comes last), not the whole
 * snapshot's, whose size has no bound.
 */
async function nextBatch(walk: AsyncIterator<PathEntry[]>, size: number): Promise<PathEntry[]> {
  const batch: PathEntry[] = [];
  while (batch.length < size) {
    const next = await walk.next();
    if (next.done) break;
    for (const entry of next.value) batch.push(entry);
  }
  return batch;
}

async function existingAt(path: Buffer) {
  return lstat(path, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}

/** The next blob of a stream, which must be the chunk's. */
async function nextBlob(blobs: Iterator<ArenaPiece> | AsyncIterator<ArenaPiece>, chunk: ContentChunk, dest: Buffer): Promise<ArenaPiece> {
  let next: IteratorResult<ArenaPiece>;
  try {
    next = await blobs.next();
  } catch (err) {
    throw err instanceof DamageError ? new DamageError(`${displayName(dest)} cannot be restored: ${err.message}`, { cause: err }) : err;
  }
  if (next.done || next.value.bytes.length !== chunk.length) {
    next.value?.release();
    throw new DamageError(`${displayName(dest)} cannot be restored: chunk ${chunk.id.slice(0, 12)} has ${next.value?.bytes.length} bytes, its tree says ${chunk.length}`);
  }
  return next.value;
}

function releaseAll(pieces: readonly ArenaPiece[]): void {
  for (const piece of pieces) piece.release();
}

/** Tasks run at most `limit` at once; the first failure fails the whole. */
class BoundedTasks {
  readonly #active = new Set<Promise<void>>();
  #failure: { error: unknown } | undefined;

  constructor(private readonly limit: number) {}

  /** Starts a task once a place is free; `done` settles with it (and never rejects: `settle` throws its error). */
  async start(task: () => Promise<void>): Promise<{ done: Promise<void> }> {
    while (this.#active.size >= this.limit) await Promise.race(this.#active);
    if (this.#failure) throw this.#failure.error;
    const done = task().catch((error: unknown) => void (this.#failure ??= { error }));
    const tracked = done.finally(() => this.#active.delete(tracked));
    this.#active.add(tracked);
    return { done };
  }

  async settle(): Promise<void> {
    await this.settleAll();
    if (this.#failure) throw this.#failure.error;
  }

  async settleAll(): Promise<void> {
    while (this.#active.size > 0) await Promise.all(this.#active);
  }
}

async function writeFully(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

function slashesIn(path: Buffer): number {
  let count = 0;
  for (let at = path.indexOf(0x2f); at !== -1; at = path.indexOf(0x2f, at + 1)) count++;
  return count;
}

function parentOf(path: Buffer): Buffer {
  const slash = path.lastIndexOf(0x2f);
  return slash <= 0 ? Buffer.from('/') : path.subarray(0, slash);
}

function joinBytes(folder: Buffer, name: Buffer): Buffer {
  return folder[folder.length - 1] === 0x2f ? Buffer.concat([folder, name]) : Buffer.concat([folder, Buffer.from('/'), name]);
}
