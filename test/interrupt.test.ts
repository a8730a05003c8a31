import { mkdir, open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  expectCleanFsck,
  expectSuccess,
  init,
  listPacks,
  makeVolume,
  parseJson,
  randomBytesFor,
  readRepositoryConfig,
  restore,
  runCli,
  sameBytes,
  snapshots,
  startCli,
  useTempDir,
  writeJob,
} from './utils/index.js';

describe('an interrupted backup', () => {
  test('a backup killed mid-run leaves the earlier snapshots restorable and the repository usable', async () => {
    const dir = await useTempDir();
    const repository = join(dir, 'repo');
    const { image: first } = await makeVolume(dir, 'first', 48 * MiB, { seed: 51, randomBytes: 4 * MiB, textBytes: 2 * MiB });
    // Mostly incompressible and compressed hard: the second backup takes seconds, and
    // fills more than one 16 MiB pack.
    const { image: second } = await makeVolume(dir, 'second', 96 * MiB, { seed: 52, randomBytes: 64 * MiB, textBytes: 2 * MiB });
    const job = await writeJob(dir, { source: first });
    const slowJob = await writeJob(dir, { source: second, compression: { type: 'zstd', level: 19 } }, 'slow-job.json');
    await init(job);
    const kept = await backup(job);
    const packsBefore = await listPacks(repository);

    const running = startCli(['backup', slowJob, '--json'], { env: PASSWORD_ENV });
    let exited = false;
    void running.result.then(() => (exited = true));
    // Wait until the second backup has written at least one pack of its own.
    const deadline = Date.now() + 60_000;
    while (!exited && Date.now() < deadline && (await listPacks(repository)).length <= packsBefore.length) await sleep(25);
    expect(exited, 'the backup finished before it could be interrupted; make its image larger').toBe(false);
    expect((await listPacks(repository)).length).toBeGreaterThan(packsBefore.length);
    running.child.kill('SIGKILL');
    const killed = await running.result;
    expect(killed.signal).toBe('SIGKILL');

    // No snapshot came out of the killed run; the earlier one is intact.
    const list = await snapshots(job);
    expect(list.map((s) => s.id)).toEqual([kept.snapshot]);
    const restored = join(dir, 'restored-first.img');
    await restore(job, kept.snapshot, restored);
    expect(await sameBytes(first, restored)).toBe(true);
    await expectCleanFsck(restored);

    // check passes: packs left by the killed run are unreferenced, which is allowed.
    const check = await runCli(['check', job, '--read-data', '--json'], { env: PASSWORD_ENV });
    expectSuccess(check);
    expect(parseJson<{ problems: unknown[] }>(check).problems).toEqual([]);

    // A new backup (of the volume the killed run was reading) succeeds, and restores.
    const secondJob = await writeJob(dir, { source: second }, 'second-job.json');
    const resumed = await backup(secondJob);
    expect(resumed.bytesRead).toBe(96 * MiB);
    expect((await snapshots(job)).map((s) => s.id).sort()).toEqual([kept.snapshot, resumed.snapshot].sort());
    const restoredSecond = join(dir, 'restored-second.img');
    await restore(job, resumed.snapshot, restoredSecond);
    expect(await sameBytes(second, restoredSecond)).toBe(true);
    expectSuccess(await runCli(['check', job], { env: PASSWORD_ENV }));
    // Nothing the killed run left behind (stale lock, temporary files) blocks the repository.
    expect(await readdir(join(repository, 'snapshots'))).toHaveLength(2);
  });
});

/** A volume of `size` bytes of random data (exact mode reads it all; no chunk compresses or repeats). */
async function incompressibleVolume(path: string, size: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    for (let at = 0; at < size; at += 16 * MiB) await handle.write(randomBytesFor(`incompressible/${at}`, Math.min(16 * MiB, size - at)), 0, Math.min(16 * MiB, size - at), at);
  } finally {
    await handle.close();
  }
}

/** Index files of a repository (none before its first index is written), not those still under a temporary name. */
async function indexFiles(repository: string): Promise<string[]> {
  const names = await readdir(join(repository, 'index')).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  return names.filter((name) => !name.startsWith('.tmp-'));
}

interface CheckReport {
  packs: number;
  problems: unknown[];
  unreferencedPacks: string[];
}

async function checkJson(job: string, readData: boolean): Promise<CheckReport> {
  const result = await runCli(['check', job, '--json', ...(readData ? ['--read-data'] : [])], { env: PASSWORD_ENV });
  expectSuccess(result);
  return parseJson<CheckReport>(result);
}

