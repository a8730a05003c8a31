import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { inject, injectable } from '../vendor.js';
import { ExitCode, exitCodeOfError } from '../errors.js';
import { HOOK_STAGE_RELEASE, HOOK_STAGE_REPORT, type EngineHooks, type HookContribution, type JobRun, type RunOutcome, type SnapshotSaved } from '../hooks.js';
import { describeTapFailure } from '../hook-runner.js';
import { isIncompleteSnapshot } from '../repository/snapshot.js';
import { Environment, Logger } from '../services.js';
import { hookCommands, runHookCommand, type HookPhase, type JobHooks } from './hook-command.js';

const PLUGIN_NAME = 'JobCommands';

/** How the backup went, as the commands that run after it see it (CAIRN_RESULT). */
export interface RunVerdict {
  /** `warning`: the snapshot was saved, but incomplete (`backup --rescue` over unreadable sectors, exit 3). */
  result: 'success' | 'warning' | 'failure';
  error?: string;
  exitCode?: ExitCode;
}

/** What a backup run has told the taps so far. */
interface RunFacts {
  /** When the run started (before the `before` commands), in ms since the epoch. */
  started: number;
  /** When the backup's work ended: the snapshot was saved, or it failed. */
  ended?: number;
  saved?: SnapshotSaved;
  /** The `after` commands have started. */
  released?: boolean;
}

/** The variables of the run's facts; inherited ones (cairn run from a hook) are dropped so that a command never sees another run's. */
// The daemon's copy of the job file text is for cairn, not for the job's commands.
const FACT_VARIABLES = ['CAIRN_DAEMON_JOB_FILE', 'CAIRN_DAEMON_JOB_TEXT', 'CAIRN_RESULT', 'CAIRN_SNAPSHOT', 'CAIRN_SNAPSHOT_TIME', 'CAIRN_BYTES_ADDED', 'CAIRN_BYTES_READ', 'CAIRN_DURATION_MS', 'CAIRN_ERROR', 'CAIRN_EXIT_CODE'];

/**
 * The job file's `hooks` commands, as taps on the engine hooks, for backups:
 * - `before` in `beforeRun`, in order; the first failure aborts the backup.
 * - `after` as soon as the backup's work is over, whatever the outcome: first in the run's
 *   `snapshotSaved` (before retention), or first in `failed`; exactly once per run. It releases
 *   what `before` took (`fsfreeze -u`).
 * - then, last in `afterRun`, `onSuccess` when the command will exit 0 or 3 (a snapshot was
 *   saved, nothing failed), else `onError`: the backup or a `before` command failed, or an
 *   `after` tap did (an `after` command, retention).
 * Every command of `after`, `onSuccess` and `onError` runs even when an earlier one failed.
 * Commands run in the job file's folder with the run's facts in CAIRN_* variables.
 */
/**
 * The `after` commands of runs whose `before` commands started and whose `after` commands have
 * not: what must still run when the process is told to stop (SIGTERM, SIGINT) and abandons the
 * backup, so that a frozen file system is thawed. Process-wide, like the locks it holds.
 */
const pendingReleases = new Map<JobRun, (reason: unknown) => Promise<void>>();

/**
 * Runs the `after` commands of every backup still in flight, which the process abandons next
 * (`reason`: why, e.g. an InterruptedError; commands see it as CAIRN_ERROR); failures are logged.
 */
export async function runPendingReleases(reason: unknown): Promise<void> {
  const releases = [...pendingReleases.values()];
  pendingReleases.clear();
  await Promise.allSettled(releases.map((release) => release(reason)));
}

@injectable()
export class JobCommands implements HookContribution {
  readonly #runs = new WeakMap<JobRun, RunFacts>();

  constructor(
    @inject(Logger) private readonly logger: Logger,
    @inject(Environment) private readonly environment: Environment,
  ) {}

