import { lstat, open } from 'node:fs/promises';
import { describeSystemError, type FileMetadata, type FolderListing, type ListedEntry, type ListingProblem, type OpenedFile, type OpenedFileTree, type Posix, type WholeFileRead } from '@cairn/core';
import { MetadataReader, type ListedChildren } from './metadata.js';
import { openForReading } from './opened-file.js';
import { nameText, type CandidatePath } from './patterns.js';
import { WholeReads } from './whole-reads.js';
import type { Root, WalkOptions } from './settings.js';

const CACHEDIR_TAG = Buffer.from('CACHEDIR.TAG');
const CACHEDIR_SIGNATURE = Buffer.from('Signature: 8a477f597d28d172789f06886806bc55');
const SLASH = 0x2f;

/** A folder being listed: where it is relative to its backed-up root, for the exclude patterns. */
interface FolderContext {
  path: Buffer;
  /** Relative to the root, as text for matching ('' for the root itself). */
  relative: string;
  absolute: string;
}

/** The `files` source of one run: walks the backed-up paths with the job's excludes. */
export class FileTree implements OpenedFileTree {
  readonly kind = 'files';
  readonly path: string;
  readonly roots: readonly Buffer[];
  private readonly metadata: MetadataReader;
  private readonly wholeReads: WholeReads;

  constructor(
    private readonly options: WalkOptions,
    readonly warnings: readonly string[],
    private readonly posix: Posix,
  ) {
    this.roots = options.roots.map((root) => root.path);
    this.path = this.roots.map((root) => root.toString()).join(', ');
    this.metadata = new MetadataReader(posix);
    this.wholeReads = new WholeReads(posix);
  }

  async stat(path: Buffer): Promise<FileMetadata> {
    return this.metadata.fromStats(path, await lstat(path, { bigint: true }));
  }

  async list(path: Buffer, folder: FileMetadata): Promise<FolderListing> {
    const root = this.rootOf(path);
    // With oneFileSystem a mount point below a root is kept, empty.
    if (this.options.oneFileSystem && root !== undefined && folder.device !== root.device) return { entries: [], problems: [] };
    const listed = await this.posix.listChildren(path);
    const names = namesOf(listed);
    const cacheTag = this.options.excludeCaches ? await this.cacheTagOf(path, names, listed) : undefined;
    const context = folderContext(path, root);
    const entries: ListedEntry[] = [];
    const problems: ListingProblem[] = [];
    names.forEach((name, i) => {
      if (!this.isIncluded(context, listed, name, i, cacheTag)) return;
      const error = listed.errors[i];
      if (error?.code === 'ENOENT') return; // removed since the folder was read
      if (error !== undefined) return void problems.push({ name, kind: 'unreadable', reason: describeSystemError(error) });
      const metadata = this.metadata.fromChildren(listed, i);
      if (metadata.type === 'socket') problems.push({ name, kind: 'skipped', reason: 'a socket' });
      else if (metadata.type !== 'file' || metadata.size <= this.options.excludeLargerThan) entries.push({ name, metadata });
    });
    return { entries, problems };
  }

  open(path: Buffer): Promise<OpenedFile> {
    return openForReading(path, this.posix);
  }

  async readWhole(path: Buffer, into: Uint8Array): Promise<WholeFileRead> {
    const { bytesRead, size, mtimeNs, ctimeNs } = await this.wholeReads.read(path, into);
    return { bytesRead, after: { size, mtimeNs, ctimeNs } };
  }

  dispose(): void {
    // Nothing is held between calls: each opened file is closed by its reader.
  }

  private rootOf(path: Buffer): Root | undefined {
    return this.options.roots.find((root) => isSameOrInside(path, root.path));
  }

  /** Whether the walk takes child `index`: one no pattern excludes, and in a cache folder only its tag. */
  private isIncluded(folder: FolderContext, listed: ListedChildren, name: Buffer, index: number, cacheTag: number | undefined): boolean {
    if (cacheTag !== undefined && index !== cacheTag) return false;
    if (this.options.excludes.isEmpty) return true;
    const text = nameText(name);
    const candidate: CandidatePath = {
      name: text,
      relative: folder.relative === '' ? text : `${folder.relative}/${text}`,
      absolute: folder.absolute === '/' ? `/${text}` : `${folder.absolute}/${text}`,
    };
    return !this.options.excludes.excludes(candidate, this.metadata.typeOfListed(listed, index) === 'dir');
  }

  /** The index of the folder's CACHEDIR.TAG when it marks a cache folder (https://bford.info/cachedir/): a file that starts with the signature. */
  private async cacheTagOf(folder: Buffer, names: readonly Buffer[], listed: ListedChildren): Promise<number | undefined> {
    const tag = names.findIndex((name) => name.equals(CACHEDIR_TAG));
    if (tag < 0 || this.metadata.typeOfListed(listed, tag) !== 'file') return undefined;
    return (await startsWithSignature(joinPath(folder, CACHEDIR_TAG))) ? tag : undefined;
  }
}

/**
 * The names listChildren found, as views of its one buffer of them: the entries of the folders
 * being walked keep their names until their trees are stored (25,000 at once in a corpus
 * backup), and a Buffer of its own each is an ArrayBuffer, a backing store and a malloc'd block.
 */
function namesOf(listed: ListedChildren): Buffer[] {
  const names: Buffer[] = new Array(listed.nameEnds.length);
  let start = 0;
  listed.nameEnds.forEach((end, i) => {
    names[i] = listed.names.subarray(start, end);
    start = end;
  });
  return names;
}

function isSameOrInside(path: Buffer, root: Buffer): boolean {
  if (root.length === 1) return true; // the root is `/`
  return path.length >= root.length && path.subarray(0, root.length).equals(root) && (path.length === root.length || path[root.length] === SLASH);
}

function folderContext(path: Buffer, root: Root | undefined): FolderContext {
  const absolute = nameText(path);
  if (root === undefined) return { path, absolute, relative: absolute.slice(1) };
  const relativeBytes = root.path.length === 1 ? path.subarray(1) : path.subarray(root.path.length + 1);
  return { path, absolute, relative: nameText(relativeBytes) };
}

export function joinPath(folder: Buffer, name: Buffer): Buffer {
  if (folder.length === 1 && folder[0] === SLASH) return Buffer.concat([folder, name]);
  return Buffer.concat([folder, Buffer.of(SLASH), name]);
}

/** Whether the file starts with the CACHEDIR.TAG signature; an unreadable tag does not make a cache folder. */
async function startsWithSignature(path: Buffer): Promise<boolean> {
  try {
    const handle = await open(path, 'r');
    try {
      const head = Buffer.alloc(CACHEDIR_SIGNATURE.length);
      const { bytesRead } = await handle.read(head, 0, head.length, 0);
      return bytesRead === head.length && head.equals(CACHEDIR_SIGNATURE);
    } finally {
      await handle.close();
    }
  } catch {
    return false;
  }
}
