import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { createCore, type Core } from '../create-core.js';
import { JobFileError } from '../errors.js';
import { JobLoader } from '../job/job-loader.js';
import type { ScheduleSettings } from '../job/schedule-schema.js';
import { localTimeZone } from '../retention/calendar.js';
import type { Clock } from '../services.js';
import type { TaskState } from './state.js';
import {
  checkFlags,
  compileSchedule,
  jitteredStart,
  lastCoveredTime,
  missedRun,
  nextRun,
  pruneFlags,
  scheduledTasks,
  scheduleProblems,
  type Schedule,
} from './schedule.js';

const at = (iso: string) => new Date(iso);
const iso = (dates: Array<Date | undefined>) => dates.map((d) => d?.toISOString());

/** The core's Clock, set by the test: the daemon asks it for `now()`, so a month of schedule takes no time. */
class SetClock implements Clock {
  constructor(private time: Date) {}
  now(): Date {
    return this.time;
  }
  set(time: Date): void {
    this.time = time;
  }
}

/**
 * What the daemon does with a schedule, as far as times go: wait for the next run (the clock is
 * set to it), run, remember the run's scheduled time, ask again. Returns the runs' times.
 */
function runUntil(schedule: Schedule, clock: SetClock, until: Date): Date[] {
  const knownSince = clock.now();
  const runs: Date[] = [];
  for (;;) {
    const due = nextRun(schedule, { knownSince, lastRun: runs.at(-1), now: clock.now() });
    if (!due || due > until) return runs;
    clock.set(due);
    runs.push(due);
  }
}

function nextRuns(settings: ScheduleSettings, from: string, count: number): Array<string | undefined> {
  const schedule = compileSchedule(settings);
  const runs: Date[] = [];
  let after = at(from);
  while (runs.length < count) after = runs[runs.push(schedule.next(after)!) - 1]!;
  return iso(runs);
}

/** The local date and time of `date` in `timeZone`, as `2026-03-29 03:00`. */
function wall(date: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('sv-SE', { timeZone, dateStyle: 'short', timeStyle: 'short' }).format(date);
}

