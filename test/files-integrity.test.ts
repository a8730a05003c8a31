import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  cairnOk,
  expectSuccess,
  init,
  listPacks,
  parseJson,
  randomBytesFor,
  restore,
  runCli,
  sameBytes,
  snapshots,
  useTempDir,
  writeJob,
  type CliResult,
  type PruneSummary,
} from './utils/index.js';

/*
 * File snapshots in the integrity machinery, through the real CLI: a lost pack is named by
 * `check` with the snapshot and the file paths it costs (exit 13); `repair index` and
 * `repair snapshots` leave a clean repository whose snapshot no longer needs the lost data;
 * forget and prune with a volume job and a files job in one repository keep what the
 * remaining job needs, a chunk both share included.
 */

interface CheckJson {
  problems: Array<{ object: string; message: string; snapshots: string[]; ranges: Record<string, unknown>; paths: Record<string, { paths: string[]; count: number }> }>;
}

interface RepairJson {
  repaired: Array<{ snapshot: string; replacement?: string; lostPaths?: string[]; lostPathCount?: number; lostBytes: number }>;
  unrepairable: Array<{ object: string; message: string; removed: boolean }>;
}

async function filesJob(dir: string, name: string, paths: string[]): Promise<string> {
  return writeJob(dir, { name, source: '', extra: { source: { type: 'files', paths } } }, `${name}.json`);
}

async function backupFiles(job: string): Promise<string> {
  return parseJson<{ snapshot: string }>(await cairnOk('backup', job, ['--json'])).snapshot;
}

const cli = (args: string[]): Promise<CliResult> => runCli(args, { env: PASSWORD_ENV });

async function checkJson(job: string, readData = false): Promise<{ result: CliResult; report: CheckJson }> {
  const result = await cli(['check', job, '--json', ...(readData ? ['--read-data'] : [])]);
  return { result, report: parseJson<CheckJson>(result) };
}

