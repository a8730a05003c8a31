import { spawn } from 'node:child_process';
import { chmod, chown, cp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  MiB,
  NOBODY,
  backup,
  backupFiles,
  backupFilesRun,
  expectCleanFailure,
  fileText,
  init,
  makeVolume,
  parseJson,
  pseudoRandomBytes,
  runCli,
  runCliAs,
  runCommand,
  snapshots,
  useTempDir,
  writeFilesJob,
  writeJob,
  writeManyFiles,
  PASSWORD_ENV,
} from './utils/index.js';

describe('file backup', () => {
  test('incremental: after changing 5 files of 10,000, the second backup reads only those; an unchanged third reads nothing', async () => {
    const dir = await useTempDir();
    const data = join(dir, 'data');
    const paths = await writeManyFiles(data, { files: 10_000 });
    const job = await writeFilesJob(dir, { paths: [data] });
    await init(job);

    const first = await backupFiles(job);
    expect(first.stats.files).toBe(10_000);
    expect(first.stats.bytesRead).toBe(first.stats.totalBytes);
    expect(first.stats.newChunks).toBe(10_000);
    expect(first.skipped).toEqual([]);

    const changed = [paths[3]!, paths[777]!, paths[4242]!, paths[8000]!, paths[9999]!];
    let changedBytes = 0;
    for (const [i, path] of changed.entries()) {
      const size = (await stat(join(data, path))).size;
      await writeFile(join(data, path), fileText(100_000 + i, size));
      changedBytes += size;
    }
    const second = await backupFiles(job);
    expect(second.parent).toBe(first.snapshot);
    expect(second.stats.bytesRead).toBe(changedBytes);
    expect(second.stats.unchangedFiles).toBe(10_000 - 5);
    expect(second.stats.newChunks).toBe(5);
    expect(second.stats.dataChunks).toBe(10_000);

    const third = await backupFiles(job);
    expect(third.parent).toBe(second.snapshot);
    expect(third.stats.bytesRead).toBe(0);
    expect(third.stats.newChunks).toBe(0);
    expect(third.stats.unchangedFiles).toBe(10_000);
  }, 240_000);

  test('CDC through the CLI: bytes inserted at the start of a 64 MiB file add only a few chunks', async () => {
    const dir = await useTempDir();
    const data = join(dir, 'data');
    await mkdir(data);
    const content = pseudoRandomBytes(64 * MiB, 2026);
    await writeFile(join(data, 'big.bin'), content);
    const job = await writeFilesJob(dir, { paths: [data], compression: { type: 'none' } });
    await init(job);
    const first = await backupFiles(job);
    expect(first.stats.dataChunks).toBeGreaterThan(30);

    await writeFile(join(data, 'big.bin'), Buffer.concat([Buffer.from('a few new bytes at the start\n'), content]));
    const second = await backupFiles(job);
    expect(second.stats.bytesRead).toBe(64 * MiB + 29);
    expect(second.stats.newChunks, `new chunks of ${second.stats.dataChunks}`).toBeLessThanOrEqual(3);
    expect(second.bytesAdded).toBeLessThan(10 * MiB);
  }, 120_000);

  test('unreadable files and folders (a non-root user): exit 3, the rest backed up, the snapshot lists them', async () => {
    const dir = await useTempDir();
    await chmod(dir, 0o755);
    const data = join(dir, 'data');
    await mkdir(join(data, 'open'), { recursive: true });
    await mkdir(join(data, 'closed'));
    await writeFile(join(data, 'open', 'readable.txt'), 'anyone may read this\n');
    await writeFile(join(data, 'secret.txt'), 'root only\n');
    await writeFile(join(data, 'open', 'secret2.txt'), 'root only too\n');
    await writeFile(join(data, 'closed', 'inside.txt'), 'not even listed\n');
    await chmod(join(data, 'secret.txt'), 0o000);
    await chmod(join(data, 'open', 'secret2.txt'), 0o000);
    await chmod(join(data, 'closed'), 0o000);
    const job = await writeFilesJob(dir, { paths: [data] });
    await init(job);
    // The repository and the job belong to the user who backs up.
    await chownTree(join(dir, 'repo'), NOBODY);

    const result = await runCliAs(NOBODY, ['backup', job, '--json']);
    expect(result.exitCode, result.stderr).toBe(3);
    const summary = JSON.parse(result.stdout);
    expect(summary.stats.files).toBe(3);
    expect(summary.stats.bytesRead).toBe('anyone may read this\n'.length);
    expect(summary.skippedCount).toBe(3);
    expect(summary.skipped.map((s: { path: string }) => s.path).sort()).toEqual([join(data, 'closed'), join(data, 'open', 'secret2.txt'), join(data, 'secret.txt')]);
    for (const skipped of summary.skipped) expect(skipped.reason).toMatch(/EACCES|permission denied/i);
    expect(result.stderr).toMatch(/Cannot back up .*secret\.txt/);

    // The text summary names them too.
    const text = await runCliAs(NOBODY, ['backup', job]);
    expect(text.exitCode).toBe(3);
    expect(text.stdout).toMatch(/incomplete \(3 path\(s\) could not be read\)/);
    expect(text.stdout).toMatch(/not backed up: .*closed: /);
  }, 120_000);

  test('a file that grows while it is read is marked as changed', async () => {
    const dir = await useTempDir();
    const data = join(dir, 'data');
    await mkdir(data);
    const growing = join(data, 'growing.log');
    await writeFile(growing, pseudoRandomBytes(256 * MiB, 5));
    const job = await writeFilesJob(dir, { paths: [data], compression: { type: 'none' } });
    await init(job);
    const writer = startAppending(growing);
    try {
      const { result, summary } = await backupFilesRun(job);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(summary.stats.changedWhileRead).toBe(1);
      expect(result.stderr).toMatch(/growing\.log changed while it was read/);
    } finally {
      await writer.stop();
    }
  }, 120_000);

  test('a files job and a volume job share one repository: both back up, snapshots lists both', async () => {
    const dir = await useTempDir();
    const { image } = await makeVolume(dir, 'disk', 16 * MiB, { seed: 3, randomBytes: 2 * MiB, textBytes: 1 * MiB, zeroBytes: 0 });
    const data = join(dir, 'data');
    await writeManyFiles(data, { files: 50 });
    const volumeJob = await writeJob(dir, { name: 'volume', source: image }, 'volume.json');
    const filesJob = await writeFilesJob(dir, { name: 'files', paths: [data] }, 'files.json');
    await init(volumeJob);
    const image1 = await backup(volumeJob);
    const files1 = await backupFiles(filesJob);
    const image2 = await backup(volumeJob);
    expect(files1.stats.files).toBe(50);
    expect(image2.chunks.new).toBe(0);
    const rows = await snapshots(filesJob);
    expect(rows.map((row) => row.id).sort()).toEqual([image1.snapshot, files1.snapshot, image2.snapshot].sort());
  }, 120_000);

  test('--rescue is refused for a files job, and --tag and --time are recorded', async () => {
    const dir = await useTempDir();
    const data = join(dir, 'data');
    await writeManyFiles(data, { files: 3 });
    const job = await writeFilesJob(dir, { paths: [data] });
    await init(job);
    expectCleanFailure(await runCli(['backup', job, '--rescue'], { env: PASSWORD_ENV }), 2, /--rescue/);
    const tagged = await backupFiles(job, ['--tag', 'daily', '--time', '2026-05-01T02:00:00Z']);
    expect(tagged.tags).toEqual(['daily']);
    expect(tagged.time).toBe('2026-05-01T02:00:00.000Z');
  }, 60_000);

  test('the folder cache: kept per job, and the snapshots it helps make are those made without it', async () => {
    const dir = await useTempDir();
    const data = join(dir, 'data');
    const paths = await writeManyFiles(data, { files: 2_000, perFolder: 50 });
    const cache = join(dir, 'cache');
    const job = await writeFilesJob(dir, { paths: [data] });
    const withCache = { env: { CAIRN_CACHE_DIR: cache } };
    await init(job);
    const first = await backupFiles(job, [], withCache);
    expect(await readdir(join(cache, 'folders'))).toHaveLength(1);
    // The same repository again, backed up without the cache from here on.
    await cp(join(dir, 'repo'), join(dir, 'repo-copy'), { recursive: true });
    const copy = await writeFilesJob(dir, { paths: [data], repository: './repo-copy' }, 'copy.json');
    const noCache = { env: { CAIRN_CACHE_DIR: '' } };

    const { result: run, summary: unchanged } = await backupFilesRun(job, ['--verbose'], withCache);
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toMatch(new RegExp(`Folder cache: \\d+ folder\\(s\\) as of snapshot ${first.snapshot.slice(0, 12)}`));
    expect(unchanged.stats).toMatchObject({ bytesRead: 0, unchangedFiles: 2_000, newChunks: 0 });
    await writeFile(join(data, paths[7]!), 'changed\n');
    await writeFile(join(data, paths[1234]!, '..', 'new.txt'), 'new\n');
    await rm(join(data, paths[1999]!, '..'), { recursive: true });
    await chmod(join(data, paths[600]!), 0o600);
    const changed = await backupFiles(job, [], withCache);
    const changedCopy = await backupFiles(copy, [], noCache);
    const { durationMs: _, ...stats } = changed.stats;
    expect(changedCopy.stats).toMatchObject({ ...stats, bytesAdded: changedCopy.stats.bytesAdded });

    // What changed, as `diff` finds it in each repository, and the files as restored and verified.
    // Under `data`: the job's folder changed too since the first snapshot (the copy was made in it).
    const diff = async (file: string, older: string) =>
      parseJson(await runCli(['diff', file, older, 'latest', '--json'], { env: PASSWORD_ENV })).changes.filter((c: { path: string }) => c.path.startsWith(data));
    const changes = await diff(job, unchanged.snapshot);
    expect(changes).toEqual(await diff(copy, first.snapshot));
    expect(changes).toContainEqual(expect.objectContaining({ path: join(data, paths[7]!), change: 'M' }));
    expect(changes).toContainEqual(expect.objectContaining({ path: join(data, paths[1234]!, '..', 'new.txt'), change: '+' }));
    expect(changes).toContainEqual(expect.objectContaining({ path: join(data, paths[600]!), change: 'U' }));
    expect(changes.filter((c: { change: string }) => c.change === '-')).toHaveLength(51); // a folder of 50 files
    const kept = await readFile(join(cache, 'folders', (await readdir(join(cache, 'folders')))[0]!), 'latin1');
    expect(JSON.parse(kept.split('\n')[1]!)).toMatchObject({ job: 'files-e2e', snapshot: changed.snapshot });
    const to = join(dir, 'restored');
    expect((await runCli(['restore', job, 'latest', '--to', to, '--verify'], { env: PASSWORD_ENV })).exitCode).toBe(0);
    expect((await runCommand('diff', ['-r', data, join(to, data)])).exitCode).toBe(0);

    // A copy has the repository's id, so its backups find the original's file: written with another snapshot, it is not used.
    const copyRun = (await backupFilesRun(copy, ['--verbose'], withCache)).result;
    expect(copyRun.stderr).toContain(`Folder cache not used: it was written with snapshot ${changed.snapshot.slice(0, 12)}, and the parent is ${changedCopy.snapshot.slice(0, 12)}`);
  }, 120_000);
});

async function chownTree(path: string, user: { uid: number; gid: number }): Promise<void> {
  await chown(path, user.uid, user.gid);
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    await chown(join(entry.parentPath, entry.name), user.uid, user.gid);
  }
}

/** Appends to a file from another process until stopped (a log being written during the backup). */
function startAppending(path: string): { stop(): Promise<void> } {
  const child = spawn(process.execPath, ['-e', `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(path)}, 'a'); setInterval(() => fs.writeSync(fd, 'more\\n'), 2);`], { stdio: 'ignore' });
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}