/** A seeded random source in [0, 1) (mulberry32), so jitter tests are deterministic. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('cron schedules', () => {
  test('daily in UTC: the next time is strictly after the one given', () => {
    expect(nextRuns({ cron: '0 2 * * *', timeZone: 'UTC' }, '2026-01-10T12:00:00Z', 2)).toEqual(['2026-01-11T02:00:00.000Z', '2026-01-12T02:00:00.000Z']);
    const daily = compileSchedule({ cron: '0 2 * * *', timeZone: 'UTC' });
    expect(daily.next(at('2026-01-11T02:00:00Z'))?.toISOString()).toBe('2026-01-12T02:00:00.000Z');
    expect(daily.next(at('2026-01-11T01:59:59.999Z'))?.toISOString()).toBe('2026-01-11T02:00:00.000Z');
  });

  test('daily in Europe/Berlin and America/New_York follows the zone\'s offset in winter and summer', () => {
    expect(nextRuns({ cron: '0 2 * * *', timeZone: 'Europe/Berlin' }, '2026-01-10T12:00:00Z', 1)).toEqual(['2026-01-11T01:00:00.000Z']);
    expect(nextRuns({ cron: '0 2 * * *', timeZone: 'Europe/Berlin' }, '2026-07-10T12:00:00Z', 1)).toEqual(['2026-07-11T00:00:00.000Z']);
    expect(nextRuns({ cron: '0 2 * * *', timeZone: 'America/New_York' }, '2026-01-10T12:00:00Z', 1)).toEqual(['2026-01-11T07:00:00.000Z']);
    expect(nextRuns({ cron: '0 2 * * *', timeZone: 'America/New_York' }, '2026-07-10T12:00:00Z', 1)).toEqual(['2026-07-11T06:00:00.000Z']);
  });

  test('without timeZone, the times are local: the same as in the local zone named', () => {
    const local = compileSchedule({ cron: '15 4 * * *' });
    const named = compileSchedule({ cron: '15 4 * * *', timeZone: localTimeZone() });
    for (const from of ['2026-01-10T12:00:00Z', '2026-07-10T12:00:00Z']) expect(local.next(at(from))).toEqual(named.next(at(from)));
    expect(local.describe()).toBe(`cron "15 4 * * *" in local time (${localTimeZone()})`);
  });

  test('weekly, on Mondays at 03:00 in Berlin (names or numbers)', () => {
    // 2026-01-03 is a Saturday.
    const expected = ['2026-01-05T02:00:00.000Z', '2026-01-12T02:00:00.000Z', '2026-01-19T02:00:00.000Z'];
    expect(nextRuns({ cron: '0 3 * * 1', timeZone: 'Europe/Berlin' }, '2026-01-03T12:00:00Z', 3)).toEqual(expected);
    expect(nextRuns({ cron: '0 3 * * MON', timeZone: 'Europe/Berlin' }, '2026-01-03T12:00:00Z', 3)).toEqual(expected);
  });

  test('monthly on the 1st at 03:00 in Berlin keeps 03:00 local across the DST changes', () => {
    expect(nextRuns({ cron: '0 3 1 * *', timeZone: 'Europe/Berlin' }, '2026-02-15T00:00:00Z', 3)).toEqual([
      '2026-03-01T02:00:00.000Z', // CET, UTC+1
      '2026-04-01T01:00:00.000Z', // CEST, UTC+2
      '2026-05-01T01:00:00.000Z',
    ]);
    expect(nextRuns({ cron: '0 3 1 * *', timeZone: 'UTC' }, '2026-10-15T00:00:00Z', 3)).toEqual(['2026-11-01T03:00:00.000Z', '2026-12-01T03:00:00.000Z', '2027-01-01T03:00:00.000Z']);
  });

  test('the last day of the month (L), in leap and common years', () => {
    expect(nextRuns({ cron: '0 3 L * *', timeZone: 'UTC' }, '2026-01-15T00:00:00Z', 4)).toEqual([
      '2026-01-31T03:00:00.000Z',
      '2026-02-28T03:00:00.000Z',
      '2026-03-31T03:00:00.000Z',
      '2026-04-30T03:00:00.000Z',
    ]);
    expect(nextRuns({ cron: '0 3 L 2 *', timeZone: 'UTC' }, '2027-03-01T00:00:00Z', 1)).toEqual(['2028-02-29T03:00:00.000Z']);
  });

  test('29 February comes in leap years only', () => {
    expect(nextRuns({ cron: '0 0 29 2 *', timeZone: 'UTC' }, '2026-01-15T00:00:00Z', 3)).toEqual(['2028-02-29T00:00:00.000Z', '2032-02-29T00:00:00.000Z', '2036-02-29T00:00:00.000Z']);
  });

  test('six fields: seconds first', () => {
    expect(nextRuns({ cron: '*/2 * * * * *', timeZone: 'UTC' }, '2026-01-01T00:00:00.500Z', 3)).toEqual(['2026-01-01T00:00:02.000Z', '2026-01-01T00:00:04.000Z', '2026-01-01T00:00:06.000Z']);
    expect(nextRuns({ cron: '30 0 2 * * *', timeZone: 'UTC' }, '2026-01-01T00:00:00Z', 1)).toEqual(['2026-01-01T02:00:30.000Z']);
  });

  test('describe says what the job file says, in words', () => {
    expect(compileSchedule({ cron: '0 2 * * *', timeZone: 'Europe/Berlin' }).describe()).toBe('cron "0 2 * * *" in Europe/Berlin');
    expect(compileSchedule({ cron: '0 2 * * *', timeZone: 'UTC', jitter: '10m' }).describe()).toBe('cron "0 2 * * *" in UTC, jitter 10m');
    expect(compileSchedule({ every: '6h' }).describe()).toBe('every 6h');
    expect(compileSchedule({ every: '90m', jitter: '5m' }).describe()).toBe('every 1h30m, jitter 5m');
  });
});

