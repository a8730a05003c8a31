import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { blake3 } from '@napi-rs/blake-hash';
import { FaultyTarget, MemoryTarget, ReadIntoMemoryTarget } from '../testing/index.js';
import { DamageError, SourceReadError } from '../errors.js';
import type { OpenedSource } from '../source.js';
import { memorySource } from '../testing/memory-source.js';
import { Repository, blobIdSchemeOf } from '../repository/repository.js';
import { NONE_CODEC } from '../codecs/builtin.js';
import { Keys } from '../repository/format.js';
import { encodeManifest } from '../repository/snapshot.js';
import { WorkerPool } from './worker-pool.js';
import { runBackup, type DetachPolicy } from './backup.js';
import { runRestore } from './restore.js';
import { runCheck } from './check.js';
import { openDestination } from './destination.js';
import { silentProgress } from './progress.js';

const CHUNK = 64 * 1024;

/** A volume held in memory: the pipeline does not care where bytes come from. */
function sampleImage(): Buffer {
  const image = Buffer.alloc(CHUNK * 20 + 1000); // a short last chunk
  randomBytes(CHUNK * 3).copy(image, 0);
  image.fill('text', CHUNK * 5, CHUNK * 9); // compressible
  randomBytes(CHUNK).copy(image, CHUNK * 12);
  randomBytes(CHUNK).copy(image, CHUNK * 12 + CHUNK * 2); // chunk 14 equals nothing else
  image.subarray(0, CHUNK).copy(image, CHUNK * 16); // a duplicate of chunk 0
  randomBytes(1000).copy(image, CHUNK * 20);
  return image;
}

/** The `blake3-chunks` digest of an image cut into `chunk`-byte chunks, computed as docs/FORMAT.md defines it. */
function chunkDigestOf(image: Buffer, chunk = CHUNK): string {
  const lines: string[] = [];
  for (let at = 0; at < image.length; at += chunk) lines.push(blake3(image.subarray(at, at + chunk)).toString('hex') + '\n');
  return blake3(Buffer.from(lines.join(''))).toString('hex');
}

async function startPool(repository: Repository): Promise<WorkerPool> {
  const pool = WorkerPool.spawn(2);
  await pool.init({ masterKey: repository.masterKey, blobIdScheme: blobIdSchemeOf(repository.config), codecs: [NONE_CODEC], writeCodec: { type: 'none' }, writeCodecId: 0 });
  return pool;
}

