import { Cron } from '../vendor.js';
import { JobFileError } from '../errors.js';
import { isValidTimeZone, localTimeZone } from '../retention/calendar.js';
import { parseReadDataSubset } from '../pipeline/check.js';
import { parseSize } from '../cli/format.js';
import type { CheckSettings, PruneSettings, ScheduleSettings } from '../job/schedule-schema.js';
import { formatDurationMs, parseDurationMs } from './duration.js';
import type { RunRecord, TaskKind, TaskState } from './state.js';

/*
 * When the daemon runs a job's tasks. Everything here is pure: the daemon passes its clock's
 * `now()`, and the random source for jitter, so tests need no waiting.
 *
 * - `cron`: croner computes the times, in `timeZone` (default: the local zone). Around daylight
 *   saving changes croner follows Vixie cron, and we ask it to count every expression without a
 *   wildcard or step in its second, minute and hour fields as a fixed-time job
 *   (`fixedTimeRule: 'no-wildcard'`): a fixed time that does not exist (02:30 on the night
 *   clocks spring forward) runs at the first valid time after the gap, on the same day; one that
 *   exists twice (falling back) runs once, at its first occurrence. So `30 2 * * *` and
 *   `30 2,14 * * *` run exactly once at each listed time on both nights. Expressions with a
 *   wildcard or step in those fields (`0 * * * *`) skip the times in the gap and run in both
 *   passes of a repeated hour.
 * - `every`: a fixed interval, counted from an anchor: the time of the task's last run (the time
 *   it was scheduled for), else the time the daemon first scheduled the job (`knownSince`). So a
 *   restart does not reset a 6h cadence: the times are anchor + k × interval, k ≥ 1.
 */

/** A compiled `schedule` object. */
export interface Schedule {
  readonly settings: ScheduleSettings;
  readonly runMissed: boolean;
  /** The largest random delay added to a scheduled time (0: none); see `jitteredStart`. */
  readonly jitterMs: number;
  /** The first scheduled time strictly after `after`; undefined when there is none. `anchor`: see `every`. */
  next(after: Date, anchor?: Date): Date | undefined;
  /** The latest scheduled time in (from, to], if any. `anchor` (default `from`): see `every`. */
  missedBetween(from: Date, to: Date, anchor?: Date): Date | undefined;
  /** In words, e.g. `cron "0 2 * * *" in Europe/Berlin` or `every 6h, jitter 10m`. */
  describe(): string;
}

/** What the daemon knows about a task's runs, as times. */
export interface TaskTimes {
  /** When the daemon first scheduled the job (JobState.knownSince). */
  knownSince: Date;
  /** The time the task's last run stood for (`lastCoveredTime`), if it ran. */
  lastRun?: Date;
  now: Date;
}

/** Compiles settings the job loader accepted; JobFileError when `scheduleProblems` would report them. */
export function compileSchedule(settings: ScheduleSettings): Schedule {
  const problems = settingsProblems(settings);
  if (problems.length > 0) throw new JobFileError(`Invalid schedule ${JSON.stringify(settings)}: ${problems.map((p) => `${p.field || 'schedule'}: ${p.message}`).join('; ')}`);
  return settings.cron !== undefined ? new CronSchedule(settings, settings.cron) : new IntervalSchedule(settings, parseDurationMs(settings.every!));
}

/** The next time the task is due (before jitter): for `every`, counted from its last run, else from `knownSince`. */
export function nextRun(schedule: Schedule, times: TaskTimes): Date | undefined {
  return schedule.next(times.now, times.lastRun ?? times.knownSince);
}

/**
 * The scheduled time to run at start, with `runMissed`: the latest one that passed after the job
 * became known and after its last run, up to `now`. Only one, however many were missed (a laptop
 * asleep for a week runs its daily backup once when it wakes).
 */
export function missedRun(schedule: Schedule, times: TaskTimes): Date | undefined {
  if (!schedule.runMissed) return undefined;
  const { knownSince, lastRun, now } = times;
  const from = lastRun && lastRun > knownSince ? lastRun : knownSince;
  return schedule.missedBetween(from, now, lastRun ?? knownSince);
}

/**
 * The time a task's runs have covered: the time its last run was scheduled for (or started, for a
 * run without one). A run interrupted by the daemon's stop covered nothing, so then the last
 * success counts.
 */
export function lastCoveredTime(task: TaskState | undefined): Date | undefined {
  const record = task?.lastRun?.result === 'interrupted' ? task.lastSuccess : task?.lastRun;
  return record ? coveredBy(record) : undefined;
}

