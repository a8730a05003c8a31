import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { MemoryTarget } from '../testing/memory-target.js';
import { storeFileSnapshots, type HandBuiltSnapshot, type NodeSpec } from '../testing/file-snapshot-writer.js';
import { Repository, blobIdSchemeOf } from '../repository/repository.js';
import { requireFileManifest, type FileSnapshotManifest } from '../repository/snapshot.js';
import { WorkerPool } from '../pipeline/worker-pool.js';
import { NONE_CODEC } from '../codecs/builtin.js';
import { DamageError, SnapshotPathNotFoundError, UsageError } from '../errors.js';
import { TreeReader } from './tree-reader.js';
import { listPath } from './list.js';
import { findVersions } from './find.js';
import { diffTrees } from './diff.js';
import { compileGlob } from './glob.js';
import { spawnTestPool } from '../testing/test-pool.js';

/*
 * ls, find and diff over hand-built file snapshots in a real repository (memory target, real
 * packs, real worker threads): three snapshots of one home folder, changed in known ways.
 */

const BIG = Buffer.concat([randomBytes(100_000), Buffer.alloc(128 * 1024), randomBytes(30_000)]);
const BAD_NAME = Buffer.from([0x62, 0x61, 0x64, 0xff, 0x2e, 0x74, 0x78, 0x74]); // "bad\xff.txt"

function docs(version: 1 | 2 | 3): Record<string, NodeSpec> {
  return {
    'a.txt': { content: version === 1 ? 'alpha' : 'alpha, edited' },
    'b.txt': { content: 'bravo', mode: version === 1 ? 0o644 : 0o600, mtime: version === 3 ? '2026-11-20T10:00:00Z' : undefined },
    ...(version === 1 ? { 'old.txt': { content: 'old' } } : { 'new.txt': { content: 'brand new' }, newdir: { children: { 'x.txt': { content: 'x' } } } }),
    sub: { children: { 'deep.txt': { content: 'deep' }, 'big.bin': { content: BIG } } },
  };
}

function home(version: 1 | 2 | 3): Record<string, NodeSpec> {
  return {
    home: {
      children: {
        u: {
          uid: 1000,
          gid: 1000,
          user: 'u',
          group: 'u',
          children: {
            docs: { children: docs(version), mtime: version === 1 ? undefined : '2026-11-15T08:00:00Z' },
            link: { type: 'symlink', target: version === 1 ? 'docs/a.txt' : 'docs/new.txt' },
            fifo: { type: 'fifo' },
            null: { type: 'chardev', rdev: 259n, mode: 0o666 },
            tool: { content: '#!/bin/sh\n', mode: 0o4755 },
            bad: { nameBytes: BAD_NAME, content: 'not utf-8' },
          },
        },
      },
    },
  };
}

const SNAPSHOTS: HandBuiltSnapshot[] = [
  { job: 'files', time: '2026-11-10T02:00:00.000Z', root: home(1), paths: ['/home/u'] },
  { job: 'files', time: '2026-11-11T02:00:00.000Z', root: home(2), paths: ['/home/u'] },
  { job: 'files', time: '2026-11-12T02:00:00.000Z', root: home(3), paths: ['/home/u'] },
];

