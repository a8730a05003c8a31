import { hostname } from 'node:os';
import { describeSystemError } from '../errors.js';
import { BlobType } from '../repository/format.js';
import { blobIdSchemeOf, cdcParametersOf } from '../repository/config.js';
import { blobIdOf } from '../crypto/crypto.js';
import type { BlobIndex, Repository } from '../repository/repository.js';
import { isFileManifest, type FileSnapshotManifest, type SkippedPath } from '../repository/snapshot.js';
import type { DamagedObject } from '../repository/repository.js';
import { ChunkLedger } from '../pipeline/chunk-ledger.js';
import { Packer } from '../pipeline/packer.js';
import { defaultPoolSize, type WorkerPool } from '../pipeline/worker-pool.js';
import type { Progress } from '../pipeline/progress.js';
import { FastCdc, gearTable, useNativeChunker } from './cdc.js';
import { ContentStore, FileReadFailure } from './file-content.js';
import type { FileMetadata, FolderListing, ListedEntry, OpenedFileTree } from './file-source.js';
import { Backlog, Semaphore } from './semaphore.js';
import { joinPath, pathNames } from './tree-reader.js';
import { decodeTree, displayName, encodeTree, type EntryType, type TreeEntry } from './tree.js';
import { keyOfName as keyOf, TreeBuilder } from './tree-builder.js';
import { readBlob } from '../pipeline/chunk-maps.js';
import type { CachedFolder, FolderCacheReader, FolderCacheWriter, FolderHasher } from './folder-cache.js';

export interface FileBackupInput {
  repository: Repository;
  index: BlobIndex;
  pool: WorkerPool;
  source: OpenedFileTree;
  sourceType: string;
  jobName: string;
  compression: string;
  progress: Progress;
  /** When the backup started: the snapshot's time. */
  started: Date;
  tags?: string[];
  /** The snapshot to compare with: its unchanged files are not read again (see findParent). */
  parent?: { id: string; manifest: FileSnapshotManifest };
  /** Called with the finished manifest once everything it needs is durable; throwing stops the snapshot. */
  beforeSnapshot?: (manifest: FileSnapshotManifest) => Promise<void>;
  /** No blob is told new (and stored) before this settles, nor at all if it rejects (see ChunkLedger). */
  blobsKnownAfter?: Promise<unknown>;
  /** A path that could not be backed up, or changed while read, as it happens. */
  warn?: (message: string) => void;
  /** Something skipped by nature (a socket). */
  note?: (message: string) => void;
  /**
   * The folder cache (folder-cache.ts): `previous` describes the parent snapshot's folders (only
   * given when it may be trusted for this run), `next` takes this run's.
   */
  folderCache?: { hasher: FolderHasher; previous?: FolderCacheReader; next: FolderCacheWriter };
}

export interface FileBackupResult {
  snapshot: string;
  manifest: FileSnapshotManifest;
  bytesRead: number;
  bytesAdded: number;
  /** Things the user should know about this run, beyond the per-path warnings already given. */
  warnings: string[];
}

/** The manifest lists this many skipped paths; `skippedCount` counts them all. */
export const MAX_SKIPPED_LISTED = 1000;
/** Per-path warnings printed as they happen; the rest are summed up at the end. */
const WARNINGS_SHOWN = 20;
/**
 * Files being read at once. The walk lists one folder at a time, depth first, and waits while
 * this many files are in flight: what is held in memory is the entries of the folders whose
 * files are still being read, whatever the size of the tree.
 */
const FILES_IN_FLIGHT = 64;
/**
 * Entries of folders listed completely but not stored yet (their files are being read, or
 * their tree sealed) before the walk waits. Only those count: they finish without more of the
 * walk, so waiting for them cannot wait for itself (the folders above the walk's position can).
 */
const ENTRIES_BACKLOG = 4096;
/** Subfolders of the folder being walked that are listed (and their parent trees fetched) ahead of the walk. */
const FOLDERS_READ_AHEAD = 8;

/** A folder as the walk needs it: its listing (or why it has none) and the parent snapshot's entries of it. */
interface FolderRead {
  listing?: FolderListing;
  error?: unknown;
  previous: Map<string, TreeEntry> | undefined;
  /** With the folder cache: the folder's path key and its listing's fingerprint. */
  cacheKey?: { pathKey: Buffer; fingerprint: Buffer };
  /** The folder cache's record of the folder when its listing is unchanged, and its subfolders' trees by name then (the parent's trees were not fetched). */
  cached?: { folder: CachedFolder; subtrees: Map<string, string> };
}

