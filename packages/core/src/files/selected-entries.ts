import type { FileSnapshotManifest } from '../repository/snapshot.js';
import type { TreeEntry } from './tree.js';
import { joinPath, type TreeReader } from './tree-reader.js';
import type { PathSelection } from './restore-patterns.js';

/** An entry of a snapshot with its absolute snapshot path (`/home/u/docs/a.txt`). */
export interface PathEntry {
  path: Buffer;
  entry: TreeEntry;
}

/**
 * The entries a selection takes, depth-first in name order (a folder before its children).
 * The folders above an included entry come first even when they are not included themselves,
 * so that a restore can create them with their stored metadata. Folders no pattern can reach
 * into are not read.
 */
export async function* selectedEntries(reader: TreeReader, manifest: FileSnapshotManifest, selection: PathSelection): AsyncGenerator<PathEntry> {
  yield* walkSelected(reader, manifest.tree, Buffer.from('/'), [], selection.includesAll, selection, []);
}

async function* walkSelected(
  reader: TreeReader,
  tree: string,
  prefix: Buffer,
  names: readonly string[],
  included: boolean,
  selection: PathSelection,
  pending: PathEntry[],
): AsyncGenerator<PathEntry> {
  for (const entry of await reader.read(tree)) {
    const item = { path: joinPath(prefix, entry.name), entry };
    const childNames = [...names, entry.name.toString('utf8')];
    const isFolder = entry.type === 'dir';
    if (selection.isExcluded(childNames, isFolder)) continue;
    const takes = included || selection.isIncluded(childNames, isFolder);
    if (takes) {
      // The folders above it, not yet given because nothing below them was taken so far.
      yield* pending.splice(0);
      yield item;
    }
    if (!isFolder || entry.subtree === undefined || !(takes || selection.mayIncludeBelow(childNames))) continue;
    if (!takes) pending.push(item);
    yield* walkSelected(reader, entry.subtree, item.path, childNames, takes, selection, pending);
    if (pending[pending.length - 1] === item) pending.pop();
  }
}
