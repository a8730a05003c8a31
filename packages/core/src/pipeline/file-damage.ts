import { DamageError } from '../errors.js';
import { Keys } from '../repository/format.js';
import type { BlobIndex } from '../repository/repository.js';
import { joinPath, type TreeReader } from '../files/tree-reader.js';
import type { ContentChunk, TreeEntry } from '../files/tree.js';
import { NOT_INDEXED, aboutObject, type LostBlobs, type LostReason } from './damage.js';

/**
 * What a file snapshot loses when blobs are lost, shared by `check` (which reports it) and
 * `repair snapshots` (which rewrites the trees). The walk goes depth-first and keeps only the
 * folders on the current path, so memory does not grow with the tree; a subtree found whole
 * once is not walked again (unchanged folders share their tree across snapshots).
 */

/** What the walk reports; every callback is optional. */
export interface FileLossVisitor {
  /** A file whose content chunks `chunks` are lost (several reasons when several packs are damaged). */
  lostContent?(path: Buffer, entry: TreeEntry, chunks: ReadonlyArray<[ContentChunk, LostReason]>): void;
  /** A folder whose tree cannot be read: everything below it is lost. */
  lostTree?(path: Buffer, tree: string, reason: LostReason): void;
  /**
   * Every blob the snapshot needs, as it is met (trees and content chunks). Returns true when
   * the caller must see it again for every snapshot (it lies in a damaged pack): the subtree
   * holding it is then not skipped as whole.
   */
  use?(blob: string): boolean;
  /** Stores a rewritten tree and returns its id (repair); without it the walk only reports. */
  storeTree?(entries: TreeEntry[]): Promise<string>;
}

/** The text an entry's `error` gets when `repair snapshots` removes lost data from it. */
export const LOST_IN_REPAIR = 'lost in repair';

/** The result of walking one tree: its rewritten entries when something below it was lost. */
interface ScannedTree {
  repaired?: TreeEntry[];
  /** Nothing lost and no blob the visitor wants to see again: skipped next time. */
  whole: boolean;
}

export class FileLossWalker {
  /** Trees known to lose nothing. Ids only: bounded by the repository's distinct trees. */
  readonly #whole = new Set<string>();

  constructor(
    private readonly reader: TreeReader,
    private readonly index: BlobIndex,
    private readonly lost: LostBlobs,
  ) {}

  /**
   * Why the tree `id` cannot be read, or undefined when it reads. A tree that fails to read
   * is added to `lost`, so other snapshots sharing it are charged without reading it again.
   */
  async treeLoss(id: string): Promise<LostReason | undefined> {
    const known = this.lost.reasonFor(id, this.index);
    if (known) return known;
    try {
      await this.reader.read(id);
      return undefined;
    } catch (err) {
      if (!(err instanceof DamageError)) throw err;
      const reason = damagedTreeReason(this.index, id, err);
      this.lost.add(id, reason);
      return reason;
    }
  }

  /**
   * Walks the tree `id` (readable: see treeLoss) of the folder at `path`. Returns the tree's
   * entries as repair writes them when anything below it is lost, undefined otherwise.
   */
  async walk(id: string, path: Buffer, visitor: FileLossVisitor): Promise<TreeEntry[] | undefined> {
    return (await this.#scan(id, path, visitor)).repaired;
  }

  async #scan(id: string, path: Buffer, visitor: FileLossVisitor): Promise<ScannedTree> {
    if (this.#whole.has(id)) return { whole: true };
    let whole = !visitor.use?.(id);
    let changed = false;
    const repaired: TreeEntry[] = [];
    for (const entry of await this.reader.read(id)) {
      const childPath = joinPath(path, entry.name);
      let replacement: TreeEntry | undefined;
      if (entry.content) {
        const lostChunks: Array<[ContentChunk, LostReason]> = [];
        for (const chunk of entry.content) {
          if (visitor.use?.(chunk.id)) whole = false;
          const reason = this.lost.reasonFor(chunk.id, this.index);
          if (reason) lostChunks.push([chunk, reason]);
        }
        if (lostChunks.length > 0) {
          visitor.lostContent?.(childPath, entry, lostChunks);
          replacement = withoutLostContent(entry, lostChunks);
        }
      }
      if (entry.subtree !== undefined) replacement = await this.#scanFolder(entry, entry.subtree, childPath, visitor);
      if (replacement) changed = true;
      if (replacement || (entry.subtree !== undefined && !this.#whole.has(entry.subtree))) whole = false;
      repaired.push(replacement ?? entry);
    }
    if (!changed) {
      if (whole) this.#whole.add(id);
      return { whole };
    }
    return { repaired, whole: false };
  }

  /** A folder entry as repair rewrites it (lost tree: no subtree; damage below: a new subtree), or undefined when nothing below it is lost. */
  async #scanFolder(entry: TreeEntry, subtree: string, path: Buffer, visitor: FileLossVisitor): Promise<TreeEntry | undefined> {
    const reason = await this.treeLoss(subtree);
    if (reason) {
      visitor.use?.(subtree);
      visitor.lostTree?.(path, subtree, reason);
      const { subtree: _lost, ...rest } = entry;
      return { ...rest, error: joinError(entry.error, `${LOST_IN_REPAIR}: its folder listing (tree ${subtree.slice(0, 12)}) is lost, ${reason.object === NOT_INDEXED ? 'no index names it' : `${reason.object}: ${reason.message}`}`) };
    }
    const below = await this.#scan(subtree, path, visitor);
    if (!below.repaired) return undefined;
    const newTree = visitor.storeTree ? await visitor.storeTree(below.repaired) : subtree;
    return { ...entry, subtree: newTree };
  }
}

/** The file entry with its lost chunks taken out of `content` (they restore as holes) and `error` saying so. */
function withoutLostContent(entry: TreeEntry, lostChunks: ReadonlyArray<[ContentChunk, LostReason]>): TreeEntry {
  const gone = new Set(lostChunks.map(([chunk]) => chunk));
  const bytes = lostChunks.reduce((n, [chunk]) => n + chunk.length, 0);
  const content = entry.content!.filter((chunk) => !gone.has(chunk));
  const error = `${LOST_IN_REPAIR}: ${bytes} of ${entry.size} bytes (${lostChunks.length} chunk(s)) are lost and read as zeros`;
  return { ...entry, content, error: joinError(entry.error, error) };
}

function joinError(earlier: string | undefined, added: string): string {
  return earlier ? `${earlier}; ${added}` : added;
}

/** A tree that failed to read: its pack is the damaged object (or the index, when none names it). */
function damagedTreeReason(index: BlobIndex, tree: string, err: DamageError): LostReason {
  const location = index.get(tree);
  if (!location) return { object: NOT_INDEXED, message: 'no index names this blob' };
  const object = Keys.pack(location.pack);
  const message = aboutObject(object, err.message);
  return { object, message: message.startsWith('pack ') ? message : `tree ${tree.slice(0, 12)}: ${message}` };
}

/** The lost chunks of a file grouped by the object that lost them. */
export function byObject(chunks: ReadonlyArray<[ContentChunk, LostReason]>): Map<string, LostReason[]> {
  const objects = new Map<string, LostReason[]>();
  for (const [, reason] of chunks) {
    const reasons = objects.get(reason.object);
    if (reasons) reasons.push(reason);
    else objects.set(reason.object, [reason]);
  }
  return objects;
}
