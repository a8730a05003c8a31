import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { DaemonStateNotFoundError, ExitCode, UsageError } from '../../errors.js';
import { Clock, Environment } from '../../services.js';
import { daemonIsRunning, readDaemonState } from '../../daemon/state-file.js';
import { STATE_FILE, defaultStateDir, type DaemonProblem, type DaemonState, type JobState, type RunRecord, type TaskKind, type TaskState } from '../../daemon/state.js';
import { defineCommand } from '../command.js';
import { formatBytes } from '../format.js';

/** What `cairn status --json` prints. */
export interface StatusView {
  daemon: { running: boolean } & DaemonState['daemon'];
  stateDir: string;
  jobs: JobState[];
  problems: DaemonProblem[];
}

export const statusCommand = defineCommand({
  command: 'status [job]',
  describe: 'Show what the daemon did and will do: per job and task the last run, last success, next run; also while it runs',
  builder: (yargs) =>
    yargs
      .positional('job', { type: 'string', describe: 'Only this job (its name)' })
      .option('state-dir', { type: 'string', describe: 'The daemon\'s state folder (default: $CAIRN_STATE_DIR, else /var/lib/cairn for root, else $XDG_STATE_HOME/cairn)' }),
  async run(args, { core, output }) {
    const { env, cwd } = core.get<Environment>(Environment);
    const stateDir = args.stateDir ? resolve(cwd, args.stateDir) : defaultStateDir(env);
    const state = await readDaemonState(stateDir);
    if (!state) throw new DaemonStateNotFoundError(`No daemon has kept state in ${stateDir} (no ${STATE_FILE} there): start one with cairn daemon, or name its folder with --state-dir`);
    const view = statusView(state, stateDir, args.job);
    output.result(view, () => formatStatus(view, core.get<Clock>(Clock).now()));
    return ExitCode.ok;
  },
});

/** The state as `status` shows it; `jobName` keeps that job only (a usage error when the state does not know it). */
export function statusView(state: DaemonState, stateDir: string, jobName?: string, running = daemonIsRunning(state)): StatusView {
  const jobs = Object.values(state.jobs);
  if (jobName !== undefined && !state.jobs[jobName]) {
    const known = jobs.map((job) => job.name).join(', ') || 'none';
    throw new UsageError(`The daemon's state in ${stateDir} has no job named "${jobName}" (jobs: ${known})`);
  }
  return {
    daemon: { running, ...state.daemon },
    stateDir,
    jobs: jobName === undefined ? jobs : [state.jobs[jobName]!],
    problems: state.problems,
  };
}

/** `status` for a person: the daemon, then each job and task, then the job files that did not load. */
export function formatStatus(view: StatusView, now: Date, thisHost = hostname()): string {
  const lines = [formatDaemon(view.daemon, now, thisHost), `State: ${join(view.stateDir, STATE_FILE)}`];
  if (view.jobs.length === 0) lines.push('', 'No jobs.');
  for (const job of view.jobs) lines.push('', ...formatJob(job, view.daemon.running, now));
  if (view.problems.length > 0) {
    lines.push('', 'Job files that did not load (the previous valid version of each keeps running):');
    for (const problem of view.problems) lines.push(`  ${formatTime(problem.time, now)}  ${problem.file}: ${problem.message}`);
  }
  return lines.join('\n') + '\n';
}

function formatDaemon(daemon: StatusView['daemon'], now: Date, thisHost: string): string {
  const who = `pid ${daemon.pid} on ${daemon.hostname}`;
  if (daemon.running) return `Daemon: running, ${who}, since ${formatTime(daemon.started, now)}`;
  if (daemon.stopped) return `Daemon: not running; stopped ${formatTime(daemon.stopped, now)} (it ran as ${who} since ${formatTime(daemon.started, now)})`;
  const updated = `its last update was ${formatTime(daemon.updated, now)}`;
  if (daemon.hostname !== thisHost) return `Daemon: ${who}, another host: cannot tell from here whether it runs; ${updated}`;
  return `Daemon: not running; ${who} ended without stopping cleanly; ${updated}`;
}

const TASK_ORDER: readonly TaskKind[] = ['backup', 'prune', 'check'];

function formatJob(job: JobState, daemonRuns: boolean, now: Date): string[] {
  const lines = [`Job ${job.name}  (${job.file} → ${job.repository})`];
  for (const kind of TASK_ORDER) {
    const task = job.tasks[kind];
    if (task) lines.push(`  ${kind}  ${task.schedule}`, ...formatTask(task, daemonRuns, now).map((line) => `    ${line}`));
  }
  return lines;
}

function formatTask(task: TaskState, daemonRuns: boolean, now: Date): string[] {
  const lines: string[] = [];
  if (task.running) {
    const pid = task.running.pid ? `, pid ${task.running.pid}` : '';
    lines.push(daemonRuns ? `running since ${formatTime(task.running.since, now)}${pid}` : `was running since ${formatTime(task.running.since, now)}${pid} when the daemon ended: its result is unknown`);
  }
  lines.push(`last run      ${task.lastRun ? formatRun(task.lastRun, now) : 'never'}`);
  if (task.lastRun?.result !== 'success') lines.push(`last success  ${task.lastSuccess ? formatRun(task.lastSuccess, now) : 'never'}`);
  if (task.nextRun) lines.push(`next run      ${formatTime(task.nextRun, now)}${daemonRuns ? '' : ', when the daemon runs'}`);
  const counts = Object.entries(task.counts).filter(([, n]) => n);
  if (counts.length > 0) lines.push(`runs          ${counts.map(([result, n]) => `${n} ${result}`).join(', ')}`);
  return lines;
}

/** `2030-01-15T02:04:12Z (6m ago): success in 4m 12s, 1.2 GiB added, snapshot 4982076e05ab`. */
export function formatRun(run: RunRecord, now: Date): string {
  const parts = [`${run.result} in ${formatSpan(run.durationMs)}`];
  if (run.bytesAdded !== undefined) parts.push(`${formatBytes(run.bytesAdded)} added`);
  if (run.snapshot) parts.push(`snapshot ${run.snapshot.slice(0, 12)}`);
  if (run.exitCode) parts.push(`exit ${run.exitCode}`);
  const error = run.error ? `: ${run.error}` : '';
  return `${formatTime(run.finished, now)}: ${parts.join(', ')}${error}`;
}

/** An ISO time to the second, in UTC as the state keeps it, and how far from now: `2030-01-15T02:04:12Z (6m ago)`. */
export function formatTime(iso: string, now: Date): string {
  const time = new Date(iso);
  if (Number.isNaN(time.getTime())) return iso;
  const offset = time.getTime() - now.getTime();
  const relative = Math.abs(offset) < 1000 ? 'now' : offset > 0 ? `in ${formatSpan(offset)}` : `${formatSpan(-offset)} ago`;
  return `${time.toISOString().replace(/\.\d{3}Z$/, 'Z')} (${relative})`;
}

/** A length of time in its two largest units: `850ms`, `42s`, `4m 12s`, `3h 5m`, `2d 3h`. */
export function formatSpan(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const units: Array<[string, number]> = [['d', 86_400], ['h', 3_600], ['m', 60], ['s', 1]];
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of units) {
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count > 0 || parts.length > 0) parts.push(`${count}${unit}`);
  }
  return parts.slice(0, 2).filter((part, i) => i === 0 || !part.startsWith('0')).join(' ');
}
