import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryTarget } from '../testing/index.js';
import { Repository, BlobIndex } from '../repository/repository.js';
import { Keys } from '../repository/format.js';
import type { WorkerPool } from '../pipeline/worker-pool.js';
import { silentProgress } from '../pipeline/progress.js';
import { spawnTestPool } from '../testing/test-pool.js';
import type { FileMetadata, FolderListing, OpenedFile, OpenedFileTree } from './file-source.js';
import { runFileBackup, type FileBackupResult } from './file-backup.js';
import { TreeReader } from './tree-reader.js';
import { FINGERPRINTED_FIELDS, FolderCacheWriter, FolderHasher, openFolderCache, readFolderCache, writeFolderCache, type CachedFolder } from './folder-cache.js';

const fullMetadata = (): FileMetadata => ({
  type: 'file', mode: 0o4755, uid: 1000, gid: 100, user: 'u', group: 'g',
  mtimeNs: 1_700_000_000_123_456_789n, ctimeNs: 1_700_000_001_000_000_001n, atimeNs: 1_700_000_002_000_000_002n,
  size: 12345, inode: 2n ** 63n + 5n, device: 2049n, links: 2, rdev: 0n, target: Buffer.from('t'),
  xattrs: [{ name: 'user.a', value: Buffer.from('1') }],
});

/** The same field, changed: another value of its own kind. */
function changed(metadata: FileMetadata, field: keyof FileMetadata): FileMetadata {
  const value = metadata[field];
  const other =
    typeof value === 'bigint' ? value + 1n
    : typeof value === 'number' ? value + 1
    : typeof value === 'string' ? `${value}x`
    : Buffer.isBuffer(value) ? Buffer.concat([value, Buffer.from('x')])
    : [{ name: 'user.a', value: Buffer.from('2') }];
  return { ...metadata, [field]: field === 'type' ? 'symlink' : other };
}

describe('folder fingerprints', () => {
  const hasher = new FolderHasher(randomBytes(32));
  const name = Buffer.from('n\xff', 'latin1');

  it('change with every field of an entry, and with its name', () => {
    const base = hasher.fingerprint([{ name, metadata: fullMetadata() }]);
    expect(hasher.fingerprint([{ name, metadata: fullMetadata() }]).equals(base)).toBe(true);
    expect(FINGERPRINTED_FIELDS).toHaveLength(16);
    for (const field of FINGERPRINTED_FIELDS) {
      expect(hasher.fingerprint([{ name, metadata: changed(fullMetadata(), field) }]).equals(base), field).toBe(false);
      const { [field]: _, ...without } = fullMetadata();
      if (!['type', 'mode', 'uid', 'gid', 'mtimeNs', 'ctimeNs', 'atimeNs', 'size', 'inode', 'device', 'links'].includes(field)) {
        expect(hasher.fingerprint([{ name, metadata: without as FileMetadata }]).equals(base), `${field} absent`).toBe(false);
      }
    }
    expect(hasher.fingerprint([{ name: Buffer.from('m'), metadata: fullMetadata() }]).equals(base)).toBe(false);
  });

  it('change when an entry is added, removed or moved, and cannot be made equal by moving bytes between fields', () => {
    const a = { name: Buffer.from('a'), metadata: fullMetadata() };
    const b = { name: Buffer.from('b'), metadata: { ...fullMetadata(), target: undefined, xattrs: undefined } };
    const both = hasher.fingerprint([a, b]);
    expect(hasher.fingerprint([a]).equals(both)).toBe(false);
    expect(hasher.fingerprint([b, a]).equals(both)).toBe(false);
    expect(hasher.fingerprint([a, b, b]).equals(both)).toBe(false);
    const split = (user: string, group: string) => hasher.fingerprint([{ name: a.name, metadata: { ...fullMetadata(), user, group } }]);
    expect(split('ab', 'c').equals(split('a', 'bc'))).toBe(false);
  });

  it('differ between repositories, and path keys too', () => {
    const other = new FolderHasher(randomBytes(32));
    const entries = [{ name, metadata: fullMetadata() }];
    expect(other.fingerprint(entries).equals(hasher.fingerprint(entries))).toBe(false);
    expect(other.pathKey(Buffer.from('/a')).equals(hasher.pathKey(Buffer.from('/a')))).toBe(false);
  });
});

