import { copyFile, mkdir, readdir, readFile, realpath } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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
  parseJson,
  runCli,
  snapshots,
  startCli,
  tempDir,
  useSuiteScope,
  writeJob,
  type BackupSummary,
  type CliOptions,
  type CliResult,
} from './utils/index.js';

/*
 * The job file's `hooks`: `before` commands run in order before the backup and the first
 * failure aborts it; `after` commands run afterwards whatever happened, exactly once, in
 * order, in the job file's folder; then `onSuccess` or `onError`, with the run's facts in
 * CAIRN_* variables. A command that runs past its timeout is stopped with every process it
 * started. Each command appends a line to hooks.log, so the log shows which commands ran,
 * how often and in which order.
 */

/** A command that appends `line` to hooks.log in its working folder. */
const note = (line: string) => ['sh', '-c', `echo ${line} >> hooks.log`];
/** A command that fails (exit 1); its argv has no spaces, so a message naming it is easy to recognise. */
const failing = ['test', '-e', 'no-such-file'];
/** A command that writes the CAIRN_* variables it sees to env-<phase> and notes its phase in hooks.log. */
const recordFacts = ['sh', '-c', 'env | grep ^CAIRN_ | sort > "env-$CAIRN_HOOK"; echo "$CAIRN_HOOK" >> hooks.log'];
/** Every phase records what it saw. */
const recordEveryPhase = { before: [recordFacts], after: [recordFacts], onSuccess: [recordFacts], onError: [recordFacts] };

