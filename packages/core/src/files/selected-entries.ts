import type { FileSnapshotManifest } from '../repository/snapshot.js';
import type { TreeEntry } from './tree.js';
import { joinPath, type TreeReader } from './tree-reader.js';
import { TreeReadAhead } from './read-ahead.js';
import type { PathSelection } from './restore-patterns.js';

/** An entry of a snapshot with its absolute snapshot path (`/home/u/docs/a.txt`). */
export interface PathEntry {
  path: Buffer;
  entry: TreeEntry;
}

/** Entries gathered before the walk hands them on, unless it ends first. */
const ENTRIES_PER_PIECE = 512;

/**
 * The entries a selection takes, depth-first in name order (a folder before its children),
 * in pieces of a few hundred. The folders above an included entry come first even when they
 * are not included themselves, so that a restore can create them with their stored metadata.
 * Folders no pattern can reach into are not read.
 */
export async function* selectedEntries(reader: TreeReader, manifest: FileSnapshotManifest, selection: PathSelection): AsyncGenerator<PathEntry[]> {
  const trees = new TreeReadAhead(reader);
  /** The folders being walked, innermost last. */
  const stack = [await folderOf(trees, manifest.tree, Buffer.from('/'), [], selection.includesAll, selection, undefined)];
  /** Folders above the walk's position not given yet: nothing below them was taken so far. */
  const pending: PathEntry[] = [];
  let piece: PathEntry[] = [];
  while (stack.length > 0) {
    const folder = stack[stack.length - 1]!;
    if (folder.next >= folder.entries.length) {
      stack.pop();
      if (folder.item && pending[pending.length - 1] === folder.item) pending.pop();
      continue;
    }
    const choice = choose(folder, folder.entries[folder.next++]!, selection);
    if (!choice) continue;
    const { item, childNames, takes, descends } = choice;
    if (takes) piece.push(...pending.splice(0), item);
    if (piece.length >= ENTRIES_PER_PIECE) {
      yield piece;
      piece = [];
    }
    if (!descends) continue;
    if (!takes) pending.push(item);
    stack.push(await folderOf(trees, item.entry.subtree!, item.path, childNames, takes, selection, item));
  }
  if (piece.length > 0) yield piece;
}

/**
 * A folder being walked: its entries and the next one to look at. What the selection makes of
 * an entry is worked out when the walk reaches it: one folder of the corpus holds 18,000
 * entries, and a path, a list of names and a choice for each, made at once, stayed alive
 * until the walk left the folder.
 */
interface WalkedFolder {
  /** The folder's own entry (none for the snapshot's root). */
  item: PathEntry | undefined;
  prefix: Buffer;
  /** The names from the snapshot's root down to this folder. */
  names: readonly string[];
  /** The folder itself is taken: so is everything in it not excluded. */
  included: boolean;
  entries: readonly TreeEntry[];
  next: number;
}

/** What the selection makes of one entry of a folder. */
interface Choice {
  item: PathEntry;
  childNames: string[];
  /** The entry itself is given. */
  takes: boolean;
  /** Its subtree is walked (it may hold entries the selection takes). */
  descends: boolean;
}

/**
 * Reads a folder's tree and starts reading the subtrees it leads to. (A generator per folder,
 * delegating with `yield*`, passed every entry through one promise per level above it: a
 * restore of the corpus allocated 220 MB, of its 1,210, on that alone.)
 */
async function folderOf(trees: TreeReadAhead, tree: string, prefix: Buffer, names: readonly string[], included: boolean, selection: PathSelection, item: PathEntry | undefined): Promise<WalkedFolder> {
  const folder: WalkedFolder = { item, prefix, names, included, entries: await trees.read(tree), next: 0 };
  // The subtrees this folder leads to are read while its entries are given (a round trip each on a remote target).
  const subtrees: string[] = [];
  for (const entry of folder.entries) if (entry.type === 'dir' && choose(folder, entry, selection)?.descends) subtrees.push(entry.subtree!);
  trees.ahead(subtrees);
  return folder;
}

/** What the selection makes of an entry of the folder; undefined when it excludes it. */
function choose(folder: WalkedFolder, entry: TreeEntry, selection: PathSelection): Choice | undefined {
  const childNames = [...folder.names, entry.name.toString('utf8')];
  const isFolder = entry.type === 'dir';
  if (selection.isExcluded(childNames, isFolder)) return undefined;
  const takes = folder.included || selection.isIncluded(childNames, isFolder);
  const descends = isFolder && entry.subtree !== undefined && (takes || selection.mayIncludeBelow(childNames));
  return { item: { path: joinPath(folder.prefix, entry.name), entry }, childNames, takes, descends };
}