describe('daylight saving time, run through a clock the test sets', () => {
  const berlinDaily = { cron: '30 2 * * *', timeZone: 'Europe/Berlin' };

  test('02:30 daily in Berlin runs exactly once on the night clocks spring forward (02:30 does not exist: at 03:00) and on the night they fall back (02:30 twice: the first)', () => {
    const clock = new SetClock(at('2026-03-27T12:00:00Z'));
    const spring = runUntil(compileSchedule(berlinDaily), clock, at('2026-03-31T12:00:00Z'));
    expect(spring.map((run) => wall(run, 'Europe/Berlin'))).toEqual(['2026-03-28 02:30', '2026-03-29 03:00', '2026-03-30 02:30', '2026-03-31 02:30']);
    expect(clock.now()).toEqual(spring.at(-1));

    clock.set(at('2026-10-23T12:00:00Z'));
    const fall = runUntil(compileSchedule(berlinDaily), clock, at('2026-10-27T12:00:00Z'));
    // 02:30 CEST (00:30 UTC), not 02:30 CET an hour later.
    expect(iso(fall)).toEqual(['2026-10-24T00:30:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z', '2026-10-27T01:30:00.000Z']);
  });

  test('a daily job in Berlin over two months runs once on every local day', () => {
    const clock = new SetClock(at('2026-02-28T12:00:00Z'));
    const runs = runUntil(compileSchedule(berlinDaily), clock, at('2026-04-30T12:00:00Z'));
    const days = runs.map((run) => wall(run, 'Europe/Berlin').slice(0, 10));
    expect(runs).toHaveLength(61);
    expect(new Set(days).size).toBe(61);
    expect(runs.filter((run) => !wall(run, 'Europe/Berlin').endsWith(' 02:30')).map((run) => wall(run, 'Europe/Berlin'))).toEqual(['2026-03-29 03:00']);
  });

  test('America/New_York: 02:30 on 8 March 2026 runs at 03:00 EDT; 01:30 on 1 November (twice) runs once, in EDT', () => {
    expect(nextRuns({ cron: '30 2 * * *', timeZone: 'America/New_York' }, '2026-03-07T00:00:00Z', 3)).toEqual(['2026-03-07T07:30:00.000Z', '2026-03-08T07:00:00.000Z', '2026-03-09T06:30:00.000Z']);
    expect(nextRuns({ cron: '30 1 * * *', timeZone: 'America/New_York' }, '2026-10-31T00:00:00Z', 3)).toEqual(['2026-10-31T05:30:00.000Z', '2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z']);
  });

  test('a list of fixed hours also runs once at each: 30 2,14 * * *', () => {
    const spring = nextRuns({ cron: '30 2,14 * * *', timeZone: 'Europe/Berlin' }, '2026-03-28T23:00:00Z', 3).map((t) => wall(at(t!), 'Europe/Berlin'));
    expect(spring).toEqual(['2026-03-29 03:00', '2026-03-29 14:30', '2026-03-30 02:30']);
    expect(nextRuns({ cron: '30 2,14 * * *', timeZone: 'Europe/Berlin' }, '2026-10-24T20:00:00Z', 3)).toEqual(['2026-10-25T00:30:00.000Z', '2026-10-25T13:30:00.000Z', '2026-10-26T01:30:00.000Z']);
  });

  test('an hourly expression skips the hour that does not exist and runs in both passes of the repeated one', () => {
    const hourly = { cron: '30 * * * *', timeZone: 'Europe/Berlin' };
    expect(nextRuns(hourly, '2026-03-29T00:10:00Z', 3).map((t) => wall(at(t!), 'Europe/Berlin'))).toEqual(['2026-03-29 01:30', '2026-03-29 03:30', '2026-03-29 04:30']);
    // 02:30 CEST, then 02:30 CET.
    expect(nextRuns(hourly, '2026-10-24T23:10:00Z', 4)).toEqual(['2026-10-24T23:30:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-25T01:30:00.000Z', '2026-10-25T02:30:00.000Z']);
  });
});

