import { SnapshotPathNotFoundError } from '../errors.js';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import { displayName, type TreeEntry } from './tree.js';
import { joinPath, pathNames, type TreeReader } from './tree-reader.js';
import { TreeReadAhead } from './read-ahead.js';

/** One entry of a listing and its absolute path in the snapshot. */
export interface PathEntry {
  path: Buffer;
  entry: TreeEntry;
}

export interface ListOptions {
  /** Everything under the folder, depth-first, instead of its children only. */
  recursive?: boolean;
}

export interface Listing {
  /** The normalised absolute path that was listed (`/home/u`). */
  path: Buffer;
  /** False when the path is a file (or link, device, FIFO): the listing is that one entry. */
  folder: boolean;
  entries: PathEntry[];
  /** Why the folder's contents are missing or incomplete (it could not be read when backed up). */
  folderError?: string;
}

/**
 * `cairn ls`: the children of the folder at `path` (all entries under it with `recursive`), in
 * name order, or the entry itself when it is not a folder. A path the snapshot does not hold
 * is SnapshotPathNotFoundError.
 */
export async function listPath(reader: TreeReader, id: string, manifest: FileSnapshotManifest, path: Buffer | string, options: ListOptions = {}): Promise<Listing> {
  const names = pathNames(path);
  const absolute = names.reduce((prefix, name) => joinPath(prefix, name), Buffer.from('/'));
  const entry = await reader.lookup(manifest, absolute);
  if (!entry) throw new SnapshotPathNotFoundError(`Snapshot ${id.slice(0, 8)} has no ${displayName(absolute)}${nearestHint(manifest)}`);
  if (entry.type !== 'dir') return { path: absolute, folder: false, entries: [{ path: absolute, entry }] };
  const entries: PathEntry[] = [];
  const folderError = entry.error !== undefined ? { folderError: entry.error } : {};
  if (entry.subtree === undefined) return { path: absolute, folder: true, entries, ...folderError };
  if (options.recursive) {
    await walkInto(new TreeReadAhead(reader), entry.subtree, absolute, entries);
  } else {
    for (const child of await reader.read(entry.subtree)) entries.push({ path: joinPath(absolute, child.name), entry: child });
  }
  return { path: absolute, folder: true, entries, ...folderError };
}

/** What the snapshot does hold, for the message about a path it does not. */
function nearestHint(manifest: FileSnapshotManifest): string {
  return manifest.paths.length > 0 ? ` (it holds ${manifest.paths.join(', ')})` : '';
}

/** Every entry under the tree, depth-first in name order, the subtrees of each folder read ahead. */
async function walkInto(trees: TreeReadAhead, id: string, prefix: Buffer, into: PathEntry[]): Promise<void> {
  const entries = await trees.read(id);
  trees.ahead(entries.flatMap((e) => (e.subtree !== undefined ? [e.subtree] : [])));
  for (const entry of entries) {
    const path = joinPath(prefix, entry.name);
    into.push({ path, entry });
    if (entry.type === 'dir' && entry.subtree !== undefined) await walkInto(trees, entry.subtree, path, into);
  }
}
