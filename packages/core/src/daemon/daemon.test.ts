import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, onTestFinished, test, vi } from 'vitest';
import { Daemon } from './daemon.js';
import { daemonLogger } from './daemon-logger.js';
import type { CairnOutcome, CairnProcess } from './cairn-process.js';
import type { DaemonState, RunRecord } from './state.js';
import type { LoadedJob } from '../job/job-loader.js';

/*
 * The daemon's timing, on the core's Clock, with Node's timers and Date replaced by vitest's:
 * days and months pass in milliseconds. Each task's `cairn` command is replaced by a process that
 * ends after a chosen (fake) time; the real processes are tested end to end in test/daemon.test.ts.
 */

interface Started {
  args: string[];
  /** Every argument the command got. */
  argv: string[];
  at: string;
}

async function jobFile(dir: string, job: Record<string, unknown>): Promise<string> {
  const file = join(dir, `${job.name as string}.json`);
  await writeFile(file, JSON.stringify({ target: { type: 'local', path: './repo' }, ...job }));
  return file;
}

async function loadJob(file: string): Promise<LoadedJob> {
  const config = JSON.parse(await readFile(file, 'utf8'));
  return { info: { name: config.name, file, job: config }, config, baseDir: join(file, '..') };
}

/** A daemon over `jobs`, its commands each lasting `runMs` of fake time. */
async function startDaemon(jobs: Array<Record<string, unknown>>, options: { runMs?: number; state?: DaemonState; onRunFinished?: (job: string, record: RunRecord) => Promise<void> } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-daemon-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  for (const job of jobs) await jobFile(dir, job);
  const started: Started[] = [];
  let stored = options.state;
  const log: string[] = [];
  const sink = { write: (line: string) => log.push(line) } as unknown as NodeJS.WritableStream;
  const daemon = new Daemon({
    paths: [dir],
    cwd: dir,
    env: {},
    stateDir: join(dir, 'state'),
    pluginsFile: join(dir, 'plugins.json'),
    verbose: false,
    clock: { now: () => new Date() },
    logger: daemonLogger(sink, { json: true, verbose: false }),
    loadJob,
    notify: async () => undefined,
    random: () => 0.5,
    stateStore: { read: async () => stored, write: async (_dir, state) => void (stored = state) },
    startCairn: (args) => fakeProcess(args, options.runMs ?? 60_000, started),
    ...(options.onRunFinished && { onRunFinished: options.onRunFinished }),
  });
  await daemon.start();
  return { daemon, dir, started, state: () => stored!, log: () => log.map((line) => JSON.parse(line)) };
}

/** Ends with exit code 0 after `runMs`, or with 143 when told to stop, as `cairn` does. */
function fakeProcess(args: string[], runMs: number, started: Started[]): CairnProcess {
  started.push({ args: args.slice(0, 2), argv: [...args], at: new Date().toISOString() });
  let end!: (outcome: CairnOutcome) => void;
  const done = new Promise<CairnOutcome>((resolve) => (end = resolve));
  const timer = setTimeout(() => end({ exitCode: 0, signal: null, result: { snapshot: 'ab'.repeat(32), bytesRead: 10, bytesAdded: 5 } }), runMs);
  const signal = () => {
    clearTimeout(timer);
    end({ exitCode: 143, signal: null });
  };
  return { pid: 4242, done, signal };
}

const DAY = 86_400_000;

afterEach(() => {
  vi.useRealTimers();
});