/** What a folder's own files add to the snapshot, and whether its tree may go into the folder cache. */
interface OwnFiles {
  files: number;
  chunks: number;
  bytes: number;
  /** No entry has an error or changed while read. */
  clean: boolean;
}

/**
 * Backs up the source's roots into a file snapshot: trees bottom-up, one blob per folder,
 * file content cut by FastCDC. Files unchanged since the parent snapshot are not read.
 * A path that cannot be read is recorded and skipped; the snapshot is then incomplete.
 */
export function runFileBackup(input: FileBackupInput): Promise<FileBackupResult> {
  return new FileBackupSession(input).run();
}

/** The newest file snapshot of the job that backed up the same paths: the parent of the next one. */
export async function findParent(repository: Repository, jobName: string, paths: readonly string[]): Promise<FileBackupInput['parent']> {
  // A damaged snapshot is only a parent less; check reports it.
  const damaged: DamagedObject[] = [];
  const snapshots = await repository.listSnapshots(damaged);
  const wanted = [...paths].sort().join('\0');
  for (let i = snapshots.length - 1; i >= 0; i--) {
    const { id, manifest } = snapshots[i]!;
    if (isFileManifest(manifest) && manifest.job === jobName && [...manifest.paths].sort().join('\0') === wanted) return { id, manifest };
  }
  return undefined;
}

/** The paths to back up as a tree of names: `/home/u/docs` and `/etc` under one made-up `/`. */
interface RootNode {
  name: Buffer;
  path: Buffer;
  /** Backed up whole; otherwise only an ancestor of such paths (its own metadata, and them). */
  isRoot: boolean;
  children: RootNode[];
}

function rootTrie(roots: readonly Buffer[]): RootNode {
  const top: RootNode = { name: Buffer.from('/'), path: Buffer.from('/'), isRoot: false, children: [] };
  for (const root of roots) {
    let node = top;
    for (const name of pathNames(root)) {
      let child = node.children.find((c) => c.name.equals(name));
      if (!child) node.children.push((child = { name, path: joinPath(node.path, name), isRoot: false, children: [] }));
      node = child;
    }
    node.isRoot = true;
  }
  return top;
}

/** Work the walk has started: `done` settles when the entry (or tree) is complete. Not a bare promise: those would be flattened. */
interface Later<T> {
  done: Promise<T>;
}

const ready = <T>(value: T): Later<T> => ({ done: Promise.resolve(value) });
/**
 * The items in order, each slot emptied as it is taken: a folder's listing can hold tens of
 * thousands of entries, and one walked is the tree builder's (encoded) or a file read's.
 */
function* drain<T>(items: Array<T | undefined>): Generator<T> {
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    items[i] = undefined;
    yield item;
  }
}

const subtreeOf = (entry: TreeEntry | undefined): string | undefined => (entry?.type === 'dir' ? entry.subtree : undefined);

const ownFiles = (): OwnFiles => ({ files: 0, chunks: 0, bytes: 0, clean: true });

function addOwn(own: OwnFiles, entry: TreeEntry | undefined): void {
  if (!entry) return;
  if (entry.error !== undefined || entry.changed) own.clean = false;
  if (entry.type !== 'file') return;
  own.files++;
  own.chunks += entry.content!.length;
  own.bytes += entry.size;
}

function entryOf(name: Buffer, metadata: FileMetadata): TreeEntry {
  return { ...metadata, type: metadata.type as EntryType, name };
}

class FileBackupSession {
  readonly #input: FileBackupInput;
  readonly #packer: Packer;
  readonly #ledger: ChunkLedger;
  readonly #cdc: FastCdc;
  readonly #content: ContentStore;
  readonly #filesInFlight = new Semaphore(FILES_IN_FLIGHT);
  readonly #backlog = new Backlog();
  /** The first failure of work the walk started (a repository error): the walk stops at it. */
  #failure: { error: unknown } | undefined;
  readonly #stats = { files: 0, dirs: 0, others: 0, totalBytes: 0, unchangedFiles: 0, treeBlobs: 0, changedWhileRead: 0 };
  readonly #skipped: SkippedPath[] = [];
  #skippedCount = 0;
  #warned = 0;
  #parentTreeUnreadable = false;
  /** Folders read ahead of the walk, by path (latin1: every byte kept). */
  readonly #readAhead = new Map<string, Promise<FolderRead>>();
  readonly #startedAt = performance.now();

