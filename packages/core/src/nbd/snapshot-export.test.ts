import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createCore, type Core } from '../create-core.js';
import { SourceRegistry, TargetRegistry, type Logger } from '../services.js';
import { DamageError, OverlayError } from '../errors.js';
import { MemoryTarget, sharedView } from '../testing/memory-target.js';
import { memorySource } from '../testing/memory-source.js';
import type { Extent, OpenedSource, PartitionLayout } from '../source.js';
import type { LoadedJob } from '../job/job-loader.js';
import { Keys } from '../repository/format.js';
import { Repositories } from '../repository/repositories.js';
import { RepositoryLocks } from '../repository/lock.js';
import { InitOperation } from '../operations/init.js';
import { BackupOperation } from '../operations/backup.js';
import { RestoreOperation } from '../operations/restore.js';
import { OpenSnapshotOperation } from '../operations/open-snapshot.js';
import { openSnapshotExports, type SnapshotExports } from './snapshot-export.js';
import { SnapshotImage } from './snapshot-image.js';
import { OVERLAY_BLOCK_SIZE } from './overlay.js';
import type { ExportSource } from './export-source.js';

/*
 * A snapshot served as exports, against a real repository (memory target) made by the real
 * backup, with the real worker threads: every byte read equals the image, partitions are
 * windows of it, the allocation map follows the chunk records, and the overlay takes writes
 * without touching the snapshot.
 */

const CHUNK = 64 * 1024;
/** 21 chunks, the last one short: data, zeros, unused (outside the extents), data. */
const SIZE = 20 * CHUNK + 1000;
const IMAGE = Buffer.alloc(SIZE);
randomBytes(4 * CHUNK).copy(IMAGE, 0);
randomBytes(10 * CHUNK + 1000).copy(IMAGE, 10 * CHUNK);
/** Chunks 4-5 are in the extents but all zeros; 6-9 are outside (unused). */
const EXTENTS: Extent[] = [
  { offset: 0, length: 6 * CHUNK },
  { offset: 10 * CHUNK, length: 10 * CHUNK + 1000 },
];
const PARTITIONS: PartitionLayout[] = [
  { index: 1, offset: CHUNK, size: 5 * CHUNK + 512, filesystem: 'vfat', name: 'EFI system', mode: 'exact' },
  { index: 2, offset: 10 * CHUNK + 4096, size: 9 * CHUNK, filesystem: 'ext4', mode: 'used' },
];

function diskSource(image: Buffer, extents: Extent[], partitions: PartitionLayout[]): OpenedSource {
  const source = memorySource(image, extents);
  return { ...source, layout: { ...source.layout, partitionTable: { type: 'gpt' }, mode: 'used', partitions } };
}


/** `count` ranges of random offset and length (up to three chunks), some of them empty or at the very end. */
function randomRanges(count: number, size: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [
    [0, 0],
    [size, 0],
    [size - 1, 1],
    [0, size],
  ];
  for (let i = 0; i < count; i++) {
    const offset = Math.floor(Math.random() * size);
    ranges.push([offset, Math.min(size - offset, Math.floor(Math.random() * 3 * CHUNK))]);
  }
  return ranges;
}

