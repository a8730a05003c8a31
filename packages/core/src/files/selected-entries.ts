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

/**
 * The entries a selection takes, depth-first in name order (a folder before its children).
 * The folders above an included entry come first even when they are not included themselves,
 * so that a restore can create them with their stored metadata. Folders no pattern can reach
 * into are not read.
 */
export async function* selectedEntries(reader: TreeReader, manifest: FileSnapshotManifest, selection: PathSelection): AsyncGenerator<PathEntry> {
  yield* walkSelected(new TreeReadAhead(reader), manifest.tree, Buffer.from('/'), [], selection.includesAll, selection, []);
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

async function* walkSelected(
  trees: TreeReadAhead,
  tree: string,
  prefix: Buffer,
  names: readonly string[],
  included: boolean,
  selection: PathSelection,
  pending: PathEntry[],
): AsyncGenerator<PathEntry> {
  const choices = choose(await trees.read(tree), prefix, names, included, selection);
  // The subtrees this folder leads to are read while its entries are given (a round trip each on a remote target).
  trees.ahead(choices.flatMap(({ item, descends }) => (descends ? [item.entry.subtree!] : [])));
  for (const { item, childNames, takes, descends } of choices) {
    if (takes) {
      // The folders above it, not yet given because nothing below them was taken so far.
      yield* pending.splice(0);
      yield item;
    }
    if (!descends) continue;
    if (!takes) pending.push(item);
    yield* walkSelected(trees, item.entry.subtree!, item.path, childNames, takes, selection, pending);
    if (pending[pending.length - 1] === item) pending.pop();
  }
}

/** The folder's entries the selection does not exclude, with what it makes of each. */
function choose(entries: readonly TreeEntry[], prefix: Buffer, names: readonly string[], included: boolean, selection: PathSelection): Choice[] {
  const choices: Choice[] = [];
  for (const entry of entries) {
    const childNames = [...names, entry.name.toString('utf8')];
    const isFolder = entry.type === 'dir';
    if (selection.isExcluded(childNames, isFolder)) continue;
    const takes = included || selection.isIncluded(childNames, isFolder);
    const descends = isFolder && entry.subtree !== undefined && (takes || selection.mayIncludeBelow(childNames));
    choices.push({ item: { path: joinPath(prefix, entry.name), entry }, childNames, takes, descends });
  }
  return choices;
}
