import { homedir } from 'node:os';
import { join } from 'node:path';

/*
 * What the daemon knows about its jobs, kept on disk (`<state dir>/state.json`, replaced
 * atomically) so that `cairn status`, the metrics and the next start of the daemon (missed
 * runs) see it. Times are ISO 8601 strings in UTC.
 */

/** What the daemon runs for a job on a schedule. */
export type TaskKind = 'backup' | 'prune' | 'check';

/**
 * How a run ended. `warning`: the snapshot was saved but something is wrong (incomplete, or an
 * after-tap such as retention failed); `skipped`: a scheduled time came while the previous run
 * of the task was still going or waiting; `interrupted`: the daemon was stopped during it.
 */
export type RunResult = 'success' | 'warning' | 'failure' | 'skipped' | 'interrupted';

export interface RunRecord {
  task: TaskKind;
  result: RunResult;
  /** The scheduled time this run was for (absent for a run made at start for a missed time). */
  scheduledFor?: string;
  started: string;
  finished: string;
  durationMs: number;
  /** The exit code of the cairn command that did the work. */
  exitCode?: number;
  snapshot?: string;
  bytesRead?: number;
  bytesAdded?: number;
  /** What went wrong (failure, warning, interrupted, skipped). */
  error?: string;
}

export interface TaskState {
  /** The schedule as the job file writes it, in words (e.g. `cron 0 2 * * * (Europe/Berlin)`). */
  schedule: string;
  nextRun?: string;
  running?: { since: string; pid?: number; scheduledFor?: string };
  lastRun?: RunRecord;
  lastSuccess?: RunRecord;
  /** Runs per result since the state was created. */
  counts: Partial<Record<RunResult, number>>;
}

export interface JobState {
  name: string;
  /** Absolute path of the job file. */
  file: string;
  /** The repository's location (jobs with the same one run one after the other). */
  repository: string;
  /** When the daemon first scheduled this job: a missed run is one scheduled after this. */
  knownSince: string;
  tasks: Partial<Record<TaskKind, TaskState>>;
}

export interface DaemonProblem {
  file: string;
  message: string;
  time: string;
}

export interface DaemonState {
  version: 1;
  daemon: {
    pid: number;
    /** The daemon process's start time (see processStartTime): a reused pid is not taken for it. */
    startTime?: string;
    hostname: string;
    started: string;
    /** Last write of this file by the daemon. */
    updated: string;
    /** Set when the daemon stopped cleanly. */
    stopped?: string;
    /** Where it serves the dashboard (`cairn daemon --web`); `cairn ui` prints this address. */
    web?: { url: string };
  };
  /** By job name. */
  jobs: Record<string, JobState>;
  /** Job files that could not be loaded at the last (re)load; the previous valid version of each keeps running. */
  problems: DaemonProblem[];
}

export const STATE_FILE = 'state.json';

/**
 * Where the daemon keeps its state: `$CAIRN_STATE_DIR`, else /var/lib/cairn for root (systemd's
 * StateDirectory=cairn), else `$XDG_STATE_HOME/cairn` (default ~/.local/state/cairn).
 */
export function defaultStateDir(env: NodeJS.ProcessEnv, isRoot = process.getuid?.() === 0): string {
  if (env.CAIRN_STATE_DIR) return env.CAIRN_STATE_DIR;
  if (isRoot) return '/var/lib/cairn';
  return join(env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state'), 'cairn');
}
