import { hostname } from 'node:os';
import type { FSWatcher } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { UsageError } from '../errors.js';
import type { Clock } from '../services.js';
import { DAEMON_JOB_FILE_ENV, DAEMON_JOB_TEXT_ENV, type LoadedJob } from '../job/job-loader.js';
import type { DaemonLogger } from './daemon-logger.js';
import { PROGRESS_JSON_ENV, startCairn, type CairnProcess, type ProgressLine } from './cairn-process.js';
import type { DashboardBackend, JobCommand, RunNowResult, RunningTask } from './web/dashboard.js';
import { JobSet, listJobFiles } from './job-files.js';
import { runRecordOf } from './run-record.js';
import { SerialQueues } from './serial-queues.js';
import { adHocTask, tasksOf, type RunSpec, type TaskSpec } from './tasks.js';
import { TaskClock, type TaskHistory } from './task-clock.js';
import { lastCoveredTime } from './schedule.js';
import { watchJobFiles } from './watch.js';
import { readDaemonState, writeDaemonState, daemonIsRunning } from './state-file.js';
import { DaemonAlreadyRunningError } from '../errors.js';
import type { DaemonState, JobState, RunRecord, TaskKind } from './state.js';
import { notificationOf, type DaemonNotify } from './daemon-notifications.js';
import { processStartTime } from '../system/process-start.js';

export interface DaemonOptions {
  /** Job files and folders of them, as given on the command line. */
  paths: string[];
  cwd: string;
  /** The environment of the commands the daemon runs. */
  env: NodeJS.ProcessEnv;
  stateDir: string;
  /** The plugins.json the commands use (the daemon's own). */
  pluginsFile: string;
  verbose: boolean;
  /** Read the job files again when they change (else only on `reload()`, SIGHUP). */
  watch?: boolean;
  clock: Clock;
  logger: DaemonLogger;
  loadJob(file: string): Promise<LoadedJob>;
  notify: DaemonNotify;
  /** Called after each change of the state (the metrics textfile). */
  onState?(state: DaemonState): Promise<void>;
  /** Called when a run ended (the dashboard's history), and with each progress line of a running task. */
  onRunFinished?(job: string, record: RunRecord): Promise<void>;
  onProgress?(running: RunningTask): void;
  /** Random numbers in [0, 1) for the jitter. */
  random?: () => number;
  /** Starts the `cairn` command of a task (default: a child process; tests of the timing replace it). */
  startCairn?: typeof startCairn;
  /** Where the state is kept (default: the state file in `stateDir`). */
  stateStore?: { read(dir: string): Promise<DaemonState | undefined>; write(dir: string, state: DaemonState): Promise<void> };
}

const STATE_FILE_STORE = { read: readDaemonState, write: writeDaemonState };

/** A task as the daemon runs it: its schedule, and whether a run of it is waiting or going. */
interface Task {
  /** Replaced when the job file is read again. */
  spec: RunSpec;
  /** Absent for a task run only on request (`runNow` of a task the job file does not schedule). */
  clock?: TaskClock;
  busy?: 'queued' | 'running';
  process?: CairnProcess;
  stoppedByDaemon?: boolean;
  since?: Date;
  progress?: ProgressLine;
}

interface ScheduledTask extends Task {
  spec: TaskSpec;
  clock: TaskClock;
}

/** How long a task told to stop (SIGTERM) may take before it is killed. */
const KILL_AFTER_MS = 60_000;

/** How long the timer sleeps at most: a clock changed or a machine woken from sleep is noticed within this. */
const MAX_SLEEP_MS = 30_000;

/**
 * `cairn daemon`: runs each job's backup, prune and check on their schedules, as `cairn`
 * child processes, one at a time per repository and never two of the same task, and keeps
 * what happened in the state file.
 */
export class Daemon implements DashboardBackend {
  readonly #tasks = new Map<string, ScheduledTask>();
  /** Tasks run only on request, by id. */
  readonly #adHoc = new Map<string, Task>();
  #jobs = new Map<string, LoadedJob>();
  readonly #queues = new SerialQueues();
  readonly #runs = new Set<Promise<void>>();
  /** Tasks queued or running (a job removed from the files meanwhile is no longer in #tasks). */
  readonly #inFlight = new Set<Task>();
  readonly #jobSet: JobSet;
  readonly #state: DaemonState;
  #timer: NodeJS.Timeout | undefined;
  #watchers: FSWatcher[] = [];
  #saving: Promise<void> = Promise.resolve();
  #reloading: Promise<void> = Promise.resolve();
  #stopping = false;

