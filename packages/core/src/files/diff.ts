import { compareNames, type EntryType, type TreeEntry } from './tree.js';
import { joinPath, type TreeReader } from './tree-reader.js';
import { TreeReadAhead } from './read-ahead.js';

/** `+` added, `-` removed, `M` modified (content, link target, device number or type), `U` metadata only. */
export type ChangeKind = '+' | '-' | 'M' | 'U';

/** What differs about a path present in both snapshots. */
export type ChangedAspect = 'type' | 'content' | 'target' | 'device' | 'mode' | 'owner' | 'mtime' | 'xattrs';

export interface Change {
  path: Buffer;
  change: ChangeKind;
  /** The entry's type in the newer snapshot (in the older one for a removal). */
  type: EntryType;
  /** For M and U: what differs. */
  what?: ChangedAspect[];
}

export interface EntryCounts {
  files: number;
  dirs: number;
  /** Symlinks, device nodes and FIFOs. */
  others: number;
}

export interface DiffSummary {
  added: EntryCounts;
  removed: EntryCounts;
  modified: number;
  metadataOnly: number;
  /**
   * Content bytes of the chunks that the added and modified files hold in the newer snapshot
   * and the changed files of the older one do not; `bytesRemoved` the other way round.
   */
  bytesAdded: number;
  bytesRemoved: number;
}

export interface SnapshotDiff {
  changes: Change[];
  summary: DiffSummary;
}

/**
 * `cairn diff`: what changed from the tree `older` to the tree `newer`, in path order, each
 * folder's own change before its contents. Subtrees with the same id are the same, and skipped
 * unread: a diff reads only the folders on the way to what changed.
 */
export async function diffTrees(reader: TreeReader, older: string, newer: string): Promise<SnapshotDiff> {
  const differ = new TreeDiffer(reader);
  await differ.compare(older, newer, Buffer.from('/'));
  return differ.result();
}

const noCounts = (): EntryCounts => ({ files: 0, dirs: 0, others: 0 });

class TreeDiffer {
  readonly #changes: Change[] = [];
  readonly #summary: DiffSummary = { added: noCounts(), removed: noCounts(), modified: 0, metadataOnly: 0, bytesAdded: 0, bytesRemoved: 0 };
  /** Chunk id → length, of the changed files' content on each side. */
  readonly #oldChunks = new Map<string, number>();
  readonly #newChunks = new Map<string, number>();

  readonly #trees: TreeReadAhead;

  constructor(reader: TreeReader) {
    this.#trees = new TreeReadAhead(reader);
  }

  async compare(older: string | undefined, newer: string | undefined, prefix: Buffer): Promise<void> {
    if (older === newer) return;
    const a = await this.#entries(older);
    const b = await this.#entries(newer);
    this.#readAhead(a, b);
    let i = 0;
    let j = 0;
    while (i < a.length || j < b.length) {
      const order = i >= a.length ? 1 : j >= b.length ? -1 : compareNames(a[i]!.name, b[j]!.name);
      if (order < 0) await this.#removed(joinPath(prefix, a[i]!.name), a[i++]!);
      else if (order > 0) await this.#added(joinPath(prefix, b[j]!.name), b[j++]!);
      else await this.#compareEntries(joinPath(prefix, a[i]!.name), a[i++]!, b[j++]!);
    }
  }

