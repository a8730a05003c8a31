import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryTarget } from '../testing/index.js';
import type { ByteRange, ObjectInfo, Target } from '../target.js';
import { memorySource } from '../testing/memory-source.js';
import { Repository, blobIdSchemeOf } from '../repository/repository.js';
import { Keys } from '../repository/format.js';
import { NONE_CODEC } from '../codecs/builtin.js';
import { WorkerPool } from './worker-pool.js';
import { runBackup } from './backup.js';
import { parseReadDataSubset, runCheck, selectPacks } from './check.js';
import { silentProgress } from './progress.js';

/*
 * check while other runs change the repository: a backup that finishes, or a forget and prune
 * that remove a snapshot and its data, between two steps of the check is not damage.
 */

const CHUNK = 64 * 1024;

/** A memory target that runs `hook` once, the first time `prefix` is listed: after that listing was taken, before it is handed out. */
class SteppingTarget implements Target {
  readonly location = 'memory:';
  #hook: { prefix: string; run: () => Promise<void> } | undefined;

  constructor(readonly inner: MemoryTarget) {}

  once(prefix: string, run: () => Promise<void>): void {
    this.#hook = { prefix, run };
  }

  put(key: string, data: Uint8Array): Promise<void> {
    return this.inner.put(key, data);
  }
  get(key: string, range?: ByteRange): Promise<Buffer> {
    return this.inner.get(key, range);
  }
  stat(key: string): Promise<ObjectInfo> {
    return this.inner.stat(key);
  }
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const listed: ObjectInfo[] = [];
    for await (const object of this.inner.list(prefix)) listed.push(object);
    const hook = this.#hook;
    if (hook && hook.prefix === prefix) {
      this.#hook = undefined;
      await hook.run();
    }
    yield* listed;
  }
  remove(key: string): Promise<void> {
    return this.inner.remove(key);
  }
  isNotFound(err: unknown): boolean {
    return this.inner.isNotFound(err);
  }
  dispose(): void {}
}

describe('check while the repository changes', () => {
  let target: SteppingTarget;
  let repository: Repository;
  let pool: WorkerPool;

  beforeEach(async () => {
    target = new SteppingTarget(new MemoryTarget());
    repository = await Repository.init(target, 'pw');
    pool = WorkerPool.spawn(2);
    await pool.init({ masterKey: repository.masterKey, blobIdScheme: blobIdSchemeOf(repository.config), codecs: [NONE_CODEC], writeCodec: { type: 'none' }, writeCodecId: 0 });
  });
  afterEach(async () => {
    await pool.dispose();
  });

  const backup = async (image: Buffer) =>
    runBackup({
      repository,
      index: await repository.loadIndex(),
      pool,
      source: memorySource(image),
      sourceType: 'volume',
      jobName: 't',
      started: new Date(),
      chunkSize: CHUNK,
      compression: 'none',
      progress: silentProgress,
    });

  const check = (readData = false) => runCheck({ repository, pool, loadIndex: () => repository.loadIndex(), readData, progress: silentProgress });

  it('does not report a snapshot whose backup finished after the index was listed', async () => {
    await backup(randomBytes(CHUNK * 4));
    // The index files are listed, then a backup writes its packs, its index and its snapshot:
    // that snapshot's blobs are in no index this check read.
    target.once('index/', async () => void (await backup(randomBytes(CHUNK * 4))));
    const report = await check(true);
    expect(report.problems).toEqual([]);
    expect(report.snapshots).toBe(1);
    expect((await repository.listSnapshots()).length).toBe(2);
    // Its pack is there, unindexed as far as this check knows: harmless.
    expect(report.unreferencedPacks).toHaveLength(1);
    expect((await check(true)).problems).toEqual([]);
  });

  it('does not report a snapshot that forget and prune removed while the check ran', async () => {
    const kept = await backup(randomBytes(CHUNK * 4));
    const indexBefore = await repository.listIds('index');
    const packsBefore = (await repository.listPacks()).map((p) => p.id);
    const gone = await backup(randomBytes(CHUNK * 4));
    const goneIndex = (await repository.listIds('index')).filter((id) => !indexBefore.includes(id));
    const gonePacks = (await repository.listPacks()).map((p) => p.id).filter((id) => !packsBefore.includes(id));
    expect([goneIndex.length, gonePacks.length]).toEqual([1, 1]);
    // After the check read both snapshots and the index, it lists the packs: just then the
    // second snapshot is forgotten and pruned (its index file and pack removed).
    target.once('data/', async () => {
      await repository.removeSealed('snapshots', gone.snapshot);
      await repository.removeSealed('index', goneIndex[0]!);
      await target.inner.remove(Keys.pack(gonePacks[0]!));
    });
    const report = await check();
    expect(report.problems).toEqual([]);
    expect(report.snapshots).toBe(2);
    expect((await repository.listSnapshots()).map((s) => s.id)).toEqual([kept.snapshot]);
  });

  it('still reports a pack that went missing while no snapshot went away', async () => {
    await backup(randomBytes(CHUNK * 4));
    const [pack] = (await repository.listPacks()).map((p) => p.id);
    target.once('data/', async () => target.inner.remove(Keys.pack(pack!)));
    const report = await check();
    expect(report.problems.map((p) => [p.object, p.message])).toEqual([[Keys.pack(pack!), 'pack is missing']]);
  });
});

describe('--read-data-subset', () => {
  const packs: Array<[string, number]> = Array.from({ length: 64 }, (_, i) => [i.toString(16).padStart(2, '0') + 'ab'.repeat(31), 1000 + i]);

  it('n/m selects the packs whose first id byte is n-1 modulo m, and together the m buckets cover every pack once', () => {
    const buckets = [1, 2, 3].map((n) => selectPacks(packs, parseReadDataSubset(`${n}/3`), Math.random));
    expect(buckets[0]!.every(([id]) => Number.parseInt(id.slice(0, 2), 16) % 3 === 0)).toBe(true);
    expect(buckets.flat().map(([id]) => id).sort()).toEqual(packs.map(([id]) => id).sort());
  });

  it('x% selects a random share of the bytes', () => {
    const total = packs.reduce((n, [, size]) => n + size, 0);
    const chosen = selectPacks(packs, parseReadDataSubset('25%'), Math.random);
    const bytes = chosen.reduce((n, [, size]) => n + size, 0);
    expect(bytes).toBeGreaterThanOrEqual(total / 4);
    expect(bytes).toBeLessThan(total / 4 + 1064);
    expect(selectPacks(packs, parseReadDataSubset('100%'), Math.random)).toHaveLength(64);
  });

  it('refuses anything else', () => {
    for (const bad of ['0/3', '4/3', '1/0', '0%', '101%', 'half', '1/2/3']) expect(() => parseReadDataSubset(bad), bad).toThrow(/--read-data-subset must be/);
  });
});