  tapHooks(hooks: Readonly<EngineHooks>): void {
    hooks.beforeRun.tapPromise(PLUGIN_NAME, async (run) => {
      if (run.operation !== 'backup') return;
      this.#runs.set(run, { started: Date.now() });
      pendingReleases.set(run, (reason) => this.#release(run, failureVerdict(reason)).catch((err) => this.logger.error(messageOf(err))));
      await this.#runPhase(run, 'before', undefined, { stopAtFirstFailure: true });
    });
    hooks.backup.tap(PLUGIN_NAME, (run) => {
      run.hooks.snapshotSaved.tapPromise({ name: PLUGIN_NAME, stage: HOOK_STAGE_RELEASE }, async (saved) => {
        const facts = this.#facts(run);
        facts.saved = saved;
        facts.ended = Date.now();
        await this.#release(run, { result: isIncompleteSnapshot(saved.manifest) ? 'warning' : 'success' });
      });
    });
    hooks.failed.tapPromise({ name: PLUGIN_NAME, stage: HOOK_STAGE_RELEASE }, async (run, error) => {
      if (run.operation !== 'backup') return;
      this.#facts(run).ended ??= Date.now();
      await this.#release(run, failureVerdict(error));
    });
    hooks.afterRun.tapPromise({ name: PLUGIN_NAME, stage: HOOK_STAGE_REPORT }, async (run, outcome) => {
      if (run.operation !== 'backup') return;
      const verdict = verdictOf(outcome, this.#facts(run).saved);
      try {
        await this.#runPhase(run, verdict.result === 'failure' ? 'onError' : 'onSuccess', verdict);
      } finally {
        this.#runs.delete(run);
      }
    });
  }

  /** The `after` commands, once per run: whoever comes first (the run's end, or an interrupt) runs them. */
  async #release(run: JobRun, verdict: RunVerdict): Promise<void> {
    pendingReleases.delete(run);
    const facts = this.#facts(run);
    if (facts.released) return;
    facts.released = true;
    await this.#runPhase(run, 'after', verdict);
  }

  /** A run whose `beforeRun` an earlier tap aborted has no facts yet: it starts now. */
  #facts(run: JobRun): RunFacts {
    let facts = this.#runs.get(run);
    if (!facts) this.#runs.set(run, (facts = { started: Date.now() }));
    return facts;
  }

  async #runPhase(run: JobRun, phase: HookPhase, verdict: RunVerdict | undefined, options: { stopAtFirstFailure?: boolean } = {}): Promise<void> {
    const commands = hookCommands(run.job.job.hooks as JobHooks | undefined, phase);
    if (commands.length === 0) return;
    const context = { phase, cwd: dirname(run.job.file), env: this.#environmentOf(run, phase, verdict), output: this.environment.stderr };
    let firstError: unknown;
    for (const command of commands) {
      this.logger.info(`running ${phase} command: ${command.argv.join(' ')}`);
      try {
        await runHookCommand(command, context);
      } catch (err) {
        if (options.stopAtFirstFailure) throw err;
        firstError ??= err;
      }
    }
    if (firstError) throw firstError;
  }

  /** The environment of cairn itself, and the run's facts (the ones known in this phase). */
  #environmentOf(run: JobRun, phase: HookPhase, verdict: RunVerdict | undefined): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...this.environment.env };
    for (const name of FACT_VARIABLES) delete env[name];
    Object.assign(env, { CAIRN_JOB: run.job.name, CAIRN_JOB_FILE: run.job.file, CAIRN_OPERATION: run.operation, CAIRN_HOOK: phase, CAIRN_HOST: hostname() });
    if (!verdict) return env;
    const facts = this.#facts(run);
    env.CAIRN_RESULT = verdict.result;
    env.CAIRN_DURATION_MS = String((facts.ended ?? Date.now()) - facts.started);
    if (facts.saved) {
      env.CAIRN_SNAPSHOT = facts.saved.id;
      env.CAIRN_SNAPSHOT_TIME = facts.saved.time;
      env.CAIRN_BYTES_ADDED = String(facts.saved.bytesAdded);
      env.CAIRN_BYTES_READ = String(facts.saved.bytesRead);
    }
    if (verdict.error !== undefined) env.CAIRN_ERROR = verdict.error;
    if (verdict.exitCode !== undefined) env.CAIRN_EXIT_CODE = String(verdict.exitCode);
    return env;
  }
}

/** The run as a whole: failed when its work failed or an `after` tap did (the command then exits 1). */
export function verdictOf(outcome: RunOutcome, saved: SnapshotSaved | undefined): RunVerdict {
  if (!outcome.ok) return failureVerdict(outcome.error);
  const failure = outcome.tapFailures?.[0];
  if (failure) return { result: 'failure', error: describeTapFailure(failure), exitCode: ExitCode.failed };
  return { result: saved && isIncompleteSnapshot(saved.manifest) ? 'warning' : 'success' };
}

function failureVerdict(error: unknown): RunVerdict {
  return { result: 'failure', error: messageOf(error), exitCode: exitCodeOfError(error) };
}

function messageOf(error: unknown): string {
  return (error as Error)?.message ?? String(error);
}