describe("an interrupted backup's finished packs", () => {
  test('are kept, and the next backup uses them instead of storing their chunks again', async () => {
    const dir = await useTempDir();
    // An index is written for every 16 packs of ~16 MiB: enough data for one index and more.
    const SIZE = 448 * MiB;
    await incompressibleVolume(join(dir, 'random.img'), SIZE);
    // Compressing hard (in vain) slows the run down enough to interrupt it between its first index and its end.
    const job = await writeJob(dir, { source: './random.img', compression: { type: 'zstd', level: 15 } });
    const repository = join(dir, 'repo');
    await init(job);
    // What a whole uninterrupted backup adds, in a repository of its own (stored the same at any level: nothing compresses).
    const referenceJob = await writeJob(dir, { source: './random.img', repository: './reference-repo', compression: { type: 'zstd', level: 1 } }, 'reference.json');
    await init(referenceJob);
    const full = await backup(referenceJob);

    const running = startCli(['backup', job], { env: PASSWORD_ENV, timeoutMs: 300_000 });
    let exited = false;
    void running.result.then(() => (exited = true));
    const deadline = Date.now() + 120_000;
    while (!exited && Date.now() < deadline && (await indexFiles(repository)).length === 0) await sleep(25);
    expect(exited, 'the backup finished before it could be interrupted; make the volume larger').toBe(false);
    running.child.kill('SIGKILL');
    expect((await running.result).signal).toBe('SIGKILL');
    expect(await snapshots(job)).toEqual([]);

    // The packs the killed run indexed (the others it wrote are not in any index).
    const afterKill = await checkJson(job, false);
    expect(afterKill.problems).toEqual([]);
    const indexed = (await listPacks(repository)).filter((pack) => !afterKill.unreferencedPacks.includes(pack.split('/').pop()!));
    expect(indexed).toHaveLength(afterKill.packs);
    expect(indexed.length).toBeGreaterThan(0);
    const kept = new Map<string, { size: number; mtimeMs: number }>();
    for (const pack of indexed) {
      const { size, mtimeMs } = await stat(join(repository, pack));
      kept.set(pack, { size, mtimeMs });
    }
    const indexedBytes = [...kept.values()].reduce((sum, { size }) => sum + size, 0);

    const resumed = await backup(job);
    expect(resumed.bytesRead).toBe(SIZE);
    // Every indexed pack is still there, as it was written…
    for (const [pack, was] of kept) {
      const now = await stat(join(repository, pack));
      expect({ size: now.size, mtimeMs: now.mtimeMs }, pack).toEqual(was);
    }
    // …and used: their chunks were not stored again. Apart from pack headers, what the
    // killed run indexed plus what this run added is what a whole backup adds.
    const { chunkSize } = await readRepositoryConfig(repository);
    const reused = resumed.chunks.data - resumed.chunks.new;
    expect(reused).toBeGreaterThan(0);
    expect(Math.abs(reused * chunkSize - indexedBytes)).toBeLessThan(indexed.length * 64 * 1024);
    expect(resumed.bytesAdded).toBeLessThan(full.bytesAdded - indexedBytes + 2 * MiB);
    expect(resumed.bytesAdded).toBeGreaterThan(full.bytesAdded - indexedBytes - 2 * MiB);

    const checked = await checkJson(job, true);
    expect(checked.problems).toEqual([]);
    // Every pack the killed run indexed is in use; only those it never indexed are left over.
    for (const pack of indexed) expect(checked.unreferencedPacks).not.toContain(pack.split('/').pop());
    const restored = join(dir, 'restored.img');
    await restore(job, 'latest', restored);
    expect(await sameBytes(join(dir, 'random.img'), restored)).toBe(true);
  }, 300_000);
});

describe('an interrupted restore', () => {
  test('a restore --force killed midway leaves its temporary file, which the next restore to the same file removes', async () => {
    const dir = await useTempDir();
    await incompressibleVolume(join(dir, 'random.img'), 192 * MiB);
    const job = await writeJob(dir, { source: './random.img' });
    await init(job);
    const { snapshot } = await backup(job);
    const out = join(dir, 'out');
    await mkdir(out);
    const to = join(out, 'restored.img');
    await writeFile(to, 'an older image');
    const leftovers = async () => (await readdir(out)).filter((name) => name.startsWith('.restored.img.cairn-restore-'));

    const running = startCli(['restore', job, snapshot, '--to', to, '--force'], { env: PASSWORD_ENV });
    let exited = false;
    void running.result.then(() => (exited = true));
    // Killed once it writes under its temporary name: it can clean nothing up.
    const deadline = Date.now() + 60_000;
    while (!exited && Date.now() < deadline && ((await leftovers()).length === 0 || (await stat(join(out, (await leftovers())[0]!))).blocks === 0)) await sleep(5);
    expect(exited, 'the restore finished before it could be interrupted; make the volume larger').toBe(false);
    running.child.kill('SIGKILL');
    expect((await running.result).signal).toBe('SIGKILL');
    const [left] = await leftovers();
    expect(left).toMatch(new RegExp(`^\\.restored\\.img\\.cairn-restore-[0-9a-f]{12}-${running.child.pid}@`));
    expect(await readFile(to, 'utf8')).toBe('an older image');

    await restore(job, snapshot, to, { force: true });
    expect(await readdir(out)).toEqual(['restored.img']);
    expect(await sameBytes(join(dir, 'random.img'), to)).toBe(true);
  });
});

describe('a backup stopped by a signal', () => {
  test.each([
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const)('%s: the backup releases its lock, exits %i, and the repository checks clean', async (signal, exitCode) => {
    const dir = await useTempDir();
    await incompressibleVolume(join(dir, 'random.img'), 128 * MiB);
    const job = await writeJob(dir, { source: './random.img', compression: { type: 'zstd', level: 19 } });
    const repository = join(dir, 'repo');
    await init(job);
    const running = startCli(['backup', job, '--json'], { env: PASSWORD_ENV });
    let exited = false;
    void running.result.then(() => (exited = true));
    const deadline = Date.now() + 60_000;
    const locks = () => readdir(join(repository, 'locks')).catch(() => []);
    while (!exited && Date.now() < deadline && (await locks()).length === 0) await sleep(25);
    await sleep(500);
    expect(exited, 'the backup finished before it could be interrupted; make the volume larger').toBe(false);
    running.child.kill(signal);
    const result = await running.result;
    expect(result.exitCode, result.stderr).toBe(exitCode);
    expect(JSON.parse(result.stderr.trim().split('\n').pop()!).error).toMatchObject({ code: 'CAIRN_INTERRUPTED', message: expect.stringContaining(`Stopped by ${signal}`) });
    expect(await locks()).toEqual([]);
    expect(await snapshots(job)).toEqual([]);
    expect((await checkJson(job, false)).problems).toEqual([]);
  });
});
