import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FaultyTarget, MemoryTarget } from '../testing/index.js';
import { Repository } from '../repository/repository.js';
import { UsageError } from '../errors.js';
import { WorkerPool } from '../pipeline/worker-pool.js';
import { silentProgress } from '../pipeline/progress.js';
import { readBlob } from '../pipeline/chunk-maps.js';
import type { FileMetadata, FolderListing, OpenedFile, OpenedFileTree } from './file-source.js';
import { TreeReader } from './tree-reader.js';
import { findParent, runFileBackup } from './file-backup.js';
import { spawnTestPool } from '../testing/test-pool.js';

const MiB = 1024 * 1024;

/** An error as node:fs gives it. */
function systemError(code: string, path: Buffer): Error {
  return Object.assign(new Error(`${code}: failed, ${path.toString()}`), { code });
}

async function metadataOf(path: Buffer): Promise<FileMetadata> {
  const s = await lstat(path, { bigint: true });
  const type = s.isDirectory() ? 'dir' : s.isFile() ? 'file' : s.isSymbolicLink() ? 'symlink' : 'fifo';
  return {
    type, mode: Number(s.mode & 0o7777n), uid: Number(s.uid), gid: Number(s.gid),
    mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs, atimeNs: s.atimeNs,
    size: type === 'file' ? Number(s.size) : 0, inode: s.ino, device: s.dev, links: Number(s.nlink),
  };
}

/**
 * A small file source on node:fs (the real plugin lives in packages/source-files), with faults:
 * paths whose listing fails, and files whose reads fail after their first `failAfterBytes`.
 */
class TestFileTree implements OpenedFileTree {
  readonly kind = 'files';
  readonly warnings: string[] = [];
  readonly unlistable = new Set<string>();
  readonly failingReads = new Map<string, number>();
  reads = 0;

  constructor(readonly roots: Buffer[]) {}

  get path(): string {
    return this.roots.join(', ');
  }

  stat(path: Buffer): Promise<FileMetadata> {
    return metadataOf(path);
  }

  async list(path: Buffer): Promise<FolderListing> {
    if (this.unlistable.has(path.toString())) throw systemError('EACCES', path);
    const names = await readdir(path, { encoding: 'buffer' });
    return { entries: await Promise.all(names.map(async (name) => ({ name, metadata: await metadataOf(Buffer.concat([path, Buffer.from('/'), name])) }))), problems: [] };
  }

  async open(path: Buffer): Promise<OpenedFile> {
    const handle = await open(path, constants.O_RDONLY | constants.O_NOATIME);
    const failAfter = this.failingReads.get(path.toString());
    let read = 0;
    return {
      dataRanges: async (size) => [{ offset: 0, length: size }],
      read: async (into, offset, length, position) => {
        this.reads++;
        if (failAfter !== undefined && read >= failAfter) throw systemError('EIO', path);
        const { bytesRead } = await handle.read(into, offset, length, position);
        read += bytesRead;
        return bytesRead;
      },
      stat: async () => {
        const s = await handle.stat({ bigint: true });
        return { size: Number(s.size), mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs };
      },
      close: () => handle.close(),
    };
  }

  dispose(): void {}
}

