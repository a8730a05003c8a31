import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryTarget } from '../testing/memory-target.js';
import { memorySource } from '../testing/memory-source.js';
import { writeFileSnapshot } from '../testing/integrity-fixtures.js';
import { Repository, type SnapshotSummary } from '../repository/repository.js';
import { WorkerPool } from './worker-pool.js';
import { runBackup } from './backup.js';
import { addReferencedBlobs, indexOf, packUsage, readIndexFiles, referencedSet } from './prune-usage.js';
import { planPrune } from './prune-plan.js';
import { silentProgress } from './progress.js';
import { spawnTestPool } from '../testing/test-pool.js';

/*
 * What prune keeps with file snapshots in the repository: every tree and content chunk a
 * remaining file snapshot needs, and the blobs a volume and a file snapshot share (same
 * plaintext, same id) as long as either remains; what only forgotten snapshots needed goes.
 */

const CHUNK = 64 * 1024;

describe('prune with file snapshots', () => {
  let repository: Repository;
  let pool: WorkerPool;

  beforeEach(async () => {
    repository = await Repository.init(new MemoryTarget(), 'pw');
    pool = await spawnTestPool(repository);
  });
  afterEach(async () => {
    await pool.dispose();
  });

  /** What prune would do if only `keep` remained: the ids of the packs it deletes, the blobs it keeps. */
  async function plan(keep: readonly string[]) {
    const snapshots = (await repository.listSnapshots()).filter((s: SnapshotSummary) => keep.includes(s.id));
    const indexFiles = await readIndexFiles(repository);
    const known = new Map<string, string[]>();
    await addReferencedBlobs(repository, indexOf(indexFiles, new Set()), pool, snapshots, known);
    const referenced = referencedSet(known, snapshots);
    const usage = packUsage(await repository.listPacks(), indexFiles, referenced, new Set());
    const planned = planPrune(usage, new Set(), { repackThreshold: 0.5, maxRepackBytes: Number.MAX_SAFE_INTEGER });
    return { deleted: planned.unused.map((p) => p.id).sort(), referenced, repacked: planned.repack.map((r) => r.pack.id) };
  }

  it('keeps what remaining file snapshots need, shares blobs with a volume snapshot, deletes the rest', async () => {
    const image = randomBytes(4 * CHUNK);
    const volume = await runBackup({ repository, index: await repository.loadIndex(), pool, source: memorySource(image), sourceType: 'volume', jobName: 'system', started: new Date(), chunkSize: CHUNK, compression: 'none', progress: silentProgress });
    const volumePacks = (await repository.listPacks()).map((p) => p.id);
    // The file holds the image's first chunk: the same plaintext, so the same blob (stored once).
    const first = await writeFileSnapshot(repository, pool, { srv: { 'disk-start.bin': image.subarray(0, CHUNK), 'one.txt': randomBytes(3000) } }, { chunkSize: CHUNK, time: new Date('2026-01-01T00:00:00Z') });
    const second = await writeFileSnapshot(repository, pool, { srv: { 'two.txt': randomBytes(3000) } }, { chunkSize: CHUNK, time: new Date('2026-01-02T00:00:00Z') });
    const shared = first.content.get('/srv/disk-start.bin')![0]!.id;
    const index = await repository.loadIndex();
    expect(volumePacks).toContain(index.get(shared)!.pack);
    const packOf = (blob: string) => index.get(blob)!.pack;

    expect((await plan([volume.snapshot, first.id, second.id])).deleted).toEqual([]);

    // The volume snapshot forgotten: its pack stays for the shared chunk (copied out, the rest dropped).
    const withoutVolume = await plan([first.id, second.id]);
    expect(withoutVolume.referenced.has(shared)).toBe(true);
    expect(withoutVolume.deleted).toEqual([]);
    expect(withoutVolume.repacked).toEqual([packOf(shared)]);
    for (const tree of [...first.trees.values(), ...second.trees.values()]) expect(withoutVolume.referenced.has(tree)).toBe(true);

    // Only the second file snapshot left: the first one's content and trees go, and the volume's pack too.
    const onlySecond = await plan([second.id]);
    const expected = [packOf(shared), packOf(first.content.get('/srv/one.txt')![0]!.id), packOf(first.manifest.tree)].sort();
    expect(onlySecond.deleted).toEqual(expected);
    expect(onlySecond.referenced).toEqual(new Set([...second.trees.values(), second.content.get('/srv/two.txt')![0]!.id]));

    // The file snapshots forgotten, the volume kept: its chunks stay, the files' packs go.
    const onlyVolume = await plan([volume.snapshot]);
    expect(onlyVolume.referenced.has(shared)).toBe(true);
    expect(onlyVolume.deleted).not.toContain(packOf(shared));
    expect(onlyVolume.deleted).toContain(packOf(second.manifest.tree));
  });

  it('stops rather than guess when a file snapshot needs a blob no index names', async () => {
    const written = await writeFileSnapshot(repository, pool, { a: { 'f.txt': randomBytes(100) } });
    const index = await repository.loadIndex();
    const indexFiles = await readIndexFiles(repository);
    // Forget the index entry of the file's pack, as a lost index file would.
    const pack = index.get(written.content.get('/a/f.txt')![0]!.id)!.pack;
    indexFiles.packs.delete(pack);
    const known = new Map<string, string[]>();
    await expect(addReferencedBlobs(repository, indexOf(indexFiles, new Set()), pool, await repository.listSnapshots(), known)).rejects.toThrow(/needs blob .* which no index names; prune stops/);
  });
});
