import { access, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  describeWithLoopDevices,
  expectCleanFailure,
  expectSuccess,
  init,
  makeVolume,
  mountFaultyImage,
  parseJson,
  run,
  runCli,
  snapshots,
  tempDir,
  useScope,
  useSuiteScope,
  writeJob,
  type BackupSummary,
} from './utils/index.js';

/*
 * `backup --forget`: after each saved snapshot the job's `retention` is applied, as
 * `cairn forget <job>` applies it, by a tap on the run's `snapshotSaved`. Backups at chosen
 * times (`--time`), and after each one the kept set is the one worked out by hand.
 */

/** The policy of the schedule below: the two newest, and the newest of each of the last three days that have snapshots. */
const RETENTION = { keepLast: 2, keepDaily: 3, timeZone: 'UTC' };

/**
 * Seven backups over four days (UTC). After each, with what earlier runs left:
 *   #  time         kept after it (by rule)                          removed
 *   0  1 Mar 10:00  0                                                -
 *   1  1 Mar 18:00  1 (last, day 1), 0 (last)                        -
 *   2  2 Mar 09:00  2 (last, day 2), 1 (last, day 1)                 0
 *   3  2 Mar 21:00  3 (last, day 2), 2 (last), 1 (day 1)             -
 *   4  3 Mar 12:00  4 (last, day 3), 3 (last, day 2), 1 (day 1)      2
 *   5  4 Mar 08:00  5 (last, day 4), 4 (last, day 3), 3 (day 2)      1
 *   6  4 Mar 20:00  6 (last, day 4), 5 (last), 4 (day 3), 3 (day 2)  -
 */
const SCHEDULE: Array<{ time: string; kept: number[]; removed: number[] }> = [
  { time: '2026-03-01T10:00:00Z', kept: [0], removed: [] },
  { time: '2026-03-01T18:00:00Z', kept: [1, 0], removed: [] },
  { time: '2026-03-02T09:00:00Z', kept: [2, 1], removed: [0] },
  { time: '2026-03-02T21:00:00Z', kept: [3, 2, 1], removed: [] },
  { time: '2026-03-03T12:00:00Z', kept: [4, 3, 1], removed: [2] },
  { time: '2026-03-04T08:00:00Z', kept: [5, 4, 3], removed: [1] },
  { time: '2026-03-04T20:00:00Z', kept: [6, 5, 4, 3], removed: [] },
];

const exists = (path: string) => access(path).then(
  () => true,
  () => false,
);

interface ForgetSummary {
  removed: string[];
  kept: number;
}

