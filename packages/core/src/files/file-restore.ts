import { chmod, lchown, link, lstat, mkdir, open, readdir, rename, rm, symlink, unlink, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { DamageError, UsageError } from '../errors.js';
import { TEMP_PREFIX, tempName, tempWriterIsGone } from '../temp-names.js';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import type { Progress } from '../pipeline/progress.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import type { Posix } from './posix.js';
import { displayName, type TreeEntry } from './tree.js';
import type { TreeReader } from './tree-reader.js';
import type { BlobStream } from './content-reader.js';
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
  /** Folders skipped (their destination is not a folder): what is below them is skipped too. */
  readonly #skippedFolders = new Set<string>();
  readonly #counts: FileRestoreCounts = { entries: 0, restored: 0, unchanged: 0, skipped: 0, bytesWritten: 0, warnings: 0 };

  constructor(input: FileRestoreInput) {
    this.#input = input;
    this.#overwrite = input.options.overwrite ?? 'if-changed';
    this.#verifier = new EntryVerifier(input.pool, input.posix, input.manifest.chunker.max, this.#owners);
  }

  async run(): Promise<{ counts: FileRestoreCounts; verified?: VerifyReport }> {
    const { reader, manifest, options } = this.#input;
    const selection = new PathSelection(options.include, options.exclude);
    const entries: PathEntry[] = [];
    for await (const item of selectedEntries(reader, manifest, selection)) entries.push(item);
    if (entries.length === 0 && !selection.includesAll) throw new UsageError(`Nothing in snapshot ${this.#input.snapshot.slice(0, 12)} matches --include ${options.include!.join(' ')}`);
    await this.#prepareDestination();
    const planned: Planned[] = [];
    for (const item of entries) planned.push(await this.#plan(item));
    this.#counts.entries = planned.length;
    await this.#write(planned);
    for (const item of [...planned].reverse()) if (item.entry.type === 'dir' && item.action !== 'skip') await this.#setMetadata(item.dest, item.entry);
    const verified = options.verify ? await this.#verify(planned) : undefined;
    return { counts: this.#counts, ...(verified && { verified }) };
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
    if (this.#skippedFolders.has(parentOf(dest).toString('latin1'))) return this.#skip(planned);
    const existing = await lstat(dest, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    const type = existing && typeOf(existing);
    if (item.entry.type === 'dir') {
      if (type === 'dir') return { ...planned, action: 'unchanged' };
      if (!existing) return planned;
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

  /** Creates everything in order, file contents from one stream of blobs fetched ahead. */
  async #write(planned: readonly Planned[]): Promise<void> {
    const toFetch = planned.filter((p) => p.action === 'create' && p.entry.type === 'file');
    const totalBytes = toFetch.reduce((sum, p) => sum + p.entry.size, 0);
    const contents = this.#input.blobs.read(toFetch.flatMap((p) => p.entry.content!))[Symbol.asyncIterator]();
    this.#input.progress.start('restore', totalBytes);
    try {
      for (const item of planned) await this.#writeEntry(item, contents);
    } finally {
      this.#input.progress.done();
      await contents.return?.(undefined);
    }
  }

  async #writeEntry(item: Planned, contents: AsyncIterator<Buffer>): Promise<void> {
    const { entry, dest, action } = item;
    if (action === 'skip') return void this.#counts.skipped++;
    if (entry.type === 'dir') return this.#makeFolder(item);
    if (action === 'unchanged') {
      this.#counts.unchanged++;
      if (!item.linkTo) await this.#setMetadata(dest, entry);
      return;
    }
    this.#counts.restored++;
    const temp = joinBytes(parentOf(dest), Buffer.from(tempName()));
    try {
      if (action === 'link') await link(item.linkTo!, temp);
      else await this.#create(temp, entry, contents, dest);
      if (action !== 'link') await this.#setMetadata(temp, entry);
      await rename(temp, dest);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
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

  async #create(temp: Buffer, entry: TreeEntry, contents: AsyncIterator<Buffer>, dest: Buffer): Promise<void> {
    if (entry.type === 'file') return this.#writeFile(temp, entry, contents, dest);
    if (entry.type === 'symlink') return symlink(entry.target!, temp);
    return this.#input.posix.mknod(temp, S_IFMT_OF[entry.type]! | entry.mode, entry.rdev ?? 0n);
  }

  /** Writes the chunks at their offsets and sets the size: bytes no chunk covers stay holes. */
  async #writeFile(temp: Buffer, entry: TreeEntry, contents: AsyncIterator<Buffer>, dest: Buffer): Promise<void> {
    const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      for (const chunk of entry.content!) {
        const next = await contents.next().catch((err: unknown) => {
          throw err instanceof DamageError ? new DamageError(`${displayName(dest)} cannot be restored: ${err.message}`, { cause: err }) : err;
        });
        if (next.done || next.value.length !== chunk.length) throw new DamageError(`${displayName(dest)} cannot be restored: chunk ${chunk.id.slice(0, 12)} has ${next.value?.length} bytes, its tree says ${chunk.length}`);
        await writeFully(handle, next.value, chunk.offset);
        this.#counts.bytesWritten += chunk.length;
        this.#input.progress.advance(chunk.length);
      }
      await handle.truncate(entry.size);
    } finally {
      await handle.close();
    }
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

async function writeFully(handle: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

function parentOf(path: Buffer): Buffer {
  const slash = path.lastIndexOf(0x2f);
  return slash <= 0 ? Buffer.from('/') : path.subarray(0, slash);
}

function joinBytes(folder: Buffer, name: Buffer): Buffer {
  return folder[folder.length - 1] === 0x2f ? Buffer.concat([folder, name]) : Buffer.concat([folder, Buffer.from('/'), name]);
}