  constructor(input: FileBackupInput) {
    const { repository, index, pool } = input;
    this.#input = input;
    this.#cdc = new FastCdc(gearTable(repository.config, repository.masterKey), cdcParametersOf(repository.config, repository.location));
    this.#packer = new Packer(repository, pool.memory.uploadsInFlight(repository.concurrentPuts));
    // Only its claims are used: a blob this run or another writer stored already is not stored again.
    this.#ledger = new ChunkLedger(0, index, input.blobsKnownAfter);
    this.#content = new ContentStore(pool, this.#packer, this.#cdc, (id) => this.#ledger.claim(id), defaultPoolSize() + 2, (bytes) => input.progress.advance(bytes));
  }

  async run(): Promise<FileBackupResult> {
    const { progress } = this.#input;
    // The total is not known before the walk: the parent's is the best guess (files not read
    // again count as done), else the bar shows only what was read.
    progress.start('backup', this.#input.parent?.manifest.stats.totalBytes ?? 0);
    try {
      await useNativeChunker();
      const tree = await this.#rootTree();
      await this.#packer.flush();
      progress.done();
      return await this.#save(tree);
    } catch (err) {
      progress.done();
      await this.#packer.abandon();
      throw err;
    }
  }

  async #rootTree(): Promise<string> {
    const top = rootTrie(this.#input.source.roots);
    const previous = this.#input.parent?.manifest.tree;
    if (!top.isRoot) return (await this.#walkNodes(top.children, previous)).done;
    // Backing up `/` itself: the snapshot's root is the file system's.
    const folder = await this.#input.source.stat(top.path);
    const { subtree } = await (await this.#walkFolder(top.path, folder, previous)).done;
    // A root that cannot be listed is recorded as skipped; the snapshot's root is then empty.
    return subtree ?? this.#storeTree(encodeTree([]));
  }

  /** Starts tracking work of the walk; its failure stops the walk (the run fails with it). */
  #later<T>(work: Promise<T>): Later<T> {
    work.catch((error: unknown) => (this.#failure ??= { error }));
    return { done: work };
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }

  /**
   * The tree of a folder once its entries are all complete. When they equal the parent's tree
   * entry for entry, that tree is the answer: it is the same blob, and need not be encoded
   * and sealed again (most folders of an incremental backup).
   */
  #treeOf(builder: TreeBuilder): Later<string> {
    return this.#later(
      builder.finish().then((built) => {
        if (!built.unchanged) return this.#storeTree(built.plain);
        this.#stats.treeBlobs++;
        return built.id;
      }),
    );
  }

  /** The tree of one level of the roots' trie: the paths' ancestors and the paths themselves. */
  async #walkNodes(nodes: readonly RootNode[], previousTree: string | undefined): Promise<Later<string>> {
    const previous = await this.#previousEntries(previousTree);
    // Not compared with the parent's: a level of ancestors lists only the paths' names, not the folder.
    const builder = new TreeBuilder();
    for (const node of nodes) builder.follow((await this.#walkNode(node, previous?.get(keyOf(node.name)))).done);
    return this.#treeOf(builder);
  }

  async #walkNode(node: RootNode, previous: TreeEntry | undefined): Promise<Later<TreeEntry | undefined>> {
    let metadata: FileMetadata;
    try {
      metadata = await this.#input.source.stat(node.path);
    } catch (err) {
      this.#skip(node.path, describeSystemError(err));
      return ready(undefined);
    }
    if (node.isRoot) return this.#walkEntry(node.path, node.name, metadata, previous);
    if (metadata.type !== 'dir') {
      this.#skip(node.path, `not a folder (a ${metadata.type}), but the paths to back up are inside it`);
      return ready(undefined);
    }
    this.#stats.dirs++;
    const tree = await this.#walkNodes(node.children, previous?.type === 'dir' ? previous.subtree : undefined);
    return this.#later(tree.done.then((subtree) => ({ ...entryOf(node.name, metadata), subtree })));
  }

  /** One listed path: a folder with everything in it, a file with its content, or an entry without content. */
  async #walkEntry(path: Buffer, name: Buffer, metadata: FileMetadata, previous: TreeEntry | undefined): Promise<Later<TreeEntry | undefined>> {
    switch (metadata.type) {
      case 'socket':
        this.#input.note?.(`${displayName(path)} is a socket; not backed up`);
        return ready(undefined);
      case 'dir': {
        this.#stats.dirs++;
        const tree = await this.#walkFolder(path, metadata, previous?.type === 'dir' ? previous.subtree : undefined);
        return this.#later(tree.done.then((children) => ({ ...entryOf(name, metadata), ...children })));
      }
      case 'file':
        this.#stats.files++;
        return this.#walkFile(path, name, metadata, previous);
      default:
        this.#stats.others++;
        return ready(entryOf(name, metadata));
    }
  }

  /** Lists a folder and starts its entries; `done` gives its tree id, or why it has none (it could not be listed). */
  async #walkFolder(path: Buffer, folder: FileMetadata, previousTree: string | undefined): Promise<Later<{ subtree?: string; error?: string }>> {
    await this.#backlog.below(ENTRIES_BACKLOG);
    this.#throwIfFailed();
    const read = await (this.#takeReadAhead(path) ?? this.#readFolder(path, folder, previousTree));
    if (read.error !== undefined) {
      const reason = describeSystemError(read.error);
      this.#skip(path, reason);
      return ready({ error: reason });
    }
    const listing = read.listing!;
    for (const problem of listing.problems) {
      const child = joinPath(path, problem.name);
      if (problem.kind === 'unreadable') this.#skip(child, problem.reason);
      else this.#input.note?.(`${displayName(child)} is not backed up: ${problem.reason}`);
    }
    const count = listing.entries.length;
    const tree = await (read.cached ? this.#walkCachedFolder(path, listing, read) : this.#walkListedFolder(path, listing, read, previousTree));
    // Counted once all its entries are walked (see ENTRIES_BACKLOG).
    this.#backlog.add(count);
    const stored = tree.done.finally(() => this.#backlog.done(count));
    return this.#later(stored.then((subtree) => ({ subtree })));
  }

  /** A folder's tree from its entries, each compared with the parent snapshot's (the entries of `read.previous`). */
  async #walkListedFolder(path: Buffer, listing: FolderListing, read: FolderRead, previousTree: string | undefined): Promise<Later<string>> {
    const { previous } = read;
    const reusable = previous && this.#input.index.has(previousTree!);
    const builder = new TreeBuilder(reusable ? { id: previousTree!, entries: previous } : undefined);
    const own = read.cacheKey && ownFiles();
    const count = listing.entries.length;
    const subfolders = listing.entries.filter((entry) => entry.metadata.type === 'dir');
    const readAhead = this.#folderReadAhead(path, subfolders, count, (name) => subtreeOf(previous?.get(keyOf(name))));
    for (const child of drain(listing.entries)) {
      readAhead.next();
      const entry = (await this.#walkEntry(joinPath(path, child.name), child.name, child.metadata, previous?.get(keyOf(child.name)))).done;
      builder.follow(entry);
      if (own) entry.then((complete) => addOwn(own, complete), () => undefined);
    }
    const tree = this.#treeOf(builder);
    if (own && listing.problems.length === 0) void tree.done.then((id) => this.#remember(read, id, own), () => undefined);
    return tree;
  }

  /**
   * A folder whose listing the folder cache knows unchanged: its files are the parent's, and
   * only its subfolders are walked. If each ends with the tree it had, so does the folder (the
   * parent's tree is not fetched); otherwise its tree is built from the parent's entries.
   */
  async #walkCachedFolder(path: Buffer, listing: FolderListing, read: FolderRead): Promise<Later<string>> {
    const { folder, subtrees } = read.cached!;
    const { entries } = listing;
    const subfolders = entries.filter((entry) => entry.metadata.type === 'dir');
    const readAhead = this.#folderReadAhead(path, subfolders, entries.length, (name) => subtrees.get(keyOf(name)));
    // Not files: the rebuild walks them, if there is one; otherwise the cache tells what they add.
    const walked: Array<Promise<TreeEntry | undefined> | undefined> = [];
    for (const { name, metadata } of entries) {
      readAhead.next();
      const previous = metadata.type === 'dir' ? ({ type: 'dir', subtree: subtrees.get(keyOf(name)) } as TreeEntry) : undefined;
      walked.push(metadata.type === 'file' ? undefined : (await this.#walkEntry(joinPath(path, name), name, metadata, previous)).done);
    }
    return this.#later(
      Promise.all(walked).then((done) => {
        const unchanged = done.every((entry) => entry?.type !== 'dir' || (entry.error === undefined && entry.subtree === subtrees.get(keyOf(entry.name))));
        if (!unchanged) return this.#rebuiltFolder(path, entries, walked, read).then((tree) => tree.done);
        this.#countCachedFiles(folder);
        this.#remember(read, folder.treeId, { ...folder, clean: true });
        this.#stats.treeBlobs++;
        return folder.treeId;
      }),
    );
  }

  /** The tree of a cached folder some subfolder of which changed: its files compared with the parent's entries, as without the cache. */
  async #rebuiltFolder(path: Buffer, entries: readonly ListedEntry[], walked: ReadonlyArray<Promise<TreeEntry | undefined> | undefined>, read: FolderRead): Promise<Later<string>> {
    const treeId = read.cached!.folder.treeId;
    const previous = await this.#previousEntries(treeId);
    const builder = new TreeBuilder(previous ? { id: treeId, entries: previous } : undefined);
    const own = ownFiles();
    for (const [i, { name, metadata }] of entries.entries()) {
      const entry = walked[i] ?? (await this.#walkEntry(joinPath(path, name), name, metadata, previous?.get(keyOf(name)))).done;
      builder.follow(entry);
      entry.then((complete) => addOwn(own, complete), () => undefined);
    }
    const tree = this.#treeOf(builder);
    void tree.done.then((id) => this.#remember(read, id, own), () => undefined);
    return tree;
  }

  /** What the files of a folder the cache knows add to the snapshot, as if each had been found unchanged. */
  #countCachedFiles(folder: CachedFolder): void {
    this.#stats.files += folder.files;
    this.#stats.unchangedFiles += folder.files;
    this.#stats.totalBytes += folder.bytes;
    this.#content.stats.dataChunks += folder.chunks;
    this.#input.progress.advance(folder.bytes);
  }

  /** Puts a finished folder into the next folder cache, unless some entry of it has an error or changed while read. */
  #remember(read: FolderRead, treeId: string, own: OwnFiles): void {
    if (!own.clean || !read.cacheKey) return;
    const { pathKey, fingerprint } = read.cacheKey;
    this.#input.folderCache!.next.add(pathKey, { fingerprint, treeId, files: own.files, chunks: own.chunks, bytes: own.bytes });
  }

  /**
   * Lists a folder and fetches the parent snapshot's tree of it, at once: each is a round trip
   * (a thread-pool trip; a pack read and a worker), and the walk waits for both at every folder.
   * With the folder cache, a folder it knows is listed first: if the listing is unchanged, the
   * parent's tree is not fetched at all.
   */
  #readFolder(path: Buffer, folder: FileMetadata, previousTree: string | undefined): Promise<FolderRead> {
    const listing: Promise<Pick<FolderRead, 'listing' | 'error'>> = this.#input.source.list(path, folder).then(
      (listed) => ({ listing: listed }),
      (error: unknown) => ({ error }),
    );
    const cache = this.#input.folderCache;
    const pathKey = cache?.hasher.pathKey(path);
    const cacheKeyOf = (listed: FolderListing) => ({ pathKey: pathKey!, fingerprint: cache!.hasher.fingerprint(listed.entries) });
    const known = pathKey && cache!.previous?.get(pathKey);
    if (!known) {
      return Promise.all([listing, this.#previousEntries(previousTree)]).then(([listed, previous]) => ({
        ...listed,
        previous,
        ...(cache && listed.listing && { cacheKey: cacheKeyOf(listed.listing) }),
      }));
    }
    return listing.then(async (listed) => {
      if (!listed.listing) return { ...listed, previous: undefined };
      const cacheKey = cacheKeyOf(listed.listing);
      const subtrees = this.#cachedSubtrees(path, listed.listing, known, cacheKey.fingerprint);
      if (subtrees) return { ...listed, previous: undefined, cacheKey, cached: { folder: known, subtrees } };
      return { ...listed, previous: await this.#previousEntries(previousTree), cacheKey };
    });
  }

  /** The trees of a folder's subfolders in the folder cache, when the folder's listing is as it knows it and it knows them all. */
  #cachedSubtrees(path: Buffer, listing: FolderListing, known: CachedFolder, fingerprint: Buffer): Map<string, string> | undefined {
    if (listing.problems.length > 0 || !fingerprint.equals(known.fingerprint) || !this.#input.index.has(known.treeId)) return undefined;
    const { hasher, previous } = this.#input.folderCache!;
    const subtrees = new Map<string, string>();
    for (const { name, metadata } of listing.entries) {
      if (metadata.type !== 'dir') continue;
      const subfolder = previous!.get(hasher.pathKey(joinPath(path, name)));
      if (!subfolder) return undefined;
      subtrees.set(keyOf(name), subfolder.treeId);
    }
    return subtrees;
  }

  /**
   * Reads the next few subfolders of a folder ahead of the walk, which goes depth first and
   * would otherwise wait for one folder's round trips at a time. A generator: each `next()`
   * (one per entry walked) keeps FOLDERS_READ_AHEAD subfolders read or being read.
   */
  *#folderReadAhead(path: Buffer, folders: readonly ListedEntry[], entries: number, previousTree: (name: Buffer) => string | undefined): Generator<void> {
    let started = 0;
    for (let walked = 0; ; walked++) {
      while (started < folders.length && started < walked + FOLDERS_READ_AHEAD) {
        const { name, metadata } = folders[started++]!;
        const childPath = joinPath(path, name);
        this.#readAhead.set(childPath.toString('latin1'), this.#readFolder(childPath, metadata, previousTree(name)));
      }
      yield;
      if (walked >= entries) return;
    }
  }

