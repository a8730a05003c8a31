import { randomUUID } from 'node:crypto';
import type { Logger } from '../../services.js';
import { startCairn, type CairnProcess } from '../cairn-process.js';
import type { DashboardEvents, JobCommand, RestoreEvent, RunningTask } from './dashboard.js';
import { errorOf } from './cairn-queries.js';

/** What `POST /api/jobs/:job/restore` asks for (checked by the API before it gets here). */
export interface RestoreRequest {
  snapshot: string;
  to: string;
  include?: string[];
  exclude?: string[];
  overwrite?: 'always' | 'if-changed' | 'never';
  force?: boolean;
}

interface RestoreRun extends RestoreEvent {
  job: string;
  since: string;
  progress?: RunningTask['progress'];
  process?: CairnProcess;
}

/** How many finished restores are remembered for `GET /api/restores/:id`. */
const KEEP_FINISHED = 100;

/**
 * Restores started from the dashboard, each a `cairn restore … --json` child of the daemon;
 * their progress and end are pushed as events.
 */
export class Restores {
  readonly #runs = new Map<string, RestoreRun>();

  constructor(
    private readonly events: DashboardEvents,
    private readonly logger: Logger,
  ) {}

  start(command: JobCommand, request: RestoreRequest): string {
    const restoreId = randomUUID();
    const job = command.job.info.name;
    const run: RestoreRun = { restoreId, job, state: 'running', since: new Date().toISOString() };
    this.#runs.set(restoreId, run);
    const logger = (this.logger as Logger & { with?(c: object): Logger }).with?.({ job, task: 'restore' }) ?? this.logger;
    logger.info(`restore of ${request.snapshot} to ${request.to} requested from the dashboard`);
    const onProgress = (progress: NonNullable<RunningTask['progress']>) => {
      run.progress = progress;
      this.events.emit('progress', { job, task: 'restore', since: run.since, progress });
    };
    const child = startCairn([...restoreArgs(command, request), ...command.commonArgs], { env: command.env, cwd: command.cwd, logger, onProgress });
    run.process = child;
    this.events.emit('restore', publicView(run));
    void child.done.then((outcome) => {
      delete run.process;
      if (outcome.exitCode === 0) Object.assign(run, { state: 'done', result: outcome.result });
      else Object.assign(run, { state: 'failed', ...(outcome.result && { result: outcome.result }), error: { code: errorOf('restore', outcome).code, message: errorOf('restore', outcome).message } });
      delete run.progress;
      logger.info(`restore ${run.state}${run.error ? `: ${run.error.message}` : ''}`);
      this.events.emit('restore', publicView(run));
      this.#forgetOld();
    });
    return restoreId;
  }

  /** When the daemon stops: running restores are told to stop (SIGTERM: they stop cleanly and release their locks) and awaited. */
  async stop(): Promise<void> {
    const running = [...this.#runs.values()].flatMap((run) => (run.process ? [run.process] : []));
    for (const process of running) process.signal('SIGTERM');
    await Promise.all(running.map((process) => process.done));
  }

  get(restoreId: string): RestoreEvent | undefined {
    const run = this.#runs.get(restoreId);
    return run && publicView(run);
  }

  running(): RunningTask[] {
    return [...this.#runs.values()].filter((r) => r.state === 'running').map((r) => ({ job: r.job, task: 'restore', since: r.since, ...(r.progress && { progress: r.progress }) }));
  }

  #forgetOld(): void {
    const finished = [...this.#runs.values()].filter((r) => r.state !== 'running');
    for (const run of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.#runs.delete(run.restoreId);
  }
}

function restoreArgs(command: JobCommand, request: RestoreRequest): string[] {
  return [
    'restore',
    command.job.info.file,
    request.snapshot,
    '--to',
    request.to,
    ...(request.include ?? []).flatMap((p) => ['--include', p]),
    ...(request.exclude ?? []).flatMap((p) => ['--exclude', p]),
    ...(request.overwrite ? ['--overwrite', request.overwrite] : []),
    ...(request.force ? ['--force'] : []),
  ];
}

function publicView(run: RestoreRun): RestoreEvent {
  return { restoreId: run.restoreId, state: run.state, ...(run.result !== undefined && { result: run.result }), ...(run.error && { error: run.error }) };
}
