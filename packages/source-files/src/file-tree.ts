import type { Dirent } from 'node:fs';
import { lstat, open, readdir } from 'node:fs/promises';
import { describeSystemError, type FileMetadata, type FolderListing, type ListedEntry, type ListingProblem, type OpenedFile, type OpenedFileTree, type Posix, type WholeFileRead } from '@cairn/core';
import { MetadataReader } from './metadata.js';
import { openForReading } from './opened-file.js';
import { nameText, type CandidatePath } from './patterns.js';
import { WholeReads } from './whole-reads.js';
import type { Root, WalkOptions } from './settings.js';

const CACHEDIR_TAG = Buffer.from('CACHEDIR.TAG');
const CACHEDIR_SIGNATURE = Buffer.from('Signature: 8a477f597d28d172789f06886806bc55');
const SLASH = 0x2f;

type BufferDirent = Dirent & { name: Buffer };

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
    let children = (await readdir(path, { encoding: 'buffer', withFileTypes: true })) as BufferDirent[];
    if (this.options.excludeCaches && (await isCacheFolder(path, children))) children = children.filter((c) => c.name.equals(CACHEDIR_TAG));
    const context = folderContext(path, root);
    const included = this.options.excludes.isEmpty ? children : children.filter((child) => !this.isExcluded(context, child));
    return this.statChildren(path, included);
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

  private isExcluded(folder: FolderContext, child: BufferDirent): boolean {
    const name = nameText(child.name);
    const candidate: CandidatePath = {
      name,
      relative: folder.relative === '' ? name : `${folder.relative}/${name}`,
      absolute: folder.absolute === '/' ? `/${name}` : `${folder.absolute}/${name}`,
    };
    return this.options.excludes.excludes(candidate, child.isDirectory());
  }

  /** lstat, link targets and xattrs of the children, in one trip to the thread pool; vanished ones are left out. */
  private async statChildren(folder: Buffer, children: readonly BufferDirent[]): Promise<FolderListing> {
    const entries: ListedEntry[] = [];
    const problems: ListingProblem[] = [];
    const names = inOneBuffer(children.map((child) => child.name));
    const found = await this.posix.statChildren(folder, names);
    names.forEach((name, i) => {
      const error = found.errors[i];
      if (error?.code === 'ENOENT') return; // removed since the folder was read
      if (error !== undefined) return void problems.push({ name, kind: 'unreadable', reason: describeSystemError(error) });
      const metadata = this.metadata.fromChildren(found, i);
      if (metadata.type === 'socket') problems.push({ name, kind: 'skipped', reason: 'a socket' });
      else if (metadata.type !== 'file' || metadata.size <= this.options.excludeLargerThan) entries.push({ name, metadata });
    });
    return { entries, problems };
  }
}

/**
 * The names as views of one buffer: each name readdir gives is a Buffer with memory of its own
 * (an ArrayBuffer, a backing store and a malloc'd block), and the entries of the folders being
 * walked keep their names until their trees are stored (25,000 at once in a corpus backup).
 */
function inOneBuffer(names: readonly Buffer[]): Buffer[] {
  const all = Buffer.concat(names);
  let at = 0;
  return names.map((name) => all.subarray(at, (at += name.length)));
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

/** True when the folder holds a CACHEDIR.TAG file that starts with the signature (https://bford.info/cachedir/). */
async function isCacheFolder(folder: Buffer, children: readonly BufferDirent[]): Promise<boolean> {
  const tag = children.find((child) => child.name.equals(CACHEDIR_TAG));
  if (tag === undefined || !tag.isFile()) return false;
  try {
    const handle = await open(joinPath(folder, CACHEDIR_TAG), 'r');
    try {
      const head = Buffer.alloc(CACHEDIR_SIGNATURE.length);
      const { bytesRead } = await handle.read(head, 0, head.length, 0);
      return bytesRead === head.length && head.equals(CACHEDIR_SIGNATURE);
    } finally {
      await handle.close();
    }
  } catch {
    return false; // an unreadable tag does not make a cache folder
  }
}