describe('missed runs', () => {
  const daily = compileSchedule({ cron: '0 2 * * *', timeZone: 'UTC', runMissed: true });
  const knownSince = at('2026-01-01T00:00:00Z');

  test('a laptop asleep over two scheduled times runs once at start, for the latest', () => {
    // Last run for 5 January, asleep from the 5th at 10:00 to the 7th at 09:00: the 6th and the 7th passed.
    const missed = missedRun(daily, { knownSince, lastRun: at('2026-01-05T02:00:00Z'), now: at('2026-01-07T09:00:00Z') });
    expect(missed?.toISOString()).toBe('2026-01-07T02:00:00.000Z');
    // The daemon goes on with the next one.
    expect(nextRun(daily, { knownSince, lastRun: missed, now: at('2026-01-07T09:00:00Z') })?.toISOString()).toBe('2026-01-08T02:00:00.000Z');
  });

  test('none when the last run is as recent as the last scheduled time, or later', () => {
    expect(missedRun(daily, { knownSince, lastRun: at('2026-01-07T02:00:00Z'), now: at('2026-01-07T09:00:00Z') })).toBeUndefined();
    expect(missedRun(daily, { knownSince, lastRun: at('2026-01-07T05:00:00Z'), now: at('2026-01-07T09:00:00Z') })).toBeUndefined();
  });

  test('none when the job became known after the last scheduled time; one when before it, even without any run', () => {
    expect(missedRun(daily, { knownSince: at('2026-01-07T05:00:00Z'), now: at('2026-01-07T09:00:00Z') })).toBeUndefined();
    expect(missedRun(daily, { knownSince: at('2026-01-07T02:00:00Z'), now: at('2026-01-07T09:00:00Z') })).toBeUndefined();
    expect(missedRun(daily, { knownSince: at('2026-01-07T01:59:59Z'), now: at('2026-01-07T09:00:00Z') })?.toISOString()).toBe('2026-01-07T02:00:00.000Z');
  });

  test('a scheduled time equal to now counts as passed; none without runMissed', () => {
    expect(missedRun(daily, { knownSince, lastRun: at('2026-01-06T02:00:00Z'), now: at('2026-01-07T02:00:00Z') })?.toISOString()).toBe('2026-01-07T02:00:00.000Z');
    const notCaughtUp = compileSchedule({ cron: '0 2 * * *', timeZone: 'UTC' });
    expect(missedRun(notCaughtUp, { knownSince, lastRun: at('2026-01-05T02:00:00Z'), now: at('2026-01-07T09:00:00Z') })).toBeUndefined();
  });

  test('monthly in Berlin, asleep over the turn of the month: the 1st\'s run, found across the DST change', () => {
    const monthly = compileSchedule({ cron: '0 3 1 * *', timeZone: 'Europe/Berlin', runMissed: true });
    const missed = missedRun(monthly, { knownSince, lastRun: at('2026-03-01T02:00:00Z'), now: at('2026-04-02T08:00:00Z') });
    expect(missed?.toISOString()).toBe('2026-04-01T01:00:00.000Z');
  });

  test('with a seconds field, whole seconds at the edges of the interval', () => {
    const everySecond = compileSchedule({ cron: '* * * * * *', timeZone: 'UTC', runMissed: true });
    expect(everySecond.missedBetween(at('2026-01-01T02:00:00Z'), at('2026-01-01T02:00:00.999Z'))).toBeUndefined();
    expect(everySecond.missedBetween(at('2026-01-01T01:59:59.999Z'), at('2026-01-01T02:00:00.999Z'))?.toISOString()).toBe('2026-01-01T02:00:00.000Z');
    expect(everySecond.missedBetween(at('2026-01-01T01:00:00Z'), at('2026-01-01T02:00:01Z'))?.toISOString()).toBe('2026-01-01T02:00:01.000Z');
  });
});