  #takeReadAhead(path: Buffer): Promise<FolderRead> | undefined {
    const key = path.toString('latin1');
    const read = this.#readAhead.get(key);
    this.#readAhead.delete(key);
    return read;
  }

  /** A file's entry: the parent's when unchanged, otherwise read (once a place among the files in flight is free). */
  async #walkFile(path: Buffer, name: Buffer, metadata: FileMetadata, previous: TreeEntry | undefined): Promise<Later<TreeEntry>> {
    const entry = entryOf(name, metadata);
    if (previous && this.#unchanged(metadata, previous)) {
      this.#stats.unchangedFiles++;
      this.#stats.totalBytes += previous.size;
      this.#input.progress.advance(previous.size);
      this.#content.stats.dataChunks += previous.content!.length;
      return ready({ ...entry, size: previous.size, content: previous.content! });
    }
    if (metadata.size === 0) return ready({ ...entry, content: [] });
    await this.#filesInFlight.acquire();
    this.#throwIfFailed();
    return this.#later(this.#fileEntry(path, entry, metadata).finally(() => this.#filesInFlight.release()));
  }

  async #fileEntry(path: Buffer, entry: TreeEntry, metadata: FileMetadata): Promise<TreeEntry> {
    try {
      const read = await this.#content.readFile(this.#input.source, path, metadata.size);
      this.#stats.totalBytes += read.size;
      const { after } = read;
      const changed = after.size !== metadata.size || after.mtimeNs !== metadata.mtimeNs || after.ctimeNs !== metadata.ctimeNs;
      if (changed) {
        this.#stats.changedWhileRead++;
        this.#warn(`${displayName(path)} changed while it was read; the snapshot holds what was read, marked as changed`);
      }
      return { ...entry, size: read.size, content: read.content, ...(changed && { changed: true }) };
    } catch (err) {
      if (!(err instanceof FileReadFailure)) throw err;
      const reason = describeSystemError(err.error);
      this.#skip(path, reason);
      return { ...entry, size: 0, content: [], error: reason };
    }
  }

  /** The parent's entry still describes the file (same size, times and inode), and its chunks are all indexed. */
  #unchanged(metadata: FileMetadata, previous: TreeEntry): boolean {
    return (
      previous.type === 'file' &&
      previous.error === undefined &&
      !previous.changed &&
      previous.size === metadata.size &&
      previous.mtimeNs === metadata.mtimeNs &&
      previous.ctimeNs === metadata.ctimeNs &&
      previous.inode === metadata.inode &&
      previous.content !== undefined &&
      previous.content.every((chunk) => this.#input.index.has(chunk.id))
    );
  }

  /** The parent snapshot's entries of a folder, by name; undefined without one (a new folder, no parent, or a tree that cannot be read). */
  async #previousEntries(treeId: string | undefined): Promise<Map<string, TreeEntry> | undefined> {
    if (treeId === undefined) return undefined;
    const { repository, index, pool } = this.#input;
    try {
      // Not through TreeReader: its cache would keep every tree of the parent (each is read once here).
      const entries = decodeTree(treeId, await readBlob(repository, index, pool, treeId));
      return new Map(entries.map((entry) => [keyOf(entry.name), entry]));
    } catch (err) {
      // Without the parent's tree the folder is only read again in full.
      if (!this.#parentTreeUnreadable) this.#input.warn?.(`A tree of the parent snapshot cannot be read (${(err as Error).message}); its files are read again`);
      this.#parentTreeUnreadable = true;
      return undefined;
    }
  }

  /**
   * Stores a folder's tree blob unless the repository has it (an unchanged folder has the same
   * id); returns its id. The id is hashed here, on the main thread (trees are small), so that
   * only a new tree pays for a trip to a worker to be compressed and encrypted; `plain` is
   * handed to that worker, not copied (it is empty afterwards).
   */
  async #storeTree(plain: Buffer): Promise<string> {
    const { config, masterKey } = this.#input.repository;
    const hex = blobIdOf(blobIdSchemeOf(config), masterKey.blobId, plain).toString('hex');
    this.#stats.treeBlobs++;
    if (await this.#ledger.claim(hex)) {
      const length = plain.length;
      const { id, sealed } = await this.#input.pool.sealBytes(plain, { handOver: true });
      await this.#packer.add(BlobType.tree, id, sealed, length);
    }
    return hex;
  }

  #skip(path: Buffer, reason: string): void {
    this.#skippedCount++;
    if (this.#skipped.length < MAX_SKIPPED_LISTED) this.#skipped.push({ path: displayName(path), reason });
    this.#warn(`Cannot back up ${displayName(path)}: ${reason}`);
  }

  #warn(message: string): void {
    if (this.#warned++ < WARNINGS_SHOWN) this.#input.warn?.(message);
  }

  async #save(tree: string): Promise<FileBackupResult> {
    const { source, started, repository, parent } = this.#input;
    const content = this.#content.stats;
    const { files, dirs, others, totalBytes, unchangedFiles, treeBlobs, changedWhileRead } = this.#stats;
    const manifest: FileSnapshotManifest = {
      version: 3,
      kind: 'files',
      time: started.toISOString(),
      hostname: hostname(),
      job: this.#input.jobName,
      ...(this.#input.tags?.length && { tags: this.#input.tags }),
      source: { type: this.#input.sourceType, path: source.path },
      paths: source.roots.map((root) => displayName(root)),
      tree,
      ...(parent && { parent: parent.id }),
      chunker: this.#cdc.parameters,
      compression: this.#input.compression,
      stats: {
        files, dirs, others, totalBytes,
        bytesRead: content.bytesRead,
        bytesAdded: this.#packer.bytesWritten,
        unchangedFiles,
        dataChunks: content.dataChunks,
        newChunks: content.newChunks,
        treeBlobs,
        changedWhileRead,
        durationMs: Math.round(performance.now() - this.#startedAt),
      },
      ...(this.#skippedCount > 0 && { skipped: this.#skipped }),
      ...(this.#skippedCount > this.#skipped.length && { skippedCount: this.#skippedCount }),
    };
    await this.#input.beforeSnapshot?.(manifest);
    const saved = await repository.saveSnapshot(manifest);
    return { snapshot: saved.id, manifest, bytesRead: content.bytesRead, bytesAdded: this.#packer.bytesWritten + saved.size, warnings: this.#warnings() };
  }

  #warnings(): string[] {
    const warnings: string[] = [];
    if (this.#warned > WARNINGS_SHOWN) warnings.push(`${this.#warned - WARNINGS_SHOWN} more warning(s) not shown`);
    if (this.#skippedCount > 0) warnings.push(`${this.#skippedCount} path(s) could not be backed up; the snapshot is incomplete (\`cairn show\` lists them)`);
    return warnings;
  }
}
