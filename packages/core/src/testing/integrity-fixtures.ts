import { BlobType } from '../repository/format.js';
import type { Repository } from '../repository/repository.js';
import { DEFAULT_CDC } from '../repository/config.js';
import type { FileSnapshotManifest } from '../repository/snapshot.js';
import { encodeTree, type ContentChunk, type TreeEntry } from '../files/tree.js';
import { Packer } from '../pipeline/packer.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';

/**
 * File snapshots built directly, without a source or the backup pipeline: for unit tests of
 * what reads trees (check, repair, prune). A spec maps names to a file's content (Buffer) or a
 * folder (an object). Content is cut in fixed pieces of `chunkSize` (all-zero ones are holes);
 * each file's chunks go to a pack of their own, the trees to a last one, so a test can lose one
 * file's data by removing one pack.
 */
export interface FileSpec {
  [name: string]: Buffer | FileSpec;
}

export interface WrittenFileSnapshot {
  id: string;
  manifest: FileSnapshotManifest;
  /** Absolute path → the file's content chunks, or the folder's tree id. */
  content: Map<string, ContentChunk[]>;
  trees: Map<string, string>;
}

export interface FileSnapshotOptions {
  job?: string;
  time?: Date;
  chunkSize?: number;
  /** `one`: every file's content in one pack (of its own, apart from the trees) instead of a pack per file. */
  contentPacks?: 'per-file' | 'one';
}

export async function writeFileSnapshot(repository: Repository, pool: WorkerPool, spec: FileSpec, options: FileSnapshotOptions = {}): Promise<WrittenFileSnapshot> {
  const written = { content: new Map<string, ContentChunk[]>(), trees: new Map<string, string>() };
  // Blobs already stored (by earlier snapshots) are not stored again, as a backup dedups them.
  const stored = new Set([...(await repository.loadIndex()).entries()].map(([id]) => id));
  const writer = { repository, pool, chunkSize: options.chunkSize ?? 4096, stored, written, treePacker: new Packer(repository), contentPacker: options.contentPacks === 'one' ? new Packer(repository) : undefined };
  const tree = await writeFolder(writer, spec, '');
  await writer.contentPacker?.flush();
  await writer.treePacker.flush();
  const time = options.time ?? new Date();
  const manifest: FileSnapshotManifest = {
    version: 3,
    kind: 'files',
    time: time.toISOString(),
    hostname: 'test-host',
    job: options.job ?? 'files',
    source: { type: 'files', path: Object.keys(spec).map((name) => `/${name}`).join(',') },
    paths: Object.keys(spec).map((name) => `/${name}`),
    tree,
    chunker: DEFAULT_CDC,
    compression: 'none',
    stats: { files: 0, dirs: 0, others: 0, totalBytes: 0, bytesRead: 0, bytesAdded: 0, unchangedFiles: 0, dataChunks: 0, newChunks: 0, treeBlobs: 0, changedWhileRead: 0, durationMs: 0 },
  };
  const { id } = await repository.saveSnapshot(manifest);
  return { id, manifest, ...written };
}

interface Writer {
  repository: Repository;
  pool: WorkerPool;
  chunkSize: number;
  stored: Set<string>;
  written: { content: Map<string, ContentChunk[]>; trees: Map<string, string> };
  treePacker: Packer;
  contentPacker: Packer | undefined;
}

async function writeFolder(writer: Writer, spec: FileSpec, path: string): Promise<string> {
  const entries: TreeEntry[] = [];
  for (const [name, value] of Object.entries(spec)) {
    const childPath = `${path}/${name}`;
    if (Buffer.isBuffer(value)) {
      const content = await writeContent(writer, value);
      writer.written.content.set(childPath, content);
      entries.push({ ...metadata(name, 'file', value.length), content });
    } else {
      entries.push({ ...metadata(name, 'dir', 0), subtree: await writeFolder(writer, value, childPath) });
    }
  }
  const id = await storeBlob(writer, writer.treePacker, BlobType.tree, encodeTree(entries));
  writer.written.trees.set(path || '/', id);
  return id;
}

async function writeContent(writer: Writer, bytes: Buffer): Promise<ContentChunk[]> {
  const packer = writer.contentPacker ?? new Packer(writer.repository);
  const content: ContentChunk[] = [];
  for (let offset = 0; offset < bytes.length; offset += writer.chunkSize) {
    const piece = bytes.subarray(offset, offset + writer.chunkSize);
    if (piece.every((byte) => byte === 0)) continue;
    content.push({ offset, length: piece.length, id: await storeBlob(writer, packer, BlobType.chunk, piece) });
  }
  if (!writer.contentPacker) await packer.flush();
  return content;
}

async function storeBlob(writer: Writer, packer: Packer, type: BlobType, plain: Buffer): Promise<string> {
  const { id, sealed } = await writer.pool.sealBytes(plain);
  const hex = id.toString('hex');
  if (!writer.stored.has(hex)) {
    writer.stored.add(hex);
    await packer.add(type, id, sealed, plain.length);
  }
  return hex;
}

function metadata(name: string, type: 'file' | 'dir', size: number): Omit<TreeEntry, 'content' | 'subtree'> {
  const time = 1_700_000_000_123_456_789n;
  return { name: Buffer.from(name), type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtimeNs: time, ctimeNs: time, atimeNs: time, size, inode: 1n, device: 1n, links: 1 };
}
