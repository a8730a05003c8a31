import { resolve } from 'node:path';
import type { LoadedJob } from '../job/job-loader.js';
import type { TaskKind } from './state.js';
import type { ScheduleSettings } from '../job/schedule-schema.js';
import { checkFlags, pruneFlags, scheduledTasks } from './schedule.js';

/** One thing the daemon runs for a job on a schedule: its backup, prune or check. */
export interface TaskSpec {
  kind: TaskKind;
  /** `job/kind`: unique in a daemon. */
  id: string;
  job: LoadedJob;
  /** The job file's `schedule`, `prune.schedule` or `check.schedule`. */
  schedule: ScheduleSettings;
  /** The `cairn` command that does the work (without `--json`). */
  args: string[];
  /** Where the job's repository lives (tasks with the same one run one after the other). */
  repository: string;
}

/** What a run needs of a task: a task run only on request has no schedule. */
export type RunSpec = Omit<TaskSpec, 'schedule'> & { schedule?: ScheduleSettings };

/** The scheduled tasks of a job: none when its file has no schedule at all. */
export function tasksOf(job: LoadedJob): TaskSpec[] {
  const { config } = job;
  const flags: Record<TaskKind, string[]> = {
    // Retention is applied after each successful scheduled backup, by the backup's own tap.
    backup: config.retention ? ['--forget'] : [],
    prune: config.prune ? pruneFlags(config.prune) : [],
    check: config.check ? checkFlags(config.check) : [],
  };
  const repository = repositoryOf(job);
  return scheduledTasks(config).map(({ task, settings }) => ({
    kind: task,
    id: `${job.info.name}/${task}`,
    job,
    schedule: settings,
    args: [task, job.info.file, ...flags[task]],
    repository,
  }));
}

/** A task the job file does not schedule, run once on request (the dashboard's "run now"). */
export function adHocTask(job: LoadedJob, kind: TaskKind): RunSpec {
  const { config } = job;
  const flags = kind === 'backup' && config.retention ? ['--forget'] : kind === 'prune' && config.prune ? pruneFlags(config.prune) : kind === 'check' && config.check ? checkFlags(config.check) : [];
  return { kind, id: `${job.info.name}/${kind}`, job, args: [kind, job.info.file, ...flags], repository: repositoryOf(job) };
}

/** Fields of a target's settings that say where it is (never credentials). */
const LOCATION_FIELDS = ['endpoint', 'region', 'bucket', 'prefix', 'host', 'port', 'username', 'user', 'path'];

/**
 * The job's repository location, as text: two jobs with the same one share a repository. A
 * local path is resolved against the job file's folder; other targets are named by their
 * location fields (`s3 bucket=… prefix=…`), which never include secrets.
 */
export function repositoryOf(job: LoadedJob): string {
  const target = job.config.target as Record<string, unknown>;
  if (target.type === 'local' && typeof target.path === 'string') return resolve(job.baseDir, target.path);
  const fields = LOCATION_FIELDS.filter((field) => target[field] !== undefined && typeof target[field] !== 'object').map((field) => `${field}=${String(target[field])}`);
  return [String(target.type), ...fields].join(' ');
}