describe('backup and restore pipeline', () => {
  let target: FaultyTarget;
  let repository: Repository;
  let pool: WorkerPool;
  let dir: string;

  beforeEach(async () => {
    target = new FaultyTarget(new MemoryTarget());
    repository = await Repository.init(target, 'pw');
    pool = await startPool(repository);
    dir = await mkdtemp(join(tmpdir(), 'cairn-pipeline-'));
  });
  afterEach(async () => {
    await pool.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  const backup = async (image: Buffer, extents?: Array<{ offset: number; length: number }>, options: { source?: OpenedSource; detach?: DetachPolicy; rescue?: boolean } = {}) =>
    runBackup({
      repository,
      index: await repository.loadIndex(),
      pool,
      source: options.source ?? memorySource(image, extents),
      detach: options.detach,
      rescue: options.rescue,
      sourceType: 'volume',
      jobName: 't',
      started: new Date(),
      chunkSize: CHUNK,
      compression: 'none',
      progress: silentProgress,
    });

  const restore = async (snapshot: string, to: string) =>
    runRestore({
      repository,
      index: await repository.loadIndex(),
      pool,
      snapshot,
      manifest: await repository.loadSnapshot(snapshot),
      destination: await openDestination(to, (await repository.loadSnapshot(snapshot)).size, { force: false }),
      progress: silentProgress,
    });

  it('restores byte for byte, stores zero chunks as holes and duplicates once', async () => {
    const image = sampleImage();
    const result = await backup(image);
    expect(result.manifest.imageDigest).toEqual({ algorithm: 'blake3-chunks', hex: chunkDigestOf(image) });
    expect(result.manifest.version).toBe(4);
    expect(result.manifest.stats.zeroChunks).toBe(20 + 1 - 3 - 4 - 2 - 1 - 1);
    expect(result.manifest.stats.dataChunks).toBe(3 + 4 + 2 + 1 + 1);
    expect(result.manifest.stats.newChunks).toBe(result.manifest.stats.dataChunks - 1 - 3); // chunk 16 = chunk 0; 'text' chunks are equal
    await restore(result.snapshot, join(dir, 'out.img'));
    expect((await readFile(join(dir, 'out.img'))).equals(image)).toBe(true);
  });

  it.each(['low', 'high'])('restores byte for byte with blobs read straight into their slots, at memory profile %s', async (profile) => {
    const readInto = new ReadIntoMemoryTarget();
    await pool.dispose();
    repository = await Repository.init(readInto, 'pw');
    pool = WorkerPool.spawn(2, { CAIRN_MEMORY: profile });
    await pool.init({ masterKey: repository.masterKey, blobIdScheme: blobIdSchemeOf(repository.config), codecs: [NONE_CODEC], writeCodec: { type: 'none' }, writeCodecId: 0 });
    expect(pool.memory.name).toBe(profile);
    const image = sampleImage();
    const result = await backup(image);
    await restore(result.snapshot, join(dir, 'out.img'));
    expect((await readFile(join(dir, 'out.img'))).equals(image)).toBe(true);
    // Every data chunk came through readInto, into a slot of its own (neighbouring blobs of a pack in one read).
    expect(readInto.reads.reduce((n, read) => n + read.buffers, 0)).toBe(result.manifest.stats.dataChunks);
  });

  it('adds almost nothing when backing up the same image again', async () => {
    const image = sampleImage();
    const first = await backup(image);
    const second = await backup(image);
    expect(second.manifest.stats.newChunks).toBe(0);
    expect(second.bytesAdded).toBeLessThan(first.bytesAdded / 100);
  });

  it('reads only extents; unused chunks restore as zeros', async () => {
    const image = sampleImage();
    const result = await backup(image, [{ offset: 0, length: CHUNK + 10 }]);
    expect(result.manifest.stats.unusedChunks).toBe(19);
    await restore(result.snapshot, join(dir, 'used.img'));
    const expected = Buffer.alloc(image.length);
    image.copy(expected, 0, 0, CHUNK + 10);
    expect((await readFile(join(dir, 'used.img'))).equals(expected)).toBe(true);
  });

  it('keeps only used bytes of a chunk with scattered used ranges, never the stale ones', async () => {
    const image = randomBytes(CHUNK * 2);
    const extents = Array.from({ length: 20 }, (_, k) => ({ offset: k * 4096 + 100, length: 1000 }));
    extents.splice(16, 0, { offset: CHUNK + 10, length: 3 }); // few ranges in chunk 1: read one by one
    const result = await backup(image, extents);
    await restore(result.snapshot, join(dir, 'scattered.img'));
    const expected = Buffer.alloc(image.length);
    for (const e of extents) image.copy(expected, e.offset, e.offset, e.offset + e.length);
    expect((await readFile(join(dir, 'scattered.img'))).equals(expected)).toBe(true);
  });

  it('refuses extents that are out of order or overlap, as a source that breaks its contract', async () => {
    const image = randomBytes(CHUNK * 2);
    const cases = [
      [{ offset: CHUNK, length: 10 }, { offset: 0, length: 10 }],
      [{ offset: 0, length: 100 }, { offset: 50, length: 100 }],
      [{ offset: CHUNK * 2 - 5, length: 10 }],
    ];
    for (const extents of cases) await expect(backup(image, extents), JSON.stringify(extents)).rejects.toThrow(/extents/);
  });

  it('clears the unused bytes of a partly used chunk in a slot that held another chunk before', async () => {
    // More chunks than slots, alternating whole and partly used: every slot is used again,
    // and the previous chunk's bytes must not show through the gaps.
    const image = randomBytes(CHUNK * 40);
    const extents = Array.from({ length: 40 }, (_, k) =>
      k % 2 === 0 ? [{ offset: k * CHUNK, length: CHUNK }] : [{ offset: k * CHUNK + 512, length: 100 }, { offset: k * CHUNK + 9000, length: 5000 }],
    ).flat();
    const result = await backup(image, extents);
    await restore(result.snapshot, join(dir, 'partly-used.img'));
    const expected = Buffer.alloc(image.length);
    for (const e of extents) image.copy(expected, e.offset, e.offset, e.offset + e.length);
    expect((await readFile(join(dir, 'partly-used.img'))).equals(expected)).toBe(true);
  });

  describe('new chunks stored ahead of the image digest (format 5: one BLAKE3 of the whole image)', () => {
    beforeEach(async () => {
      target = new FaultyTarget(new MemoryTarget());
      await Repository.init(target, 'pw', { formatVersion: 5 });
      repository = await Repository.open(target, 'pw');
    });
    // Detach every new chunk: the default waits for long runs of unused space, which small images lack.
    const eager: DetachPolicy = { zerosAhead: 0, maxPending: Infinity };
    const digestOf = (bytes: Buffer) => ({ algorithm: 'blake3', hex: blake3(bytes).toString('hex') });

    /** memorySource that counts reads per chunk and lets a test change the image before one. */
    function watchedSource(image: Buffer, extents: Array<{ offset: number; length: number }>, beforeRead?: (chunk: number, count: number) => void) {
      const reads = new Map<number, number>();
      const inner = memorySource(image, extents);
      const source: OpenedSource = {
        ...inner,
        async read(into, offset, length) {
          const chunk = Math.floor(offset / CHUNK);
          const count = (reads.get(chunk) ?? 0) + 1;
          reads.set(chunk, count);
          beforeRead?.(chunk, count);
          await inner.read(into, offset, length);
        },
      };
      return { source, reads };
    }

    /** Chunks 0-5 used (chunk 4 repeats chunk 1, chunk 5 is zeros), 6-9 unused, 10-13 used. */
    function imageWithUnusedRun() {
      const image = randomBytes(CHUNK * 14);
      image.copy(image, CHUNK * 4, CHUNK, CHUNK * 2);
      image.fill(0, CHUNK * 5, CHUNK * 6);
      const extents = [{ offset: 0, length: CHUNK * 6 }, { offset: CHUNK * 10, length: CHUNK * 4 }];
      const expected = Buffer.from(image);
      expected.fill(0, CHUNK * 6, CHUNK * 10);
      return { image, extents, expected };
    }

    it('reads new chunks a second time for the digest, and restores what was stored', async () => {
      const { image, extents, expected } = imageWithUnusedRun();
      const { source, reads } = watchedSource(image, extents);
      const result = await backup(image, extents, { source, detach: eager });
      // New chunks are detached and read twice; the zero chunk is not, and of chunks 1 and 4
      // (equal) only the one stored, whichever was hashed first.
      expect(reads.get(1)! + reads.get(4)!).toBe(3);
      expect(Object.fromEntries([...reads].filter(([chunk]) => chunk !== 1 && chunk !== 4))).toEqual({ 0: 2, 2: 2, 3: 2, 5: 1, 10: 2, 11: 2, 12: 2, 13: 2 });
      expect(result.manifest.imageDigest).toEqual(digestOf(expected));
      expect(result.manifest.stats).toMatchObject({ dataChunks: 9, zeroChunks: 1, unusedChunks: 4, newChunks: 8 });
      expect(result.warnings).toEqual([]);
      await restore(result.snapshot, join(dir, 'detached.img'));
      expect((await readFile(join(dir, 'detached.img'))).equals(expected)).toBe(true);

      // Nothing is new the second time, so nothing is read twice.
      const again = watchedSource(image, extents);
      await backup(image, extents, { source: again.source, detach: eager });
      expect([...again.reads.values()].every((count) => count === 1)).toBe(true);
    });

    const changes: Array<[string, (image: Buffer) => void, { dataChunks: number; zeroChunks: number }]> = [
      ['to other data', (image) => randomBytes(CHUNK).copy(image, CHUNK * 11), { dataChunks: 9, zeroChunks: 1 }],
      ['to zeros', (image) => image.fill(0, CHUNK * 11, CHUNK * 12), { dataChunks: 8, zeroChunks: 2 }],
      ['to a copy of a stored chunk', (image) => image.copy(image, CHUNK * 11, 0, CHUNK), { dataChunks: 9, zeroChunks: 1 }],
    ];
    for (const [name, change, counts] of changes) {
      it(`stores a chunk that changed ${name} between its two reads as read the second time`, async () => {
        const { image, extents } = imageWithUnusedRun();
        const { source } = watchedSource(image, extents, (chunk, count) => {
          if (chunk === 11 && count === 2) change(image);
        });
        const result = await backup(image, extents, { source, detach: eager });
        expect(result.warnings).toHaveLength(1);
        expect(result.warnings[0]).toMatch(/1 chunk\(s\) of memory changed while the backup was reading them/);
        expect(result.manifest.stats).toMatchObject({ ...counts, unusedChunks: 4 });
        const expected = Buffer.from(image);
        expected.fill(0, CHUNK * 6, CHUNK * 10);
        expect(result.manifest.imageDigest).toEqual(digestOf(expected));
        // Restore checks the digest: the chunks stored and the digest describe the same image.
        await restore(result.snapshot, join(dir, 'changed.img'));
        expect((await readFile(join(dir, 'changed.img'))).equals(expected)).toBe(true);
      });
    }

    it('fails the backup without a snapshot when a second read fails', async () => {
      const { image, extents } = imageWithUnusedRun();
      const before = await repository.listSnapshots();
      const { source } = watchedSource(image, extents, (chunk, count) => {
        if (chunk === 12 && count === 2) throw new Error('EIO on second read');
      });
      await expect(backup(image, extents, { source, detach: eager })).rejects.toThrow(/EIO on second read/);
      expect(await repository.listSnapshots()).toEqual(before);
      const ok = await backup(image, extents, { detach: eager });
      await restore(ok.snapshot, join(dir, 'after-failure.img'));
    });

    it('bounds the bytes waiting for a second read', async () => {
      const { image, extents } = imageWithUnusedRun();
      const { source, reads } = watchedSource(image, extents);
      await backup(image, extents, { source, detach: { zerosAhead: 0, maxPending: 0 } });
      expect([...reads.values()].every((count) => count === 1)).toBe(true);
    });
  });

  /** Runs `fn` and returns the rejections nothing handled while it ran (and shortly after). */
  async function unhandledRejectionsDuring(fn: () => Promise<unknown>): Promise<unknown[]> {
    const unhandled: unknown[] = [];
    const listener = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', listener);
    try {
      await fn();
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      process.off('unhandledRejection', listener);
    }
    return unhandled;
  }

  const detachPolicies: Array<[string, DetachPolicy | undefined]> = [
    ['by default', undefined],
    ['with every new chunk stored ahead of the digest', { zerosAhead: 0, maxPending: Infinity }],
  ];
  it.each(detachPolicies)('stops with the source\'s error when a read fails midway, leaving no rejection unhandled (%s)', async (_name, detach) => {
    // Used chunks around a run of unused ones, so that chunks are detached under the eager policy.
    const image = randomBytes(CHUNK * 30);
    const extents = [{ offset: 0, length: CHUNK * 10 }, { offset: CHUNK * 16, length: CHUNK * 14 }];
    const inner = memorySource(image, extents);
    const failing: OpenedSource = {
      ...inner,
      async read(into, offset, length) {
        if (offset === CHUNK * 20) throw new Error('EIO at chunk 20');
        await inner.read(into, offset, length);
      },
    };
    const before = await repository.listSnapshots();
    const unhandled = await unhandledRejectionsDuring(() => expect(backup(image, extents, { source: failing, detach })).rejects.toThrow(/EIO at chunk 20/));
    expect(unhandled).toEqual([]);
    expect(await repository.listSnapshots()).toEqual(before);
  });

  describe('unreadable ranges of the source', () => {
    /** memorySource whose reads fail with EIO where they touch a bad range. */
    function sourceWithBadRanges(image: Buffer, bad: Array<[number, number]>, extents?: Array<{ offset: number; length: number }>): OpenedSource {
      const inner = memorySource(image, extents);
      return {
        ...inner,
        async read(into, offset, length) {
          if (bad.some(([o, l]) => offset < o + l && o < offset + length)) throw new SourceReadError('memory', offset, length, 'EIO (input/output error)');
          await inner.read(into, offset, length);
        },
      };
    }
    // One page in chunk 3, and chunk 7 from its middle into chunk 8 (two chunks, one range).
    const bad: Array<[number, number]> = [[CHUNK * 3 + 8192, 100], [CHUNK * 7 + CHUNK / 2, CHUNK]];

    it('stop the backup by default, naming the first unreadable 4 KiB exactly', async () => {
      const image = sampleImage();
      const before = await repository.listSnapshots();
      const failure = backup(image, undefined, { source: sourceWithBadRanges(image, bad) });
      await expect(failure).rejects.toBeInstanceOf(SourceReadError);
      await expect(failure).rejects.toThrow(`Cannot read memory at offset ${CHUNK * 3 + 8192} (length 4096): EIO (input/output error)`);
      expect(await repository.listSnapshots()).toEqual(before);
    });

    it('are stored as zeros in rescue mode, listed in the manifest, and covered by the digest', async () => {
      const image = sampleImage();
      randomBytes(CHUNK * 6).copy(image, CHUNK * 3); // chunks 3-8 hold data
      const result = await backup(image, undefined, { source: sourceWithBadRanges(image, bad), rescue: true, detach: { zerosAhead: 0, maxPending: Infinity } });
      const unreadable = [
        { offset: CHUNK * 3 + 8192, length: 4096 },
        { offset: CHUNK * 7 + CHUNK / 2, length: CHUNK },
      ];
      expect(result.manifest.unreadable).toEqual(unreadable);
      const expected = Buffer.from(image);
      for (const { offset, length } of unreadable) expected.fill(0, offset, offset + length);
      expect(result.manifest.imageDigest.hex).toBe(chunkDigestOf(expected));
      expect(result.warnings).toEqual([
        `2 range(s) of memory could not be read (${4096 + CHUNK} bytes in all) and were stored as zeros: 4096 bytes at offset ${CHUNK * 3 + 8192}, ${CHUNK} bytes at offset ${CHUNK * 7 + CHUNK / 2}; \`cairn show\` lists them all`,
      ]);
      expect(await repository.loadSnapshot(result.snapshot)).toEqual(result.manifest);
      await restore(result.snapshot, join(dir, 'rescued.img'));
      expect((await readFile(join(dir, 'rescued.img'))).equals(expected)).toBe(true);
    });

    it('in unused space neither stop the backup nor count as lost, also in a chunk read whole', async () => {
      // Chunk 1 has many small used ranges (read with one read of the whole chunk), chunk 3 a few.
      const image = randomBytes(CHUNK * 4);
      const scattered = Array.from({ length: 12 }, (_, k) => ({ offset: CHUNK + k * 4096 + 100, length: 1000 }));
      const extents = [...scattered, { offset: CHUNK * 3, length: 4096 }, { offset: CHUNK * 3 + 16384, length: 4096 }];
      const bad: Array<[number, number]> = [[CHUNK + 2 * 4096 + 2000, 10], [CHUNK + 13 * 4096, 4096], [CHUNK * 3 + 8192, 4096]];
      const expected = Buffer.alloc(image.length);
      for (const e of extents) image.copy(expected, e.offset, e.offset, e.offset + e.length);
      for (const rescue of [false, true]) {
        const result = await backup(image, extents, { source: sourceWithBadRanges(image, bad, extents), rescue });
        expect(result.manifest).not.toHaveProperty('unreadable');
        expect(result.manifest.imageDigest.hex).toBe(chunkDigestOf(expected));
      }
      // A bad sector under a used range loses only the used bytes there.
      const underUsed: Array<[number, number]> = [[CHUNK + 5 * 4096, 4096]];
      const rescued = await backup(image, extents, { source: sourceWithBadRanges(image, underUsed, extents), rescue: true });
      expect(rescued.manifest.unreadable).toEqual([{ offset: CHUNK + 5 * 4096 + 100, length: 1000 }]);
    });

    it('leave no trace in the manifest when every byte was read', async () => {
      const result = await backup(sampleImage(), undefined, { rescue: true });
      expect(result.manifest).not.toHaveProperty('unreadable');
      expect(result.warnings).toEqual([]);
    });
  });

  it('keeps earlier snapshots intact when uploads fail mid-backup', async () => {
    const image = sampleImage();
    const first = await backup(image);
    target.failAfter('put', 0, new Error('disk full'));
    await expect(backup(randomBytes(CHUNK * 8))).rejects.toThrow(/disk full/);
    target.heal();
    expect((await repository.listSnapshots()).map((s) => s.id)).toEqual([first.snapshot]);
    await restore(first.snapshot, join(dir, 'after-failure.img'));
    expect((await readFile(join(dir, 'after-failure.img'))).equals(image)).toBe(true);
    const report = await runCheck({ repository, pool, loadIndex: () => repository.loadIndex(), readData: true, progress: silentProgress });
    expect(report.problems).toEqual([]);
  });

  it.each([7, 6, 5])('commits no restored image whose digest differs from the snapshot\'s (format %i)', async (formatVersion) => {
    target = new FaultyTarget(new MemoryTarget());
    await Repository.init(target, 'pw', { formatVersion });
    repository = await Repository.open(target, 'pw');
    const image = sampleImage();
    const { manifest } = await backup(image);
    expect(manifest.imageDigest.algorithm).toBe(formatVersion >= 6 ? 'blake3-chunks' : 'blake3');
    // Every blob is intact and matches its id; only the recorded digest disagrees with them.
    const hex = manifest.imageDigest.hex.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const forged = await repository.saveSnapshot({ ...manifest, imageDigest: { ...manifest.imageDigest, hex } });
    const to = join(dir, 'forged.img');
    await expect(restore(forged.id, to)).rejects.toThrow(/The restored image's blake3(-chunks)? .* differs from the snapshot's .*not committed/);
    expect(await readdir(dir)).toEqual([]);
  });

  it('restores a format-5 snapshot (one BLAKE3 of the whole image), a format-6 and a format-7 one (blob ids keyed over chunk digests) from the same data alike; check reads each clean', async () => {
    const image = sampleImage();
    const extents = [{ offset: 0, length: CHUNK * 10 }, { offset: CHUNK * 12, length: image.length - CHUNK * 12 }];
    const expected = Buffer.from(image);
    expected.fill(0, CHUNK * 10, CHUNK * 12);
    for (const formatVersion of [5, 6, 7]) {
      target = new FaultyTarget(new MemoryTarget());
      await Repository.init(target, 'pw', { formatVersion });
      repository = await Repository.open(target, 'pw');
      const result = await backup(image, extents);
      expect(result.manifest.imageDigest.hex).toBe(formatVersion === 5 ? blake3(expected).toString('hex') : chunkDigestOf(expected));
      await restore(result.snapshot, join(dir, `v${formatVersion}.img`));
      expect((await readFile(join(dir, `v${formatVersion}.img`))).equals(expected)).toBe(true);
      const report = await runCheck({ repository, pool, loadIndex: () => repository.loadIndex(), readData: true, progress: silentProgress });
      expect(report.problems).toEqual([]);
    }
  });

  it('fails loudly on damaged data and leaves no destination file behind', async () => {
    const result = await backup(sampleImage());
    target.corruptNextGets(1000);
    const to = join(dir, 'damaged.img');
    await expect(restore(result.snapshot, to)).rejects.toBeInstanceOf(DamageError);
    expect(await readdir(dir)).toEqual([]);
  });

  it('fails, not hangs, when a damaged blob stops the writer while the planner waits for slots', async () => {
    // 64 data chunks, far more than the restore's slots: the writer fails at the first one and frees no slot again.
    const result = await backup(randomBytes(CHUNK * 64));
    target.corruptNextGets(1);
    await expect(restore(result.snapshot, join(dir, 'damaged.img'))).rejects.toBeInstanceOf(DamageError);
    expect(await readdir(dir)).toEqual([]);
  }, 20_000);

  it('check --read-data names the damaged pack and the snapshots that need it', async () => {
    const result = await backup(sampleImage());
    const [pack] = (await repository.listPacks()).map((p) => p.id);
    const key = Keys.pack(pack!);
    const bytes = await target.inner.get(key);
    bytes[100]! ^= 1;
    await target.inner.put(key, bytes);
    const structural = await runCheck({ repository, pool, loadIndex: () => repository.loadIndex(), readData: false, progress: silentProgress });
    expect(structural.problems).toEqual([]);
    const report = await runCheck({ repository, pool, loadIndex: () => repository.loadIndex(), readData: true, progress: silentProgress });
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]).toMatchObject({ object: key, snapshots: [result.snapshot] });
  });

  it('reads and extends a format-1 repository, whose blob ids are HMAC-SHA256 and pack names SHA-256', async () => {
    target = new FaultyTarget(new MemoryTarget());
    await Repository.init(target, 'pw', { formatVersion: 1 });
    await pool.dispose();
    repository = await Repository.open(target, 'pw');
    pool = await startPool(repository);
    expect(blobIdSchemeOf(repository.config)).toBe('hmac-sha256');
    const image = sampleImage();
    const result = await backup(image);
    expect(result.manifest.imageDigest).toEqual({ algorithm: 'sha256', hex: createHash('sha256').update(image).digest('hex') });
    const index = await repository.loadIndex();
    expect(index.has(createHmac('sha256', repository.masterKey.blobId).update(image.subarray(0, CHUNK)).digest('hex'))).toBe(true);
    const [pack] = (await repository.listPacks()).map((p) => p.id);
    expect(createHash('sha256').update(await target.get(`data/${pack!.slice(0, 2)}/${pack}`)).digest('hex')).toBe(pack);
    const report = await runCheck({ repository, pool, loadIndex: async () => index, readData: true, progress: silentProgress });
    expect(report.problems).toEqual([]);
    await restore(result.snapshot, join(dir, 'v1.img'));
    expect((await readFile(join(dir, 'v1.img'))).equals(image)).toBe(true);
  });

  it('extends a format-2 repository with snapshots older readers understand: a SHA-256 of the image, manifest version 1', async () => {
    target = new FaultyTarget(new MemoryTarget());
    await Repository.init(target, 'pw', { formatVersion: 2 });
    repository = await Repository.open(target, 'pw');
    const image = sampleImage();
    const result = await backup(image);
    expect(result.manifest.imageDigest).toEqual({ algorithm: 'sha256', hex: createHash('sha256').update(image).digest('hex') });
    const stored = JSON.parse((await repository.getSealed('snapshots', result.snapshot)).toString('utf8'));
    expect(stored).toMatchObject({ version: 1, sha256: result.manifest.imageDigest.hex });
    expect(stored).not.toHaveProperty('imageDigest');
    expect(await repository.loadSnapshot(result.snapshot)).toEqual(result.manifest);
    await restore(result.snapshot, join(dir, 'v2.img'));
    expect((await readFile(join(dir, 'v2.img'))).equals(image)).toBe(true);
    // The restore checks the SHA-256 too.
    const forged = await repository.saveSnapshot({ ...result.manifest, imageDigest: { algorithm: 'sha256', hex: '0'.repeat(64) } });
    await expect(restore(forged.id, join(dir, 'forged.img'))).rejects.toThrow(/The restored image's sha256 .* differs/);
    expect(() => encodeManifest({ ...result.manifest, imageDigest: { algorithm: 'blake3', hex: '0'.repeat(64) } })).toThrow(/version 1 manifest cannot record a blake3 digest/);
    expect(() => encodeManifest({ ...result.manifest, version: 2 })).toThrow(/version 2 manifest cannot record a sha256 digest/);
  });
});