describe('every: an interval counted from the last run', () => {
  const sixHours = compileSchedule({ every: '6h', runMissed: true });
  const knownSince = at('2026-01-01T00:00:00Z');

  test('never run: one interval after the job became known, also after a restart', () => {
    expect(nextRun(sixHours, { knownSince, now: knownSince })?.toISOString()).toBe('2026-01-01T06:00:00.000Z');
    // The daemon restarted at 04:00 without having run the job: still 06:00, not 10:00.
    expect(nextRun(sixHours, { knownSince, now: at('2026-01-01T04:00:00Z') })?.toISOString()).toBe('2026-01-01T06:00:00.000Z');
  });

  test('restarts keep the cadence of the last run', () => {
    const lastRun = at('2026-01-01T06:00:00Z');
    expect(nextRun(sixHours, { knownSince, lastRun, now: at('2026-01-01T07:00:00Z') })?.toISOString()).toBe('2026-01-01T12:00:00.000Z');
    // Down from 07:00 until 20:00 (12:00 and 18:00 passed): the missed one is 18:00, the next 00:00.
    const now = at('2026-01-01T20:00:00Z');
    expect(missedRun(sixHours, { knownSince, lastRun, now })?.toISOString()).toBe('2026-01-01T18:00:00.000Z');
    expect(nextRun(sixHours, { knownSince, lastRun, now })?.toISOString()).toBe('2026-01-02T00:00:00.000Z');
    // On a scheduled time, the next is one interval on.
    expect(nextRun(sixHours, { knownSince, lastRun, now: at('2026-01-01T12:00:00Z') })?.toISOString()).toBe('2026-01-01T18:00:00.000Z');
  });

  test('no missed run within one interval of the last run; a last run in the future (clock set back) counts from itself', () => {
    const lastRun = at('2026-01-01T06:00:00Z');
    expect(missedRun(sixHours, { knownSince, lastRun, now: at('2026-01-01T11:59:59Z') })).toBeUndefined();
    expect(missedRun(sixHours, { knownSince, lastRun, now: at('2026-01-01T12:00:00Z') })?.toISOString()).toBe('2026-01-01T12:00:00.000Z');
    expect(nextRun(sixHours, { knownSince, lastRun, now: at('2026-01-01T03:00:00Z') })?.toISOString()).toBe('2026-01-01T12:00:00.000Z');
  });

  test('a clock-driven run of a day gives four runs, six hours apart', () => {
    const clock = new SetClock(knownSince);
    expect(iso(runUntil(sixHours, clock, at('2026-01-02T00:00:00Z')))).toEqual([
      '2026-01-01T06:00:00.000Z',
      '2026-01-01T12:00:00.000Z',
      '2026-01-01T18:00:00.000Z',
      '2026-01-02T00:00:00.000Z',
    ]);
  });
});

describe('what a task\'s last run covered (from the state file)', () => {
  const record = (result: 'success' | 'failure' | 'interrupted', started: string, scheduledFor?: string) => ({
    task: 'backup' as const,
    result,
    started,
    finished: started,
    durationMs: 0,
    ...(scheduledFor && { scheduledFor }),
  });

  test('the scheduled time of the last run, its start without one, the last success when it was interrupted', () => {
    const task = (lastRun: TaskState['lastRun'], lastSuccess?: TaskState['lastSuccess']): TaskState => ({ schedule: 'every 6h', counts: {}, lastRun, lastSuccess });
    expect(lastCoveredTime(undefined)).toBeUndefined();
    expect(lastCoveredTime(task(undefined))).toBeUndefined();
    expect(lastCoveredTime(task(record('failure', '2026-01-02T02:03:00.000Z', '2026-01-02T02:00:00.000Z')))?.toISOString()).toBe('2026-01-02T02:00:00.000Z');
    expect(lastCoveredTime(task(record('success', '2026-01-02T09:00:00.000Z')))?.toISOString()).toBe('2026-01-02T09:00:00.000Z');
    const success = record('success', '2026-01-01T02:01:00.000Z', '2026-01-01T02:00:00.000Z');
    expect(lastCoveredTime(task(record('interrupted', '2026-01-02T02:00:00.000Z', '2026-01-02T02:00:00.000Z'), success))?.toISOString()).toBe('2026-01-01T02:00:00.000Z');
    expect(lastCoveredTime(task(record('interrupted', '2026-01-02T02:00:00.000Z', '2026-01-02T02:00:00.000Z')))).toBeUndefined();
  });
});