describe('folder cache files', () => {
  let dir: string;
  beforeEach(async () => (dir = await mkdtemp(join(tmpdir(), 'cairn-folder-cache-'))));
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const header = { repository: 'r', job: 'j', snapshot: 's', indexFiles: ['i1', 'i2'] };
  const folderOf = (i: number): CachedFolder => ({ fingerprint: randomBytes(16), treeId: randomBytes(32).toString('hex'), files: i, chunks: 2 * i, bytes: 2 ** 40 + i });

  it('give back every folder written, found by path key, and nothing for another key', async () => {
    const hasher = new FolderHasher(randomBytes(32));
    const writer = new FolderCacheWriter();
    const folders = new Map<string, CachedFolder>();
    for (let i = 0; i < 1000; i++) {
      const folder = folderOf(i);
      folders.set(`/f/${i}`, folder);
      writer.add(hasher.pathKey(Buffer.from(`/f/${i}`)), folder);
    }
    const file = join(dir, 'sub', 'c.cache');
    await writeFolderCache(file, header, writer);
    const kept = (await readFolderCache(file))!;
    expect(kept.header).toEqual(header);
    expect(kept.folders.count).toBe(1000);
    for (const [path, folder] of folders) expect(kept.folders.get(hasher.pathKey(Buffer.from(path)))).toEqual(folder);
    expect(kept.folders.get(hasher.pathKey(Buffer.from('/f/1000')))).toBeUndefined();
    expect((await lstat(file)).mode & 0o777).toBe(0o600);
    expect(await readdir(join(dir, 'sub'))).toEqual(['c.cache']);
  });

  it('are not used when damaged, cut short, of another format, or writable by others', async () => {
    const writer = new FolderCacheWriter();
    writer.add(randomBytes(16), folderOf(1));
    const file = join(dir, 'c.cache');
    await writeFolderCache(file, header, writer);
    const bytes = await readFile(file);
    for (const damaged of [Buffer.concat([bytes.subarray(0, 40), Buffer.from([bytes[40]! ^ 1]), bytes.subarray(41)]), bytes.subarray(0, bytes.length - 1), Buffer.from('cairn folder cache 9\n{}\n')]) {
      await writeFile(file, damaged);
      expect(await readFolderCache(file)).toBeUndefined();
    }
    expect(await readFolderCache(join(dir, 'none'))).toBeUndefined();
    // Intact, but others may write it, or it is a link: someone else's cache could hide changes.
    await writeFile(file, bytes);
    expect(await readFolderCache(file)).toBeDefined();
    await chmod(file, 0o666);
    expect(await readFolderCache(file)).toBeUndefined();
    await chmod(file, 0o600);
    await symlink(file, join(dir, 'link'));
    expect(await readFolderCache(join(dir, 'link'))).toBeUndefined();
  });
});

/** The tree on node:fs, as the files source gives it (without xattrs or access times); counts its reads. */
class CountingTree implements OpenedFileTree {
  readonly kind = 'files';
  readonly warnings: string[] = [];
  readonly unlistable = new Set<string>();
  reads = 0;

  constructor(readonly roots: Buffer[]) {}

  get path(): string {
    return this.roots.join(', ');
  }

  async stat(path: Buffer): Promise<FileMetadata> {
    const s = await lstat(path, { bigint: true });
    const type = s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'symlink';
    return {
      type, mode: Number(s.mode & 0o7777n), uid: Number(s.uid), gid: Number(s.gid),
      // Listing a folder sets its access time, which would make each backup see what the one
      // before did: two backups of the same state (with and without the cache) must see the same.
      mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs, atimeNs: 0n,
      size: type === 'dir' ? 0 : Number(s.size), inode: s.ino, device: s.dev, links: Number(s.nlink),
      ...(type === 'symlink' && { target: await readlink(path, { encoding: 'buffer' }) }),
    };
  }

  async list(path: Buffer): Promise<FolderListing> {
    if (this.unlistable.has(path.toString())) throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
    const names = (await readdir(path, { encoding: 'buffer' })).sort(Buffer.compare);
    return { entries: await Promise.all(names.map(async (name) => ({ name, metadata: await this.stat(Buffer.concat([path, Buffer.from('/'), name])) }))), problems: [] };
  }