function coveredBy(record: RunRecord): Date {
  return new Date(record.scheduledFor ?? record.started);
}

/** When to start a run scheduled at `scheduled`: a random delay in [0, jitter) later. `random` returns [0, 1), as Math.random. */
export function jitteredStart(scheduled: Date, schedule: Schedule, random: () => number): Date {
  return new Date(scheduled.getTime() + Math.floor(random() * schedule.jitterMs));
}

/** The tasks a job file schedules (backup with `schedule`, prune, check), in that order. */
export function scheduledTasks(config: ScheduledJob): Array<{ task: TaskKind; settings: ScheduleSettings }> {
  const tasks: Array<{ task: TaskKind; settings: ScheduleSettings }> = [];
  if (config.schedule) tasks.push({ task: 'backup', settings: config.schedule });
  if (config.prune) tasks.push({ task: 'prune', settings: config.prune.schedule });
  if (config.check) tasks.push({ task: 'check', settings: config.check.schedule });
  return tasks;
}

/** The `cairn prune` flags for the job's `prune` options. */
export function pruneFlags(prune: PruneSettings): string[] {
  const flags: string[] = [];
  if (prune.repackThreshold !== undefined) flags.push('--repack-threshold', String(prune.repackThreshold));
  if (prune.maxRepackSize !== undefined) flags.push('--max-repack-size', prune.maxRepackSize);
  // --max-wait reads seconds, minutes or hours, not compound durations such as 1h30m.
  if (prune.maxWait !== undefined) flags.push('--max-wait', `${parseDurationMs(prune.maxWait) / 1000}s`);
  return flags;
}

/** The `cairn check` flags for the job's `check` options. */
export function checkFlags(check: CheckSettings): string[] {
  return check.readDataSubset === undefined ? [] : ['--read-data-subset', check.readDataSubset];
}

/** The part of a job file this module reads. */
export interface ScheduledJob {
  schedule?: ScheduleSettings;
  prune?: PruneSettings;
  check?: CheckSettings;
}

/**
 * What the job schema cannot check in `schedule`, `prune` and `check`, as `/path: message`:
 * exactly one of cron and every, a cron expression croner accepts and that ever matches, a known
 * time zone, durations, sizes and read-data subsets that parse.
 */
export function scheduleProblems(config: ScheduledJob): string[] {
  const problems: string[] = [];
  const add = (path: string, found: Problem[]) => problems.push(...found.map((p) => `${path}${p.field ? `/${p.field}` : ''}: ${p.message}`));
  if (config.schedule) add('/schedule', settingsProblems(config.schedule));
  if (config.prune) {
    add('/prune/schedule', settingsProblems(config.prune.schedule));
    add('/prune', pruneOptionProblems(config.prune));
  }
  if (config.check) {
    add('/check/schedule', settingsProblems(config.check.schedule));
    add('/check', checkOptionProblems(config.check));
  }
  return problems;
}

interface Problem {
  /** The key in the object checked; '' for the object itself. */
  field: string;
  message: string;
}

function settingsProblems(settings: ScheduleSettings): Problem[] {
  if ((settings.cron === undefined) === (settings.every === undefined)) {
    return [{ field: '', message: 'give exactly one of "cron" (e.g. "0 2 * * *") and "every" (e.g. "6h")' }];
  }
  const problems: Problem[] = [];
  const jitterMs = durationOrProblem(settings, 'jitter', problems);
  if (settings.cron !== undefined) problems.push(...cronProblems(settings.cron, settings.timeZone));
  if (settings.every !== undefined) {
    if (settings.timeZone !== undefined) problems.push({ field: 'timeZone', message: 'applies only to "cron": an "every" interval is the same in every zone' });
    const everyMs = durationOrProblem(settings, 'every', problems);
    if (everyMs !== undefined && everyMs < 1000) problems.push({ field: 'every', message: `must be at least 1s, not "${settings.every}"` });
    else if (everyMs !== undefined && jitterMs !== undefined && jitterMs >= everyMs) {
      problems.push({ field: 'jitter', message: `must be shorter than the interval (every ${settings.every}), or runs would overlap` });
    }
  }
  return problems;
}

function durationOrProblem(settings: ScheduleSettings, field: 'every' | 'jitter', problems: Problem[]): number | undefined {
  const text = settings[field];
  if (text === undefined) return undefined;
  try {
    return parseDurationMs(text);
  } catch (err) {
    problems.push({ field, message: (err as Error).message });
    return undefined;
  }
}

