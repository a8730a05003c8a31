import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import { startHttpCapture } from '@cairn/core/testing';
import {
  MiB,
  PASSWORD_ENV,
  REPO_ROOT,
  backup,
  expectSuccess,
  init,
  parseJson,
  randomBytesFor,
  readState,
  restore,
  runCli,
  runCommand,
  sameBytes,
  snapshots,
  startDaemon,
  useScope,
  useTempDir,
  waitUntil,
  writeJob,
} from './utils/index.js';

/** A plain file used as an exact volume: `size` bytes of seeded random data. */
async function writeSource(dir: string, name: string, size: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, randomBytesFor(name, size));
  return path;
}

const EVERY_TWO_SECONDS = { cron: '*/2 * * * * *' };

/** `sh -c` that appends a line to `file`, then sleeps: a hook that makes a run last. */
function marker(file: string, text: string, sleepSeconds = 0): string[] {
  return ['sh', '-c', `echo "${text}" >> "${file}"${sleepSeconds ? `; sleep ${sleepSeconds}` : ''}`];
}

describe('cairn daemon', () => {
  test('runs jobs on their schedule, one at a time per repository, skipping a time that comes while the last run still goes', async () => {
    const dir = await useTempDir();
    const scope = useScope();
    const events = join(dir, 'events');
    const source = await writeSource(dir, 'disk.img', 4 * MiB);
    const jobFor = (name: string) =>
      writeJob(dir, { name, source, extra: { schedule: EVERY_TWO_SECONDS, hooks: { before: [marker(events, `start ${name}`, 1.5)], after: [marker(events, `end ${name}`)] } } }, `${name}.json`);
    const first = await jobFor('first');
    await jobFor('second');
    await init(first);
    const stateDir = join(dir, 'state');
    const daemon = startDaemon(scope, [dir, '--state-dir', stateDir, '--metrics', '127.0.0.1:0', '--metrics-file', join(dir, 'cairn.prom')], { env: PASSWORD_ENV });

    const lines = async () => (await readFile(events, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);
    await waitUntil('each job ran twice', async () => (await lines()).filter((l) => l.startsWith('end')).length >= 4, 90_000);
    const status = parseJson(await runCli(['status', '--state-dir', stateDir, '--json']));
    expect(status.daemon.running).toBe(true);
    expect(status.jobs.map((j: any) => j.name).sort()).toEqual(['first', 'second']);
    // A second daemon on the same state folder is refused while this one runs.
    const second = await runCli(['daemon', dir, '--state-dir', stateDir], { env: PASSWORD_ENV });
    expect(second.exitCode, second.stderr).toBe(11);
    expect(second.stderr).toMatch(/already running with the state folder/);
    const metricsLine = daemon.log().find((l) => l.msg.startsWith('metrics at '))!;
    const metrics = await (await fetch(metricsLine.msg.replace('metrics at ', ''))).text();
    const result = await daemon.stop();
    expect(result.exitCode, result.stderr).toBe(0);

    // Strictly alternating start/end pairs: no two runs on the repository overlapped.
    const all = await lines();
    for (let i = 0; i < all.length; i += 2) expect([all[i]!.split(' ')[0], all[i + 1]?.split(' ')[0], all[i]!.split(' ')[1]]).toEqual(['start', 'end', all[i + 1]?.split(' ')[1]]);
    const ends = all.filter((l) => l.startsWith('end')).length;
    expect((await snapshots(first, { env: PASSWORD_ENV })).length).toBe(ends);
    expect(daemon.log().some((l) => l.level === 'warn' && /is skipped: the previous run is still (running|queued)/.test(l.msg))).toBe(true);
    const state = await readState(stateDir);
    expect(state.daemon.stopped).toBeDefined();
    for (const name of ['first', 'second']) {
      const task = state.jobs[name].tasks.backup;
      expect(task.lastRun.result).toBe('success');
      expect(task.counts.success).toBe(all.filter((l) => l === `end ${name}`).length);
      expect(task.lastSuccess.snapshot).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(metrics).toMatch(/cairn_job_last_success_timestamp_seconds\{job="first",task="backup"\} \d+/);
    expect(await readFile(join(dir, 'cairn.prom'), 'utf8')).toMatch(/cairn_job_runs_total\{job="second",task="backup",result="success"\} [1-9]/);
  }, 150_000);

  test('a failing before-hook and a missing source are reported in the state, the log and by a notification; the other job keeps running', async () => {
    const dir = await useTempDir();
    const scope = useScope();
    const webhook = await startHttpCapture();
    scope.defer('close the webhook server', () => webhook.close());
    const notify = [{ type: 'webhook', url: `${webhook.url}/hook`, on: ['failure'] }];
    const source = await writeSource(dir, 'disk.img', 2 * MiB);
    const good = await writeJob(dir, { name: 'good', source, extra: { schedule: EVERY_TWO_SECONDS } }, 'good.json');
    await writeJob(dir, { name: 'hook-fails', source, extra: { schedule: EVERY_TWO_SECONDS, notify, hooks: { before: [['false']] } } }, 'hook-fails.json');
    await writeJob(dir, { name: 'no-source', source: join(dir, 'missing.img'), extra: { schedule: EVERY_TWO_SECONDS, notify } }, 'no-source.json');
    await init(good);
    const stateDir = join(dir, 'state');
    const daemon = startDaemon(scope, [dir, '--state-dir', stateDir], { env: PASSWORD_ENV });

    const failuresOf = (job: string) => webhook.requests.map((r) => JSON.parse(r.body)).filter((body) => body.job === job && body.event === 'failure');
    await waitUntil('both failing jobs notified, and the good one saved 2 snapshots', async () => {
      const state = await readState(stateDir);
      return failuresOf('hook-fails').length > 0 && failuresOf('no-source').length > 0 && (state?.jobs.good?.tasks.backup.counts.success ?? 0) >= 2;
    }, 90_000);
    const result = await daemon.stop();
    expect(result.exitCode, result.stderr).toBe(0);

    const state = await readState(stateDir);
    expect(state.jobs['hook-fails'].tasks.backup.lastRun).toMatchObject({ result: 'failure', error: expect.stringMatching(/false/) });
    expect(state.jobs['no-source'].tasks.backup.lastRun).toMatchObject({ result: 'failure', error: expect.stringContaining('missing.img') });
    expect(state.jobs.good.tasks.backup.lastRun.result).toBe('success');
    const [hookFailure] = failuresOf('hook-fails');
    expect(hookFailure).toMatchObject({ event: 'failure', operation: 'backup', host: expect.any(String), error: { message: expect.stringMatching(/false/) } });
    expect(failuresOf('no-source')[0].error.message).toContain('missing.img');
    // Only failures were asked for.
    expect(webhook.requests.every((r) => JSON.parse(r.body).event === 'failure')).toBe(true);
    const errors = daemon.log().filter((l) => l.level === 'error');
    expect(errors.some((l) => l.job === 'hook-fails' && l.task === 'backup')).toBe(true);
    expect(errors.some((l) => l.job === 'no-source' && /missing\.img/.test(l.msg))).toBe(true);
    expect((await snapshots(good, { env: PASSWORD_ENV })).length).toBeGreaterThanOrEqual(2);
  }, 150_000);

  test('SIGTERM during a backup: the backup is told to stop after the grace period, the daemon exits 0, the repository checks clean', async () => {
    const dir = await useTempDir();
    const scope = useScope();
    const small = await writeSource(dir, 'small.img', 4 * MiB);
    const kept = await writeJob(dir, { name: 'kept', source: small }, 'kept.json');
    await init(kept);
    const earlier = await backup(kept);
    // Incompressible and compressed hard: the scheduled backup takes many seconds.
    const large = await writeSource(dir, 'large.img', 160 * MiB);
    const jobs = join(dir, 'jobs');
    await mkdir(jobs);
    await writeJob(jobs, { name: 'slow', source: large, repository: join(dir, 'repo'), compression: { type: 'zstd', level: 19 }, extra: { schedule: { cron: '* * * * * *' } } }, 'slow.json');
    const stateDir = join(dir, 'state');
    const daemon = startDaemon(scope, [jobs, '--state-dir', stateDir, '--grace', '1s'], { env: PASSWORD_ENV });
    await waitUntil('the backup is running', async () => (await readState(stateDir))?.jobs.slow?.tasks.backup.running, 60_000);
    // The child has started when the state says so, but only handles SIGTERM once its command
    // runs: its lock in the repository says it does (on a loaded machine Node's start alone can
    // outlast the grace period).
    await waitUntil('the backup holds its lock', async () => (await readdir(join(dir, 'repo', 'locks')).catch(() => [])).length > 0, 60_000);
    const result = await daemon.stop();
    expect(result.exitCode, result.stderr).toBe(0);

    const state = await readState(stateDir);
    expect(state.jobs.slow.tasks.backup.lastRun).toMatchObject({ result: 'interrupted', exitCode: 143 });
    expect(state.jobs.slow.tasks.backup.running).toBeUndefined();
    expect(daemon.log().some((l) => l.job === 'slow' && /told to stop/.test(l.msg))).toBe(true);
    // The stopped backup released its lock and saved no snapshot; the earlier one is whole.
    expect(await readdir(join(dir, 'repo', 'locks'))).toEqual([]);
    expect((await snapshots(kept)).map((s) => s.id)).toEqual([earlier.snapshot]);
    expectSuccess(await runCli(['check', kept, '--json'], { env: PASSWORD_ENV }));
    await restore(kept, earlier.snapshot, join(dir, 'restored.img'));
    expect(await sameBytes(small, join(dir, 'restored.img'))).toBe(true);
  }, 150_000);

  test('retention is applied after each scheduled backup, and prune and check run on their own schedules', async () => {
    const dir = await useTempDir();
    const scope = useScope();
    const source = join(dir, 'disk.img');
    await writeFile(source, randomBytesFor('retention/0', 2 * MiB));
    const job = await writeJob(dir, {
      name: 'kept',
      source,
      extra: {
        schedule: { cron: '* * * * * *' },
        retention: { keepLast: 2 },
        prune: { schedule: { every: '4s' }, repackThreshold: 10 },
        check: { schedule: { every: '3s' }, readDataSubset: '50%' },
      },
    });
    await init(job);
    const stateDir = join(dir, 'state');
    const daemon = startDaemon(scope, [job, '--state-dir', stateDir], { env: PASSWORD_ENV });
    let changes = 0;
    // Each backup sees a changed source, so every snapshot adds data that prune can free once forgotten.
    await waitUntil('five backups, a prune and a check', async () => {
      const tasks = (await readState(stateDir))?.jobs.kept?.tasks;
      const backups = tasks?.backup.counts.success ?? 0;
      if (backups > changes) await writeFile(source, randomBytesFor(`retention/${(changes = backups)}`, 2 * MiB));
      return backups >= 5 && tasks.prune.counts.success >= 1 && tasks.check.counts.success >= 1;
    }, 120_000);
    const result = await daemon.stop();
    expect(result.exitCode, result.stderr).toBe(0);

    const state = await readState(stateDir);
    const { backup: backups, prune, check } = state.jobs.kept.tasks;
    expect(backups.counts.failure ?? 0).toBe(0);
    expect(prune.lastRun).toMatchObject({ result: 'success', exitCode: 0 });
    expect(check.lastRun).toMatchObject({ result: 'success', exitCode: 0 });
    // keepLast 2: after every run, the snapshots of the two latest runs (as the daemon logged them).
    const saved = daemon.log().flatMap((l) => (l.task === 'backup' && /^success/.test(l.msg) ? [/snapshot ([0-9a-f]{12})/.exec(l.msg)![1]!] : []));
    expect(saved).toHaveLength(backups.counts.success);
    const kept = await snapshots(job, { env: PASSWORD_ENV });
    expect(kept.map((s) => s.id.slice(0, 12)).sort()).toEqual(saved.slice(-2).sort());
    expect(saved.at(-1)).toBe(backups.lastSuccess.snapshot.slice(0, 12));
    expectSuccess(await runCli(['check', job, '--read-data'], { env: PASSWORD_ENV }));
  }, 180_000);

  test('job files are read again on SIGHUP and when they change; an invalid version is reported and the last valid one keeps running', async () => {
    const dir = await useTempDir();
    const scope = useScope();
    const source = await writeSource(dir, 'disk.img', 2 * MiB);
    const jobs = join(dir, 'jobs');
    await mkdir(jobs);
    const job = await writeJob(jobs, { name: 'edited', source, repository: join(dir, 'repo'), extra: { schedule: EVERY_TWO_SECONDS } }, 'edited.json');
    await init(job);
    const stateDir = join(dir, 'state');
    const daemon = startDaemon(scope, [jobs, '--state-dir', stateDir], { env: PASSWORD_ENV });
    const backups = async () => (await readState(stateDir))?.jobs.edited?.tasks.backup.counts.success ?? 0;
    await waitUntil('a first backup', async () => (await backups()) >= 1);

    // An editor saves a broken version: reported, and the job keeps its schedule.
    await writeFile(job, '{ "name": "edited", ');
    await waitUntil('the broken file is reported', async () => (await readState(stateDir))?.problems.some((p: any) => p.file === job));
    const before = await backups();
    await waitUntil('a backup after the broken save', async () => (await backups()) > before);
    const problem = (await readState(stateDir)).problems[0];
    expect(problem.message).toMatch(/not valid JSON[\s\S]*previous valid version keeps running/);
    expect(daemon.log().some((l) => l.level === 'error' && l.msg.includes(job))).toBe(true);

    // A valid edit is taken when saved.
    await writeJob(jobs, { name: 'edited', source, repository: join(dir, 'repo'), extra: { schedule: { every: '1h' } } }, 'edited.json');
    await waitUntil('the new schedule is in effect', async () => (await readState(stateDir))?.jobs.edited?.tasks.backup.schedule === 'every 1h');
    expect((await readState(stateDir)).problems).toEqual([]);
    expect((await daemon.stop()).exitCode).toBe(0);
    expect(daemon.log().some((l) => /job files reloaded/.test(l.msg))).toBe(true);

    // Without watching (--no-watch, for file systems that report no changes), SIGHUP reads them.
    const unwatched = startDaemon(scope, [jobs, '--state-dir', stateDir, '--no-watch'], { env: PASSWORD_ENV });
    await waitUntil('the daemon runs', async () => unwatched.log().some((l) => l.msg.startsWith('started')));
    await writeJob(jobs, { name: 'edited', source, repository: join(dir, 'repo'), extra: { schedule: { every: '2h' } } }, 'edited.json');
    await sleep(1500);
    expect((await readState(stateDir)).jobs.edited.tasks.backup.schedule).toBe('every 1h');
    unwatched.child.kill('SIGHUP');
    await waitUntil('SIGHUP reloaded the job', async () => (await readState(stateDir))?.jobs.edited?.tasks.backup.schedule === 'every 2h');
    expect(unwatched.child.exitCode).toBeNull();
    expect((await unwatched.stop()).exitCode).toBe(0);
  }, 150_000);

  test('runMissed: a daily time that passed while the daemon was down runs once at start, on the clock the daemon is given', async () => {
    const dir = await useTempDir();
    const scope = useScope();
    const source = await writeSource(dir, 'disk.img', 2 * MiB);
    const job = await writeJob(dir, { name: 'laptop', source, extra: { schedule: { cron: '0 3 * * *', timeZone: 'UTC', runMissed: true } } });
    await init(job);
    const stateDir = join(dir, 'state');
    const clock = ['--import', join(REPO_ROOT, 'test/fixtures/clock/register.mjs')];
    const at = (iso: string) => ({ ...PASSWORD_ENV, CAIRN_E2E_CLOCK_AT: String(Date.parse(iso)) });

    // Monday noon: the daemon learns the job; 03:00 has passed, but before it knew the job.
    const first = startDaemon(scope, [job, '--state-dir', stateDir], { env: at('2026-06-01T12:00:00Z'), nodeArgs: clock });
    await waitUntil('the first daemon wrote its state', async () => (await readState(stateDir))?.jobs.laptop);
    expect((await first.stop()).exitCode).toBe(0);
    expect(await snapshots(job)).toEqual([]);
    expect((await readState(stateDir)).jobs.laptop.tasks.backup.nextRun).toBe('2026-06-02T03:00:00.000Z');

    // Thursday noon: Tuesday's, Wednesday's and Thursday's 03:00 were missed; the latest runs, once.
    const second = startDaemon(scope, [job, '--state-dir', stateDir], { env: at('2026-06-04T12:00:00Z'), nodeArgs: clock });
    await waitUntil('the missed run finished', async () => (await readState(stateDir))?.jobs.laptop.tasks.backup.lastRun, 60_000);
    expect((await second.stop()).exitCode).toBe(0);
    const { lastRun, nextRun } = (await readState(stateDir)).jobs.laptop.tasks.backup;
    expect(lastRun).toMatchObject({ result: 'success', scheduledFor: '2026-06-04T03:00:00.000Z' });
    expect(nextRun).toBe('2026-06-05T03:00:00.000Z');
    expect((await snapshots(job)).map((s) => s.time)).toEqual(['2026-06-04T12:00:00.000Z']);
    expect(second.log().some((l) => /was missed while the daemon was down/.test(l.msg))).toBe(true);
  }, 120_000);

  test('--install-systemd writes a unit that runs this installation on the folder given, and systemd-analyze accepts it', async () => {
    const dir = await useTempDir();
    const units = join(dir, 'units');
    const result = await runCli(['daemon', '--install-systemd', join(dir, 'jobs'), '--systemd-unit-dir', units, '--json']);
    expectSuccess(result);
    const installed = parseJson(result);
    expect(installed.unitPath).toBe(join(units, 'cairn.service'));
    const unit = await readFile(installed.unitPath, 'utf8');
    expect(unit).toContain(`ExecStart=${process.execPath} ${join(REPO_ROOT, 'packages/core/bin/cairn.js')} daemon ${join(dir, 'jobs')}`);
    expect(unit).toMatch(/^KillMode=mixed$/m);
    expect((await stat(join(dir, 'jobs'))).mode & 0o777).toBe(0o700);
    // systemd is not PID 1 here: the two commands to run are printed instead.
    expect(installed).toMatchObject({ enabled: false, steps: ['systemctl daemon-reload', 'systemctl enable --now cairn.service'] });
    const verify = await runCommand('systemd-analyze', ['verify', installed.unitPath], { env: { ...process.env, SYSTEMD_LOG_TARGET: 'console' } });
    expect(verify.stdout + verify.stderr).toBe('');
  });
});
