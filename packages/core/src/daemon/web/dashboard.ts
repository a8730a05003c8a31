import type { LoadedJob } from '../../job/job-loader.js';
import type { DaemonState, RunRecord, TaskKind, TaskState } from '../state.js';
import type { LogLine } from './log-ring.js';

/** How far a running task is, from the progress lines its `cairn` child prints. */
export interface TaskProgress {
  bytesDone: number;
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
  /** What the command is doing (`backup`, `check`, `restore`, …). */
  phase?: string;
}

/** A task running now, for the dashboard. */
export interface RunningTask {
  job: string;
  task: TaskKind | 'restore';
  since: string;
  progress?: TaskProgress;
}

/** A job as `GET /api/jobs` shows it. */
export interface JobSummary {
  name: string;
  file: string;
  kind: 'volume' | 'files';
  source: { type: string; path?: string; paths?: string[] };
  /** `location`: the repository (never credentials). */
  target: { type: string; location: string };
  /** The backup's schedule in words. */
  schedule?: string;
  tasks: Partial<Record<TaskKind, TaskState>>;
  running?: RunningTask;
  /** Backup runs, newest last, up to 50. */
  history: RunRecord[];
}

export type RunNowResult = 'accepted' | 'busy' | 'unknown-job';

/** A `cairn` command run for a job: its environment and folder (the job's text as the daemon validated it). */
export interface JobCommand {
  job: LoadedJob;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Flags every command of the daemon gets (`--plugins FILE`). */
  commonArgs: string[];
}

/** What the web server needs of the daemon: its state, its jobs, and running a task now. */
export interface DashboardBackend {
  readonly state: DaemonState;
  readonly stateDir: string;
  /** The jobs the daemon runs, by name. */
  jobs(): Map<string, LoadedJob>;
  /** Queues `task` of `job` now, serialised with the job's repository like a scheduled run. */
  runNow(job: string, task: TaskKind, options?: { readData?: boolean }): RunNowResult;
  /** Tasks running now, with their progress when their command reports it. */
  running(): RunningTask[];
  /** How to run a `cairn` command for `job`; undefined for a job the daemon does not know. */
  commandFor(job: string): JobCommand | undefined;
}

type Listener<T> = (value: T) => void;

/** The events the dashboard pushes to browsers (`GET /api/events`). */
export interface DashboardEventMap {
  state: DaemonState;
  progress: RunningTask;
  log: LogLine;
  restore: RestoreEvent;
  run: { job: string; record: RunRecord };
}

export interface RestoreEvent {
  restoreId: string;
  state: 'running' | 'done' | 'failed';
  result?: unknown;
  error?: { code?: string; message: string };
}

/** A small typed event hub between the daemon and the web server (made before either). */
export class DashboardEvents {
  readonly #listeners = new Map<keyof DashboardEventMap, Set<Listener<any>>>();

  emit<K extends keyof DashboardEventMap>(event: K, value: DashboardEventMap[K]): void {
    for (const listener of this.#listeners.get(event) ?? []) listener(value);
  }

  /** Returns the function that removes the listener. */
  on<K extends keyof DashboardEventMap>(event: K, listener: Listener<DashboardEventMap[K]>): () => void {
    const set = this.#listeners.get(event) ?? new Set();
    this.#listeners.set(event, set);
    set.add(listener);
    return () => set.delete(listener);
  }
}