/** A day in the past: every valid expression without a year field matches again within a few years of it. */
const NEVER_MATCHES_CHECK_FROM = new Date('2000-01-01T00:00:00Z');

function cronProblems(expression: string, timeZone: string | undefined): Problem[] {
  if (timeZone !== undefined && !isValidTimeZone(timeZone)) {
    return [{ field: 'timeZone', message: `"${timeZone}" is not a time zone this system knows (an IANA name such as Europe/Berlin, or UTC)` }];
  }
  let cron: Cron;
  try {
    cron = newCron(expression, timeZone);
  } catch (err) {
    return [{ field: 'cron', message: `"${expression}" is not a cron expression of 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first: ${(err as Error).message}` }];
  }
  if (!cron.nextRun(NEVER_MATCHES_CHECK_FROM)) return [{ field: 'cron', message: `"${expression}" never matches a date` }];
  return [];
}

function pruneOptionProblems(prune: PruneSettings): Problem[] {
  if (prune.maxRepackSize === undefined) return [];
  try {
    parseSize(prune.maxRepackSize, 'maxRepackSize');
    return [];
  } catch {
    return [{ field: 'maxRepackSize', message: `must be a number of bytes with an optional K, M, G or T (e.g. 2G), not "${prune.maxRepackSize}"` }];
  }
}

function checkOptionProblems(check: CheckSettings): Problem[] {
  if (check.readDataSubset === undefined) return [];
  try {
    parseReadDataSubset(check.readDataSubset);
    return [];
  } catch {
    return [{ field: 'readDataSubset', message: `must be n/m (1 ≤ n ≤ m ≤ 256) or a percentage such as 5%, as check --read-data-subset, not "${check.readDataSubset}"` }];
  }
}

function newCron(expression: string, timeZone: string | undefined): Cron {
  // paused, and no function: croner only computes times here, it starts no timer.
  return new Cron(expression, { timezone: timeZone, mode: '5-or-6-parts', fixedTimeRule: 'no-wildcard', paused: true });
}

function describeJitter(settings: ScheduleSettings): string {
  return settings.jitter !== undefined && parseDurationMs(settings.jitter) > 0 ? `, jitter ${settings.jitter}` : '';
}

class CronSchedule implements Schedule {
  readonly runMissed: boolean;
  readonly jitterMs: number;
  readonly #cron: Cron;

  constructor(
    readonly settings: ScheduleSettings,
    readonly expression: string,
  ) {
    this.runMissed = settings.runMissed ?? false;
    this.jitterMs = settings.jitter === undefined ? 0 : parseDurationMs(settings.jitter);
    this.#cron = newCron(expression, settings.timeZone);
  }

  next(after: Date): Date | undefined {
    return this.#cron.nextRun(after) ?? undefined;
  }

  missedBetween(from: Date, to: Date): Date | undefined {
    // previousRuns lists times strictly before its reference, in whole seconds: ask from just after `to`.
    const latest = this.#cron.previousRuns(2, new Date(to.getTime() + 1)).find((time) => time <= to);
    return latest && latest > from ? latest : undefined;
  }

  describe(): string {
    const zone = this.settings.timeZone ?? `local time (${localTimeZone()})`;
    return `cron "${this.expression}" in ${zone}${describeJitter(this.settings)}`;
  }
}

class IntervalSchedule implements Schedule {
  readonly runMissed: boolean;
  readonly jitterMs: number;

  constructor(
    readonly settings: ScheduleSettings,
    readonly intervalMs: number,
  ) {
    this.runMissed = settings.runMissed ?? false;
    this.jitterMs = settings.jitter === undefined ? 0 : parseDurationMs(settings.jitter);
  }

  /** anchor + k × interval, the first one after `after` with k ≥ 1 (so never the anchor itself). */
  next(after: Date, anchor: Date = after): Date {
    const steps = Math.max(1, Math.floor((after.getTime() - anchor.getTime()) / this.intervalMs) + 1);
    return new Date(anchor.getTime() + steps * this.intervalMs);
  }

  missedBetween(from: Date, to: Date, anchor: Date = from): Date | undefined {
    const steps = Math.floor((to.getTime() - anchor.getTime()) / this.intervalMs);
    if (steps < 1) return undefined;
    const latest = new Date(anchor.getTime() + steps * this.intervalMs);
    return latest > from ? latest : undefined;
  }

  describe(): string {
    return `every ${formatDurationMs(this.intervalMs)}${describeJitter(this.settings)}`;
  }
}
