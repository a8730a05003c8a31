import { lstat, open, readlink } from 'node:fs/promises';
import { constants, type BigIntStats } from 'node:fs';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import { allocateAligned } from '../pipeline/aligned-memory.js';
import type { Posix } from './posix.js';
import type { EntryType, TreeEntry } from './tree.js';

/** Bytes of a gap (a hole in the snapshot) read at once to check that it holds zeros. */
const GAP_READ = 1024 * 1024;

/**
 * Compares what is on disk with a snapshot entry: the content chunk by chunk against the
 * stored chunk ids (the repository's keyed hash, computed in the worker pool, of the bytes at
 * each chunk's offset), holes as zeros, and the metadata a restore sets.
 */
export class EntryVerifier {
  readonly #slot: SharedArrayBuffer;

  constructor(
    private readonly pool: WorkerPool,
    private readonly posix: Posix,
    maxChunk: number,
    /** Whether owners are compared (a restore by another user than root does not set them). */
    private readonly owners: boolean,
  ) {
    this.#slot = allocateAligned(maxChunk);
  }

  /** What differs between the path and the entry (content and metadata); empty when nothing does. */
  async problems(path: Buffer, entry: TreeEntry): Promise<string[]> {
    let stats: BigIntStats;
    try {
      stats = await lstat(path, { bigint: true });
    } catch (err) {
      return [`cannot be read: ${(err as Error).message}`];
    }
    const problems = this.#metadataProblems(path, entry, stats);
    if (typeof stats.isFile === 'function' && stats.isFile() && entry.type === 'file' && Number(stats.size) === entry.size) {
      const content = await this.contentProblem(path, entry);
      if (content) problems.push(content);
    }
    if (entry.type === 'symlink' && typeOf(stats) === 'symlink') {
      const target = await readlink(path, { encoding: 'buffer' });
      if (!target.equals(entry.target!)) problems.push('the link target differs');
    }
    return problems;
  }

  /** Whether a regular file's bytes are the entry's: each chunk by its id, every gap zeros. Undefined when they are. */
  async contentProblem(path: Buffer, entry: TreeEntry): Promise<string | undefined> {
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      let end = 0;
      for (const chunk of entry.content ?? []) {
        if (chunk.offset > end && !(await this.#zerosIn(handle, end, chunk.offset))) return `non-zero bytes in the hole at ${end}`;
        const view = new Uint8Array(this.#slot, 0, chunk.length);
        const { bytesRead } = await handle.read(view, 0, chunk.length, chunk.offset);
        if (bytesRead !== chunk.length) return `short read at ${chunk.offset}`;
        const hash = await this.pool.hash(this.#slot, chunk.length);
        if (hash.zero || hash.id.toString('hex') !== chunk.id) return `the bytes at ${chunk.offset} (${chunk.length}) differ from the snapshot's`;
        end = chunk.offset + chunk.length;
      }
      if (entry.size > end && !(await this.#zerosIn(handle, end, entry.size))) return `non-zero bytes in the hole at ${end}`;
      return undefined;
    } finally {
      await handle.close();
    }
  }

  /** Whether [from, to) of the file reads as zeros; only its data ranges are read. */
  async #zerosIn(handle: Awaited<ReturnType<typeof open>>, from: number, to: number): Promise<boolean> {
    const buffer = Buffer.allocUnsafe(GAP_READ);
    for (const range of this.posix.dataRanges(handle.fd, to)) {
      const start = Math.max(from, range.offset);
      const stop = Math.min(to, range.offset + range.length);
      for (let at = start; at < stop; at += GAP_READ) {
        const length = Math.min(GAP_READ, stop - at);
        const { bytesRead } = await handle.read(buffer, 0, length, at);
        if (buffer.subarray(0, bytesRead).some((b) => b !== 0)) return false;
      }
    }
    return true;
  }

  #metadataProblems(path: Buffer, entry: TreeEntry, stats: BigIntStats): string[] {
    const type = typeOf(stats);
    if (type !== entry.type) return [`is a ${type}, the snapshot has a ${entry.type}`];
    const problems: string[] = [];
    if (entry.type === 'file' && Number(stats.size) !== entry.size) problems.push(`size ${stats.size}, the snapshot has ${entry.size}`);
    if (entry.type !== 'symlink' && Number(stats.mode & 0o7777n) !== entry.mode) problems.push(`mode ${(Number(stats.mode) & 0o7777).toString(8)}, the snapshot has ${entry.mode.toString(8)}`);
    if (this.owners && (Number(stats.uid) !== entry.uid || Number(stats.gid) !== entry.gid)) problems.push(`owner ${stats.uid}:${stats.gid}, the snapshot has ${entry.uid}:${entry.gid}`);
    if (stats.mtimeNs !== entry.mtimeNs) problems.push(`mtime ${stats.mtimeNs} ns, the snapshot has ${entry.mtimeNs}`);
    if (entry.rdev !== undefined && stats.rdev !== entry.rdev) problems.push(`device number ${stats.rdev}, the snapshot has ${entry.rdev}`);
    problems.push(...this.#xattrProblems(path, entry));
    return problems;
  }

  /** Every stored extended attribute must be there with its value (others, e.g. an SELinux label the system adds, are not counted). */
  #xattrProblems(path: Buffer, entry: TreeEntry): string[] {
    if (!entry.xattrs?.length) return [];
    const present = new Map(this.posix.listXattrs(path).map((x) => [x.name, x.value]));
    return entry.xattrs.filter((x) => !present.get(x.name)?.equals(x.value)).map((x) => `extended attribute ${x.name} ${present.has(x.name) ? 'differs' : 'is missing'}`);
  }
}

/** The entry type of what lstat saw ('socket' and unknown types as they are). */
export function typeOf(stats: { mode: number | bigint }): EntryType | 'socket' | 'unknown' {
  const format = Number(stats.mode) & constants.S_IFMT;
  switch (format) {
    case constants.S_IFREG:
      return 'file';
    case constants.S_IFDIR:
      return 'dir';
    case constants.S_IFLNK:
      return 'symlink';
    case constants.S_IFCHR:
      return 'chardev';
    case constants.S_IFBLK:
      return 'blockdev';
    case constants.S_IFIFO:
      return 'fifo';
    case constants.S_IFSOCK:
      return 'socket';
    default:
      return 'unknown';
  }
}