  async open(path: Buffer): Promise<OpenedFile> {
    // Without O_NOATIME a read would set the access time, and the next listing would differ.
    const handle = await open(path, constants.O_RDONLY | constants.O_NOATIME);
    const bytes = await handle.readFile().finally(() => handle.close());
    return {
      dataRanges: async (size) => [{ offset: 0, length: size }],
      read: async (into, offset, length, position) => {
        this.reads++;
        const part = bytes.subarray(position, position + length);
        into.set(part, offset);
        return part.length;
      },
      stat: async () => {
        const s = await lstat(path, { bigint: true });
        return { size: Number(s.size), mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs };
      },
      close: async () => undefined,
    };
  }

  dispose(): void {}
}

describe('file backups with the folder cache', () => {
  let target: MemoryTarget;
  let repository: Repository;
  let pool: WorkerPool;
  let dir: string;
  let data: string;
  let cacheDir: string;

  beforeEach(async () => {
    target = new MemoryTarget();
    repository = await Repository.init(target, 'pw');
    pool = await spawnTestPool(repository);
    dir = await mkdtemp(join(tmpdir(), 'cairn-folder-cache-'));
    data = join(dir, 'data');
    cacheDir = join(dir, 'cache');
  });
  afterEach(async () => {
    await pool.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  type Parent = { id: string; manifest: FileBackupResult['manifest'] } | undefined;
  const parentOf = (result: FileBackupResult): Parent => ({ id: result.snapshot, manifest: result.manifest });
  const input = (source: OpenedFileTree, index: BlobIndex, parent: Parent) => ({
    repository, index, pool, source, sourceType: 'files', jobName: 't', compression: 'none', progress: silentProgress, started: new Date(), parent,
  });

  /** A backup using (and then saving) the folder cache; `trusted`: whether it could use the last one. */
  const cachedBackup = async (source: OpenedFileTree, parent: Parent) => {
    const index = await repository.loadIndex('write');
    const folderCache = (await openFolderCache(cacheDir, repository, index, 't', parent?.id))!;
    const result = await runFileBackup({ ...input(source, index, parent), folderCache });
    await folderCache.save(result.snapshot);
    return { result, trusted: folderCache.previous !== undefined };
  };
  const plainBackup = async (source: OpenedFileTree, parent: Parent) => runFileBackup(input(source, await repository.loadIndex('write'), parent));
  /** Without what depends on which of two backups of the same state ran first. */
  const statsOf = (result: FileBackupResult) => ({ ...result.manifest.stats, durationMs: 0, bytesAdded: 0, newChunks: 0 });

  /** The tree of the folder backed up (those of the levels above change with whatever else is in the temporary folder). */
  const subtreeOf = async (result: FileBackupResult) => (await new TreeReader(repository, await repository.loadIndex(), pool).lookup(result.manifest, data))!.subtree;

  async function makeTree(): Promise<void> {
    for (let a = 0; a < 3; a++) {
      for (let b = 0; b < 3; b++) {
        const folder = join(data, `a${a}`, `b${b}`);
        await mkdir(folder, { recursive: true });
        for (let f = 0; f < 4; f++) await writeFile(join(folder, `f${f}`), randomBytes(100 + 1000 * f));
      }
      await writeFile(join(data, `a${a}`, 'top'), `top ${a}\n`);
    }
    await symlink('a0/top', join(data, 'link'));
    await writeFile(join(data, 'empty'), '');
  }

  it('gives every snapshot the trees and statistics a backup without it gives, through changes at every depth', async () => {
    await makeTree();
    const source = new CountingTree([Buffer.from(data)]);
    let parent = parentOf((await cachedBackup(source, undefined)).result);
    const steps: Array<[string, () => Promise<unknown>]> = [
      ['nothing', async () => undefined],
      ['a file deep down', () => writeFile(join(data, 'a1', 'b2', 'f3'), randomBytes(5000))],
      ['a new file in a middle folder', () => writeFile(join(data, 'a2', 'new'), 'new\n')],
      ['a folder removed', () => rm(join(data, 'a0', 'b1'), { recursive: true })],
      ['a mode', () => chmod(join(data, 'a2', 'b0'), 0o700)],
      ['a folder that cannot be listed', async () => source.unlistable.add(join(data, 'a1', 'b0'))],
      ['that folder listed again', async () => source.unlistable.clear()],
      ['nothing again', async () => undefined],
    ];
    for (const [step, change] of steps) {
      await change();
      const cached = await cachedBackup(source, parent);
      const plain = await plainBackup(source, parent);
      expect(cached.trusted, step).toBe(true);
      expect(cached.result.manifest.tree, step).toBe(plain.manifest.tree);
      expect(await subtreeOf(cached.result), step).toBe(await subtreeOf(plain));
      expect(statsOf(cached.result), step).toEqual(statsOf(plain));
      expect(cached.result.manifest.skipped, step).toEqual(plain.manifest.skipped);
      parent = parentOf(cached.result);
    }
  });

  it('fetches no tree of the parent and reads no file when nothing changed, and only the changed path when a file did', async () => {
    await makeTree();
    const source = new CountingTree([Buffer.from(data)]);
    const first = (await cachedBackup(source, undefined)).result;
    const packReads = vi.spyOn(repository, 'readPack');
    source.reads = 0;
    const second = await cachedBackup(source, parentOf(first));
    expect(second.trusted).toBe(true);
    // Only the trees of the levels above the folder backed up (`/`, `tmp`, …), not in the cache.
    const levelsAbove = data.split('/').length - 1;
    expect(packReads).toHaveBeenCalledTimes(levelsAbove);
    expect(source.reads).toBe(0);
    expect(await subtreeOf(second.result)).toBe(await subtreeOf(first));
    expect(second.result.manifest.stats).toMatchObject({ files: first.manifest.stats.files, unchangedFiles: first.manifest.stats.files, dataChunks: first.manifest.stats.dataChunks, totalBytes: first.manifest.stats.totalBytes });
    packReads.mockClear();

    await writeFile(join(data, 'a1', 'b2', 'f0'), randomBytes(300));
    const third = await cachedBackup(source, parentOf(second.result));
    // The trees of the levels above the folder backed up, of that folder, and of a1 and a1/b2.
    expect(packReads).toHaveBeenCalledTimes(levelsAbove + 3);
    expect(third.result.manifest.stats).toMatchObject({ bytesRead: 300 });
    packReads.mockRestore();
  });

  it('is not trusted for another parent, while a prune is under way, or once an index file it saw is gone', async () => {
    await makeTree();
    const source = new CountingTree([Buffer.from(data)]);
    const first = (await cachedBackup(source, undefined)).result;
    const second = await cachedBackup(source, parentOf(first));
    expect(second.trusted).toBe(true);
    const notUsed = async (index: BlobIndex, job: string, parent: string) => (await openFolderCache(cacheDir, repository, index, job, parent))!.notUsed;
    const trusted = async (index: BlobIndex, job: string, parent: string) => (await notUsed(index, job, parent)) === undefined;
    const index = await repository.loadIndex('write');
    expect(await trusted(index, 't', second.result.snapshot)).toBe(true);
    // Written for `second`: not for a backup whose parent is `first`, nor for another job.
    expect(await notUsed(index, 't', first.snapshot)).toBe(`it was written with snapshot ${second.result.snapshot.slice(0, 12)}, and the parent is ${first.snapshot.slice(0, 12)}`);
    expect(await notUsed(index, 'other job', second.result.snapshot)).toMatch(/^none is kept in /);
    const marked = new BlobIndex(new Set(['0'.repeat(64)]), 'write');
    for (const id of index.files) marked.files.add(id);
    expect(await notUsed(marked, 't', second.result.snapshot)).toBe('a prune is under way');
    await target.remove(Keys.index([...index.files][0]!));
    expect(await notUsed(await repository.loadIndex('write'), 't', second.result.snapshot)).toBe('index files it saw are gone (a prune or repair since)');
    // Without a parent there is nothing to use, and nothing to say.
    const withoutParent = (await openFolderCache(cacheDir, repository, index, 't', undefined))!;
    expect([withoutParent.previous, withoutParent.notUsed]).toEqual([undefined, undefined]);
    expect(await openFolderCache(undefined, repository, index, 't', second.result.snapshot)).toBeUndefined();
  });
});