describe('openSnapshotExports', () => {
  let dir: string;
  let core: Core;
  let target: MemoryTarget;
  let source: OpenedSource;
  let warnings: string[];
  let served: SnapshotExports | undefined;
  const job: LoadedJob = {
    info: { name: 'laptop', file: '/jobs/laptop.json', job: {} },
    config: { name: 'laptop', source: { type: 'memory' }, target: { type: 'memory' }, password: { env: 'PW' }, chunkSize: CHUNK },
    baseDir: '/jobs',
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-nbd-'));
    await writeFile(join(dir, 'plugins.json'), JSON.stringify({ plugins: [] }));
    warnings = [];
    const logger: Logger = { debug() {}, info() {}, warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };
    core = await createCore({ pluginsFile: join(dir, 'plugins.json'), logger, env: { PW: 'pw' }, cwd: dir });
    target = new MemoryTarget();
    source = diskSource(IMAGE, EXTENTS, PARTITIONS);
    core.get<TargetRegistry>(TargetRegistry).register('memory', { create: async () => sharedView(target) });
    core.get<SourceRegistry>(SourceRegistry).register('memory', { open: async () => source });
    await core.get(InitOperation).run(job);
    await core.get(BackupOperation).run(job);
  });
  afterEach(async () => {
    await served?.close();
    served = undefined;
    await core.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  async function serve(options: { overlay?: string; cacheBytes?: number } = {}): Promise<SnapshotExports> {
    served = await openSnapshotExports(core, job, 'latest', options);
    return served;
  }

  async function stopServing(): Promise<void> {
    await served?.close();
    served = undefined;
  }

  function exportNamed(name: string): ExportSource {
    const found = served!.exports.find((e) => e.name === name);
    if (!found) throw new Error(`no export '${name}'`);
    return found;
  }

  async function locksHeld(): Promise<string[]> {
    return core.get(Repositories).withRepository(job, async (repository) => (await core.get(RepositoryLocks).list(repository)).map((l) => l.info.operation));
  }

  it('exports the whole disk and each partition, read-only, described by job, snapshot and filesystem', async () => {
    const { exports, snapshot } = await serve();
    expect(snapshot).toMatch(/^[0-9a-f]{64}$/);
    expect(exports.map((e) => [e.name, e.size, e.writable])).toEqual([
      ['', SIZE, false],
      ['p1', 5 * CHUNK + 512, false],
      ['p2', 9 * CHUNK, false],
    ]);
    const prefix = `laptop ${snapshot.slice(0, 12)}`;
    expect(exports.map((e) => e.description)).toEqual([`${prefix}: whole disk (gpt, 2 partitions)`, `${prefix}: partition 1 (vfat, "EFI system")`, `${prefix}: partition 2 (ext4)`]);
    expect(exports.some((e) => e.write || e.writeZeroes)).toBe(false);
  });

  it('reads every byte as the image holds it, at random offsets and lengths', async () => {
    await serve();
    const disk = exportNamed('');
    for (const [offset, length] of randomRanges(300, SIZE)) {
      const bytes = await disk.read(offset, length);
      expect(bytes.length).toBe(length);
      expect(bytes.equals(IMAGE.subarray(offset, offset + length)), `${length} bytes at ${offset}`).toBe(true);
    }
    await expect(disk.read(SIZE - 10, 11)).rejects.toThrow(RangeError);
  });

  it('reads each partition as its window of the disk', async () => {
    await serve();
    for (const partition of PARTITIONS) {
      const exported = exportNamed(`p${partition.index}`);
      const expected = IMAGE.subarray(partition.offset, partition.offset + partition.size);
      expect((await exported.read(0, partition.size)).equals(expected)).toBe(true);
      for (const [offset, length] of randomRanges(50, partition.size)) {
        expect((await exported.read(offset, length)).equals(expected.subarray(offset, offset + length)), `p${partition.index}: ${length} bytes at ${offset}`).toBe(true);
      }
      await expect(exported.read(partition.size, 1)).rejects.toThrow(RangeError);
    }
  });

  it('maps data chunks as data, zero and unused chunks as holes, merged and clipped to the range asked', async () => {
    await serve();
    const disk = exportNamed('');
    expect(await disk.blockStatus(0, SIZE)).toEqual([
      { offset: 0, length: 4 * CHUNK, hole: false, zero: false },
      { offset: 4 * CHUNK, length: 6 * CHUNK, hole: true, zero: true },
      { offset: 10 * CHUNK, length: 10 * CHUNK + 1000, hole: false, zero: false },
    ]);
    expect(await disk.blockStatus(3 * CHUNK + 100, CHUNK)).toEqual([
      { offset: 3 * CHUNK + 100, length: CHUNK - 100, hole: false, zero: false },
      { offset: 4 * CHUNK, length: 100, hole: true, zero: true },
    ]);
    expect(await disk.blockStatus(7 * CHUNK + 1, 10)).toEqual([{ offset: 7 * CHUNK + 1, length: 10, hole: true, zero: true }]);
    // A partition reports in its own offsets.
    expect(await exportNamed('p1').blockStatus(0, 5 * CHUNK + 512)).toEqual([
      { offset: 0, length: 3 * CHUNK, hole: false, zero: false },
      { offset: 3 * CHUNK, length: 2 * CHUNK + 512, hole: true, zero: true },
    ]);
  });

  it('fetches a chunk once while it is cached, and once for readers that want it at the same time', async () => {
    await serve();
    const disk = exportNamed('') as SnapshotImage;
    // Chunk 12: not the first (no read-ahead from there) and not after a chunk read before.
    const at = 12 * CHUNK;
    const reads = await Promise.all(Array.from({ length: 10 }, (_, i) => disk.read(at + i * 1000, 500)));
    reads.forEach((bytes, i) => expect(bytes.equals(IMAGE.subarray(at + i * 1000, at + i * 1000 + 500))).toBe(true));
    expect(disk.stats.chunksFetched).toBe(1);
    expect(disk.stats.cacheHits).toBe(9);
    await disk.read(at + 7, 9000);
    expect(disk.stats.chunksFetched).toBe(1);
    // Zero and unused chunks cost no fetch at all.
    expect((await disk.read(4 * CHUNK, 6 * CHUNK)).equals(Buffer.alloc(6 * CHUNK))).toBe(true);
    expect(disk.stats.chunksFetched).toBe(1);
  });

  it('fetches again what a small cache let go, and reads the right bytes all the same', async () => {
    await serve({ cacheBytes: 2 * CHUNK });
    const disk = exportNamed('') as SnapshotImage;
    for (const chunk of [11, 13, 15, 11]) expect((await disk.read(chunk * CHUNK, 100)).equals(IMAGE.subarray(chunk * CHUNK, chunk * CHUNK + 100))).toBe(true);
    // 11 left the cache when 15 came in.
    expect(disk.stats.chunksFetched).toBe(4);
  });

  it('reads ahead of a sequential reader, a bounded number of chunks', async () => {
    await serve();
    const disk = exportNamed('') as SnapshotImage;
    await disk.read(10 * CHUNK, 100);
    expect(disk.stats.chunksFetched).toBe(1);
    await disk.read(11 * CHUNK, 100);
    // Chunks 12 to 19 are fetched ahead, not past.
    await expect.poll(() => disk.stats.chunksFetched).toBe(10);
    for (let chunk = 12; chunk < 20; chunk++) await disk.read(chunk * CHUNK, CHUNK);
    // Reading on extends the window to the last chunk only.
    await expect.poll(() => disk.stats.chunksFetched).toBe(11);
  });

  it('fails a read of a chunk whose blob is damaged, naming blob and pack, and serves the other chunks', async () => {
    const opened = await core.get(OpenSnapshotOperation).open(job, 'latest');
    const id = opened.records[2]!.id!.toString('hex');
    const location = opened.index.get(id)!;
    await opened.close();
    const key = Keys.pack(location.pack);
    const pack = await target.get(key);
    pack[location.offset + 20]! ^= 0xff;
    await target.put(key, pack);

    await serve();
    const disk = exportNamed('');
    const error = await disk.read(2 * CHUNK + 10, 10).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DamageError);
    expect((error as Error).message).toContain(`blob ${id.slice(0, 12)} (image offset ${2 * CHUNK}) cannot be read`);
    expect((error as Error).message).toContain(`pack ${key} is damaged`);
    // A read spanning the damaged chunk fails as a whole; the rest of the disk reads.
    await expect(disk.read(CHUNK, 3 * CHUNK)).rejects.toThrow(DamageError);
    expect((await disk.read(3 * CHUNK, CHUNK)).equals(IMAGE.subarray(3 * CHUNK, 4 * CHUNK))).toBe(true);
    expect((await disk.read(12 * CHUNK, CHUNK)).equals(IMAGE.subarray(12 * CHUNK, 13 * CHUNK))).toBe(true);
    // Asked again, it is fetched again (a failure is not cached) and fails again.
    await expect(disk.read(2 * CHUNK, 1)).rejects.toThrow(DamageError);
  });

  it('fails reads of a pack that went missing while served, naming it', async () => {
    await serve();
    const opened = await core.get(OpenSnapshotOperation).open(job, 'latest');
    const location = opened.index.get(opened.records[12]!.id!.toString('hex'))!;
    await opened.close();
    await target.remove(Keys.pack(location.pack));
    await expect(exportNamed('').read(12 * CHUNK, 10)).rejects.toThrow(`pack ${Keys.pack(location.pack)} is missing`);
  });

  it('refuses to open a snapshot whose chunk maps are gone, and keeps no lock', async () => {
    for await (const object of target.list('data/')) await target.remove(object.key);
    await expect(serve()).rejects.toThrow(/pack data\/.* is missing/);
    expect(await locksHeld()).toEqual([]);
  });

  it('holds a shared lock while open, and leaves none behind when closed', async () => {
    await serve();
    expect(await locksHeld()).toEqual(['serve']);
    await stopServing();
    expect(await locksHeld()).toEqual([]);
  });

  describe('with an overlay', () => {
    /** Every object of the repository but the locks, to show that serving writes nothing else. */
    async function storedObjects(): Promise<Map<string, string>> {
      const objects = new Map<string, string>();
      for await (const object of target.list('')) if (!object.key.startsWith('locks/')) objects.set(object.key, (await target.get(object.key)).toString('base64'));
      return objects;
    }

    async function expectDisk(model: Buffer): Promise<void> {
      const disk = exportNamed('');
      expect((await disk.read(0, SIZE)).equals(model)).toBe(true);
      for (const [offset, length] of randomRanges(100, SIZE)) expect((await disk.read(offset, length)).equals(model.subarray(offset, offset + length)), `${length} bytes at ${offset}`).toBe(true);
    }

    /** Writes at awkward places through the disk and a partition, and the same into `model`. */
    async function writeSome(model: Buffer): Promise<void> {
      const disk = exportNamed('');
      const writes: Array<[ExportSource, number, number]> = [
        [disk, 3 * OVERLAY_BLOCK_SIZE, OVERLAY_BLOCK_SIZE],
        [disk, 5 * OVERLAY_BLOCK_SIZE + 100, 50],
        [disk, 4 * CHUNK - 3000, 7000],
        [disk, 7 * CHUNK + 1, 2 * CHUNK],
        [disk, SIZE - 10, 10],
        [exportNamed('p2'), 1000, 3 * OVERLAY_BLOCK_SIZE],
      ];
      for (const [exported, offset, length] of writes) {
        const data = randomBytes(length);
        await exported.write!(offset, data);
        const base = exported.name === 'p2' ? PARTITIONS[1]!.offset : 0;
        data.copy(model, base + offset);
      }
      await disk.writeZeroes!(12 * CHUNK + 5, CHUNK);
      model.fill(0, 12 * CHUNK + 5, 13 * CHUNK + 5);
    }

    it('reads back what was written, maps it as data, and leaves the repository as it was', async () => {
      const before = await storedObjects();
      const { exports } = await serve({ overlay: 'disk.overlay' });
      expect(exports.every((e) => e.writable && e.write && e.writeZeroes && e.flush)).toBe(true);
      const model = Buffer.from(IMAGE);
      await writeSome(model);
      await expectDisk(model);
      expect(await exportNamed('p2').read(0, 9 * CHUNK)).toEqual(model.subarray(PARTITIONS[1]!.offset, PARTITIONS[1]!.offset + 9 * CHUNK));
      // The written blocks of the unused range are data now; the rest stays a hole.
      expect(await exportNamed('').blockStatus(6 * CHUNK, 4 * CHUNK)).toEqual([
        { offset: 6 * CHUNK, length: CHUNK, hole: true, zero: true },
        { offset: 7 * CHUNK, length: 2 * CHUNK + OVERLAY_BLOCK_SIZE, hole: false, zero: false },
        { offset: 9 * CHUNK + OVERLAY_BLOCK_SIZE, length: CHUNK - OVERLAY_BLOCK_SIZE, hole: true, zero: true },
      ]);
      // A partition's writes stay inside it.
      await expect(exportNamed('p1').write!(5 * CHUNK + 511, Buffer.alloc(2, 1))).rejects.toThrow(RangeError);
      await exportNamed('').flush!();
      await stopServing();

      expect(await storedObjects()).toEqual(before);
      const to = join(dir, 'restored.img');
      await core.get(RestoreOperation).run(job, 'latest', to);
      expect((await readFile(to)).equals(IMAGE)).toBe(true);
      expect((await stat(join(dir, 'disk.overlay'))).size).toBe(SIZE);
    });

    it('continues an overlay when it is opened again', async () => {
      const model = Buffer.from(IMAGE);
      await serve({ overlay: join(dir, 'disk.overlay') });
      await writeSome(model);
      await stopServing();
      await serve({ overlay: join(dir, 'disk.overlay') });
      await expectDisk(model);
      await writeSome(model);
      await stopServing();
      await serve({ overlay: join(dir, 'disk.overlay') });
      await expectDisk(model);
    });

    it("refuses another snapshot's overlay, and a file that is no overlay", async () => {
      const first = (await serve({ overlay: 'disk.overlay' })).snapshot;
      await exportNamed('').write!(0, Buffer.from('written'));
      await stopServing();
      const other = Buffer.from(IMAGE);
      other.fill(7, 0, CHUNK);
      source = diskSource(other, EXTENTS, PARTITIONS);
      await core.get(BackupOperation).run(job);

      const error = await serve({ overlay: 'disk.overlay' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OverlayError);
      expect((error as Error).message).toContain(`belongs to snapshot ${first.slice(0, 12)}`);
      expect(await locksHeld()).toEqual([]);

      await writeFile(join(dir, 'notes.txt'), 'my notes');
      await expect(serve({ overlay: 'notes.txt' })).rejects.toThrow(/notes.txt exists and is not a cairn overlay/);
      expect(await readFile(join(dir, 'notes.txt'), 'utf8')).toBe('my notes');

      // The first snapshot still opens with its overlay.
      served = await openSnapshotExports(core, job, first, { overlay: 'disk.overlay' });
      expect((await exportNamed('').read(0, 7)).toString()).toBe('written');
    });
  });
});
