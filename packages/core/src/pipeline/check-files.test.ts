import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryTarget } from '../testing/memory-target.js';
import { writeFileSnapshot } from '../testing/integrity-fixtures.js';
import { Repository } from '../repository/repository.js';
import { Keys } from '../repository/format.js';
import { WorkerPool } from './worker-pool.js';
import { MAX_SHOWN_PATHS, parseReadDataSubset, runCheck } from './check.js';
import { silentProgress } from './progress.js';
import { runBackup } from './backup.js';
import { memorySource } from '../testing/memory-source.js';
import { spawnTestPool } from '../testing/test-pool.js';

/*
 * check with file snapshots: their trees are read and verified, and a lost content chunk or
 * tree is charged to the damaged pack, naming the snapshot and the paths it costs.
 */

describe('check with file snapshots', () => {
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

  const check = (readData = false) => runCheck({ repository, pool, loadIndex: () => repository.loadIndex(), readData, progress: silentProgress });
  const packOf = async (blob: string) => (await repository.loadIndex()).get(blob)!.pack;
  const tree = () => ({ home: { u: { 'a.txt': randomBytes(10_000), 'b.txt': randomBytes(5000), docs: { 'c.txt': randomBytes(3000) } } } });

  it('finds nothing wrong in an intact file snapshot, with or without --read-data', async () => {
    await writeFileSnapshot(repository, pool, tree());
    expect((await check()).problems).toEqual([]);
    const full = await check(true);
    expect(full.problems).toEqual([]);
    expect(full.snapshots).toBe(1);
    // One pack per file and one of trees: --read-data reads them all.
    expect(full.packsRead).toBe(4);
  });

  it('names the snapshot and the file whose content pack is missing, exit-worthy damage', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    const pack = await packOf(written.content.get('/home/u/a.txt')![0]!.id);
    await target.remove(Keys.pack(pack));
    const { problems } = await check();
    expect(problems).toEqual([{ object: Keys.pack(pack), message: 'pack is missing', snapshots: [written.id], ranges: {}, paths: { [written.id]: { paths: ['/home/u/a.txt'], count: 1 } } }]);
  });

  it('with --read-data, names the file whose chunk was damaged in place', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    const chunk = written.content.get('/home/u/docs/c.txt')![0]!;
    const location = (await repository.loadIndex()).get(chunk.id)!;
    const bytes = await target.get(Keys.pack(location.pack));
    bytes[location.offset + 40] ^= 0xff;
    await target.put(Keys.pack(location.pack), bytes);
    expect((await check()).problems).toEqual([]);
    const { problems } = await check(true);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.object).toBe(Keys.pack(location.pack));
    expect(problems[0]!.paths).toEqual({ [written.id]: { paths: ['/home/u/docs/c.txt'], count: 1 } });
  });

  it('--read-data-subset reads the packs of file snapshots like any: the bucket holding the damaged chunk finds it', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    const chunk = written.content.get('/home/u/b.txt')![0]!;
    const location = (await repository.loadIndex()).get(chunk.id)!;
    const bytes = await target.get(Keys.pack(location.pack));
    bytes[location.offset + 40] ^= 0xff;
    await target.put(Keys.pack(location.pack), bytes);
    const bucket = (Number.parseInt(location.pack.slice(0, 2), 16) % 2) + 1;
    const subset = (n: number) => runCheck({ repository, pool, loadIndex: () => repository.loadIndex(), readData: true, subset: parseReadDataSubset(`${n}/2`), progress: silentProgress });
    expect((await subset(bucket)).problems.map((p) => p.paths)).toEqual([{ [written.id]: { paths: ['/home/u/b.txt'], count: 1 } }]);
    expect((await subset(3 - bucket)).problems).toEqual([]);
  });

  it('a lost tree costs its folder (path ending in /); a lost root tree the whole snapshot', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    // Trees share one pack: losing it loses the root, so nothing of the snapshot is left.
    const treePack = await packOf(written.trees.get('/home/u/docs')!);
    await target.remove(Keys.pack(treePack));
    const { problems } = await check();
    expect(problems.map((p) => [p.object, p.snapshots, p.paths])).toEqual([[Keys.pack(treePack), [written.id], { [written.id]: { paths: ['/'], count: 1 } }]]);
  });

  it('a damaged subfolder tree costs that folder only', async () => {
    const written = await writeFileSnapshot(repository, pool, tree());
    const docs = written.trees.get('/home/u/docs')!;
    const location = (await repository.loadIndex()).get(docs)!;
    const bytes = await target.get(Keys.pack(location.pack));
    bytes[location.offset + 20] ^= 0xff;
    await target.put(Keys.pack(location.pack), bytes);
    const { problems } = await check();
    expect(problems).toHaveLength(1);
    expect(problems[0]!.object).toBe(Keys.pack(location.pack));
    expect(problems[0]!.message).toMatch(/tree/);
    expect(problems[0]!.paths).toEqual({ [written.id]: { paths: ['/home/u/docs/'], count: 1 } });
  });

  it('lists the first paths and counts the rest, for every snapshot sharing the lost data', async () => {
    const many = Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`f${String(i).padStart(2, '0')}`, randomBytes(100)]));
    const first = await writeFileSnapshot(repository, pool, { data: many }, { time: new Date('2026-01-01T00:00:00Z'), contentPacks: 'one' });
    // The second snapshot shares every file (deduplicated) and adds one in a pack of its own.
    const second = await writeFileSnapshot(repository, pool, { data: { ...many, extra: randomBytes(100) } }, { time: new Date('2026-01-02T00:00:00Z') });
    const pack = await packOf(first.content.get('/data/f07')![0]!.id);
    await target.remove(Keys.pack(pack));
    const { problems } = await check();
    expect(problems).toHaveLength(1);
    expect(problems[0]!.snapshots).toEqual([first.id, second.id].sort());
    const shown = Array.from({ length: MAX_SHOWN_PATHS }, (_, i) => `/data/f${String(i).padStart(2, '0')}`);
    for (const id of [first.id, second.id]) expect(problems[0]!.paths![id]).toEqual({ paths: shown, count: 25 });
  });

  it('a volume and a file snapshot in one repository are both checked', async () => {
    const image = randomBytes(4 * 4096);
    const volume = await runBackup({ repository, index: await repository.loadIndex(), pool, source: memorySource(image), sourceType: 'volume', jobName: 'v', started: new Date(), chunkSize: repository.config.chunkSize, compression: 'none', progress: silentProgress });
    const written = await writeFileSnapshot(repository, pool, tree());
    await target.remove(Keys.pack(await packOf(written.content.get('/home/u/b.txt')![0]!.id)));
    const report = await check(true);
    expect(report.snapshots).toBe(2);
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]!.snapshots).toEqual([written.id]);
    expect(report.problems[0]!.paths).toEqual({ [written.id]: { paths: ['/home/u/b.txt'], count: 1 } });
    expect(report.problems[0]!.snapshots).not.toContain(volume.snapshot);
  });
});
