import { copyFile, mkdir, readdir, readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  escapeRegExp,
  expectCleanFailure,
  expectSuccess,
  init,
  listPacks,
  makeVolume,
  runCli,
  snapshots,
  tempDir,
  useSuiteScope,
  writeJob,
  type BackupSummary,
} from './utils/index.js';

/*
 * The job file's `hooks`: `before` commands run in order before the backup and the first
 * failure aborts it; `after` commands run afterwards whatever happened, exactly once, in
 * order, in the job file's folder. Each command appends a line to hooks.log, so the log
 * shows which commands ran, how often and in which order.
 */

/** A command that appends `line` to hooks.log in its working folder. */
const note = (line: string) => ['sh', '-c', `echo ${line} >> hooks.log`];
/** A command that fails (exit 1); its argv has no spaces, so a message naming it is easy to recognise. */
const failing = ['test', '-e', 'no-such-file'];

describe('job hooks', () => {
  const scope = useSuiteScope();
  let dir: string;
  let repository: string;
  /** An empty folder the CLI runs in: the hooks must not run here. */
  let elsewhere: string;
  let first: BackupSummary;
  let folders = 0;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-hooks-');
    repository = join(dir, 'repo');
    elsewhere = join(dir, 'elsewhere');
    await mkdir(elsewhere);
    await makeVolume(dir, 'disk', 16 * MiB, { seed: 61, randomBytes: 1 * MiB, textBytes: 512 * 1024 });
    const plain = await writeJob(dir, { source: './disk.img' });
    await init(plain);
    first = await backup(plain);
  });

  /** A job file with `hooks` in a folder of its own, backing up ../disk.img into ../repo. */
  async function hookedJob(hooks: { before?: string[][]; after?: string[][] }, source = '../disk.img'): Promise<{ job: string; folder: string }> {
    const folder = join(await realpath(dir), `job-${++folders}`);
    await mkdir(folder);
    const job = await writeJob(folder, { source, repository: '../repo', extra: { hooks } });
    return { job, folder };
  }

  async function hookLog(folder: string): Promise<string[]> {
    return (await readFile(join(folder, 'hooks.log'), 'utf8')).split('\n').filter(Boolean);
  }

  async function repositoryState(): Promise<{ snapshots: string[]; packs: string[]; indexes: string[] }> {
    return {
      snapshots: (await readdir(join(repository, 'snapshots'))).sort(),
      packs: await listPacks(repository),
      indexes: (await readdir(join(repository, 'index'))).sort(),
    };
  }

  const backupIn = (job: string) => runCli(['backup', job], { env: PASSWORD_ENV, cwd: elsewhere });

  test('a failing before command aborts the backup: nothing is stored, later before commands are skipped, the after commands run', async () => {
    const { job, folder } = await hookedJob({
      before: [note('before-1'), failing, note('before-3')],
      after: [note('after-1'), note('after-2')],
    });
    const before = await repositoryState();

    const result = await backupIn(job);
    expectCleanFailure(result, 1, /before/, new RegExp(escapeRegExp(failing.join(' '))), /fail/);
    expect(result.stdout).toBe('');
    expect(await hookLog(folder)).toEqual(['before-1', 'after-1', 'after-2']);
    // No snapshot, no pack, no index: the backup never started.
    expect(await repositoryState()).toEqual(before);
    expect((await snapshots(job)).map((s) => s.id)).toEqual([first.snapshot]);
    expect(await readdir(elsewhere)).toEqual([]);
  });

  test('after a successful backup the after commands run once each, in order, in the job file\'s folder, once the snapshot is saved', async () => {
    const { job, folder } = await hookedJob({
      before: [note('before')],
      after: [['sh', '-c', 'echo "after-1 $(pwd)" >> hooks.log'], ['sh', '-c', 'echo "after-2 $(ls ../repo/snapshots | wc -l)" >> hooks.log']],
    });
    const result = await backupIn(job);
    expectSuccess(result);
    const snapshotCount = (await readdir(join(repository, 'snapshots'))).length;
    expect(await hookLog(folder)).toEqual(['before', `after-1 ${folder}`, `after-2 ${snapshotCount}`]);
    const saved = /^Snapshot ([0-9a-f]{12}) saved/.exec(result.stdout)?.[1];
    expect((await snapshots(job)).at(-1)!.id.slice(0, 12)).toBe(saved);
    expect(await readdir(elsewhere)).toEqual([]);
  });

  test('after a failed backup (its source disappeared) the after commands run once each, in order', async () => {
    const { job, folder } = await hookedJob(
      {
        before: [note('before'), ['rm', 'vanishing.img']],
        after: [note('after-1'), note('after-2')],
      },
      './vanishing.img',
    );
    await copyFile(join(dir, 'disk.img'), join(folder, 'vanishing.img'));
    const before = await repositoryState();

    const result = await backupIn(job);
    expectCleanFailure(result, 1, new RegExp(escapeRegExp(join(folder, 'vanishing.img'))), /does not exist/);
    expect(await hookLog(folder)).toEqual(['before', 'after-1', 'after-2']);
    expect(await repositoryState()).toEqual(before);
  });

  test('an after command that fails after a successful backup runs exactly once; the snapshot stays and the failure is reported', async () => {
    const { job, folder } = await hookedJob({ after: [note('after-1'), failing, note('after-3')] });
    const before = await repositoryState();

    const result = await backupIn(job);
    // The snapshot was saved before the after commands ran: it is kept…
    const after = await repositoryState();
    expect(after.snapshots).toHaveLength(before.snapshots.length + 1);
    // …every after command ran once, the later ones too (they may undo what the before commands did)…
    expect(await hookLog(folder)).toEqual(['after-1', 'after-3']);
    // …and the run says what failed.
    expectCleanFailure(result, 1, /after/, new RegExp(escapeRegExp(failing.join(' '))), /fail/);
  });

  test('an after command that fails after a failed backup runs exactly once, and the backup\'s own error is the one reported', async () => {
    const { job, folder } = await hookedJob({ before: [failing], after: [note('after-1'), ['sh', '-c', 'echo after-2 >> hooks.log; exit 4']] });
    const result = await backupIn(job);
    expectCleanFailure(result, 1, /before/, new RegExp(escapeRegExp(failing.join(' '))));
    expect(await hookLog(folder)).toEqual(['after-1', 'after-2']);
  });
});