  result(): SnapshotDiff {
    this.#summary.bytesAdded = bytesOnlyIn(this.#newChunks, this.#oldChunks);
    this.#summary.bytesRemoved = bytesOnlyIn(this.#oldChunks, this.#newChunks);
    return { changes: this.#changes, summary: this.#summary };
  }

  async #entries(tree: string | undefined): Promise<TreeEntry[]> {
    // Trees are stored in name order; sorted again so that a merge never depends on it.
    return tree === undefined ? [] : [...(await this.#trees.read(tree))].sort((x, y) => compareNames(x.name, y.name));
  }

  /** Starts reading the subtrees the comparison will descend into: those the other side does not have. */
  #readAhead(a: readonly TreeEntry[], b: readonly TreeEntry[]): void {
    const subtrees = (entries: readonly TreeEntry[]) => new Set(entries.flatMap((e) => (e.subtree !== undefined ? [e.subtree] : [])));
    const older = subtrees(a);
    const newer = subtrees(b);
    this.#trees.ahead([...older].filter((id) => !newer.has(id)));
    this.#trees.ahead([...newer].filter((id) => !older.has(id)));
  }

  async #added(path: Buffer, entry: TreeEntry): Promise<void> {
    this.#changes.push({ path, change: '+', type: entry.type });
    count(this.#summary.added, entry.type);
    addChunks(this.#newChunks, entry);
    if (entry.subtree !== undefined) await this.compare(undefined, entry.subtree, path);
  }

  async #removed(path: Buffer, entry: TreeEntry): Promise<void> {
    this.#changes.push({ path, change: '-', type: entry.type });
    count(this.#summary.removed, entry.type);
    addChunks(this.#oldChunks, entry);
    if (entry.subtree !== undefined) await this.compare(entry.subtree, undefined, path);
  }

  async #compareEntries(path: Buffer, a: TreeEntry, b: TreeEntry): Promise<void> {
    // A new type is the whole story: its mode and times differ as a matter of course.
    const content = a.type !== b.type ? (['type'] as ChangedAspect[]) : contentChanges(a, b);
    const metadata = a.type !== b.type ? [] : metadataChanges(a, b);
    if (content.length > 0) {
      this.#changes.push({ path, change: 'M', type: b.type, what: [...content, ...metadata] });
      this.#summary.modified++;
      addChunks(this.#oldChunks, a);
      addChunks(this.#newChunks, b);
    } else if (metadata.length > 0) {
      this.#changes.push({ path, change: 'U', type: b.type, what: metadata });
      this.#summary.metadataOnly++;
    }
    // A folder that became a file lists what it held as removed, and the other way round.
    if (a.subtree !== undefined || b.subtree !== undefined) await this.compare(a.subtree, b.subtree, path);
  }
}

/** What differs in what two entries of one type hold (nothing for folders: their children tell). */
function contentChanges(a: TreeEntry, b: TreeEntry): ChangedAspect[] {
  if (a.type === 'file') return a.size !== b.size || !sameContent(a, b) ? ['content'] : [];
  if (a.type === 'symlink') return a.target!.equals(b.target!) ? [] : ['target'];
  if (a.type === 'chardev' || a.type === 'blockdev') return a.rdev === b.rdev ? [] : ['device'];
  return [];
}

function sameContent(a: TreeEntry, b: TreeEntry): boolean {
  const x = a.content ?? [];
  const y = b.content ?? [];
  return x.length === y.length && x.every((chunk, i) => chunk.id === y[i]!.id && chunk.offset === y[i]!.offset && chunk.length === y[i]!.length);
}

/** Metadata a user sets or sees change; ctime and atime change on their own and are left out. */
function metadataChanges(a: TreeEntry, b: TreeEntry): ChangedAspect[] {
  const what: ChangedAspect[] = [];
  if (a.mode !== b.mode) what.push('mode');
  if (a.uid !== b.uid || a.gid !== b.gid) what.push('owner');
  if (a.mtimeNs !== b.mtimeNs) what.push('mtime');
  if (!sameXattrs(a, b)) what.push('xattrs');
  return what;
}

function sameXattrs(a: TreeEntry, b: TreeEntry): boolean {
  const x = a.xattrs ?? [];
  const y = b.xattrs ?? [];
  return x.length === y.length && x.every((attr, i) => attr.name === y[i]!.name && attr.value.equals(y[i]!.value));
}

function count(counts: EntryCounts, type: EntryType): void {
  if (type === 'file') counts.files++;
  else if (type === 'dir') counts.dirs++;
  else counts.others++;
}

function addChunks(chunks: Map<string, number>, entry: TreeEntry): void {
  for (const chunk of entry.content ?? []) chunks.set(chunk.id, chunk.length);
}

function bytesOnlyIn(these: Map<string, number>, others: Map<string, number>): number {
  let bytes = 0;
  for (const [id, length] of these) if (!others.has(id)) bytes += length;
  return bytes;
}