describe('retention after a backup (backup --forget)', () => {
  const scope = useSuiteScope();
  let dir: string;
  let image: string;
  let runs = 0;

  beforeAll(async () => {
    dir = await tempDir(scope, 'cairn-retention-tap-');
    ({ image } = await makeVolume(dir, 'disk', 8 * MiB, { seed: 83, randomBytes: 1 * MiB, textBytes: 256 * 1024 }));
  });

  /** A job in a folder of its own, with a repository of its own. */
  async function freshJob(extra: Record<string, unknown>, name = 'kept'): Promise<{ job: string; folder: string }> {
    const folder = join(dir, `run-${++runs}`);
    await mkdir(folder);
    const job = await writeJob(folder, { name, source: image, extra });
    await init(job);
    return { job, folder };
  }

  const cairn = (args: string[]) => runCli(args, { env: PASSWORD_ENV });
  /** The job's snapshots, newest first, as ids. */
  const keptIds = async (job: string) => (await snapshots(job)).filter((s) => s.job !== 'other').map((s) => s.id).reverse();

  test('after each backup the kept set matches the policy; other jobs in the repository are left alone; the result is what `forget` would leave', async () => {
    const { job, folder } = await freshJob({ retention: RETENTION });
    // Another job backing up into the same repository, long before: its snapshot is not this job's to forget.
    const other = await writeJob(folder, { name: 'other', source: image }, 'other.json');
    const otherSnapshot = parseJson<BackupSummary>(await cairn(['backup', other, '--time', '2025-01-01T00:00:00Z', '--json'])).snapshot;

    const ids: string[] = [];
    for (const [i, step] of SCHEDULE.entries()) {
      const result = await cairn(['backup', job, '--forget', '--time', step.time, '--json']);
      expectSuccess(result);
      const summary = parseJson<BackupSummary & { forget: ForgetSummary }>(result);
      ids.push(summary.snapshot);
      expect(summary.forget, `after backup ${i}`).toEqual({ removed: step.removed.map((n) => ids[n]), kept: step.kept.length });
      expect(await keptIds(job), `kept after backup ${i}`).toEqual(step.kept.map((n) => ids[n]));
    }
    expect((await snapshots(other)).some((s) => s.id === otherSnapshot)).toBe(true);

    // `forget` with the same policy finds nothing more to remove.
    const forget = parseJson(await cairn(['forget', job, '--dry-run', '--json']));
    const group = forget.groups.find((g: { key: { job: string } }) => g.key.job === 'kept');
    expect(group.remove).toEqual([]);
    expect(group.keep.map((k: { id: string }) => k.id)).toEqual(SCHEDULE.at(-1)!.kept.map((n) => ids[n]));
  });

  test('the text output says what retention kept and removed', async () => {
    const { job } = await freshJob({ retention: { keepLast: 1 } });
    const first = parseJson<BackupSummary>(await cairn(['backup', job, '--forget', '--json'])).snapshot;
    const result = await cairn(['backup', job, '--forget']);
    expectSuccess(result);
    expect(result.stdout).toMatch(new RegExp(`^Retention: kept 1 snapshot\\(s\\), removed 1: ${first.slice(0, 12)}$`, 'm'));
  });

  test('without --forget a backup leaves every snapshot, and its --json has no forget member', async () => {
    const { job } = await freshJob({ retention: { keepLast: 1 } });
    for (const time of ['2026-03-01T10:00:00Z', '2026-03-02T10:00:00Z']) {
      const summary = parseJson(await cairn(['backup', job, '--time', time, '--json']));
      expect(summary).not.toHaveProperty('forget');
    }
    expect(await snapshots(job)).toHaveLength(2);
  });

  test.each([
    { what: 'no retention', extra: {}, says: /has none/ },
    { what: 'a retention that keeps nothing', extra: { retention: { keepLast: 0, timeZone: 'UTC' } }, says: /has no rule that keeps anything/ },
  ])('--forget on a job with $what is a usage error (exit 2) before anything runs', async ({ extra, says }) => {
    const { job, folder } = await freshJob({ ...extra, hooks: { before: [['sh', '-c', 'echo before >> hooks.log']] } });
    const result = await cairn(['backup', job, '--forget']);
    expectCleanFailure(result, 2, /--forget applies the job's "retention"/, says);
    expect(result.stdout).toBe('');
    expect(await snapshots(job)).toEqual([]);
    expect(await readdir(folder)).not.toContain('hooks.log');
  });

  test('when forgetting fails the new snapshot stands: the error is logged with the tap\'s name, onError sees it, the command exits 1; the next run catches up', async () => {
    const { job, folder } = await freshJob({ retention: { keepLast: 1 }, hooks: { onError: [['sh', '-c', 'echo "$CAIRN_ERROR" > error.txt']] } });
    const first = parseJson<BackupSummary>(await cairn(['backup', job, '--forget', '--time', '2026-03-01T10:00:00Z', '--json'])).snapshot;
    // An immutable file cannot be removed, not even by root: forget fails on it.
    const pinned = join(folder, 'repo', 'snapshots', first);
    await run('chattr', ['+i', pinned]);
    // Undone even when the test fails halfway, so that the folder can be removed; the last run removes the file.
    useScope().defer(`chattr -i ${pinned}`, async () => {
      if (await exists(pinned)) await run('chattr', ['-i', pinned]);
    });

    const result = await cairn(['backup', job, '--forget', '--time', '2026-03-02T10:00:00Z', '--json']);
    expectCleanFailure(result, 1, /^cairn: error: Retention \(snapshotSaved\): /m);
    const summary = parseJson(result);
    expect(summary).not.toHaveProperty('forget');
    expect(await keptIds(job)).toEqual([summary.snapshot, first]);
    expect(await readFile(join(folder, 'error.txt'), 'utf8')).toMatch(/^Retention \(snapshotSaved\): /);

    await run('chattr', ['-i', pinned]);
    const next = parseJson<BackupSummary & { forget: ForgetSummary }>(await cairn(['backup', job, '--forget', '--time', '2026-03-03T10:00:00Z', '--json']));
    expect(next.forget).toEqual({ removed: [first, summary.snapshot], kept: 1 });
    expect(await keptIds(job)).toEqual([next.snapshot]);
  });
});

describeWithLoopDevices('retention after an incomplete snapshot (backup --rescue --forget)', () => {
  test('an incomplete snapshot does not push complete ones out: retention is skipped with a warning (exit 3); onSuccess sees CAIRN_RESULT=warning', async () => {
    const scope = useScope();
    const dir = await tempDir(scope, 'cairn-retention-rescue-');
    const { image } = await makeVolume(dir, 'disk', 8 * MiB, { seed: 84, randomBytes: 2 * MiB, textBytes: 256 * 1024 });
    const retention = { keepLast: 1 };
    // The same job (same name, same repository) once from the intact image, once from the image served with a bad page.
    const intact = await writeJob(dir, { source: image, extra: { retention } }, 'intact.json');
    await init(intact);
    const complete = parseJson<BackupSummary>(await runCli(['backup', intact, '--forget', '--json'], { env: PASSWORD_ENV })).snapshot;
    const source = await mountFaultyImage(scope, image, join(dir, 'mnt'), { bad: [{ offset: 1 * MiB, length: 4096 }] });
    const hooks = { onSuccess: [['sh', '-c', 'echo "$CAIRN_RESULT $CAIRN_SNAPSHOT" >> results.log']] };
    const faulty = await writeJob(dir, { source, extra: { retention, hooks } }, 'faulty.json');

    const result = await runCli(['backup', faulty, '--rescue', '--forget', '--json'], { env: PASSWORD_ENV });
    expect(result.exitCode, result.stderr).toBe(3);
    const summary = parseJson(result);
    expect(summary.unreadable).toHaveLength(1);
    expect(summary).not.toHaveProperty('forget');
    expect(result.stderr).toMatch(new RegExp(`^cairn: warning: Retention not applied: snapshot ${summary.snapshot.slice(0, 12)} is incomplete`, 'm'));
    expect((await snapshots(intact)).map((s) => s.id).sort()).toEqual([complete, summary.snapshot].sort());
    expect(await readFile(join(dir, 'results.log'), 'utf8')).toBe(`warning ${summary.snapshot}\n`);
  });
});
