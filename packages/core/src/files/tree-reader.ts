import { DamageError, UsageError } from '../errors.js';
import type { BlobIndex, Repository } from '../repository/repository.js';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import { readBlob } from '../pipeline/chunk-maps.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import { decodeTree, displayName, type TreeEntry } from './tree.js';

/** Trees read so far are kept by id (trees never change, and unchanged folders share theirs). */
const CACHED_TREES = 4096;

/**
 * Reads the trees of file snapshots: by id, by path, or all of them depth-first. Every tree
 * blob is verified against its id on the way (readBlob), so a damaged one is DamageError.
 */
export class TreeReader {
  readonly #cache = new Map<string, TreeEntry[]>();

  /** `cachedTrees`: 0 for a reader that walks a snapshot once (a restore), where a cache would only hold every entry read. */
  constructor(
    private readonly repository: Repository,
    private readonly index: BlobIndex,
    private readonly pool: WorkerPool,
    private readonly cachedTrees = CACHED_TREES,
  ) {}

  async read(id: string): Promise<TreeEntry[]> {
    const cached = this.#cache.get(id);
    if (cached) return cached;
    const entries = decodeTree(id, await readBlob(this.repository, this.index, this.pool, id));
    if (this.cachedTrees === 0) return entries;
    if (this.#cache.size >= this.cachedTrees) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(id, entries);
    return entries;
  }

  /**
   * The entry at an absolute path of the snapshot (`/home/u/notes.txt`), or undefined when
   * the snapshot does not hold it. `/` is the root: a folder entry with the root tree.
   */
  async lookup(manifest: FileSnapshotManifest, path: Buffer | string): Promise<TreeEntry | undefined> {
    let entry: TreeEntry = rootEntry(manifest);
    for (const name of pathNames(path)) {
      if (entry.type !== 'dir' || entry.subtree === undefined) return undefined;
      const found = (await this.read(entry.subtree)).find((child) => child.name.equals(name));
      if (!found) return undefined;
      entry = found;
    }
    return entry;
  }

  /**
   * Every entry under the tree `id`, depth-first in name order, with its absolute path
   * (`prefix` is the path of the folder whose tree `id` is). Skips nothing; a folder without
   * a subtree (unreadable when backed up) has no children.
   */
  async *walk(id: string, prefix: Buffer = Buffer.from('/')): AsyncGenerator<{ path: Buffer; entry: TreeEntry }> {
    for (const entry of await this.read(id)) {
      const path = joinPath(prefix, entry.name);
      yield { path, entry };
      if (entry.type === 'dir' && entry.subtree !== undefined) yield* this.walk(entry.subtree, path);
    }
  }
}

/** The snapshot's root as a folder entry (its metadata is not stored: it is a made-up `/`). */
export function rootEntry(manifest: FileSnapshotManifest): TreeEntry {
  const time = BigInt(Date.parse(manifest.time)) * 1_000_000n;
  return { name: Buffer.from('/'), type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: time, ctimeNs: time, atimeNs: time, size: 0, inode: 0n, device: 0n, links: 1, subtree: manifest.tree };
}

/** The names of an absolute or relative path, without empty parts and `.`; `..` is refused. */
export function pathNames(path: Buffer | string): Buffer[] {
  const bytes = typeof path === 'string' ? Buffer.from(path, 'utf8') : path;
  const names: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i < bytes.length && bytes[i] !== 0x2f) continue;
    const name = bytes.subarray(start, i);
    start = i + 1;
    if (name.length === 0 || (name.length === 1 && name[0] === 0x2e)) continue;
    if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) throw new UsageError(`a path in a snapshot cannot contain "..": ${displayName(bytes)}`);
    names.push(name);
  }
  return names;
}

/** `prefix/name`, as bytes (no doubled slash after the root). */
export function joinPath(prefix: Buffer, name: Buffer): Buffer {
  return prefix.length > 0 && prefix[prefix.length - 1] === 0x2f ? Buffer.concat([prefix, name]) : Buffer.concat([prefix, Buffer.from('/'), name]);
}

/** Every blob a file snapshot needs: its trees and every content chunk they name. */
export async function fileSnapshotBlobs(reader: TreeReader, manifest: FileSnapshotManifest): Promise<Set<string>> {
  const blobs = new Set<string>([manifest.tree]);
  const pending = [manifest.tree];
  while (pending.length > 0) {
    for (const entry of await reader.read(pending.pop()!)) {
      for (const chunk of entry.content ?? []) blobs.add(chunk.id);
      if (entry.subtree !== undefined && !blobs.has(entry.subtree)) {
        blobs.add(entry.subtree);
        pending.push(entry.subtree);
      }
    }
  }
  return blobs;
}