/** Whether a process is still running (a zombie waiting for init to reap it is not). */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat !== undefined && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
}

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
  async function hookedJob(hooks: Record<string, unknown>, source = '../disk.img', repositoryPath = '../repo'): Promise<{ job: string; folder: string }> {
    const folder = join(await realpath(dir), `job-${++folders}`);
    await mkdir(folder);
    const job = await writeJob(folder, { source, repository: repositoryPath, extra: { hooks } });
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

  const backupIn = (job: string, args: string[] = [], options: CliOptions = {}) => runCli(['backup', job, ...args], { ...options, env: { ...PASSWORD_ENV, ...options.env }, cwd: elsewhere });

  /** The CAIRN_* variables a phase's command saw (recorded by `recordFacts`), without the password. */
  async function factsOf(folder: string, phase: string): Promise<Record<string, string>> {
    const lines = (await readFile(join(folder, `env-${phase}`), 'utf8')).split('\n').filter(Boolean);
    const facts = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
    delete facts.CAIRN_PASSWORD;
    return facts;
  }

  /** The last line of stderr of a `--json` run that failed: `{ error: { code, message } }`. */
  const jsonError = (result: CliResult) => JSON.parse(result.stderr.trim().split('\n').at(-1)!).error as { code: string; message: string };

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
  test('onSuccess sees the snapshot the backup printed (id, time, bytes added and read); every command sees the job; the order is before, after, onSuccess', async () => {
    const { job, folder } = await hookedJob(recordEveryPhase);
    // Variables of another run in cairn's own environment never reach a command.
    const result = await backupIn(job, ['--json'], { env: { CAIRN_SNAPSHOT: 'stale', CAIRN_ERROR: 'stale', CAIRN_RESULT: 'stale' } });
    expectSuccess(result);
    const summary = parseJson<BackupSummary>(result);

    expect(await hookLog(folder)).toEqual(['before', 'after', 'onSuccess']);
    const job_ = { CAIRN_JOB: 'e2e', CAIRN_JOB_FILE: job, CAIRN_OPERATION: 'backup', CAIRN_HOST: hostname() };
    expect(await factsOf(folder, 'before')).toEqual({ ...job_, CAIRN_HOOK: 'before' });
    const { CAIRN_DURATION_MS: duration, ...onSuccess } = await factsOf(folder, 'onSuccess');
    expect(onSuccess).toEqual({
      ...job_,
      CAIRN_HOOK: 'onSuccess',
      CAIRN_RESULT: 'success',
      CAIRN_SNAPSHOT: summary.snapshot,
      CAIRN_SNAPSHOT_TIME: summary.time,
      CAIRN_BYTES_ADDED: String(summary.bytesAdded),
      CAIRN_BYTES_READ: String(summary.bytesRead),
    });
    // The run's duration holds the pipeline's.
    expect(Number(duration)).toBeGreaterThanOrEqual(summary.durationMs);
    expect(await factsOf(folder, 'after')).toEqual({ ...onSuccess, CAIRN_HOOK: 'after', CAIRN_DURATION_MS: duration });
    expect((await snapshots(job)).at(-1)!.id).toBe(summary.snapshot);
  });

  test.each([
    { what: 'its source does not exist', source: './missing.img', repositoryPath: '../repo', exitCode: 1 },
    { what: 'there is no repository', source: '../disk.img', repositoryPath: '../no-repo', exitCode: 10 },
  ])('onError after a failed backup ($what) sees the error the command printed and its exit code', async ({ source, repositoryPath, exitCode }) => {
    const { job, folder } = await hookedJob(recordEveryPhase, source, repositoryPath);
    const result = await backupIn(job, ['--json']);
    expect(result.exitCode, result.stderr).toBe(exitCode);
    expect(result.stdout).toBe('');

    expect(await hookLog(folder)).toEqual(['before', 'after', 'onError']);
    const { CAIRN_DURATION_MS: duration, ...onError } = await factsOf(folder, 'onError');
    expect(onError).toEqual({
      CAIRN_JOB: 'e2e',
      CAIRN_JOB_FILE: job,
      CAIRN_OPERATION: 'backup',
      CAIRN_HOST: hostname(),
      CAIRN_HOOK: 'onError',
      CAIRN_RESULT: 'failure',
      CAIRN_ERROR: jsonError(result).message,
      CAIRN_EXIT_CODE: String(exitCode),
    });
    expect(Number(duration)).toBeGreaterThanOrEqual(0);
    expect(await factsOf(folder, 'after')).toEqual({ ...onError, CAIRN_HOOK: 'after', CAIRN_DURATION_MS: duration });
  });

  test('a failing before command: the backup is skipped, after runs, then onError with the error naming the command; onSuccess does not run', async () => {
    const { job, folder } = await hookedJob({ before: [recordFacts, failing, note('never')], after: [recordFacts], onSuccess: [recordFacts], onError: [recordFacts] });
    const before = await repositoryState();
    const result = await backupIn(job, ['--json']);
    expect(result.exitCode).toBe(1);
    const error = jsonError(result);
    expect(error.code).toBe('CAIRN_HOOK_TAP');
    expect(error.message).toContain(`The before command \`${failing.join(' ')}\` failed (exit code 1)`);

    expect(await hookLog(folder)).toEqual(['before', 'after', 'onError']);
    const onError = await factsOf(folder, 'onError');
    expect(onError).toMatchObject({ CAIRN_RESULT: 'failure', CAIRN_ERROR: error.message, CAIRN_EXIT_CODE: '1' });
    expect(onError).not.toHaveProperty('CAIRN_SNAPSHOT');
    expect(await repositoryState()).toEqual(before);
  });

  test('a before command that runs past its timeout is stopped with the processes it started, and the backup is skipped with an error saying so', async () => {
    const { job, folder } = await hookedJob({
      before: [{ command: ['sh', '-c', 'sleep 60 & echo $$ $! > pids; wait'], timeout: '1s' }],
      after: [note('after')],
      onError: [recordFacts],
    });
    const before = await repositoryState();
    // Well under the sleep's 60 s: a command that was not stopped fails the test.
    const result = await backupIn(job, [], { timeoutMs: 40_000 });
    expectCleanFailure(result, 1, /The before command `sh -c sleep 60 & echo \$\$ \$! > pids; wait` timed out after 1s and was stopped/);

    const [shell, sleeper] = (await readFile(join(folder, 'pids'), 'utf8')).trim().split(' ').map(Number);
    expect(await running(shell!)).toBe(false);
    expect(await running(sleeper!)).toBe(false);
    expect(await hookLog(folder)).toEqual(['after', 'onError']);
    expect((await factsOf(folder, 'onError')).CAIRN_ERROR).toMatch(/timed out after 1s/);
    expect(await repositoryState()).toEqual(before);
  });

  test('hooks.timeout applies to every command without its own; an after command past it fails the run after the snapshot was saved, and onError sees that snapshot', async () => {
    const { job, folder } = await hookedJob({
      timeout: '1s',
      // Its own timeout, longer than hooks.timeout: it finishes.
      before: [{ command: ['sh', '-c', 'sleep 2; echo slow-before >> hooks.log'], timeout: '1m' }],
      after: [['sh', '-c', 'sleep 60 & echo $$ $! > pids; wait']],
      onSuccess: [recordFacts],
      onError: [recordFacts],
    });
    const before = await repositoryState();
    const result = await backupIn(job, ['--json'], { timeoutMs: 40_000 });
    expectCleanFailure(result, 1, /JobCommands \(snapshotSaved\): The after command `sh -c sleep 60 .*` timed out after 1s/);
    // The snapshot stands, and the result was printed.
    const summary = parseJson<BackupSummary>(result);
    expect((await repositoryState()).snapshots).toHaveLength(before.snapshots.length + 1);
    expect((await snapshots(job)).at(-1)!.id).toBe(summary.snapshot);

    const [shell, sleeper] = (await readFile(join(folder, 'pids'), 'utf8')).trim().split(' ').map(Number);
    expect(await running(shell!)).toBe(false);
    expect(await running(sleeper!)).toBe(false);
    expect(await hookLog(folder)).toEqual(['slow-before', 'onError']);
    const onError = await factsOf(folder, 'onError');
    expect(onError).toMatchObject({ CAIRN_RESULT: 'failure', CAIRN_SNAPSHOT: summary.snapshot, CAIRN_EXIT_CODE: '1' });
    expect(onError.CAIRN_ERROR).toMatch(/^JobCommands \(snapshotSaved\): The after command .* timed out after 1s/);
  });

  test('argv arrays and commands with a timeout mix in one list; a failing onSuccess command exits 1 after the others ran, the snapshot stays and onError does not run', async () => {
    const { job, folder } = await hookedJob({
      before: [note('before-1'), { command: note('before-2') }, { command: note('before-3'), timeout: '30s' }],
      onSuccess: [failing, note('onSuccess-2')],
      onError: [note('onError')],
    });
    const before = await repositoryState();
    const result = await backupIn(job);
    expectCleanFailure(result, 1, /onSuccess/, new RegExp(escapeRegExp(failing.join(' '))));
    expect(result.stdout).toMatch(/^Snapshot [0-9a-f]{12} saved/);
    expect((await repositoryState()).snapshots).toHaveLength(before.snapshots.length + 1);
    expect(await hookLog(folder)).toEqual(['before-1', 'before-2', 'before-3', 'onSuccess-2']);
  });

  test('a backup stopped by SIGTERM while a before command runs still runs the after commands, once, before it exits (143)', async () => {
    const { job, folder } = await hookedJob({ before: [['sh', '-c', 'echo before >> hooks.log; sleep 30 & echo $! > sleep.pid; wait']], after: [recordFacts], onError: [note('onError')] });
    const cli = startCli(['backup', job], { env: PASSWORD_ENV, cwd: elsewhere, timeoutMs: 40_000 });
    while (!(await readFile(join(folder, 'sleep.pid'), 'utf8').catch(() => '')).trim()) await sleep(50);
    cli.child.kill('SIGTERM');
    const result = await cli.result;
    expectCleanFailure(result, 143, /Stopped by SIGTERM/);
    // onError runs only when the abandoned run happens to end before the process does.
    expect((await hookLog(folder)).filter((line) => line !== 'onError')).toEqual(['before', 'after']);
    expect(await factsOf(folder, 'after')).toMatchObject({ CAIRN_RESULT: 'failure', CAIRN_EXIT_CODE: '143', CAIRN_ERROR: expect.stringMatching(/^Stopped by SIGTERM/) });
    // The before command's group got the signal too.
    expect(await running(Number(await readFile(join(folder, 'sleep.pid'), 'utf8')))).toBe(false);
  });

  test.each([
    { hooks: { before: ['echo hello'] }, problem: /\/hooks\/before\/0: must be a command/ },
    { hooks: { after: [{ command: ['true'], timeout: '5 minutes' }] }, problem: /\/hooks\/after\/0\/timeout: must be a duration/ },
    { hooks: { timeout: '0s' }, problem: /\/hooks\/timeout: a timeout must be more than 0/ },
    { hooks: { onError: [{ command: ['true'], timeout: '30d' }] }, problem: /\/hooks\/onError\/0\/timeout: a timeout must be more than 0 and at most 24d/ },
    { hooks: { onFailure: [['true']] }, problem: /\/hooks: must NOT have additional property "onFailure"/ },
  ])('a job file with bad hooks ($problem) is refused before anything runs (exit 2)', async ({ hooks, problem }) => {
    const { job } = await hookedJob(hooks);
    const before = await repositoryState();
    expectCleanFailure(await backupIn(job), 2, problem);
    expect(await repositoryState()).toEqual(before);
  });
});
