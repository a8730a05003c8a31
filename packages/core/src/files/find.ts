import { createHash } from 'node:crypto';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import type { PathMatcher } from './glob.js';
import { displayName, type TreeEntry } from './tree.js';
import { joinPath, type TreeReader } from './tree-reader.js';
import { TreeReadAhead } from './read-ahead.js';

/** One version of a path that matched: the same content at the same path, in one or more snapshots. */
export interface FoundVersion {
  path: Buffer;
  /** The entry as the newest snapshot holding this version has it. */
  entry: TreeEntry;
  /** Ids of the snapshots holding this version, oldest first. */
  snapshots: string[];
}

export interface SnapshotToSearch {
  id: string;
  manifest: FileSnapshotManifest;
}

/**
 * What one folder (a tree at a path) held that matched, kept so that the same tree at the same
 * path in a later snapshot is not read again: its matches are credited to that snapshot too.
 */
interface FolderVisit {
  /** Keys of the versions matched directly in the folder. */
  hits: string[];
  /** Visits of subfolders that matched something, at any depth. */
  subfolders: FolderVisit[];
}

const NOTHING: FolderVisit = { hits: [], subfolders: [] };

/**
 * `cairn find`: the entries of the snapshots (oldest first) that the pattern matches, one
 * per path and content: a file unchanged across 30 snapshots is one version listing them.
 * Each (path, tree id) is walked once over all snapshots: unchanged folders share their tree.
 */
export async function findVersions(reader: TreeReader, snapshots: readonly SnapshotToSearch[], matcher: PathMatcher): Promise<FoundVersion[]> {
  const finder = new VersionFinder(reader, matcher);
  for (const { id, manifest } of snapshots) await finder.visitFolder(manifest.tree, Buffer.from('/'), id);
  return finder.versions();
}

class VersionFinder {
  readonly #found = new Map<string, FoundVersion>();
  readonly #visits = new Map<string, FolderVisit>();
  readonly #trees: TreeReadAhead;

  constructor(
    reader: TreeReader,
    private readonly matcher: PathMatcher,
  ) {
    this.#trees = new TreeReadAhead(reader);
  }

  async visitFolder(tree: string, prefix: Buffer, snapshot: string): Promise<FolderVisit> {
    const key = visitKey(tree, prefix);
    const known = this.#visits.get(key);
    if (known) {
      this.#credit(known, snapshot);
      return known;
    }
    const visit: FolderVisit = { hits: [], subfolders: [] };
    const entries = await this.#trees.read(tree);
    this.#trees.ahead(entries.flatMap((e) => (e.subtree !== undefined && !this.#visits.has(visitKey(e.subtree, joinPath(prefix, e.name))) ? [e.subtree] : [])));
    for (const entry of entries) {
      const path = joinPath(prefix, entry.name);
      if (this.matcher.matches(displayName(this.matcher.onPath ? path : entry.name))) visit.hits.push(this.#record(path, entry, snapshot));
      if (entry.type !== 'dir' || entry.subtree === undefined) continue;
      const below = await this.visitFolder(entry.subtree, path, snapshot);
      if (below !== NOTHING) visit.subfolders.push(below);
    }
    const kept = visit.hits.length > 0 || visit.subfolders.length > 0 ? visit : NOTHING;
    this.#visits.set(key, kept);
    return kept;
  }

  versions(): FoundVersion[] {
    // Path order; the versions of one path in the order the snapshots first held them.
    return [...this.#found.values()].sort((a, b) => Buffer.compare(a.path, b.path));
  }

  #record(path: Buffer, entry: TreeEntry, snapshot: string): string {
    const key = `${path.toString('latin1')}\0${contentIdentity(entry)}`;
    const found = this.#found.get(key);
    if (!found) this.#found.set(key, { path, entry, snapshots: [snapshot] });
    else if (found.snapshots.at(-1) !== snapshot) {
      found.snapshots.push(snapshot);
      found.entry = entry;
    }
    return key;
  }

  #credit(visit: FolderVisit, snapshot: string): void {
    for (const key of visit.hits) {
      const found = this.#found.get(key)!;
      if (found.snapshots.at(-1) !== snapshot) found.snapshots.push(snapshot);
    }
    for (const below of visit.subfolders) this.#credit(below, snapshot);
  }
}

/** A folder visit is known by its tree and its path: the same tree elsewhere holds other paths. */
function visitKey(tree: string, path: Buffer): string {
  return `${tree}:${path.toString('latin1')}`;
}

/**
 * What makes two entries at one path the same version: a file's content (its chunk ids and
 * size), a link's target, a device's number; a folder or FIFO is one version whatever it holds.
 */
function contentIdentity(entry: TreeEntry): string {
  switch (entry.type) {
    case 'file': {
      const hash = createHash('sha256').update(String(entry.size));
      for (const chunk of entry.content ?? []) hash.update(`:${chunk.offset}:${chunk.id}`);
      return `file:${hash.digest('hex')}`;
    }
    case 'symlink':
      return `symlink:${entry.target!.toString('hex')}`;
    case 'chardev':
    case 'blockdev':
      return `${entry.type}:${entry.rdev}`;
    default:
      return entry.type;
  }
}