describe('file backup pipeline', () => {
  let target: FaultyTarget;
  let repository: Repository;
  let pool: WorkerPool;
  let dir: string;

  beforeEach(async () => {
    target = new FaultyTarget(new MemoryTarget());
    repository = await Repository.init(target, 'pw');
    pool = await spawnTestPool(repository);
    dir = await mkdtemp(join(tmpdir(), 'cairn-file-backup-'));
  });
  afterEach(async () => {
    await pool.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  const backup = async (source: TestFileTree, withParent = true) => {
    const parent = withParent ? await findParent(repository, 't', source.roots.map(String)) : undefined;
    return runFileBackup({ repository, index: await repository.loadIndex(), pool, source, sourceType: 'files', jobName: 't', compression: 'none', progress: silentProgress, started: new Date(), parent });
  };

  /** The content of a file in a snapshot, put together from its chunks (holes as zeros). */
  const contentOf = async (tree: string, path: string): Promise<Buffer> => {
    const index = await repository.loadIndex();
    const reader = new TreeReader(repository, index, pool);
    const manifest = { tree, time: new Date().toISOString() } as Parameters<TreeReader['lookup']>[0];
    const entry = (await reader.lookup(manifest, path))!;
    const bytes = Buffer.alloc(entry.size);
    for (const chunk of entry.content!) (await readBlob(repository, index, pool, chunk.id)).copy(bytes, chunk.offset);
    return bytes;
  };

  it('stores files on both sides of each slot size, and chunks reaching past the pages a large slot keeps, exactly', async () => {
    const data = join(dir, 'data');
    await mkdir(data, { recursive: true });
    const files = new Map<string, Buffer>();
    // A small slot takes files up to 64 KiB less a seal's overhead; a medium one up to the chunker's minimum.
    for (const size of [1, 64 * 1024 - 29, 64 * 1024 - 28, 300 * 1024, 512 * 1024, 512 * 1024 + 1]) files.set(`f${size}`, randomBytes(size));
    // A 64-byte pattern the gear hash never cuts: chunks of the largest size (8 MiB), past the
    // 2 MiB a large slot keeps resident; then random bytes through the same slots. (Every chunk
    // here is sealed in place in its slot: the test repository does not compress.)
    files.set('pattern', Buffer.alloc(20 * MiB, randomBytes(64)));
    files.set('random', randomBytes(5 * MiB));
    for (const [name, bytes] of files) await writeFile(join(data, name), bytes);

    const { manifest } = await backup(new TestFileTree([Buffer.from(data)]));
    expect(manifest.stats.files).toBe(files.size);
    for (const [name, bytes] of files) expect((await contentOf(manifest.tree, join(data, name))).equals(bytes), name).toBe(true);
    const reader = new TreeReader(repository, await repository.loadIndex(), pool);
    const pattern = await reader.lookup(manifest, join(data, 'pattern'));
    expect(pattern!.content!.map((chunk) => chunk.length)).toEqual([8 * MiB, 8 * MiB, 4 * MiB]);
  });

  it('stores a tree whose files read back exactly; an unchanged second run reads nothing, and the folder tree settles to the same blob', async () => {
    const data = join(dir, 'data');
    await mkdir(join(data, 'sub'), { recursive: true });
    const big = randomBytes(3 * MiB);
    await writeFile(join(data, 'sub', 'big.bin'), big);
    await writeFile(join(data, 'small.txt'), 'small\n');
    await writeFile(join(data, 'empty'), '');
    await writeFile(join(data, 'zeros'), Buffer.alloc(2 * MiB));
    const source = new TestFileTree([Buffer.from(data)]);

    const first = await backup(source);
    expect(first.manifest.stats).toMatchObject({ files: 4, bytesRead: 5 * MiB + 6, unchangedFiles: 0, totalBytes: 5 * MiB + 6 });
    expect(first.manifest.skipped).toBeUndefined();
    expect((await contentOf(first.manifest.tree, join(data, 'sub', 'big.bin'))).equals(big)).toBe(true);
    expect((await contentOf(first.manifest.tree, join(data, 'small.txt'))).toString()).toBe('small\n');
    // Zeros are a hole: no chunk, and still read back as zeros.
    expect((await contentOf(first.manifest.tree, join(data, 'zeros'))).equals(Buffer.alloc(2 * MiB))).toBe(true);

    const second = await backup(source);
    expect(second.manifest.parent).toBe(first.snapshot);
    expect(second.manifest.stats).toMatchObject({ bytesRead: 0, unchangedFiles: 4, newChunks: 0 });
    // The folder's tree is the same blob once its access time settled (the first listing set it).
    const third = await backup(source);
    const reader = new TreeReader(repository, await repository.loadIndex(), pool);
    expect((await reader.lookup(third.manifest, data))!.subtree).toBe((await reader.lookup(second.manifest, data))!.subtree);
  });

  it('takes the parent tree of an unchanged folder, and stores a new one for a folder with a changed entry', async () => {
    const data = join(dir, 'data');
    for (const name of ['same', 'chmodded']) {
      await mkdir(join(data, name), { recursive: true });
      await writeFile(join(data, name, 'file.txt'), `${name}\n`);
    }
    const source = new TestFileTree([Buffer.from(data)]);
    await backup(source);
    const before = await backup(source); // access times settled
    await chmod(join(data, 'chmodded', 'file.txt'), 0o600);
    const after = await backup(source);
    const reader = new TreeReader(repository, await repository.loadIndex(), pool);
    const subtree = async (manifest: typeof after.manifest, name: string) => (await reader.lookup(manifest, join(data, name)))!.subtree;
    expect(await subtree(after.manifest, 'same')).toBe(await subtree(before.manifest, 'same'));
    expect(await subtree(after.manifest, 'chmodded')).not.toBe(await subtree(before.manifest, 'chmodded'));
    expect(await reader.lookup(after.manifest, join(data, 'chmodded', 'file.txt'))).toMatchObject({ mode: 0o600 });
    expect(after.manifest.stats.bytesRead).toBe('chmodded\n'.length); // a new mode changes the ctime: the file is read again
  });

  it('records a file that fails midway and a folder that cannot be listed, and backs up the rest', async () => {
    const data = join(dir, 'data');
    await mkdir(join(data, 'locked'), { recursive: true });
    await writeFile(join(data, 'locked', 'x'), 'x');
    await writeFile(join(data, 'failing.bin'), randomBytes(12 * MiB));
    await writeFile(join(data, 'fine.txt'), 'fine\n');
    const source = new TestFileTree([Buffer.from(data)]);
    source.unlistable.add(join(data, 'locked'));
    source.failingReads.set(join(data, 'failing.bin'), MiB); // its first read (a window of 8 MiB) succeeds, the next fails

    const result = await backup(source);
    const skipped = [...result.manifest.skipped!].sort((x, y) => x.path.localeCompare(y.path));
    expect(skipped).toEqual([
      { path: join(data, 'failing.bin'), reason: expect.stringMatching(/EIO/) },
      { path: join(data, 'locked'), reason: expect.stringMatching(/EACCES/) },
    ]);
    const reader = new TreeReader(repository, await repository.loadIndex(), pool);
    const manifest = result.manifest;
    expect(await reader.lookup(manifest, join(data, 'failing.bin'))).toMatchObject({ size: 0, content: [], error: expect.stringMatching(/EIO/) });
    const locked = await reader.lookup(manifest, join(data, 'locked'));
    expect(locked).toMatchObject({ type: 'dir', error: expect.stringMatching(/EACCES/) });
    expect(locked!.subtree).toBeUndefined();
    expect((await contentOf(manifest.tree, join(data, 'fine.txt'))).toString()).toBe('fine\n');

    // The next run reads the failed file again (its entry is no parent for it).
    source.failingReads.clear();
    const next = await backup(source);
    expect(next.manifest.stats.bytesRead).toBe(12 * MiB);
  });

  it('fails the run (not one file) when the repository cannot store', async () => {
    const data = join(dir, 'data');
    await mkdir(data);
    await writeFile(join(data, 'a.bin'), randomBytes(MiB));
    target.failAfter('put', 0, new Error('disk full'));
    await expect(backup(new TestFileTree([Buffer.from(data)]))).rejects.toThrow(/disk full/);
  });

  it('reads a file that shrank up to its new end, and marks it changed', async () => {
    const data = join(dir, 'data');
    await mkdir(data);
    const path = join(data, 'shrinking.bin');
    await writeFile(path, randomBytes(4 * MiB));
    const source = new TestFileTree([Buffer.from(data)]);
    const open = source.open.bind(source);
    source.open = async (p) => {
      await truncate(path, 3 * MiB);
      return open(p);
    };
    const result = await backup(source);
    const entry = await new TreeReader(repository, await repository.loadIndex(), pool).lookup(result.manifest, path);
    expect(entry).toMatchObject({ size: 3 * MiB, changed: true });
    expect(result.manifest.stats.changedWhileRead).toBe(1);
  });

  it('refuses a repository older than format 5', async () => {
    const old = await Repository.init(new MemoryTarget(), 'pw', { formatVersion: 4 });
    expect(() => runFileBackup({ repository: old, index: undefined as never, pool, source: new TestFileTree([Buffer.from(dir)]), sourceType: 'files', jobName: 't', compression: 'none', progress: silentProgress, started: new Date() })).toThrow(UsageError);
  });
});