describe('the daemon on a replaceable clock', () => {
  test('a daily 02:30 in Europe/Berlin runs once a day, across the night the clocks spring forward', async () => {
    vi.useFakeTimers({ now: new Date('2026-03-26T12:00:00Z') });
    const { daemon, started, state } = await startDaemon([{ name: 'laptop', schedule: { cron: '30 2 * * *', timeZone: 'Europe/Berlin' } }]);
    await vi.advanceTimersByTimeAsync(5 * DAY);
    await daemon.stop(0);
    expect(started.map((s) => s.at)).toEqual([
      '2026-03-27T01:30:00.000Z',
      '2026-03-28T01:30:00.000Z',
      // 02:30 does not exist on 29 March: the first valid time after the gap, 03:00 CEST.
      '2026-03-29T01:00:00.000Z',
      '2026-03-30T00:30:00.000Z',
      '2026-03-31T00:30:00.000Z',
    ]);
    expect(started[0]!.args).toEqual(['backup', join(state().jobs.laptop!.file)]);
    expect(state().jobs.laptop!.tasks.backup).toMatchObject({ counts: { success: 5 }, lastRun: { result: 'success', scheduledFor: '2026-03-31T00:30:00.000Z' }, nextRun: '2026-04-01T00:30:00.000Z' });
  });

  test('a monthly prune and a weekly check run beside a daily backup, one at a time on their shared repository', async () => {
    vi.useFakeTimers({ now: new Date('2026-01-15T00:00:00Z') });
    const job = { name: 'server', schedule: { cron: '0 2 * * *', timeZone: 'UTC' }, prune: { schedule: { cron: '0 2 1 * *', timeZone: 'UTC' } }, check: { schedule: { cron: '0 2 * * 0', timeZone: 'UTC' }, readDataSubset: '5%' } };
    const { daemon, started } = await startDaemon([job], { runMs: 20 * 60_000 });
    await vi.advanceTimersByTimeAsync(77 * DAY);
    await daemon.stop(0);
    const prunes = started.filter((s) => s.args[0] === 'prune').map((s) => s.at.slice(0, 10));
    expect(prunes).toEqual(['2026-02-01', '2026-03-01', '2026-04-01']);
    expect(started.filter((s) => s.args[0] === 'check')).toHaveLength(11);
    expect(started.filter((s) => s.args[0] === 'backup')).toHaveLength(77);
    // All three are due at 02:00 on 1 March (a Sunday): they ran 20 minutes apart, never together.
    expect(started.filter((s) => s.at.startsWith('2026-03-01')).map((s) => [s.args[0], s.at.slice(11, 16)])).toEqual([
      ['backup', '02:00'],
      ['prune', '02:20'],
      ['check', '02:40'],
    ]);
  });

  test('runNow (the dashboard) queues a task at once, refuses a second while it is queued or running, and runs a task the file does not schedule', async () => {
    vi.useFakeTimers({ now: new Date('2026-06-01T00:00:00Z') });
    const finished: Array<[string, RunRecord]> = [];
    const { daemon, started, state } = await startDaemon([{ name: 'laptop', schedule: { cron: '0 2 * * *', timeZone: 'UTC' } }], {
      runMs: 5 * 60_000,
      onRunFinished: async (job, record) => void finished.push([job, record]),
    });
    expect(daemon.runNow('laptop', 'backup')).toBe('accepted');
    expect(daemon.runNow('laptop', 'backup')).toBe('busy');
    expect(daemon.runNow('nobody', 'backup')).toBe('unknown-job');
    // The check has no schedule in the file: it runs on request, after the backup (same repository).
    expect(daemon.runNow('laptop', 'check', { readData: true })).toBe('accepted');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(daemon.running()).toEqual([{ job: 'laptop', task: 'backup', since: '2026-06-01T00:00:00.000Z' }]);
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(started.map((s) => [s.argv.slice(0, 3), s.at.slice(11, 16)])).toEqual([
      [['backup', state().jobs.laptop!.file, '--plugins'], '00:00'],
      [['check', state().jobs.laptop!.file, '--read-data'], '00:05'],
    ]);
    expect(finished.map(([job, record]) => [job, record.task, record.result])).toEqual([
      ['laptop', 'backup', 'success'],
      ['laptop', 'check', 'success'],
    ]);
    // The scheduled backup keeps its time; the unscheduled check leaves no task in the state.
    expect(state().jobs.laptop!.tasks).toMatchObject({ backup: { nextRun: '2026-06-01T02:00:00.000Z', lastRun: { result: 'success' } } });
    expect(state().jobs.laptop!.tasks.check).toBeUndefined();
    expect(daemon.runNow('laptop', 'check')).toBe('accepted');
    await daemon.stop(0);
  });

  test('a run still going when its next time comes is not doubled: that time is skipped, and counted', async () => {
    vi.useFakeTimers({ now: new Date('2026-06-01T00:00:00Z') });
    const { daemon, started, state, log } = await startDaemon([{ name: 'slow', schedule: { every: '10m' } }], { runMs: 25 * 60_000 });
    await vi.advanceTimersByTimeAsync(65 * 60_000);
    await daemon.stop(0);
    // Started at 00:10 (25 min: 00:20 and 00:30 skipped), 00:40 (00:50 and 01:00 skipped).
    expect(started.map((s) => s.at.slice(11, 16))).toEqual(['00:10', '00:40']);
    expect(state().jobs.slow!.tasks.backup!.counts).toMatchObject({ success: 2, skipped: 4 });
    expect(log().filter((l) => /is skipped: the previous run is still running/.test(l.msg))).toHaveLength(4);
  });

  test('a job file changed while its task runs: the run finishes, and the task goes on at the new schedule', async () => {
    vi.useFakeTimers({ now: new Date('2026-06-01T00:00:00Z') });
    const { daemon, started, state, dir } = await startDaemon([{ name: 'edited', schedule: { every: '10m' } }], { runMs: 25 * 60_000 });
    await vi.advanceTimersByTimeAsync(15 * 60_000);
    expect(started.map((s) => s.at.slice(11, 16))).toEqual(['00:10']);
    await jobFile(dir, { name: 'edited', schedule: { every: '30m' } });
    await daemon.reload();
    await vi.advanceTimersByTimeAsync(105 * 60_000);
    await daemon.stop(0);
    // every 30m from the last run's time (00:10): 00:40, 01:10, 01:40.
    expect(started.map((s) => s.at.slice(11, 16))).toEqual(['00:10', '00:40', '01:10', '01:40']);
    expect(state().jobs.edited!.tasks.backup!.schedule).toBe('every 30m');
  });

  test('runMissed: a scheduled time that passed while the daemon was down runs once at start, the latest of them', async () => {
    vi.useFakeTimers({ now: new Date('2026-05-10T12:00:00Z') });
    const previous: DaemonState = {
      version: 1,
      daemon: { pid: 1, hostname: 'gone', started: '2026-05-01T00:00:00Z', updated: '2026-05-07T00:00:00Z', stopped: '2026-05-07T00:00:00Z' },
      jobs: {
        laptop: {
          name: 'laptop',
          file: '',
          repository: '',
          knownSince: '2026-05-01T00:00:00.000Z',
          tasks: { backup: { schedule: '', counts: { success: 6 }, lastRun: { task: 'backup', result: 'success', scheduledFor: '2026-05-06T03:00:00.000Z', started: '2026-05-06T03:00:00.000Z', finished: '2026-05-06T03:05:00.000Z', durationMs: 300_000 } } },
        },
      },
      problems: [],
    };
    const { daemon, started, state } = await startDaemon([{ name: 'laptop', schedule: { cron: '0 3 * * *', timeZone: 'UTC', runMissed: true } }], { state: previous });
    await vi.advanceTimersByTimeAsync(60_000);
    await daemon.stop(0);
    expect(started.map((s) => s.at)).toEqual(['2026-05-10T12:00:00.000Z']);
    expect(state().jobs.laptop!.tasks.backup).toMatchObject({ counts: { success: 7 }, lastRun: { scheduledFor: '2026-05-10T03:00:00.000Z' }, nextRun: '2026-05-11T03:00:00.000Z' });
  });

  test('a run the previous daemon had going when it was killed is recorded as interrupted, and runMissed runs it again', async () => {
    vi.useFakeTimers({ now: new Date('2026-05-10T12:00:00Z') });
    const running = { since: '2026-05-10T03:00:00.000Z', pid: 99999, scheduledFor: '2026-05-10T03:00:00.000Z' };
    const success = { task: 'backup' as const, result: 'success' as const, scheduledFor: '2026-05-09T03:00:00.000Z', started: '2026-05-09T03:00:00.000Z', finished: '2026-05-09T03:01:00.000Z', durationMs: 60_000 };
    const previous: DaemonState = {
      version: 1,
      daemon: { pid: 99999, hostname: 'gone', started: '2026-05-01T00:00:00Z', updated: '2026-05-10T03:20:00.000Z' },
      jobs: { laptop: { name: 'laptop', file: '', repository: '', knownSince: '2026-05-01T00:00:00.000Z', tasks: { backup: { schedule: '', counts: { success: 8 }, running, lastRun: success, lastSuccess: success } } } },
      problems: [],
    };
    const { daemon, started, state } = await startDaemon([{ name: 'laptop', schedule: { cron: '0 3 * * *', timeZone: 'UTC', runMissed: true } }], { state: previous, runMs: 1000 });
    const recorded = structuredClone(state().jobs.laptop!.tasks.backup!);
    await vi.advanceTimersByTimeAsync(60_000);
    await daemon.stop(0);
    expect(recorded).toMatchObject({ counts: { success: 8, interrupted: 1 }, lastRun: { result: 'interrupted', started: running.since, finished: '2026-05-10T03:20:00.000Z', error: expect.stringContaining('result is unknown') } });
    // What runs now is the new daemon's run.
    expect(recorded.running).toMatchObject({ since: '2026-05-10T12:00:00.000Z', pid: 4242 });
    // The interrupted run covered nothing: 03:00 today is run again.
    expect(started.map((s) => s.at)).toEqual(['2026-05-10T12:00:00.000Z']);
    expect(state().jobs.laptop!.tasks.backup!.lastRun).toMatchObject({ result: 'success', scheduledFor: '2026-05-10T03:00:00.000Z' });
  });

  test('without runMissed, the missed time is not made up', async () => {
    vi.useFakeTimers({ now: new Date('2026-05-10T12:00:00Z') });
    const previous = { version: 1, daemon: { pid: 1, hostname: 'gone', started: '', updated: '' }, jobs: { laptop: { name: 'laptop', file: '', repository: '', knownSince: '2026-05-01T00:00:00.000Z', tasks: {} } }, problems: [] } as DaemonState;
    const { daemon, started } = await startDaemon([{ name: 'laptop', schedule: { cron: '0 3 * * *', timeZone: 'UTC' } }], { state: previous });
    await vi.advanceTimersByTimeAsync(60_000);
    await daemon.stop(0);
    expect(started).toEqual([]);
  });

  test('jitter delays each run by the drawn share of it', async () => {
    vi.useFakeTimers({ now: new Date('2026-06-01T00:00:00Z') });
    const { daemon, started } = await startDaemon([{ name: 'fleet', schedule: { cron: '0 * * * *', timeZone: 'UTC', jitter: '10m' } }]);
    await vi.advanceTimersByTimeAsync(3 * 60 * 60_000);
    await daemon.stop(0);
    // random() is 0.5: five minutes after each hour.
    expect(started.map((s) => s.at.slice(11, 16))).toEqual(['01:05', '02:05']);
  });
});
