import { DURATION_PATTERN } from '../daemon/duration.js';

/*
 * The job file's `schedule`, `prune` and `check`: what `cairn daemon` runs, and when. The JSON
 * schema checks shapes; `scheduleProblems` (daemon/schedule.ts) checks what a schema cannot: a
 * cron expression croner accepts, a time zone this system knows, exactly one of cron and every.
 */

/** When a task runs: a cron expression (in a time zone) or a fixed interval; exactly one of `cron` and `every`. */
export interface ScheduleSettings {
  /** 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), as croner reads them. */
  cron?: string;
  /** A duration (`6h`, `1h30m`): the time between runs, counted from the last run. */
  every?: string;
  /** IANA zone the cron expression's times are in; default the local zone. Only with `cron`. */
  timeZone?: string;
  /** Run once at start when a scheduled time passed while the daemon was not running. */
  runMissed?: boolean;
  /** A random delay, from 0 up to this duration, added to each scheduled time. */
  jitter?: string;
}

/** `prune` on its own schedule, with the `cairn prune` options a job may set. */
export interface PruneSettings {
  schedule: ScheduleSettings;
  /** `--repack-threshold`: repack a pack when at least this percentage of it is unused. */
  repackThreshold?: number;
  /** `--max-repack-size`: bytes, with K, M, G or T. */
  maxRepackSize?: string;
  /** `--max-wait`: how long to wait for operations that started before the prune (a duration). */
  maxWait?: string;
}

/** `check` on its own schedule; with `readDataSubset` it also reads that part of the data. */
export interface CheckSettings {
  schedule: ScheduleSettings;
  /** `--read-data-subset`: `n/m` or `x%`. */
  readDataSubset?: string;
}

const duration = (what: string) => ({ type: 'string', pattern: DURATION_PATTERN, description: `${what}: a duration such as 30s, 10m, 6h, 1d or 1h30m.` });

/** The JSON schema of a `schedule` object (the job's own, and the ones of `prune` and `check`). */
export function scheduleSchema(what: string): Record<string, unknown> {
  return {
    type: 'object',
    additionalProperties: false,
    description: `When \`cairn daemon\` runs ${what}: exactly one of \`cron\` and \`every\`.`,
    properties: {
      cron: {
        type: 'string',
        minLength: 1,
        description: 'A cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; L, W, # and nicknames such as @daily as croner reads them.',
      },
      every: duration('The time from one run to the next (counted from the previous scheduled run, so restarts keep the cadence)'),
      timeZone: { type: 'string', minLength: 1, description: 'IANA time zone (e.g. Europe/Berlin) of the cron expression\'s times. Default: the local zone. Only with `cron`.' },
      runMissed: { type: 'boolean', description: 'Run once at start when a scheduled time passed while the daemon was not running (a laptop asleep). Default: false.' },
      jitter: duration('Add a random delay from 0 up to this much to each scheduled time, to spread many hosts\' runs'),
    },
  };
}

export const pruneSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['schedule'],
  description: 'Run `cairn prune` on its own schedule (the daemon; backups apply the retention policy after each success).',
  properties: {
    schedule: scheduleSchema('prune'),
    repackThreshold: { type: 'number', minimum: 0, maximum: 100, description: 'Repack a pack when at least this percentage of its bytes is unused (prune --repack-threshold). Default: 50.' },
    maxRepackSize: { type: 'string', minLength: 1, description: 'Copy at most this many bytes while repacking, with K, M, G or T (prune --max-repack-size). Default: no limit.' },
    maxWait: duration('Wait at most this long for operations that started before the prune to finish (prune --max-wait; default 1h)'),
  },
};

export const checkSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['schedule'],
  description: 'Run `cairn check` on its own schedule (the daemon).',
  properties: {
    schedule: scheduleSchema('check'),
    readDataSubset: {
      type: 'string',
      minLength: 1,
      description: 'Also read and verify this part of the data, as check --read-data-subset: n/m (packs whose id\'s first byte mod m is n-1) or a percentage such as 5%. Default: structure only.',
    },
  },
};
