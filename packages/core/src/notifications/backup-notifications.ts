import { dirname } from 'node:path';
import { inject, injectable } from '../vendor.js';
import { CairnError, ExitCode } from '../errors.js';
import { Clock } from '../services.js';
import { describeTapFailure } from '../hook-runner.js';
import type { EngineHooks, HookContribution, JobRun, RunOutcome, SnapshotSaved } from '../hooks.js';
import type { JobConfig, LoadedJob } from '../job/job-loader.js';
import type { Notification } from '../notify.js';
import { Notifications, type NotificationInput } from './notifications.js';
import { isFileManifest, type AnySnapshotManifest } from '../repository/snapshot.js';

const PLUGIN_NAME = 'BackupNotifications';
/** `start` goes out before the job's own `before` commands run, so a health check sees the start of a run they fail. */
const STAGE_BEFORE_JOB_COMMANDS = -100;
/** The result goes out after every other `afterRun` tap (the job's `after` commands), so their failures are in it. */
const STAGE_AFTER_EVERYTHING = 100;

/** What one backup run has told us so far. */
interface RunFacts {
  started: number;
  saved?: SnapshotSaved;
}

/**
 * The job's `notify` list, told about every backup: `start` when it begins, then `success`,
 * `warning` (an incomplete snapshot, or a failed after-tap such as an `after` command) or
 * `failure` (with the error and the exit code the CLI gives it).
 */
@injectable()
export class BackupNotifications implements HookContribution {
  readonly #runs = new WeakMap<JobRun, RunFacts>();

  constructor(
    @inject(Notifications) private readonly notifications: Notifications,
    @inject(Clock) private readonly clock: Clock,
  ) {}

  tapHooks(hooks: Readonly<EngineHooks>): void {
    hooks.beforeRun.tapPromise({ name: PLUGIN_NAME, stage: STAGE_BEFORE_JOB_COMMANDS }, async (run) => {
      if (run.operation !== 'backup') return;
      this.#runs.set(run, { started: this.clock.now().getTime() });
      await this.notifications.notify(jobOf(run), { event: 'start', job: run.job.name, operation: 'backup' });
    });
    hooks.backup.tap(PLUGIN_NAME, (run) => {
      run.hooks.snapshotSaved.tap(PLUGIN_NAME, (saved) => {
        const facts = this.#runs.get(run);
        if (facts) facts.saved = saved;
      });
    });
    hooks.afterRun.tapPromise({ name: PLUGIN_NAME, stage: STAGE_AFTER_EVERYTHING }, async (run, outcome) => {
      const facts = this.#runs.get(run);
      // No facts: the run began before this tap existed, or is not a backup.
      if (run.operation !== 'backup' || !facts) return;
      this.#runs.delete(run);
      await this.notifications.notify(jobOf(run), this.#result(run, outcome, facts));
    });
  }

  #result(run: JobRun, outcome: RunOutcome, facts: RunFacts): NotificationInput {
    const common = { job: run.job.name, operation: 'backup' as const, durationMs: this.clock.now().getTime() - facts.started };
    if (!outcome.ok) return { ...common, event: 'failure', error: describeError(outcome.error) };
    const warnings = (outcome.tapFailures ?? []).map(describeTapFailure);
    const saved = facts.saved;
    const manifest = saved?.manifest;
    const incomplete = manifest && incompleteWarning(manifest);
    if (incomplete) warnings.unshift(incomplete);
    const size = manifest && (isFileManifest(manifest) ? manifest.stats.totalBytes : manifest.size);
    const snapshot = saved && { id: saved.id, bytesRead: saved.bytesRead, bytesAdded: saved.bytesAdded, size: size! };
    return { ...common, event: warnings.length > 0 ? 'warning' : 'success', warnings, ...(snapshot && { snapshot }) };
  }
}

/** What an incomplete snapshot lacks, for the notification; undefined when it is complete. */
function incompleteWarning(manifest: AnySnapshotManifest): string | undefined {
  if (isFileManifest(manifest)) {
    return manifest.skipped && `The snapshot is incomplete: ${manifest.skippedCount ?? manifest.skipped.length} path(s) of the source could not be read`;
  }
  const { unreadable } = manifest;
  if (!unreadable) return undefined;
  const bytes = unreadable.reduce((sum, range) => sum + range.length, 0);
  return `The snapshot is incomplete: ${bytes} bytes in ${unreadable.length} unreadable range(s) of the source are stored as zeros`;
}

/** The error as a notification reports it, with the exit code the CLI exits with for it. */
export function describeError(error: unknown): NonNullable<Notification['error']> {
  if (error instanceof CairnError) return { message: error.message, code: error.code, exitCode: error.exitCode };
  const { message, code } = (error ?? {}) as { message?: unknown; code?: unknown };
  return { message: typeof message === 'string' ? message : String(error), ...(typeof code === 'string' && { code }), exitCode: ExitCode.failed };
}

/** The job as a hook sees it, in the shape `Notifications` takes. */
function jobOf(run: JobRun): LoadedJob {
  return { info: run.job, config: run.job.job as unknown as JobConfig, baseDir: dirname(run.job.file) };
}
