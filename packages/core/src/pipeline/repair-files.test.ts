import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryTarget } from '../testing/memory-target.js';
import { writeFileSnapshot } from '../testing/integrity-fixtures.js';
import { Repository } from '../repository/repository.js';
import { Keys } from '../repository/format.js';
import { isFileManifest, type FileSnapshotManifest } from '../repository/snapshot.js';
import { TreeReader } from '../files/tree-reader.js';
import { WorkerPool } from './worker-pool.js';
import { runCheck } from './check.js';
import { runRepairIndex, runRepairSnapshots } from './repair.js';
import { silentProgress } from './progress.js';
import { spawnTestPool } from '../testing/test-pool.js';

/*
 * repair snapshots with file snapshots: a snapshot that lost content chunks or trees is
 * replaced by one whose trees say what was lost (entry `error`), without the lost chunks.
 */

describe('repair snapshots with file snapshots', () => {
  let target: MemoryTarget;
  let repository: Repository;
  let pool: WorkerPool;

  beforeEach(async () => {
    target = new MemoryTarget();
    repository = await Repository.init(target, 'pw');
    pool = await spawnTestPool(repository);
  });
  afterEach(async () => {
    await pool.dispose();
  });

  const check = () => runCheck({ repository, pool, loadIndex: () => repository.loadIndex(), readData: true, progress: silentProgress });
  // As a user would: `repair index` forgets the missing packs, then `repair snapshots`.
  const repair = async (dryRun = false) => {
    await runRepairIndex(repository, silentProgress);
    return repairSnapshots(dryRun);
  };
  const repairSnapshots = async (dryRun: boolean) => runRepairSnapshots({ repository, pool, index: await repository.loadIndex(), progress: silentProgress, readData: false, dryRun, forget: false });
  const packOf = async (blob: string) => (await repository.loadIndex()).get(blob)!.pack;
  const lookup = async (manifest: FileSnapshotManifest, path: string) => new TreeReader(repository, await repository.loadIndex(), pool).lookup(manifest, path);
  const onlyManifest = async () => {
    const [summary, ...more] = await repository.listSnapshots();
    expect(more).toEqual([]);
    if (!isFileManifest(summary!.manifest)) throw new Error('not a file snapshot');
    return { id: summary!.id, manifest: summary!.manifest };
  };
  const tree = () => ({ home: { u: { 'a.txt': randomBytes(10_000), 'b.txt': randomBytes(5000), docs: { 'c.txt': randomBytes(3000) } } } });

  it('takes the lost chunks out of the file, marks it, keeps everything else; check is clean after', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    await target.remove(Keys.pack(await packOf(written.content.get('/home/u/a.txt')![0]!.id)));
    const report = await repair();
    expect(report.repaired).toHaveLength(1);
    expect(report.repaired[0]).toMatchObject({ snapshot: written.id, lost: [], lostBytes: 10_000, lostPaths: ['/home/u/a.txt'], lostPathCount: 1 });
    const { id, manifest } = await onlyManifest();
    expect(id).toBe(report.repaired[0]!.replacement);
    expect(manifest).toMatchObject({ repairedFrom: written.id, lostPaths: ['/home/u/a.txt'], paths: written.manifest.paths });
    expect(manifest.lostPathCount).toBeUndefined();
    const a = await lookup(manifest, '/home/u/a.txt');
    expect(a).toMatchObject({ type: 'file', size: 10_000, content: [] });
    expect(a!.error).toMatch(/^lost in repair: 10000 of 10000 bytes \(3 chunk\(s\)\)/);
    expect((await lookup(manifest, '/home/u/b.txt'))!.content).toEqual(written.content.get('/home/u/b.txt'));
    expect((await lookup(manifest, '/home/u/docs'))!.subtree).toBe(written.trees.get('/home/u/docs'));
    expect((await check()).problems).toEqual([]);
    // Nothing more to repair.
    expect((await repair()).repaired).toEqual([]);
  });

  it('keeps the chunks of a file that survive: only the lost stretch becomes a hole', async () => {
    const shared = randomBytes(8192);
    const first = await writeFileSnapshot(repository, pool, { old: { 'x.bin': shared } }, { time: new Date('2026-01-01T00:00:00Z') });
    // The second snapshot's file starts with the same two chunks (deduplicated, in the first's pack) and adds one.
    const second = await writeFileSnapshot(repository, pool, { data: { 'y.bin': Buffer.concat([shared, randomBytes(4096)]) } }, { time: new Date('2026-01-02T00:00:00Z') });
    await target.remove(Keys.pack(await packOf(first.content.get('/old/x.bin')![0]!.id)));
    const report = await repair();
    expect(report.repaired.map((r) => [r.snapshot, r.lostPaths, r.lostBytes])).toEqual([
      [first.id, ['/old/x.bin'], 8192],
      [second.id, ['/data/y.bin'], 8192],
    ]);
    const replaced = (await repository.listSnapshots()).find((s) => s.manifest.time === second.manifest.time)!;
    const y = await lookup(replaced.manifest as FileSnapshotManifest, '/data/y.bin');
    expect(y!.content).toEqual([second.content.get('/data/y.bin')![2]]);
    expect(y!.size).toBe(12_288);
    expect((await check()).problems).toEqual([]);
  });

  it('a lost subfolder tree leaves the folder without a subtree, with an error', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    const docs = written.trees.get('/home/u/docs')!;
    const location = (await repository.loadIndex()).get(docs)!;
    const bytes = await target.get(Keys.pack(location.pack));
    bytes[location.offset + 20] ^= 0xff;
    await target.put(Keys.pack(location.pack), bytes);
    const report = await repair();
    expect(report.repaired.map((r) => r.lostPaths)).toEqual([['/home/u/docs/']]);
    const { manifest } = await onlyManifest();
    const folder = await lookup(manifest, '/home/u/docs');
    expect(folder).toMatchObject({ type: 'dir' });
    expect(folder!.subtree).toBeUndefined();
    expect(folder!.error).toMatch(/^lost in repair: its folder listing/);
    expect((await lookup(manifest, '/home/u/a.txt'))!.error).toBeUndefined();
    // The damaged tree is still in its pack (prune removes it): the repaired snapshot no longer needs it.
    expect((await check()).problems.map((p) => p.snapshots)).toEqual([[]]);
  });

  it('with --read-data, a chunk damaged in place counts as lost', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    const chunk = written.content.get('/home/u/b.txt')![1]!;
    const location = (await repository.loadIndex()).get(chunk.id)!;
    const bytes = await target.get(Keys.pack(location.pack));
    bytes[location.offset + 40] ^= 0xff;
    await target.put(Keys.pack(location.pack), bytes);
    const run = async (readData: boolean) => runRepairSnapshots({ repository, pool, index: await repository.loadIndex(), progress: silentProgress, readData, dryRun: false, forget: false });
    expect((await run(false)).repaired).toEqual([]);
    const report = await run(true);
    expect(report.repaired.map((r) => [r.lostPaths, r.lostBytes])).toEqual([[['/home/u/b.txt'], chunk.length]]);
    const { manifest } = await onlyManifest();
    const b = await lookup(manifest, '/home/u/b.txt');
    expect(b!.content).toEqual(written.content.get('/home/u/b.txt')!.filter((c) => c.id !== chunk.id));
    // The damaged pack stays (its other blobs are needed); no snapshot loses anything through it.
    const { problems } = await check();
    expect(problems.map((p) => [p.object, p.snapshots])).toEqual([[Keys.pack(location.pack), []]]);
    const { id } = await onlyManifest();
    expect(problems[0]!.message).toContain(`used by snapshot(s) ${id.slice(0, 12)}, which lose nothing through it`);
  });

  it('a snapshot whose root tree is lost is unrepairable', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    await target.remove(Keys.pack(await packOf(written.manifest.tree)));
    const report = await repair();
    expect(report.repaired).toEqual([]);
    expect(report.unrepairable).toEqual([{ object: Keys.snapshot(written.id), message: 'its root tree cannot be read (no index names this blob); nothing of it can be restored', removed: false }]);
  });

  it('--dry-run reports the paths and changes nothing', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    await target.remove(Keys.pack(await packOf(written.content.get('/home/u/docs/c.txt')![0]!.id)));
    await runRepairIndex(repository, silentProgress);
    const keys = async () => {
      const listed: string[] = [];
      for await (const object of target.list('')) listed.push(object.key);
      return listed.sort();
    };
    const before = await keys();
    const report = await repairSnapshots(true);
    expect(report.repaired).toEqual([{ snapshot: written.id, lost: [], lostBytes: 3000, lostPaths: ['/home/u/docs/c.txt'], lostPathCount: 1 }]);
    expect(await keys()).toEqual(before);
  });

  it('a second repair keeps the paths the first one lost', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    await target.remove(Keys.pack(await packOf(written.content.get('/home/u/a.txt')![0]!.id)));
    await repair();
    await target.remove(Keys.pack(await packOf(written.content.get('/home/u/b.txt')![0]!.id)));
    const report = await repair();
    expect(report.repaired[0]!.lostPaths).toEqual(['/home/u/b.txt']);
    const { manifest } = await onlyManifest();
    expect(manifest.lostPaths).toEqual(['/home/u/a.txt', '/home/u/b.txt']);
    expect(manifest.repairedFrom).toBe(report.repaired[0]!.snapshot);
  });
});
