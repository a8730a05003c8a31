import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  MiB,
  PASSWORD_ENV,
  backup,
  expectSuccess,
  init,
  parseJson,
  randomBytesFor,
  readState,
  restore,
  runCli,
  sameBytes,
  snapshots,
  startDaemon,
  startHttpRecorder,
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
    const webhook = await startHttpRecorder(scope);
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
});