  constructor(private readonly options: DaemonOptions) {
    this.#jobSet = new JobSet(options.loadJob);
    const now = options.clock.now().toISOString();
    const startTime = processStartTime(process.pid);
    this.#state = { version: 1, daemon: { pid: process.pid, ...(startTime && { startTime }), hostname: hostname(), started: now, updated: now }, jobs: {}, problems: [] };
  }

  get state(): DaemonState {
    return this.#state;
  }

  get stateDir(): string {
    return this.options.stateDir;
  }

  jobs(): Map<string, LoadedJob> {
    return this.#jobs;
  }

  /** Records where the dashboard is served, for `cairn ui`. */
  async setWebUrl(url: string | undefined): Promise<void> {
    if (url) this.#state.daemon.web = { url };
    else delete this.#state.daemon.web;
    await this.#save();
  }

  /**
   * Queues a run of `kind` now, as a scheduled time would (one at a time per repository); a task
   * the job file does not schedule runs too, its result then only in the history and the log.
   */
  runNow(jobName: string, kind: TaskKind, options: { readData?: boolean } = {}): RunNowResult {
    const job = this.#jobs.get(jobName);
    if (!job || this.#stopping) return 'unknown-job';
    const id = `${jobName}/${kind}`;
    const task = this.#tasks.get(id) ?? this.#adHoc.get(id) ?? { spec: adHocTask(job, kind) };
    if (task.busy) return 'busy';
    if (!this.#tasks.has(id)) this.#adHoc.set(id, task);
    this.options.logger.with(this.#context(task)).info('run requested from the dashboard');
    this.#enqueue(task, undefined, kind === 'check' && options.readData ? ['--read-data'] : []);
    void this.#save();
    return 'accepted';
  }

  running(): RunningTask[] {
    return this.#running().map((task) => ({
      job: task.spec.job.info.name,
      task: task.spec.kind,
      since: (task.since ?? this.options.clock.now()).toISOString(),
      ...(task.progress && { progress: task.progress }),
    }));
  }

  commandFor(jobName: string): JobCommand | undefined {
    const job = this.#jobs.get(jobName);
    if (!job) return undefined;
    return { job, env: this.#commandEnv(job), cwd: job.baseDir, commonArgs: ['--plugins', this.options.pluginsFile] };
  }

  #commandEnv(job: LoadedJob): NodeJS.ProcessEnv {
    return { ...this.options.env, [PROGRESS_JSON_ENV]: '1', ...(job.text !== undefined && { [DAEMON_JOB_FILE_ENV]: job.info.file, [DAEMON_JOB_TEXT_ENV]: job.text }) };
  }

  /** Loads the jobs, runs what was missed, and starts the timer. UsageError when no job has a schedule. */
  async start(): Promise<void> {
    const previous = await (this.options.stateStore ?? STATE_FILE_STORE).read(this.options.stateDir);
    if (previous && daemonIsRunning(previous) && previous.daemon.pid !== process.pid) throw new DaemonAlreadyRunningError(this.options.stateDir, previous.daemon.pid);
    this.#state.jobs = previous ? endedRuns(previous) : {};
    const files = await listJobFiles(this.options.paths, this.options.cwd);
    await this.#load(files);
    if (this.#tasks.size === 0) throw new UsageError(`None of the job files has a schedule (\`schedule\`, \`prune.schedule\` or \`check.schedule\`): nothing to run${this.#problemsText()}`);
    this.options.logger.info(`started: ${this.#tasks.size} scheduled task(s) of ${Object.keys(this.#state.jobs).length} job(s); state in ${this.options.stateDir}`);
    this.#runMissed();
    if (this.options.watch !== false) this.#watchers = watchJobFiles(this.options.paths, this.options.cwd, () => void this.reload());
    this.#arm();
    await this.#save();
  }

  /** Reads the job files again (SIGHUP, or a file changed); an invalid file keeps its previous version running. */
  reload(): Promise<void> {
    this.#reloading = this.#reloading.then(async () => {
      if (this.#stopping) return;
      try {
        await this.#load(await listJobFiles(this.options.paths, this.options.cwd));
        this.options.logger.info(`job files reloaded: ${this.#tasks.size} scheduled task(s)`);
      } catch (err) {
        this.options.logger.error(`cannot reload the job files: ${(err as Error).message}; the jobs loaded before keep running`);
      }
      this.#arm();
      await this.#save();
    });
    return this.#reloading;
  }

