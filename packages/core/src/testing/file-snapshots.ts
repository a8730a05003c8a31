import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { BlobType } from '../repository/format.js';
import type { Repository } from '../repository/repository.js';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import { Packer } from '../pipeline/packer.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import { encodeTree, type ContentChunk, type TreeEntry } from '../files/tree.js';
import { pathNames } from '../files/tree-reader.js';
import { typeOf } from '../files/restore-verify.js';
import { loadPosix } from '../files/posix.js';

/** Chunk length of the test writer: fixed, not content-defined (restore reads whatever offsets a tree names). */
const TEST_CHUNK = 1024 * 1024;

/**
 * Stores a folder of the local disk as a file snapshot, the way the format describes one
 * (trees from the root down through the folder's parents, content chunks, all-zero chunks
 * left out as holes), without the file backup pipeline: for unit tests of what reads file
 * snapshots. Content is cut into fixed 1 MiB chunks. The pool must be started for writing.
 */
export async function storeFolderSnapshot(repository: Repository, pool: WorkerPool, folder: string, job = 'test'): Promise<{ id: string; manifest: FileSnapshotManifest }> {
  const store = new TestTreeStore(repository, pool);
  const names = pathNames(folder);
  let entry = await store.entry(Buffer.from(folder), names[names.length - 1]!);
  for (let depth = names.length - 1; depth > 0; depth--) {
    const parent = '/' + names.slice(0, depth).map((n) => n.toString('utf8')).join('/');
    entry = { ...(await store.metadata(Buffer.from(parent), names[depth - 1]!)), subtree: await store.tree([entry]) };
  }
  const tree = await store.tree([entry]);
  await store.packer.flush();
  const manifest: FileSnapshotManifest = {
    version: 3,
    kind: 'files',
    time: new Date().toISOString(),
    hostname: hostname(),
    job,
    source: { type: 'files', path: folder },
    paths: [folder],
    tree,
    chunker: { algorithm: 'fastcdc', min: TEST_CHUNK, avg: TEST_CHUNK, max: TEST_CHUNK },
    compression: 'none',
    stats: { files: 0, dirs: 0, others: 0, totalBytes: 0, bytesRead: 0, bytesAdded: 0, unchangedFiles: 0, dataChunks: 0, newChunks: 0, treeBlobs: 0, changedWhileRead: 0, durationMs: 0 },
  };
  const { id } = await repository.saveSnapshot(manifest);
  return { id, manifest };
}

class TestTreeStore {
  readonly packer: Packer;
  readonly #stored = new Set<string>();

  constructor(
    repository: Repository,
    private readonly pool: WorkerPool,
  ) {
    this.packer = new Packer(repository);
  }

  async blob(type: BlobType, data: Uint8Array): Promise<string> {
    const { id, sealed } = await this.pool.sealBytes(data);
    const hex = id.toString('hex');
    if (!this.#stored.has(hex)) {
      this.#stored.add(hex);
      await this.packer.add(type, id, sealed, data.length);
    }
    return hex;
  }

  tree(entries: TreeEntry[]): Promise<string> {
    return this.blob(BlobType.tree, encodeTree(entries));
  }

  async metadata(path: Buffer, name: Buffer): Promise<TreeEntry> {
    const posix = await loadPosix();
    const stats = await lstat(path, { bigint: true });
    const type = typeOf(stats);
    if (type === 'socket' || type === 'unknown') throw new Error(`cannot store a ${type}`);
    const xattrs = posix.listXattrs(path);
    const target = type === 'symlink' ? await readlink(path, { encoding: 'buffer' }) : undefined;
    return {
      name,
      type,
      mode: Number(stats.mode & 0o7777n),
      uid: Number(stats.uid),
      gid: Number(stats.gid),
      mtimeNs: stats.mtimeNs,
      ctimeNs: stats.ctimeNs,
      atimeNs: stats.atimeNs,
      size: type === 'file' ? Number(stats.size) : (target?.length ?? 0),
      inode: stats.ino,
      device: stats.dev,
      links: Number(stats.nlink),
      ...((type === 'chardev' || type === 'blockdev') && { rdev: stats.rdev }),
      ...(target && { target }),
      ...(xattrs.length > 0 && { xattrs }),
    };
  }

  async entry(path: Buffer, name: Buffer): Promise<TreeEntry> {
    const entry = await this.metadata(path, name);
    if (entry.type === 'file') entry.content = await this.content(path);
    if (entry.type === 'dir') {
      const children: TreeEntry[] = [];
      for (const child of await readdir(path, { encoding: 'buffer' })) children.push(await this.entry(Buffer.concat([path, Buffer.from('/'), child]), child));
      entry.subtree = await this.tree(children);
    }
    return entry;
  }

  async content(path: Buffer): Promise<ContentChunk[]> {
    const handle = await open(path, 'r');
    try {
      const chunks: ContentChunk[] = [];
      const buffer = Buffer.alloc(TEST_CHUNK);
      for (let offset = 0; ; offset += TEST_CHUNK) {
        const { bytesRead } = await handle.read(buffer, 0, TEST_CHUNK, offset);
        if (bytesRead === 0) break;
        const data = buffer.subarray(0, bytesRead);
        if (data.some((b) => b !== 0)) chunks.push({ offset, length: bytesRead, id: await this.blob(BlobType.chunk, Buffer.from(data)) });
      }
      return chunks;
    } finally {
      await handle.close();
    }
  }
}