describe('jitter', () => {
  test('a delay in [0, jitter), from the random source given', () => {
    const schedule = compileSchedule({ cron: '0 2 * * *', timeZone: 'UTC', jitter: '10m' });
    expect(schedule.jitterMs).toBe(600_000);
    const scheduled = at('2026-01-01T02:00:00Z');
    expect(jitteredStart(scheduled, schedule, () => 0)).toEqual(scheduled);
    expect(jitteredStart(scheduled, schedule, () => 0.5).toISOString()).toBe('2026-01-01T02:05:00.000Z');
    expect(jitteredStart(scheduled, schedule, () => 1 - Number.EPSILON).getTime()).toBe(scheduled.getTime() + 599_999);

    const random = seededRandom(14);
    const delays = Array.from({ length: 1000 }, () => jitteredStart(scheduled, schedule, random).getTime() - scheduled.getTime());
    expect(delays.every((d) => Number.isInteger(d) && d >= 0 && d < 600_000)).toBe(true);
    // Spread over the whole range (the seed makes this the same every time).
    expect(Math.min(...delays)).toBeLessThan(60_000);
    expect(Math.max(...delays)).toBeGreaterThan(540_000);
    // The same seed gives the same delays.
    const again = seededRandom(14);
    expect(Array.from({ length: 1000 }, () => jitteredStart(scheduled, schedule, again).getTime() - scheduled.getTime())).toEqual(delays);
  });

  test('none without jitter', () => {
    const schedule = compileSchedule({ every: '1h' });
    expect(schedule.jitterMs).toBe(0);
    expect(jitteredStart(at('2026-01-01T02:00:00Z'), schedule, () => 0.9).toISOString()).toBe('2026-01-01T02:00:00.000Z');
  });
});

describe('the tasks and their flags', () => {
  test('backup, prune and check, each with its own schedule', () => {
    const schedule = { cron: '0 2 * * *' };
    const prune = { schedule: { cron: '0 4 * * 0' }, repackThreshold: 30, maxRepackSize: '2G', maxWait: '1h30m' };
    const check = { schedule: { every: '7d' }, readDataSubset: '5%' };
    expect(scheduledTasks({ schedule, prune, check })).toEqual([
      { task: 'backup', settings: schedule },
      { task: 'prune', settings: prune.schedule },
      { task: 'check', settings: check.schedule },
    ]);
    expect(scheduledTasks({ prune })).toEqual([{ task: 'prune', settings: prune.schedule }]);
    expect(scheduledTasks({})).toEqual([]);
    expect(pruneFlags(prune)).toEqual(['--repack-threshold', '30', '--max-repack-size', '2G', '--max-wait', '5400s']);
    expect(pruneFlags({ schedule })).toEqual([]);
    expect(checkFlags(check)).toEqual(['--read-data-subset', '5%']);
    expect(checkFlags({ schedule })).toEqual([]);
  });
});

describe('problems a JSON schema cannot find', () => {
  test('each with its path', () => {
    expect(scheduleProblems({ schedule: { cron: '0 2 * * *', timeZone: 'Europe/Berlin', runMissed: true, jitter: '10m' }, prune: { schedule: { every: '1d' } } })).toEqual([]);
    expect(
      scheduleProblems({
        schedule: { cron: '0 25 * * *' },
        prune: { schedule: { cron: '0 2 * * *', timeZone: 'Mars/Olympus_Mons' }, maxRepackSize: 'lots' },
        check: { schedule: { every: '1h', jitter: '1h' }, readDataSubset: '0%' },
      }),
    ).toEqual([
      expect.stringMatching(/^\/schedule\/cron: "0 25 \* \* \*" is not a cron expression of 5 fields .*hour/),
      '/prune/schedule/timeZone: "Mars/Olympus_Mons" is not a time zone this system knows (an IANA name such as Europe/Berlin, or UTC)',
      '/prune/maxRepackSize: must be a number of bytes with an optional K, M, G or T (e.g. 2G), not "lots"',
      '/check/schedule/jitter: must be shorter than the interval (every 1h), or runs would overlap',
      '/check/readDataSubset: must be n/m (1 ≤ n ≤ m ≤ 256) or a percentage such as 5%, as check --read-data-subset, not "0%"',
    ]);
  });

  test('exactly one of cron and every; timeZone only with cron; 5 or 6 fields; a date that exists; an interval of 1s or more', () => {
    const problems = (schedule: ScheduleSettings) => scheduleProblems({ schedule });
    expect(problems({})).toEqual(['/schedule: give exactly one of "cron" (e.g. "0 2 * * *") and "every" (e.g. "6h")']);
    expect(problems({ cron: '0 2 * * *', every: '1d' })).toEqual(['/schedule: give exactly one of "cron" (e.g. "0 2 * * *") and "every" (e.g. "6h")']);
    expect(problems({ every: '1d', timeZone: 'UTC' })).toEqual(['/schedule/timeZone: applies only to "cron": an "every" interval is the same in every zone']);
    expect(problems({ cron: '0 0 2 * * * 2026' })).toEqual([expect.stringMatching(/^\/schedule\/cron: "0 0 2 \* \* \* 2026" is not a cron expression of 5 fields/)]);
    expect(problems({ cron: '0 2 * *' })).toEqual([expect.stringMatching(/^\/schedule\/cron: "0 2 \* \*" is not a cron expression/)]);
    expect(problems({ cron: '0 0 30 2 *' })).toEqual(['/schedule/cron: "0 0 30 2 *" never matches a date']);
    expect(problems({ every: '0s' })).toEqual(['/schedule/every: must be at least 1s, not "0s"']);
    expect(problems({ every: '1d', jitter: '1x' })).toEqual(['/schedule/jitter: "1x" is not a duration such as 30s, 10m, 6h, 1d or 1h30m (units ms, s, m, h, d)']);
  });

  test('compileSchedule refuses what scheduleProblems reports', () => {
    expect(() => compileSchedule({ cron: '0 2 * * *', timeZone: 'Nowhere/Land' })).toThrow(JobFileError);
    expect(() => compileSchedule({ every: '6h', cron: '0 2 * * *' })).toThrow(/exactly one of "cron"/);
  });
});