  /**
   * Stops scheduling; lets running tasks finish for up to `graceMs`, then tells them to stop
   * (they release their locks; what they stored stays usable) and waits for them.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    for (const watcher of this.#watchers) watcher.close();
    const running = this.#running();
    if (running.length > 0) {
      this.options.logger.info(`stopping: waiting up to ${Math.round(graceMs / 1000)} s for ${running.map((t) => t.spec.id).join(', ')} to finish`);
      await Promise.race([this.#allRuns(), sleep(graceMs, undefined, { ref: false })]);
      this.#signalRunning('SIGTERM');
      await Promise.race([this.#allRuns(), sleep(KILL_AFTER_MS, undefined, { ref: false })]);
      this.#signalRunning('SIGKILL');
    }
    await this.#allRuns();
    this.#state.daemon.stopped = this.options.clock.now().toISOString();
    await this.#save();
    this.options.logger.info('stopped');
  }

  /** SIGTERM: the command releases its locks and exits; SIGKILL, for one that did not within a minute. */
  #signalRunning(signal: 'SIGTERM' | 'SIGKILL'): void {
    for (const task of this.#running()) {
      const said = signal === 'SIGTERM' ? 'still running after the grace period: told to stop (SIGTERM)' : 'did not stop within a minute of SIGTERM: killed';
      this.options.logger.with(this.#context(task)).warn(said);
      task.stoppedByDaemon = true;
      task.process!.signal(signal);
    }
  }

  /** Tasks with a run going, also those of jobs no longer in the files. */
  #running(): Task[] {
    return [...this.#inFlight].filter((task) => task.busy === 'running' && task.process);
  }

  async #allRuns(): Promise<void> {
    while (this.#runs.size > 0) await Promise.allSettled([...this.#runs]);
  }

