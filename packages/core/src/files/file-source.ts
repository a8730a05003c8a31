import type { IDisposable } from '../lifecycle.js';
import type { Extent } from '../source.js';
import type { EntryMetadata, EntryType } from './tree.js';

/*
 * What a file source plugin (type `files`) hands the core. The plugin knows the file system:
 * it walks, applies the job's excludes, reads metadata (lstat, xattrs, ACLs, link targets,
 * owner names) and opens files. The core does everything else: content-defined chunking,
 * deduplication against the parent snapshot and the repository, trees, the manifest.
 * Paths are bytes (Linux names need not be UTF-8) and absolute.
 */

/** Metadata of one path as the source read it; sockets and other unstorable types come back as such. */
export interface FileMetadata extends Omit<EntryMetadata, 'type'> {
  type: EntryType | 'socket';
}

/** One child of a folder that the job includes. */
export interface ListedEntry {
  name: Buffer;
  metadata: FileMetadata;
}

/** A child that is not backed up: unreadable (a warning; the snapshot is incomplete) or skipped by nature (a socket: a note). */
export interface ListingProblem {
  name: Buffer;
  kind: 'unreadable' | 'skipped';
  /** Why, for the user: "permission denied", "a socket". */
  reason: string;
}

export interface FolderListing {
  /** The included children, in no particular order. Excluded ones are not mentioned. */
  entries: ListedEntry[];
  problems: ListingProblem[];
}

/** A regular file opened for reading (with O_NOATIME where permitted). */
export interface OpenedFile {
  /** Sorted ranges holding data (SEEK_DATA/SEEK_HOLE); `[0, size)` when the file system cannot tell. */
  dataRanges(size: number): Promise<Extent[]>;
  /** Reads up to `length` bytes at `position` of the file into `into[offset…]`; resolves to the bytes read (0 at the end). */
  read(into: Uint8Array, offset: number, length: number, position: number): Promise<number>;
  /** The file's size and times now (fstat): compared with those it was opened with to tell a file that changed while read. */
  stat(): Promise<Pick<EntryMetadata, 'size' | 'mtimeNs' | 'ctimeNs'>>;
  close(): Promise<void>;
}

/** What `OpenedFileTree.readWhole` read. */
export interface WholeFileRead {
  bytesRead: number;
  after: Pick<EntryMetadata, 'size' | 'mtimeNs' | 'ctimeNs'>;
}

/** An opened file source: what `SourceFactory.open` returns for a source of kind `files`. */
export interface OpenedFileTree extends IDisposable {
  readonly kind: 'files';
  /** Stable description for the snapshot, e.g. the paths joined with ", ". */
  readonly path: string;
  /** The absolute paths the job backs up, normalised, without duplicates or one inside another. */
  readonly roots: readonly Buffer[];
  /** Things the user should know before the run (e.g. a path that does not exist); printed as warnings. */
  readonly warnings: readonly string[];
  /** lstat and xattrs of one path, never following a final symlink. Rejects when it cannot be read. */
  stat(path: Buffer): Promise<FileMetadata>;
  /** The children of a folder the job includes, with their metadata. Rejects when the folder cannot be listed. */
  list(path: Buffer, folder: FileMetadata): Promise<FolderListing>;
  /** Opens a regular file. Rejects when it cannot be opened. */
  open(path: Buffer): Promise<OpenedFile>;
  /**
   * Optional fast path for small files (added by files-source; a source may lack it): reads the
   * regular file from its start into `into` (up to `into.length` bytes, fewer only at its end)
   * and tells its size and times after reading, as `open`, `read`, `stat` and `close` would, in
   * one trip to the thread pool instead of four. `into` (a view of a SharedArrayBuffer slot is
   * fine) must not be touched until it settles. Rejects when the file cannot be opened or read.
   */
  readWhole?(path: Buffer, into: Uint8Array): Promise<WholeFileRead>;
}

/** True for the file source's opened form (a volume source has no `kind`). */
export function isFileTree(source: object): source is OpenedFileTree {
  return (source as { kind?: unknown }).kind === 'files';
}