describe('browsing file snapshots', () => {
  let pool: WorkerPool;
  let repository: Repository;
  let reader: TreeReader;
  let ids: string[];
  let manifests: FileSnapshotManifest[];

  beforeAll(async () => {
    repository = await Repository.init(new MemoryTarget(), 'pw');
    pool = await spawnTestPool(repository);
    ids = await storeFileSnapshots(repository, pool, SNAPSHOTS);
    manifests = await Promise.all(ids.map(async (id) => requireFileManifest(id, await repository.loadSnapshot(id), 'test')));
    reader = new TreeReader(repository, await repository.loadIndex(), pool);
  });
  afterAll(async () => {
    await pool?.dispose();
  });

  const names = (entries: Array<{ path: Buffer }>) => entries.map((e) => e.path.toString('utf8'));

  describe('listPath', () => {
    it('lists the root, a folder, a folder recursively and a file', async () => {
      expect(names((await listPath(reader, ids[0]!, manifests[0]!, '/')).entries)).toEqual(['/home']);
      const u = await listPath(reader, ids[0]!, manifests[0]!, '/home/u/');
      expect(u.folder).toBe(true);
      expect(u.entries.map((e) => e.entry.name)).toEqual([BAD_NAME, Buffer.from('docs'), Buffer.from('fifo'), Buffer.from('link'), Buffer.from('null'), Buffer.from('tool')]);
      const recursive = await listPath(reader, ids[0]!, manifests[0]!, 'home/u/docs', { recursive: true });
      expect(names(recursive.entries)).toEqual(['/home/u/docs/a.txt', '/home/u/docs/b.txt', '/home/u/docs/old.txt', '/home/u/docs/sub', '/home/u/docs/sub/big.bin', '/home/u/docs/sub/deep.txt']);
      const file = await listPath(reader, ids[0]!, manifests[0]!, '/home/u/./docs/sub/big.bin');
      expect(file.folder).toBe(false);
      expect(file.entries[0]!.entry).toMatchObject({ type: 'file', size: BIG.length });
      // The hole of zeros is no chunk: restored sparse.
      expect(file.entries[0]!.entry.content!.map((c) => c.offset)).toEqual([0, 65536, 196608]);
    });

    it('refuses a path the snapshot does not hold, naming what it holds, and ".."', async () => {
      await expect(listPath(reader, ids[0]!, manifests[0]!, '/home/u/docs/new.txt')).rejects.toThrow(SnapshotPathNotFoundError);
      await expect(listPath(reader, ids[0]!, manifests[0]!, '/home/u/docs/a.txt/x')).rejects.toThrow(`Snapshot ${ids[0]!.slice(0, 8)} has no /home/u/docs/a.txt/x (it holds /home/u)`);
      await expect(listPath(reader, ids[0]!, manifests[0]!, '/home/../etc')).rejects.toThrow(UsageError);
    });
  });

  describe('findVersions', () => {
    it('groups each path by content across snapshots: one line for a file unchanged in all', async () => {
      const versions = await findVersions(reader, ids.map((id, i) => ({ id, manifest: manifests[i]! })), compileGlob('*.txt'));
      const rows = versions.map((v) => [v.path.toString('utf8'), v.snapshots.map((id) => ids.indexOf(id))]);
      expect(rows).toEqual([
        [BAD_NAME.toString('utf8').replace(/^/, '/home/u/'), [0, 1, 2]],
        ['/home/u/docs/a.txt', [0]],
        ['/home/u/docs/a.txt', [1, 2]],
        // Metadata changed, content not: one version, with the newest snapshot's metadata.
        ['/home/u/docs/b.txt', [0, 1, 2]],
        ['/home/u/docs/new.txt', [1, 2]],
        ['/home/u/docs/newdir/x.txt', [1, 2]],
        ['/home/u/docs/old.txt', [0]],
        ['/home/u/docs/sub/deep.txt', [0, 1, 2]],
      ]);
      expect(versions[3]!.entry.mode).toBe(0o600);
    });

    it('matches whole paths when the pattern has a slash, names that are not UTF-8, and without case', async () => {
      const all = ids.map((id, i) => ({ id, manifest: manifests[i]! }));
      const paths = async (pattern: string, ignoreCase = false) => [...new Set(names(await findVersions(reader, all, compileGlob(pattern, { ignoreCase }))))];
      expect(await paths('docs/*.txt')).toEqual(['/home/u/docs/a.txt', '/home/u/docs/b.txt', '/home/u/docs/new.txt', '/home/u/docs/old.txt']);
      expect(await paths('/home/**/x.txt')).toEqual(['/home/u/docs/newdir/x.txt']);
      expect(await paths('/home/u/docs/sub')).toEqual(['/home/u/docs/sub']);
      expect(await paths('bad?.txt')).toEqual([BAD_NAME.toString('utf8').replace(/^/, '/home/u/')]);
      expect(await paths('A.TXT')).toEqual([]);
      expect(await paths('A.TXT', true)).toEqual(['/home/u/docs/a.txt']);
    });

    it('walks a (path, tree) once over all snapshots', async () => {
      const counting = new TreeReader(repository, await repository.loadIndex(), pool);
      const read = vi.spyOn(counting, 'read');
      await findVersions(counting, ids.map((id, i) => ({ id, manifest: manifests[i]! })), compileGlob('deep.txt'));
      const reads = new Map<string, number>();
      for (const [tree] of read.mock.calls) reads.set(tree, (reads.get(tree) ?? 0) + 1);
      // Every tree is read once: sub/ is the same tree in all three, docs/ in the last two.
      expect(Math.max(...reads.values())).toBe(1);
      // 3 roots, home, u and docs: 2 versions each (1 and 2; 3 differs in docs only: b.txt's mtime) + docs of 3 + sub + newdir.
      expect(read.mock.calls.length).toBe(3 + 3 * 3 + 1 + 1);
    });
  });

  it('a damaged tree is DamageError, naming its pack', async () => {
    const target = new MemoryTarget();
    const damaged = await Repository.init(target, 'pw');
    const own = WorkerPool.spawn(1);
    try {
      await own.init({ masterKey: damaged.masterKey, blobIdScheme: blobIdSchemeOf(damaged.config), codecs: [NONE_CODEC], writeCodec: { type: 'none' }, writeCodecId: 0 });
      const [id] = await storeFileSnapshots(damaged, own, [{ job: 'files', time: '2026-11-10T02:00:00.000Z', root: { d: { children: { f: { content: 'f' } } } } }]);
      for await (const { key } of target.list('data/')) {
        const bytes = await target.get(key);
        // Every blob of the pack (its header, at the end, stays readable).
        const blobsEnd = bytes.length - 4 - bytes.readUInt32LE(bytes.length - 4);
        for (let at = 0; at < blobsEnd; at += 16) bytes[at]! ^= 1;
        await target.put(key, bytes);
      }
      const manifest = requireFileManifest(id!, await damaged.loadSnapshot(id!), 'test');
      const fresh = new TreeReader(damaged, await damaged.loadIndex(), own);
      await expect(listPath(fresh, id!, manifest, '/d')).rejects.toThrow(DamageError);
      await expect(listPath(fresh, id!, manifest, '/d')).rejects.toThrow(/^pack data\/[0-9a-f]{2}\/[0-9a-f]{64} is damaged/);
    } finally {
      await own.dispose();
    }
  });

  describe('diffTrees', () => {
    it('lists added, removed, modified and metadata-only paths in path order, with what changed and the bytes', async () => {
      const { changes, summary } = await diffTrees(reader, manifests[0]!.tree, manifests[1]!.tree);
      expect(changes.map((c) => [c.change, c.path.toString('utf8'), c.type, c.what])).toEqual([
        ['U', '/home/u/docs', 'dir', ['mtime']],
        ['M', '/home/u/docs/a.txt', 'file', ['content']],
        ['U', '/home/u/docs/b.txt', 'file', ['mode']],
        ['+', '/home/u/docs/new.txt', 'file', undefined],
        ['+', '/home/u/docs/newdir', 'dir', undefined],
        ['+', '/home/u/docs/newdir/x.txt', 'file', undefined],
        ['-', '/home/u/docs/old.txt', 'file', undefined],
        ['M', '/home/u/link', 'symlink', ['target']],
      ]);
      expect(summary).toEqual({
        added: { files: 2, dirs: 1, others: 0 },
        removed: { files: 1, dirs: 0, others: 0 },
        modified: 2,
        metadataOnly: 2,
        bytesAdded: 'alpha, edited'.length + 'brand new'.length + 'x'.length,
        bytesRemoved: 'alpha'.length + 'old'.length,
      });
    });

    it('skips subtrees with the same id unread, and finds nothing between a snapshot and itself', async () => {
      const counting = new TreeReader(repository, await repository.loadIndex(), pool);
      const read = vi.spyOn(counting, 'read');
      const { changes } = await diffTrees(counting, manifests[1]!.tree, manifests[2]!.tree);
      expect(changes.map((c) => [c.change, c.path.toString('utf8'), c.what])).toEqual([['U', '/home/u/docs/b.txt', ['mtime']]]);
      // root, home, u, docs of each side; sub/ and newdir/ are the same trees and not read.
      expect(read.mock.calls.length).toBe(8);
      read.mockClear();
      expect((await diffTrees(counting, manifests[2]!.tree, manifests[2]!.tree)).changes).toEqual([]);
      expect(read).not.toHaveBeenCalled();
    });

    it('reports a type change as modified, with what the old folder held as removed', async () => {
      const [before, after] = await storeFileSnapshots(repository, pool, [
        { job: 'files', time: '2026-11-13T02:00:00.000Z', root: { d: { children: { x: { children: { y: { content: 'y' } } } } } } },
        { job: 'files', time: '2026-11-14T02:00:00.000Z', root: { d: { children: { x: { content: 'now a file' } } } } },
      ]);
      const tree = async (id: string) => requireFileManifest(id, await repository.loadSnapshot(id), 'test').tree;
      const fresh = new TreeReader(repository, await repository.loadIndex(), pool);
      const { changes, summary } = await diffTrees(fresh, await tree(before!), await tree(after!));
      expect(changes.map((c) => [c.change, c.path.toString('utf8'), c.type, c.what])).toEqual([
        ['M', '/d/x', 'file', ['type']],
        ['-', '/d/x/y', 'file', undefined],
      ]);
      expect(summary.removed.files).toBe(1);
    });
  });
});