describe('the job loader reports schedule problems with their paths', () => {
  const WORKSPACE = fileURLToPath(new URL('../../../../', import.meta.url));
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  const job = { name: 'j', source: { type: 'volume', path: 'disk.img' }, target: { type: 'local', path: 'repo' }, password: { env: 'PW' } };
  let dir: string;
  const cores: Core[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-schedule-'));
  });
  afterEach(async () => {
    for (const core of cores.splice(0)) await core.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  async function load(extra: object): Promise<ReturnType<JobLoader['load']>> {
    await writeFile(join(dir, 'plugins.json'), JSON.stringify({ plugins: ['source-volume', 'target-local'].map((p) => join(WORKSPACE, 'packages', p)) }));
    await writeFile(join(dir, 'job.json'), JSON.stringify({ ...job, ...extra }));
    const core = await createCore({ pluginsFile: join(dir, 'plugins.json'), logger: quiet, env: {}, cwd: dir });
    cores.push(core);
    return core.get(JobLoader).load('job.json');
  }

  test('a valid schedule, prune and check load as written; a job without them is valid too', async () => {
    const extra = {
      schedule: { cron: '0 2 * * *', timeZone: 'Europe/Berlin', runMissed: true, jitter: '10m' },
      prune: { schedule: { every: '7d' }, repackThreshold: 20, maxWait: '30m' },
      check: { schedule: { cron: '0 5 1 * *' }, readDataSubset: '1/7' },
    };
    const loaded = await load(extra);
    expect({ schedule: loaded.config.schedule, prune: loaded.config.prune, check: loaded.config.check }).toEqual(extra);
    expect((await load({})).config.schedule).toBeUndefined();
  });

  test('shapes through the schema, the rest through scheduleProblems', async () => {
    const shape = await load({ schedule: { cron: '0 2 * * *', every: 'soon', when: 'now' }, prune: {} }).catch((e: unknown) => e);
    expect(shape).toBeInstanceOf(JobFileError);
    expect((shape as Error).message).toContain('/schedule/every: must be a duration such as 30s');
    expect((shape as Error).message).toContain('/schedule: must NOT have additional property "when"');
    expect((shape as Error).message).toContain("/prune: must have required property 'schedule'");

    const semantic = await load({ schedule: { cron: '0 2 * * *', timeZone: 'Europe/Berlinn' }, check: { schedule: { cron: '61 * * * *' } } }).catch((e: unknown) => e);
    expect(semantic).toBeInstanceOf(JobFileError);
    expect((semantic as Error).message).toContain('/schedule/timeZone: "Europe/Berlinn" is not a time zone this system knows');
    expect((semantic as Error).message).toMatch(/\/check\/schedule\/cron: "61 \* \* \* \*" is not a cron expression .*minute/);
  });
});