describe('file snapshots: check, repair, prune', () => {
  test('a lost pack: check names the snapshots and the file; repair leaves a clean repository', async () => {
    const dir = await useTempDir('cairn-files-integrity-');
    const data = join(dir, 'data');
    await mkdir(join(data, 'docs'), { recursive: true });
    await mkdir(join(data, 'other'));
    const lostFile = randomBytesFor('lost', 3 * MiB);
    await writeFile(join(data, 'docs', 'a.bin'), lostFile);
    await writeFile(join(data, 'docs', 'b.txt'), 'hello\n');
    await writeFile(join(data, 'other', 'c.bin'), randomBytesFor('kept', 2 * MiB));
    // The seed job backs up a copy of a.bin first: its chunks land in the seed's pack, which the
    // files job then shares (same bytes, same chunks), so that pack holds a.bin and no tree of it.
    await mkdir(join(dir, 'seed'));
    await writeFile(join(dir, 'seed', 'a.bin'), lostFile);
    const seed = await filesJob(dir, 'seed', ['./seed']);
    const job = await filesJob(dir, 'home', ['./data']);
    await init(job);
    const before = await listPacks(join(dir, 'repo'));
    const seedSnapshot = await backupFiles(seed);
    const seedPacks = (await listPacks(join(dir, 'repo'))).filter((p) => !before.includes(p));
    expect(seedPacks).toHaveLength(1);
    const snapshot = await backupFiles(job);
    expect((await checkJson(job, true)).report.problems).toEqual([]);

    await rm(join(dir, 'repo', seedPacks[0]!));
    const lostPath = join(data, 'docs', 'a.bin');
    for (const readData of [false, true]) {
      const { result, report } = await checkJson(job, readData);
      expect(result.exitCode).toBe(13);
      expect(report.problems).toEqual([
        {
          object: seedPacks[0],
          message: 'pack is missing',
          snapshots: [seedSnapshot, snapshot].sort(),
          ranges: {},
          paths: { [snapshot]: { paths: [lostPath], count: 1 }, [seedSnapshot]: { paths: ['/'], count: 1 } },
        },
      ]);
    }
    const text = await cli(['check', job]);
    expect(text.exitCode).toBe(13);
    expect(text.stdout).toContain(`snapshot ${snapshot.slice(0, 12)} loses 1 path(s): ${lostPath}`);
    expect(text.stdout).toContain(`snapshot ${seedSnapshot.slice(0, 12)} loses everything (its root tree is lost)`);

    // repair snapshots first needs the index to match the packs.
    const early = await cli(['repair', 'snapshots', job]);
    expect(early.exitCode).toBe(13);
    expect(early.stderr).toMatch(/repair index/);
    expectSuccess(await cli(['repair', 'index', job]));
    const report = parseJson<RepairJson>(await cairnOk('repair', 'snapshots', [job, '--forget', '--json']));
    expect(report.repaired).toEqual([{ snapshot, replacement: expect.stringMatching(/^[0-9a-f]{64}$/), lost: [], lostBytes: lostFile.length, lostPaths: [lostPath], lostPathCount: 1 }]);
    expect(report.unrepairable).toEqual([{ object: `snapshots/${seedSnapshot}`, message: expect.stringMatching(/root tree cannot be read/), removed: true }]);

    const { result, report: clean } = await checkJson(job, true);
    expect(clean.problems).toEqual([]);
    expect(result.exitCode).toBe(0);
    expect((await snapshots(job)).map((s) => s.id)).toEqual([report.repaired[0]!.replacement]);
    await expectRestoredWithoutLostFile(job, report.repaired[0]!.replacement!, dir, data);
  });

  test('forget and prune with a volume job and a files job in one repository keep what the other needs', async () => {
    const dir = await useTempDir('cairn-files-prune-');
    const image = randomBytesFor('image', 2 * MiB);
    await writeFile(join(dir, 'disk.img'), image);
    const data = join(dir, 'data');
    await mkdir(data);
    // 64 KiB, below the CDC minimum: one chunk, the same bytes as the image's first 64 KiB chunk.
    await writeFile(join(data, 'shared.bin'), image.subarray(0, 64 * 1024));
    await writeFile(join(data, 'own.bin'), randomBytesFor('own', MiB));
    const system = await writeJob(dir, { name: 'system', source: './disk.img', chunkSize: 64 * 1024 }, 'system.json');
    const home = await filesJob(dir, 'home', ['./data']);
    await init(system);
    const volume = await backupFiles(system);
    const first = parseJson<{ snapshot: string; stats: { dataChunks: number; newChunks: number } }>(await cairnOk('backup', home, ['--json']));
    const files = first.snapshot;
    // shared.bin's chunk was the volume's already.
    expect(first.stats.dataChunks - first.stats.newChunks).toBe(1);
    const prune = async () => parseJson<PruneSummary>(await cairnOk('prune', system, ['--json']));

    // The files snapshot forgotten: its own chunks go, the volume restores whole.
    expectSuccess(await cli(['forget', home, files]));
    expect((await prune()).bytesDeleted).toBeGreaterThan(0);
    expect((await checkJson(system, true)).report.problems).toEqual([]);
    await restore(system, volume, join(dir, 'restored.img'));
    expect(await sameBytes(join(dir, 'restored.img'), join(dir, 'disk.img'))).toBe(true);

    // A new files snapshot; the volume snapshot forgotten: the shared chunk stays for the files.
    const files2 = await backupFiles(home);
    expectSuccess(await cli(['forget', system, volume]));
    // The volume's pack goes, its one chunk the files need copied out first.
    const pruned = await prune();
    expect(pruned.packs.repacked).toBe(1);
    expect(pruned.bytesWritten).toBeGreaterThan(64 * 1024);
    expect(pruned.bytesWritten).toBeLessThan(128 * 1024);
    expect((await checkJson(home, true)).report.problems).toEqual([]);
    expect((await snapshots(home)).map((s) => s.id)).toEqual([files2]);
    await expectRestoredFiles(home, files2, dir, data, ['shared.bin', 'own.bin']);
  });
});

/** Restores the repaired snapshot: the other files intact, the lost one as long as it was, zeros (a hole). */
async function expectRestoredWithoutLostFile(job: string, snapshot: string, dir: string, data: string): Promise<void> {
  const target = join(dir, 'restored');
  const result = await cli(['restore', job, snapshot, '--to', target]);
  expectSuccess(result);
  // The restore says which file the repair left incomplete.
  expect(result.stderr).toMatch(/docs\/a\.bin is incomplete in the snapshot \(lost in repair: /);
  const restored = join(target, data);
  expect(await readFile(join(restored, 'docs', 'b.txt'), 'utf8')).toBe('hello\n');
  expect(await sameBytes(join(restored, 'other', 'c.bin'), join(data, 'other', 'c.bin'))).toBe(true);
  const lost = await readFile(join(restored, 'docs', 'a.bin'));
  expect(lost.length).toBe(3 * MiB);
  expect(lost.every((byte) => byte === 0)).toBe(true);
}

async function expectRestoredFiles(job: string, snapshot: string, dir: string, data: string, names: string[]): Promise<void> {
  const target = join(dir, 'restored-files');
  const result = await cli(['restore', job, snapshot, '--to', target]);
  expectSuccess(result);
  for (const name of names) expect(await sameBytes(join(target, data, name), join(data, name))).toBe(true);
}