  async #load(files: string[]): Promise<void> {
    const now = this.options.clock.now();
    const { jobs, problems } = await this.#jobSet.reload(files, now);
    for (const problem of problems) this.options.logger.error(`${problem.file}: ${problem.message}`);
    this.#state.problems = problems;
    const specs = [...jobs.values()].flatMap(tasksOf);
    for (const job of jobs.values()) {
      if (!specs.some((spec) => spec.job === job)) this.options.logger.warn(`${job.info.file}: the job "${job.info.name}" has no schedule; the daemon does not run it`);
    }
    this.#replaceTasks(specs, now);
    this.#jobs = new Map([...jobs].filter(([, job]) => specs.some((spec) => spec.job === job)));
    this.#syncJobStates(jobs, now);
  }

  /**
   * New and changed tasks get a fresh clock; a task whose schedule did not change keeps its
   * next run. A task that is queued or running stays the same object, so that the run in flight
   * marks it idle when it ends.
   */
  #replaceTasks(specs: TaskSpec[], now: Date): void {
    const old = new Map(this.#tasks);
    this.#tasks.clear();
    for (const spec of specs) {
      const task = old.get(spec.id);
      if (task) {
        const rescheduled = JSON.stringify(task.spec.schedule) !== JSON.stringify(spec.schedule);
        task.spec = spec;
        if (rescheduled) task.clock = this.#newClock(spec, now);
      }
      this.#tasks.set(spec.id, task ?? { spec, clock: this.#newClock(spec, now) });
    }
  }

  #newClock(spec: TaskSpec, now: Date): TaskClock {
    const clock = new TaskClock(spec.schedule, this.options.random ?? Math.random);
    clock.plan(now, this.#history(spec, now));
    return clock;
  }

  #syncJobStates(jobs: Map<string, LoadedJob>, now: Date): void {
    const states: Record<string, JobState> = {};
    for (const job of jobs.values()) {
      const previous = this.#state.jobs[job.info.name];
      const state: JobState = { name: job.info.name, file: job.info.file, repository: '', knownSince: previous?.knownSince ?? now.toISOString(), tasks: {} };
      for (const task of this.#tasks.values()) {
        if (task.spec.job !== job) continue;
        state.repository = task.spec.repository;
        const before = previous?.tasks[task.spec.kind];
        state.tasks[task.spec.kind] = { counts: {}, ...before, schedule: task.clock.describe(), ...(task.clock.nextRun && { nextRun: task.clock.nextRun.toISOString() }) };
      }
      if (Object.keys(state.tasks).length > 0) states[job.info.name] = state;
    }
    this.#state.jobs = states;
  }

  /** At start: a task with `runMissed` whose scheduled time passed while the daemon was down runs now. */
  #runMissed(): void {
    const now = this.options.clock.now();
    for (const task of this.#tasks.values()) {
      const missed = task.clock.missed(now, this.#history(task.spec, now));
      if (!missed) continue;
      this.options.logger.with(this.#context(task)).info(`the run scheduled for ${missed.toISOString()} was missed while the daemon was down: running it now`);
      this.#enqueue(task, missed);
    }
  }

  #arm(): void {
    clearTimeout(this.#timer);
    if (this.#stopping) return;
    const now = this.options.clock.now().getTime();
    const next = Math.min(...[...this.#tasks.values()].map((task) => task.clock.nextRun?.getTime() ?? Infinity));
    const delay = Math.max(0, Math.min(next - now, MAX_SLEEP_MS));
    this.#timer = setTimeout(() => this.#tick(), delay);
  }

  #tick(): void {
    const now = this.options.clock.now();
    const due = [...this.#tasks.values()].filter((task) => task.clock.nextRun && task.clock.nextRun <= now);
    for (const task of due) {
      const scheduledFor = task.clock.scheduledFor!;
      task.clock.plan(now, this.#history(task.spec, now));
      this.#due(task, scheduledFor);
    }
    this.#arm();
    if (due.length === 0) return;
    this.#syncNextRuns();
    void this.#save();
  }

  #due(task: Task, scheduledFor: Date): void {
    if (!task.busy) return this.#enqueue(task, scheduledFor);
    const state = this.#taskState(task)!;
    state.counts.skipped = (state.counts.skipped ?? 0) + 1;
    const since = state.running?.since ? ` (running since ${state.running.since})` : ' (waiting for its repository)';
    this.options.logger.with(this.#context(task)).warn(`the run scheduled for ${scheduledFor.toISOString()} is skipped: the previous run is still ${task.busy}${task.busy === 'running' ? since : ''}`);
  }

  #enqueue(task: Task, scheduledFor: Date | undefined, extraArgs: string[] = []): void {
    task.busy = 'queued';
    this.#inFlight.add(task);
    const run = this.#queues.run(task.spec.repository, () => this.#execute(task, scheduledFor, extraArgs));
    this.#runs.add(run);
    void run.finally(() => {
      this.#runs.delete(run);
      this.#inFlight.delete(task);
    });
  }

  async #execute(task: Task, scheduledFor: Date | undefined, extraArgs: string[]): Promise<void> {
    if (this.#stopping) {
      task.busy = undefined;
      return;
    }
    const started = this.options.clock.now();
    const logger = this.options.logger.with(this.#context(task));
    const args = [...task.spec.args, ...extraArgs, '--plugins', this.options.pluginsFile, ...(this.options.verbose ? ['--verbose'] : [])];
    const env = this.#commandEnv(task.spec.job);
    const onProgress = (progress: ProgressLine) => {
      task.progress = progress;
      this.options.onProgress?.({ job: task.spec.job.info.name, task: task.spec.kind, since: started.toISOString(), progress });
    };
    task.process = (this.options.startCairn ?? startCairn)(args, { env, cwd: task.spec.job.baseDir, logger, onProgress });
    task.since = started;
    task.progress = undefined;
    task.busy = 'running';
    task.stoppedByDaemon = false;
    this.#setRunning(task, started, scheduledFor);
    logger.info(`started ${scheduledFor ? `(scheduled for ${scheduledFor.toISOString()})` : ''}: cairn ${[...task.spec.args, ...extraArgs].join(' ')}`);
    await this.#save();
    const outcome = await task.process.done;
    const record = runRecordOf(task.spec.kind, outcome, { scheduledFor, started, finished: this.options.clock.now(), stoppedByDaemon: task.stoppedByDaemon ?? false });
    task.busy = undefined;
    task.process = undefined;
    task.progress = undefined;
    this.#finish(task, record);
    await this.options.onRunFinished?.(task.spec.job.info.name, record).catch((err: Error) => logger.error(`cannot record the run in the history: ${err.message}`));
    await this.options.notify(task.spec.job, notificationOf(task.spec.kind, record, outcome));
    if (!this.#stopping) task.clock?.plan(this.options.clock.now(), this.#history(task.spec, started));
    this.#syncNextRuns();
    this.#arm();
    await this.#save();
  }

  #setRunning(task: Task, started: Date, scheduledFor: Date | undefined): void {
    const state = this.#taskState(task);
    if (state) state.running = { since: started.toISOString(), ...(task.process?.pid && { pid: task.process.pid }), ...(scheduledFor && { scheduledFor: scheduledFor.toISOString() }) };
  }

  #finish(task: Task, record: RunRecord): void {
    const logger = this.options.logger.with(this.#context(task));
    const line = `${record.result} in ${(record.durationMs / 1000).toFixed(1)} s${record.snapshot ? `: snapshot ${record.snapshot.slice(0, 12)}, ${record.bytesAdded} bytes added` : ''}${record.error ? `: ${record.error}` : ''}`;
    if (record.result === 'success') logger.info(line);
    else if (record.result === 'failure') logger.error(line);
    else logger.warn(line);
    const state = this.#taskState(task);
    if (!state) return; // The job was removed from the files while it ran.
    delete state.running;
    state.lastRun = record;
    if (record.result === 'success' || record.result === 'warning') state.lastSuccess = record;
    state.counts[record.result] = (state.counts[record.result] ?? 0) + 1;
  }

  #syncNextRuns(): void {
    for (const task of this.#tasks.values()) {
      const state = this.#taskState(task);
      if (!state) continue;
      if (task.clock.nextRun) state.nextRun = task.clock.nextRun.toISOString();
      else delete state.nextRun;
    }
  }

  /** The task's past from the state: when its job became known (now, for a new one), and what its last run covered. */
  #history(spec: RunSpec, now: Date): TaskHistory {
    const job = this.#state.jobs[spec.job.info.name];
    const lastRun = lastCoveredTime(job?.tasks[spec.kind]);
    return { knownSince: job ? new Date(job.knownSince) : now, ...(lastRun && { lastRun }) };
  }

  #taskState(task: Task) {
    return this.#state.jobs[task.spec.job.info.name]?.tasks[task.spec.kind];
  }

  #context(task: Task) {
    return { job: task.spec.job.info.name, task: task.spec.kind };
  }

  #problemsText(): string {
    return this.#state.problems.length > 0 ? `\n${this.#state.problems.map((p) => `  ${p.file}: ${p.message}`).join('\n')}` : '';
  }

  /** Writes the state file, one write at a time, the newest state last. */
  #save(): Promise<void> {
    this.#saving = this.#saving.then(async () => {
      this.#state.daemon.updated = this.options.clock.now().toISOString();
      try {
        await (this.options.stateStore ?? STATE_FILE_STORE).write(this.options.stateDir, structuredClone(this.#state));
        await this.options.onState?.(this.#state);
      } catch (err) {
        this.options.logger.error(`cannot write the state to ${this.options.stateDir}: ${(err as Error).message}`);
      }
    });
    return this.#saving;
  }
}

/**
 * The job states a previous daemon left, its runs that were going when it ended (it was killed,
 * or the machine went down) recorded as interrupted: their result is unknown, and a missed run
 * does not count them as done.
 */
function endedRuns(previous: DaemonState): Record<string, JobState> {
  const jobs = structuredClone(previous.jobs);
  for (const job of Object.values(jobs)) {
    for (const [kind, task] of Object.entries(job.tasks)) {
      if (!task?.running) continue;
      const { since, scheduledFor } = task.running;
      const finished = previous.daemon.updated;
      const error = 'the daemon ended while this ran (killed, or the machine went down); its result is unknown';
      task.lastRun = { task: kind as TaskKind, result: 'interrupted', ...(scheduledFor && { scheduledFor }), started: since, finished, durationMs: Math.max(0, Date.parse(finished) - Date.parse(since)), error };
      task.counts.interrupted = (task.counts.interrupted ?? 0) + 1;
      delete task.running;
    }
  }
  return jobs;
}
